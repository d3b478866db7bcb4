"""``crescent exam``: see :mod:`crescent.exam.command`."""
