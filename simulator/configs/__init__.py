"""Shipped gantry configurations (YAML) and example fault files; load with
:func:`simulator.gantry.config.load_config` (by name) and :func:`simulator.gantry.faults.load_faults`."""
