"""``crescent acquire``: the acquire pipeline (exam, reconstruction, analysis, outputs) and its command."""
