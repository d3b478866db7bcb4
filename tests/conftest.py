"""Test-suite set-up shared by every folder: the helper modules of ``tests/helpers`` are importable.

``tests/helpers`` holds test doubles and launchers used across suites (``host_sim``: virtual-time
exams; ``host_pty``: a ``crescent gantry --pty`` child process; ``host_peer``: a scripted device).
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
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

# The suite never reads or writes the user's spectrum cache (~/.cache/crescent): its own folder, shared with the
# gantry and trial-worker processes it starts (they inherit the environment), removed at the end. Every run
# therefore computes the spectra it meets from spekpy, as on a fresh machine.
if "CRESCENT_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="crescent-test-cache-")
    os.environ["CRESCENT_CACHE_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, True)
