"""Fixtures shared by the application's test modules.

``default_run``: one ``crescent acquire --out OUT`` as ``make run`` runs it (the product's defaults: the
default DBT exam on a real-time simulated gantry in a child process, full outputs), once per test session.
The modules that check what the default exam writes (``test_acquire.py``: outputs, reconstruction, dose;
``test_breast_projection.py``: the Breast Projection objects under dciodvfy) read it and never change it; a test
that needs to alter an output copies it to its own ``tmp_path`` first. In a parallel run the workers share it.
"""

from __future__ import annotations

import fcntl
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def default_run(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    # In a parallel run (pytest-xdist) the workers share one run: the first to ask makes it under a file lock in
    # the run's common temporary folder, the others wait for it and read it (a failed run fails them at once, with
    # its output, instead of running it again).
    shared = tmp_path_factory.getbasetemp()
    if hasattr(request.config, "workerinput"):  # an xdist worker: its basetemp is popen-gwN in the run's folder
        shared = shared.parent
    folder = shared / "default-acquire"
    out, done, failed = folder / "out", folder / "done", folder / "failed.txt"
    folder.mkdir(parents=True, exist_ok=True)
    with open(shared / "default-acquire.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if failed.exists():
            pytest.fail(f"the session's default acquire failed (another worker ran it):\n{failed.read_text()}")
        if not done.exists():
            proc = subprocess.run([sys.executable, "-m", "crescent", "acquire", "--out", str(out), "--no-progress"],
                                  capture_output=True, text=True, timeout=500)  # below pytest-timeout: the child is reaped
            print(proc.stdout[-4000:], proc.stderr[-4000:])
            if proc.returncode != 0:
                failed.write_text(f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            done.touch()
    return out
