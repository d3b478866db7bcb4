"""``crescent capture``: see :mod:`crescent.capture.command`."""
