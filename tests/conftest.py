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

# Every random thing takes a seed: hypothesis draws its examples from a seed derived from each test's
# name (derandomize), so a run is reproducible and CI never meets an example no run met before. No
# deadline: a loaded 2-core machine must not turn a slow example into a failure.
from hypothesis import settings  # noqa: E402

settings.register_profile("crescent", derandomize=True, deadline=None, database=None, print_blob=True)
settings.load_profile("crescent")
