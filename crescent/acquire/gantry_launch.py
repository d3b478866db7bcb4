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
import select
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
    channel; ``event_log`` the device's own event log. On a normal exit (the exam over, the
    device idle) the child is stopped with SIGTERM (then SIGKILL). Leaving on an exception
    (Ctrl-C, SIGTERM, an error) the host does not wait for it: it sends SIGHUP, and the child
    finishes on its own what it was doing when the host left (the paddle rising to its park
    height, the last plan's images being written), lets its watchdog hold it safe and exits
    (:func:`simulator.gantry.realtime.serve`, ``leave``). If this process dies without either
    (SIGKILL, crash), the child notices (``--exit-with-parent``) and does the same, leaving
    ``data_dir`` and ``event_log`` for ``crescent exam recover``.
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
        cmd = [sys.executable, "-m", "crescent", "gantry", "--pty", "--config", str(self.config_path),
               "--seed", str(self.seed), "--data-dir", str(self.data_dir), "--event-log", str(self.event_log),
               "--quiet", "--exit-with-parent"]
        self._stderr = open(self.stderr_path, "w", encoding="utf-8")
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self._stderr, text=True,
                                     start_new_session=True)
        try:
            self.url = self._wait_for_pty(time.monotonic() + self.start_timeout_s)
        except BaseException:  # a failed or interrupted start leaves no gantry behind
            # before its pty is announced the gantry has no session: nothing moves or radiates, nothing to make
            # safe; it is killed at once (a SIGTERM during its start-up would be seen only once it is ready)
            self._signal_group(signal.SIGKILL)
            self.proc.wait()
            self.__exit__(None, None, None)
            raise
        return self

    def _wait_for_pty(self, deadline: float) -> str:
        """The pty path from the child's first line; RuntimeError if it does not come by ``deadline``."""
        assert self.proc is not None and self.proc.stdout is not None
        line = ""
        while not line.endswith("\n"):
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                break
            if select.select([self.proc.stdout], [], [], min(left, 0.5))[0]:
                chunk = self.proc.stdout.readline()
                if not chunk:
                    break
                line += chunk
        line = line.strip()
        if not line.startswith("listening pty "):
            raise RuntimeError(f"simulated gantry did not start within {self.start_timeout_s:.0f} s "
                               f"(said {line!r}); see {self.stderr_path}")
        url = line.split(" ", 2)[2]
        while not os.path.exists(url):
            if time.monotonic() > deadline:
                raise RuntimeError(f"simulated gantry announced {url} but it does not exist; see {self.stderr_path}")
            time.sleep(0.01)
        return url

    def __exit__(self, exc_type: object = None, *exc: object) -> None:
        proc = self.proc
        if proc is not None:
            if proc.poll() is None and exc_type is not None:
                # leaving on a signal or an error: the device may still be busy making itself safe (the paddle
                # rising after a stop, images of exposures already made being read out); SIGHUP (the gantry
                # alone: its render worker finishes those images) lets it finish, and exit once safe, without
                # this process waiting for it
                try:
                    os.kill(proc.pid, signal.SIGHUP)
                except ProcessLookupError:
                    pass
            elif proc.poll() is None:
                self._signal_group(signal.SIGTERM)
                try:
                    proc.wait(timeout=10.0)
                except subprocess.TimeoutExpired:
                    self._signal_group(signal.SIGKILL)
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()
        if hasattr(self, "_stderr"):
            self._stderr.close()

    def _signal_group(self, sig: int) -> None:
        """Signal the gantry's whole process group (its render worker included)."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass


def virtual_gantry(config: Any, seed: int, data_dir: Path, event_log: Path) -> tuple[Any, Any, Any]:
    """(env, gantry, endpoint) of a simulated gantry in SimPy virtual time."""
    import simpy

    from simulator.gantry import build_gantry

    env = simpy.Environment()
    gantry, endpoint = build_gantry(env, config, seed=seed, data_dir=data_dir, event_log=event_log)
    return env, gantry, endpoint
