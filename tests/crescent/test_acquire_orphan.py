"""Issue 13, defect 6: the gantry child of `crescent acquire` exits when its parent dies.

A parent process starts the gantry exactly as `crescent acquire` does
(:class:`crescent.acquire.gantry_launch.PtyGantryProcess`), opens a session on it, and is SIGKILLed.
The child must first reach its safe state (its watchdog: SAFE_HOLD) and then exit on its own,
leaving its data directory and event log. Before the fix it ran on indefinitely, holding the pty.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from host_pty import pty_config_file, wait_for
from procs import gone

PARENT = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from crescent.acquire.gantry_launch import PtyGantryProcess
    from firmware_host import connect
    tmp, config = Path(sys.argv[1]), Path(sys.argv[2])
    with PtyGantryProcess(config, tmp / "gantry", tmp / "gantry" / "device-events.jsonl", seed=1) as g:
        with connect(g.url, seed=3) as gantry:
            print(g.proc.pid, flush=True)
            time.sleep(600)
""")


@pytest.mark.slow
def test_gantry_child_exits_after_its_parent_is_killed(tmp_path) -> None:
    config = pty_config_file(tmp_path)
    parent = subprocess.Popen([sys.executable, "-c", PARENT, str(tmp_path), str(config)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, env={**os.environ})
    child = None
    try:
        line = parent.stdout.readline()  # type: ignore[union-attr]
        assert line.strip().isdigit(), f"parent did not start the gantry: {line!r} {parent.stderr.read()}"  # type: ignore[union-attr]
        child = int(line)
        assert not gone(child)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        t_kill = time.monotonic()
        assert wait_for(lambda: gone(child), 30.0), "gantry child still running 30 s after its parent died"
        assert time.monotonic() - t_kill < 30.0
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()
        if child is not None and not gone(child):
            os.killpg(child, signal.SIGKILL)
    log = tmp_path / "gantry" / "device-events.jsonl"
    recs = [json.loads(x) for x in log.read_text().splitlines()]
    kinds = [r["kind"] for r in recs]
    assert "parent_gone" in kinds and "exit_orphaned" in kinds
    hold = [i for i, r in enumerate(recs) if r["kind"] == "state" and r["new"] == "SAFE_HOLD" and r["trigger"] == "WATCHDOG"]
    assert hold and hold[0] < kinds.index("exit_orphaned")  # safe state first, then exit
    assert recs[kinds.index("exit_orphaned")]["safe"] is True
