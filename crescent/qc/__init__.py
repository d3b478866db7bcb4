"""``crescent qc``: automated DBT quality control (see crescent.qc.command)."""
