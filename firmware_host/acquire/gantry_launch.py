"""Start the embedded simulated gantry for ``crescent acquire``.

Two ways, both the real simulated firmware speaking the wire protocol:

* :class:`PtyGantryProcess` runs ``crescent gantry --pty`` in a child process
  (real time) and gives back the ``/dev/pts/N`` path the host opens with
  pyserial, exactly as it would open a rig's USB-serial port;
* :func:`virtual_gantry` builds it in-process on a SimPy environment
  (virtual time), for the fast path.

The gantry configuration is written next to the outputs so a run can be
repeated with ``crescent gantry --config``.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml


def write_gantry_config(config: Any, path: Path) -> Path:
    """Save a :class:`simulator.gantry.GantryConfig` as YAML (JSON-compatible values)."""
    path.write_text(yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False), encoding="utf-8")
    return path


class PtyGantryProcess:
    """``crescent gantry --pty`` in a child process; a context manager yielding itself.

    ``url`` is the pseudo-terminal path once started; ``data_dir`` the image data
    channel; ``event_log`` the device's own event log. The child is stopped with
    SIGTERM (then SIGKILL) on exit.
    """

    def __init__(self, config_path: Path, data_dir: Path, event_log: Path, seed: int, *,
                 start_timeout_s: float = 60.0) -> None:
        self.config_path = config_path
        self.data_dir = data_dir
        self.event_log = event_log
        self.seed = seed
        self.start_timeout_s = start_timeout_s
        self.url = ""
        self.proc: subprocess.Popen[str] | None = None
        self.stderr_path = event_log.with_name("gantry-stderr.log")

    def __enter__(self) -> "PtyGantryProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "firmware_host.cli", "gantry", "--pty", "--config", str(self.config_path),
               "--seed", str(self.seed), "--data-dir", str(self.data_dir), "--event-log", str(self.event_log),
               "--quiet"]
        self._stderr = open(self.stderr_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                     start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening pty "):
            self.__exit__(None, None, None)
            raise RuntimeError(f"simulated gantry did not start (said {line!r}); see {self.stderr_path}")
        self.url = line.split(" ", 2)[2]
        while not os.path.exists(self.url) and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if hasattr(self, "_stderr"):
            self._stderr.close()


def virtual_gantry(config: Any, seed: int, data_dir: Path, event_log: Path) -> tuple[Any, Any, Any]:
    """(env, gantry, endpoint) of a simulated gantry in SimPy virtual time."""
    import simpy

    from simulator.gantry import build_gantry

    env = simpy.Environment()
    gantry, endpoint = build_gantry(env, config, seed=seed, data_dir=data_dir, event_log=event_log)
    return env, gantry, endpoint
