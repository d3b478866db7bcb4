"""Crescent wire protocol, exam protocols and shared contracts (no I/O)."""
