"""An interrupted ``crescent acquire`` loses nothing (issue 20).

SIGTERM / SIGINT mid-sweep: the exam goes through the safe stop (ABORT, then RELEASE at once), the record,
audit log and streamed capture are written, ``summary.json`` says INCOMPLETE, and the exit status is 143 / 130;
the gantry child, left to finish its park and its readouts, reaches its safe state and exits. SIGKILL
mid-sweep: the audit log and the capture (streamed as bytes arrive, a valid pcap at every moment)
are on disk. The capture is checked with the project's reader and, where installed, tshark.
Wall-clock figures (time to exit after the signal) are printed, not asserted (benchmarks/).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from firmware_host import read_audit_log
from hil.pcap import read_pcap
from procs import children, gone

ROOT = Path(__file__).resolve().parents[2]


def _start(out: Path, *extra: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "crescent", "acquire", "--out", str(out), "--no-progress", *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)


def _exposures(out: Path) -> int:
    audit = out / "exam" / "audit.jsonl"
    if not audit.exists():
        return 0
    return sum(1 for e in read_audit_log(audit).entries if e["kind"] == "exposure" and not e["is_scout"])


def _wait_mid_sweep(proc: subprocess.Popen[str], out: Path, exposures: int = 2, timeout_s: float = 600.0) -> None:
    """Wait until the host's audit log holds ``exposures`` sweep exposures (the sweep is under way)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if _exposures(out) >= exposures:
            return
        time.sleep(0.05)
    pytest.fail(f"acquire never reached exposure {exposures}: rc={proc.poll()}")


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_mid_sweep_stops_safely_writes_the_record_and_exits_with_its_code(tmp_path: Path, sig: int,
                                                                                   code: int) -> None:
    out = tmp_path / "out"
    proc = _start(out, "--binning", "8")  # the simulated gantry on a real pty, real time
    gantries: list[int] = []
    try:
        _wait_mid_sweep(proc, out)
        gantries = children(proc.pid)
        t_sig = time.monotonic()
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=120)
        took = time.monotonic() - t_sig
        # the host does not wait for its gantry: the child finishes making itself safe, then exits on its own
        deadline = time.monotonic() + 30.0
        while not all(gone(p) for p in gantries) and time.monotonic() < deadline:
            time.sleep(0.05)
        gantry_gone = all(gone(p) for p in gantries)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in gantries:
            if not gone(pid):
                os.killpg(pid, signal.SIGKILL)
    print(f"{signal.Signals(sig).name}: exited {took:.2f} s after the signal (benchmarks/bench_interrupt.py times it)")
    assert proc.returncode == code, (stdout[-2000:], stderr[-2000:])
    assert "Traceback" not in stderr + stdout
    assert f"stopped by {signal.Signals(sig).name}" in stdout
    record = json.loads((out / "exam" / "exam_record.json").read_text())
    assert record["status"] == "aborted" and "operator abort" in record["reason"]
    audit = read_audit_log(out / "exam" / "audit.jsonl")
    assert any(e["kind"] == "exam_end" for e in audit.entries)
    assert any(e["kind"] == "command" and e["name"] == "ABORT" for e in audit.entries)  # the safe stop ran
    commands = [e["name"] for e in audit.entries if e["kind"] == "command"]
    stop = commands.index("ABORT")
    assert commands[stop + 1] == "RELEASE"  # X-rays off, then the breast freed before anything else
    assert record["released"] is True
    # nothing lost: each sweep exposure in the audit log is in the record with its image or the reason it has none
    made = {e["index"] for e in audit.entries if e["kind"] == "exposure" and not e["is_scout"]}
    stored = {Path(p).stem for p in record["image_paths"]}
    by_frame = {e["index"]: e["frame_id"] for e in record["exposures"] if not e["is_scout"]}
    for i in made:
        assert f"proj_{i:03d}" in stored or str(by_frame[i]) in record["missing_reasons"], (i, record)
    # the gantry child reached its safe state (its watchdog's hold, the paddle parked) and exited
    assert gantries and gantry_gone, "gantry child still running 30 s after the host exited"
    dev = [json.loads(x) for x in (out / "gantry" / "device-events.jsonl").read_text().splitlines()]
    kinds = [r["kind"] for r in dev]
    assert "exit_orphaned" in kinds and dev[kinds.index("exit_orphaned")]["safe"] is True
    t_abort = next(r["t_us"] for r in dev if r["kind"] == "abort")
    park = round(yaml.safe_load((out / "gantry" / "gantry-config.yaml").read_text())["paddle"]["park_height_mm"] * 1000)
    assert any(r["kind"] == "event" and r["msg"] == "MOTION_DONE" and r["t_us"] > t_abort and r["fields"]["ok"]
               and r["fields"]["thickness_um"] == park for r in dev)
    # ... and wrote the image of every exposure it made before it left (the record's missing ones included)
    assert {r["frame_id"] for r in dev if r["kind"] == "exposure"} <= {r["frame_id"] for r in dev if r["kind"] == "image"}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "aborted" and summary["note"].startswith("INCOMPLETE")
    packets = read_pcap(out / "capture.pcap")
    assert len(packets) > 50
    if shutil.which("tshark"):
        r = subprocess.run(["tshark", "-r", str(out / "capture.pcap"), "-q"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_after_sigkill_mid_sweep_the_audit_log_and_the_capture_are_on_disk(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = _start(out, "--binning", "8")
    gantries: list[int] = []
    try:
        _wait_mid_sweep(proc, out)
        gantries = children(proc.pid)  # the simulated gantry: a session leader of its own, outlives us
        proc.kill()
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in gantries:
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    audit = read_audit_log(out / "exam" / "audit.jsonl")
    exposures = [e for e in audit.entries if e["kind"] == "exposure" and not e["is_scout"]]
    assert len(exposures) >= 2
    packets = read_pcap(out / "capture.pcap")  # whole records up to the kill: a valid pcap
    assert len(packets) > 50
    # every EXPOSURE_DONE the host logged crossed the wire before the kill: the capture holds it too
    from hil.decode import decode_packets  # noqa: PLC0415

    names = [item.name for item in decode_packets(packets)]
    assert names.count("EXPOSURE_DONE") >= len(exposures)
    # ... and they are enough for `crescent exam recover` (the gantry is gone: its data directory is left)
    res = subprocess.run([sys.executable, "-m", "crescent", "exam", "recover", str(out), "--data-dir",
                          str(out / "gantry" / "data-channel")], capture_output=True, text=True, timeout=300,
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout[res.stdout.index("{"):])
    assert report["status"] in ("aborted", "incomplete"), report
    record = json.loads((out / "exam" / "exam_record.json").read_text())
    assert len(record["image_paths"]) == report["images"]
    # every exposure the audit log holds is in the record (the patient's dose is accounted for) ...
    assert {e["index"] for e in record["exposures"] if not e["is_scout"]} >= {e["index"] for e in exposures}
    # ... and each has its image or the reason it has none (the gantry was killed before it formed them)
    stored = {Path(p).stem for p in record["image_paths"]}
    for e in exposures:
        assert f"proj_{e['index']:03d}" in stored or e["index"] in record["missing_images"], (e, record)
    assert record["missing_reasons"] or not record["missing_images"]
