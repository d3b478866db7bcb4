"""Issue 13, defect 5: a host killed mid-sweep leaves a device that stops X-rays within half a second.

`crescent exam run` with its DEFAULT options (no --watchdog-ms) against `crescent gantry --pty` in
another process; the host is SIGKILLed after its second exposure. From the device's own event log:
the watchdog the host asked for is at most 500 ms, and no exposure starts more than 0.5 s after the
host's last frame reached the device (the peer_lost record's time minus its measured silence).
Before the fix the host asked for 2000 ms and the device went on exposing for two seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from firmware_host import read_audit_log
from host_pty import PtyGantry, wait_for
from protocols.exams import exam_from_data, save_exam

#: 9 exposures about 1 s apart: a late watchdog lets at least one more start.
EXAM = exam_from_data({
    "kind": "dbt", "name": "dbt-kill", "view": "CC", "arc": {"start_deg": -7.5, "stop_deg": 7.5, "count": 9},
    "motion": {"mode": "continuous", "sweep_time_s": 9.0, "pulse_ms": 40.0},
    "technique": {"mode": "manual", "anode_filter": "W/Rh", "kvp": 29.0, "mas_per_projection": 2.0},
    "compression": {"target_force_n": 80.0, "settle_time_s": 0.5}})


def _exposures_logged(audit_path) -> int:
    if not audit_path.exists():
        return 0
    return sum(1 for e in read_audit_log(audit_path).entries if e["kind"] == "exposure" and not e["is_scout"])


def _kill_mid_sweep(tmp_path) -> PtyGantry:
    """Run the exam and SIGKILL the host after its second exposure (unless it already ended); the gantry."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    exam_file = tmp_path / "dbt-kill.yaml"
    save_exam(EXAM, exam_file)
    out = tmp_path / "exam"
    gantry = PtyGantry(tmp_path)
    try:
        host = subprocess.Popen([sys.executable, "-m", "crescent", "exam", "run", str(exam_file),
                                 "--port", gantry.path, "--out", str(out), "--seed", "4"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert wait_for(lambda: _exposures_logged(out / "audit.jsonl") >= 2 or host.poll() is not None, 120.0)
        if host.poll() is None:
            os.kill(host.pid, signal.SIGKILL)
        host.communicate()
        assert wait_for(lambda: any(r.get("trigger") == "WATCHDOG" for r in gantry.records("state"))
                        or not gantry.records("exposure"), 30.0)
    finally:
        gantry.stop()
    return gantry


@pytest.mark.slow
def test_killed_host_default_options_device_stops_xrays_within_half_a_second(tmp_path) -> None:
    # The host is killed mid-sweep. On a loaded machine a host starved of CPU for 500 ms may be lost on its
    # own first: that is the same property (the device's watchdog ends the sweep), checked the same way;
    # only a run lost before the sweep started is retried.
    for attempt in range(3):
        gantry = _kill_mid_sweep(tmp_path / str(attempt))
        if gantry.records("exposure") and gantry.records("peer_lost"):
            break
    else:
        pytest.fail("the host never reached the sweep in 3 attempts")
    hello = [r for r in gantry.records("command") if r["msg"] == "HELLO"]
    assert hello and all(r["fields"]["watchdog_timeout_ms"] <= 500 for r in hello)
    made = gantry.records("exposure")
    assert 1 <= len(made) < 9  # stopped midway
    starts_us = [r["t_us"] - r["window_s"] * 1e6 for r in made]
    for lost in gantry.records("peer_lost"):
        last_host_frame_us = lost["t_us"] - lost["silent_ms"] * 1000.0
        late = [round((s - last_host_frame_us) / 1000.0, 1) for s in starts_us if s > last_host_frame_us + 500_000]
        assert not late, f"exposures started {late} ms after the host's last frame"
