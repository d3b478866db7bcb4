"""Start ``crescent gantry --pty`` in another process for host tests over a real pseudo-terminal."""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from host_sim import fast_config
from protocols.exams import exam_from_data

#: Small exams that keep real-time runs short (same runner and plan code as the standard exams).
PTY_EXAMS = {
    "dbt": exam_from_data({
        "kind": "dbt", "name": "dbt-pty", "view": "CC", "arc": {"start_deg": -7.5, "stop_deg": 7.5, "count": 7},
        "motion": {"mode": "continuous", "sweep_time_s": 2.0, "pulse_ms": 40.0},
        "technique": {"mode": "manual", "anode_filter": "W/Rh", "kvp": 29.0, "mas_per_projection": 2.0},
        "compression": {"target_force_n": 80.0, "settle_time_s": 0.5}}),
    "ffdm": exam_from_data({
        "kind": "ffdm", "name": "ffdm-pty", "view": "CC",
        "technique": {"mode": "aec", "target_signal_fraction": 0.3, "anode_filters": ["W/Rh", "W/Ag"],
                      "kvp_min": 25.0, "kvp_max": 35.0, "mas_max_per_projection": 50.0, "scout_kvp": 28.0,
                      "scout_mas": 2.0},
        "compression": {"target_force_n": 80.0, "settle_time_s": 0.5}}),
    # a slow sweep (24 s) for the SIGKILL test: the watchdog must stop it midway
    "dbt-slow": exam_from_data({
        "kind": "dbt", "name": "dbt-slow", "view": "CC", "arc": {"start_deg": -7.5, "stop_deg": 7.5, "count": 9},
        "motion": {"mode": "continuous", "sweep_time_s": 24.0, "pulse_ms": 40.0},
        "technique": {"mode": "manual", "anode_filter": "W/Rh", "kvp": 29.0, "mas_per_projection": 2.0},
        "compression": {"target_force_n": 80.0, "settle_time_s": 0.5}}),
    "stereo": exam_from_data({
        "kind": "stereo", "name": "stereo-pty", "view": "CC", "offset_deg": 15.0, "zero_view": False,
        "technique": {"mode": "manual", "anode_filter": "W/Rh", "kvp": 28.0, "mas_per_projection": 10.0},
        "compression": {"target_force_n": 80.0, "settle_time_s": 0.5, "release": "hold"}}),
}


def pty_config_file(tmp: Path) -> Path:
    """The fast test gantry, with a quicker paddle (real time costs test time)."""
    # No kV ripple / mAs-meter noise: every exposure of a technique has the same measured kV, so the
    # real-time gantry computes its spectrum once (a new spectrum stalls its event loop for seconds).
    cfg = fast_config(paddle={"release_after_exam": False, "approach_speed_mm_s": 40.0, "default_speed_mm_s": 30.0},
                      generator={"kv_ripple_percent": 0.0, "mas_noise_percent": 0.0})
    path = tmp / "gantry.yaml"
    path.write_text(yaml.safe_dump(cfg.model_dump(mode="json")))
    return path


class PtyGantry:
    """``crescent gantry --pty`` (or ``--tcp 0``) as a subprocess; ``path`` is its /dev/pts/N (or ``socket://...``).

    ``extra``: more arguments; ``env``: its environment (default: this process's)."""

    def __init__(self, tmp: Path, seed: int = 1, data_channel: str = "file", *, tcp: bool = False,
                 extra: tuple[str, ...] = (), env: dict[str, str] | None = None) -> None:
        self.data_dir = tmp / "device"
        self.event_log = tmp / "device-events.jsonl"
        cmd = [sys.executable, "-m", "crescent", "gantry", *(("--tcp", "0") if tcp else ("--pty",)),
               "--config", str(pty_config_file(tmp)),
               "--seed", str(seed), "--data-dir", str(self.data_dir), "--event-log", str(self.event_log), "--quiet",
               "--data-channel", data_channel, *extra]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        sel = selectors.DefaultSelector()
        sel.register(self.proc.stdout, selectors.EVENT_READ)  # type: ignore[arg-type]
        if not sel.select(timeout=60.0):
            self.stop()
            raise RuntimeError("crescent gantry --pty printed nothing in 60 s")
        line = self.proc.stdout.readline().strip()  # type: ignore[union-attr]
        if not line.startswith("listening tcp " if tcp else "listening pty "):
            self.stop()
            raise RuntimeError(f"unexpected first line from crescent gantry: {line!r}: {self.proc.stderr.read()}")
        self.path = ("socket://" if tcp else "") + line.split(" ", 2)[2]

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        import json

        out = []
        for line in self.event_log.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if kind is None or r["kind"] == kind:
                out.append(r)
        return out

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def wait_for(pred: Any, timeout_s: float, step_s: float = 0.05) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(step_s)
    return bool(pred())


__all__ = ["PTY_EXAMS", "PtyGantry", "os", "wait_for"]
