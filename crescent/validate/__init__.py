"""``crescent validate``: see :mod:`crescent.validate.command`."""
