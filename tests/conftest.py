"""Test-suite set-up shared by every folder: the helper modules of ``tests/helpers`` are importable.

``tests/helpers`` holds test doubles and launchers used across suites (``host_sim``: virtual-time
exams; ``host_pty``: a ``crescent gantry --pty`` child process; ``host_peer``: a scripted device).
"""

from __future__ import annotations

import sys
from pathlib import Path

_HELPERS = str(Path(__file__).parent / "helpers")
if _HELPERS not in sys.path:
    sys.path.insert(0, _HELPERS)
