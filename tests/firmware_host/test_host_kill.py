"""SIGKILL of the host mid-sweep: the gantry's watchdog makes it safe, a new host reports the interrupted exam.

The gantry runs in one process behind a pseudo-terminal, the host (`crescent exam run`) in another.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from firmware_host import ExamOptions, connect, read_audit_log, verify_exam_folder
from host_pty import PTY_EXAMS, PtyGantry, wait_for
from protocols.exams import save_exam


def _exposures_logged(audit_path) -> int:
    if not audit_path.exists():
        return 0
    return sum(1 for e in read_audit_log(audit_path).entries if e["kind"] == "exposure" and not e["is_scout"])


@pytest.mark.slow
def test_sigkill_mid_sweep_is_made_safe_and_reported(tmp_path) -> None:
    exam_file = tmp_path / "dbt-pty.yaml"
    save_exam(PTY_EXAMS["dbt-slow"], exam_file)
    out = tmp_path / "exam"
    gantry_proc = PtyGantry(tmp_path)
    try:
        host = subprocess.Popen([sys.executable, "-m", "crescent", "exam", "run", str(exam_file),
                                 "--port", gantry_proc.path, "--out", str(out), "--seed", "4", "--watchdog-ms", "8000"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        assert wait_for(lambda: _exposures_logged(out / "audit.jsonl") >= 2 or host.poll() is not None, 90.0)
        assert host.poll() is None, f"host ended before mid-sweep: {host.communicate()}"
        os.kill(host.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        host.wait()
        # the gantry's watchdog: SAFE_HOLD by WATCHDOG, the plan stopped
        assert wait_for(lambda: any(r.get("trigger") == "WATCHDOG" for r in gantry_proc.records("state")), 30.0)
        hold = next(r for r in gantry_proc.records("state") if r.get("trigger") == "WATCHDOG")
        assert hold["new"] == "SAFE_HOLD"
        plan_id = next(e for e in read_audit_log(out / "audit.jsonl").entries if e["kind"] == "exam_start")["plan_id"]
        made = [r for r in gantry_proc.records("exposure") if r["plan_id"] == plan_id]
        assert 2 <= len(made) < 9  # stopped midway
        assert all(r["t_us"] <= hold["t_us"] for r in made)  # no X-rays after the safe state
        assert not (out / "exam_record.json").exists()  # the killed host never finished its record

        # a new host reconnects, reads the device state and reports the interrupted exam
        with connect(gantry_proc.path, seed=5, options=ExamOptions(watchdog_timeout_ms=8000)) as gantry:
            assert gantry.interrupted_plan == (plan_id, len(made))
            assert gantry.session.state_at_connect in ("SAFE_HOLD", "IDLE")
            record = gantry.recover_exam(out)
        assert time.monotonic() - t_kill < 120
    finally:
        gantry_proc.stop()
    assert record.status == "aborted" and f"plan {plan_id} interrupted after {len(made)}" in record.reason
    assert record.fault == "WATCHDOG"
    assert record.released  # the device's watchdog released the paddle (WATCHDOG in its release_on_faults)
    # nothing corrupted: every image on disk verifies, the log parses line by line (a torn last line tolerated)
    checks = verify_exam_folder(out)
    assert checks and all(ok for _, ok, _ in checks), checks
    log = read_audit_log(out / "audit.jsonl")
    images_logged = {e["frame_id"] for e in log.entries if e["kind"] == "image" and not e["is_scout"]}
    stored = {p.exposure.frame_id for p in record.header.projections}
    assert images_logged <= stored  # every image the log says was stored is on disk and verified
    assert set(record.missing_images) == set(range(len(made))) - {p.exposure.index for p in record.header.projections}
    assert json.loads((out / "exam_record.json").read_text())["status"] == "aborted"
