"""``python -m crescent``: the same as the ``crescent`` command."""

import sys

from crescent.cli import main

sys.exit(main())
