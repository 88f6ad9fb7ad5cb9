"""Small shared utilities (file I/O) used by every layer; no model or TF graph code."""
