"""Fixtures shared by the application's test modules.

``default_run``: one ``crescent acquire --out OUT`` as ``make run`` runs it (the product's defaults: the
default DBT exam on a real-time simulated gantry in a child process, full outputs), once per test session.
The modules that check what the default exam writes (``test_acquire.py``: outputs, reconstruction, dose;
``test_breast_projection.py``: the Breast Projection objects under dciodvfy) read it and never change it; a test
that needs to alter an output copies it to its own ``tmp_path`` first.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("acquire") / "out"
    proc = subprocess.run([sys.executable, "-m", "crescent", "acquire", "--out", str(out), "--no-progress"],
                          capture_output=True, text=True, timeout=500)  # below pytest-timeout: the child is reaped
    print(proc.stdout[-4000:], proc.stderr[-4000:])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out
