"""``crescent gantry``: see :mod:`crescent.gantry.command`."""
