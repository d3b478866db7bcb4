"""``crescent conformance``: see :mod:`crescent.conformance.command`."""
