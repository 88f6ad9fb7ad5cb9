"""Test scaffolding shared by several test modules (reference implementations, fixtures)."""
