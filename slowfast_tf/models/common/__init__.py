"""Layers shared by every model family (torch-equivalent padding, BN defaults, inits)."""
