"""``crescent demo``: see :mod:`crescent.demo.command`."""
