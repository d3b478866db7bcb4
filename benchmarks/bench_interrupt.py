"""Signal to exit of ``crescent acquire`` stopped mid-sweep (SIGINT and SIGTERM), against the 2 s target.

Each run starts ``crescent acquire --out TMP --no-progress`` with the product defaults (the simulated
gantry in real time on a pty, in a child process), waits until the host's audit log holds ``--at``
sweep exposures, sends the signal and times the exit. Every instant of the stop is read from what the
run leaves on disk, on the same clock (``time.monotonic``: the host's audit log stamps with it):

* ``abort``: ABORT sent; ``abort ack``: its answer (X-rays off); ``release ack``: RELEASE answered
  (the paddle rising); ``free``: the first force reading below 1 N after it; ``images``: the last
  image taken in; ``record``: ``exam_end`` (the record written and fsynced); ``exit``: the process gone;
* ``gantry``: the gantry child gone (it finishes its park and its readouts, then exits on its own);
  ``safe``: its own log says it exited safe;
* ``floor``: the last image of an exposure already made that the device announced (IMAGE_READY in
  its event log, mapped to this clock through the ABORT): no loss-free exit can come before it. The
  host's own share of the stop is ``exit - floor``.

Printed: one line per run, then p50 / max of signal-to-exit per signal and the ratio to the 2 s target,
with the load average before and after (the machine may be shared).

    PYTHONPATH=. python benchmarks/bench_interrupt.py              # 3 x SIGINT, 3 x SIGTERM (~3 min)
    PYTHONPATH=. python benchmarks/bench_interrupt.py --runs 5 --at 6     # later in the sweep
    PYTHONPATH=. python benchmarks/bench_interrupt.py --runs 1 --after 3  # during the gantry's start-up
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "helpers"))  # the tests' /proc helpers
from procs import children, gone  # noqa: E402

TARGET_S = 2.0


def _audit(out: Path) -> list[dict]:
    path = out / "exam" / "audit.jsonl"
    if not path.exists():
        return []
    entries = []
    for line in path.read_text().splitlines():
        try:
            entries.append(json.loads(line))
        except ValueError:  # a line being written
            break
    return entries


def _sweep_exposures(out: Path) -> int:
    return sum(1 for e in _audit(out) if e["kind"] == "exposure" and not e.get("is_scout"))


def one_run(sig: signal.Signals, at: int, workdir: Path, after_s: float | None = None) -> dict:
    out = workdir / f"run-{sig.name}-{time.monotonic_ns()}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "crescent", "acquire", "--out", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    gantry: list[int] = []
    try:
        if after_s is not None:  # a fixed time after the start (start-up, connection, compression, ...)
            time.sleep(after_s)
        else:
            deadline = time.monotonic() + 600.0
            while proc.poll() is None and _sweep_exposures(out) < at and time.monotonic() < deadline:
                time.sleep(0.02)
            if proc.poll() is not None or _sweep_exposures(out) < at:
                raise RuntimeError(f"acquire never reached sweep exposure {at}: rc={proc.poll()} "
                                   f"{proc.stderr.read()[-1500:] if proc.poll() is not None else ''}")
        gantry = []
        for p in children(proc.pid):
            try:
                if b"gantry" in Path(f"/proc/{p}/cmdline").read_bytes():
                    gantry.append(p)
            except OSError:
                pass
        t_sig = time.monotonic()
        proc.send_signal(sig)
        while proc.poll() is None:
            time.sleep(0.001)
        t_exit = time.monotonic()
        stdout, stderr = proc.communicate()
        t_gantry = None
        end = time.monotonic() + 60.0
        while gantry and time.monotonic() < end:
            if all(gone(p) for p in gantry):
                t_gantry = time.monotonic()
                break
            time.sleep(0.002)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in gantry:
            if not gone(pid):
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    audit = _audit(out)

    def first(pred) -> float | None:
        return next((e["t"] - t_sig for e in audit if e["t"] >= t_sig - 0.5 and pred(e)), None)

    def last(pred) -> float | None:
        ts = [e["t"] - t_sig for e in audit if e["t"] >= t_sig - 0.5 and pred(e)]
        return ts[-1] if ts else None

    abort_sent = first(lambda e: e["kind"] == "command" and e.get("name") == "ABORT")
    abort_ack = first(lambda e: e["kind"] == "response" and e.get("to") == "ABORT")
    release_ack = first(lambda e: e["kind"] == "response" and e.get("to") == "RELEASE")
    # the breast free: the first force reading below 1 N after RELEASE was answered
    free = None if release_ack is None else first(
        lambda e: e["kind"] == "telemetry" and e["t"] - t_sig >= release_ack and e["fields"]["force_dn"] < 10)
    images = last(lambda e: e["kind"] == "image")
    record = first(lambda e: e["kind"] == "exam_end")
    dev_log = out / "gantry" / "device-events.jsonl"
    dev = [json.loads(x) for x in dev_log.read_text().splitlines() if x.strip()] if dev_log.exists() else []
    dev_abort = next((r for r in dev if r["kind"] == "abort"), None)
    floor = None
    made = [r for r in dev if r["kind"] == "exposure"]
    if dev_abort is not None and abort_sent is not None:
        offset = (abort_sent + t_sig) - dev_abort["t_us"] / 1e6  # device clock -> this clock (to a few ms)
        ready = {r["frame_id"]: r["t_us"] / 1e6 + offset - t_sig for r in dev if r["kind"] == "image"}
        waits = [ready.get(r["frame_id"], float("nan")) for r in made]
        floor = max([w for w in waits if w == w] + [0.0])
    orphan = next((r for r in dev if r["kind"] == "exit_orphaned"), None)
    rec_path, summary_path = out / "exam" / "exam_record.json", out / "summary.json"
    rec = json.loads(rec_path.read_text()) if rec_path.exists() else {}  # no exam yet when stopped at start-up
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {"note": "none: no exam"}
    shutil.rmtree(out, ignore_errors=True)
    return {
        "signal": sig.name, "rc": proc.returncode, "exit": t_exit - t_sig, "abort": abort_sent, "abort_ack": abort_ack,
        "release_ack": release_ack, "free": free, "images": images, "record": record, "floor": floor,
        "gantry": None if t_gantry is None else t_gantry - t_sig, "safe": None if orphan is None else orphan["safe"],
        "made": len(made), "stored": len(rec.get("image_paths", [])) + (1 if rec.get("scout") else 0),
        "missing": rec.get("missing_images"), "released": rec.get("released"), "status": rec.get("status", "no exam"),
        "started": bool(dev),
        "summary": summary["note"].split(":")[0], "traceback": "Traceback" in stdout + stderr,
    }


def _fmt(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.3f}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="runs per signal (default 3)")
    parser.add_argument("--at", type=int, default=2, help="send the signal once the host logged this many sweep "
                        "exposures (default 2)")
    parser.add_argument("--after", type=float, default=None, metavar="S",
                        help="send the signal S seconds after the start instead (start-up, connection, compression)")
    args = parser.parse_args()
    load0 = os.getloadavg()
    print(f"load average before: {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} ({os.cpu_count()} CPUs)")
    print("times in s after the signal:")
    print("signal   rc   abort  ab.ack rel.ack   free  images record  floor   EXIT  gantry safe images status")
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-interrupt-") as tmp:
        for k in range(args.runs):
            for sig in (signal.SIGINT, signal.SIGTERM):
                r = one_run(sig, args.at, Path(tmp), args.after)
                results.setdefault(sig.name, []).append(r)
                print(f"{r['signal']:7s} {r['rc']:4d} {_fmt(r['abort'])} {_fmt(r['abort_ack'])} {_fmt(r['release_ack'])} "
                      f"{_fmt(r['free'])} {_fmt(r['images'])} {_fmt(r['record'])} {_fmt(r['floor'])} {_fmt(r['exit'])} "
                      f"{_fmt(r['gantry'])} {str(r['safe']):5s} {r['stored']}/{r['made']}"
                      f"{' missing ' + str(r['missing']) if r['missing'] else ''} {r['status']}, released "
                      f"{r['released']}, summary {r['summary']}{', TRACEBACK' if r['traceback'] else ''}", flush=True)
    load1 = os.getloadavg()
    print(f"load average after: {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f}")
    ok = True
    for name, rs in results.items():
        exits = [r["exit"] for r in rs]
        host = [r["exit"] - r["floor"] for r in rs if r["floor"] is not None]
        gantry = [r["gantry"] for r in rs if r["gantry"] is not None]
        p50, mx = statistics.median(exits), max(exits)
        print(f"{name}: signal to exit p50 {p50:.3f} s, max {mx:.3f} s over {len(rs)} runs: p50 {p50 / TARGET_S:.2f}x, "
              f"max {mx / TARGET_S:.2f}x the {TARGET_S:g} s target"
              + (f"; host's share after the last readout (exit - floor) p50 {statistics.median(host):.3f} s" if host else "")
              + (f"; gantry child gone p50 {statistics.median(gantry):.3f} s, max {max(gantry):.3f} s" if gantry else ""))
        expected = 130 if name == "SIGINT" else 143
        # a gantry that had a session exits safe on its own; one stopped during its start-up is killed (no session)
        ok &= all(r["rc"] == expected and not r["traceback"] and (r["safe"] or (r["gantry"] is not None and
                  r["status"] == "no exam")) for r in rs)
    print("exit codes, records and the gantry's safe exit: " + ("OK" if ok else "NOT OK (see the lines above)"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
