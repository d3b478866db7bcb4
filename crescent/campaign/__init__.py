"""``crescent campaign``: the seeded fault campaign (cases, one exam run, invariants, Dask runner, report)."""
