"""Run one campaign case on a fresh virtual-time gantry and check the invariants.

The gantry is the default configuration with a tiny detector (24 x 30 pixels) and no image
formation (flat synthetic frames whose level follows mAs and kV; CRCs and the data channel are
real); the device releases only when the host asks, so each exam's policy is the host's to keep.
The fault is injected by the gantry's own injector (or, for a host stall, by freezing the host's
adapter) ``delay_s`` after the host enters the case's phase.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from crescent.campaign.cases import HOST_PHASE, Case
from crescent.campaign.invariants import Evidence, check_all

#: Virtual-time cap of one exam (s): a plan still running then is a hang (invariant g).
EXAM_CAP_S = 400.0
#: Virtual time the devices run on after the exam (late events, the device's own release), s.
TAIL_S = 3.0


class ExamHang(RuntimeError):
    """The exam did not finish within :data:`EXAM_CAP_S` of virtual time."""


def campaign_config() -> Any:
    """Default gantry, 24 x 30 detector (8x binned), PMMA phantom, no release of its own after the exam."""
    from simulator.gantry import load_config
    from simulator.gantry.config import small_detector

    cfg = load_config("default")
    cfg = cfg.model_copy(update={"geometry": cfg.geometry.model_copy(update={"detector": small_detector(24, 30, 8)})})
    return cfg.with_overrides(paddle={"release_after_exam": False}, phantom={"name": "pmma"})


def _inject(case: Case, model: Any, adapter: Any) -> None:
    f = case.fault
    dur_ms = None if case.duration_s is None else case.duration_s * 1000.0
    if f == "NONE":
        return
    if f == "HOST_STALL":
        model.log.write(model.now_us(), "inject", fault="HOST_STALL", param=0, duration_ms=dur_ms)
        adapter.stall(case.duration_s or 1.0)
    elif f == "LINE_NOISE":
        model.inject("LINE_FAULT", 0, None, case.param)
    elif f in ("LINE_DEAD_RETRY", "LINE_DEAD_LONG"):
        model.inject("LINE_FAULT", int(round(dur_ms or 500.0)))
    else:
        model.inject(f, case.param, dur_ms)


def _trigger(case: Case, env: Any, model: Any, adapter_ref: list[Any], fired: list[float]):  # type: ignore[no-untyped-def]
    want = HOST_PHASE[case.phase]

    def progress(ph: str, i: int, n: int) -> None:
        if fired:
            return
        if ph != want:
            return
        if case.phase == "sweep" and i != case.exposure:
            return
        fired.append(env.now + case.delay_s)
        ev = env.timeout(case.delay_s)
        ev.callbacks.append(lambda _e: _inject(case, model, adapter_ref[0]))

    return progress


def resolve_exam_model(exam: str) -> Any:
    """An exam model from a library name or a YAML path (as ``crescent exam run`` takes them)."""
    from firmware_host.api import resolve_exam

    return resolve_exam(exam)


def stored_crcs(out_dir: Path, record: dict[str, Any]) -> dict[int, int | None]:
    """frame id -> CRC-32C of the stored image's pixel bytes (uint16 LE), None if unreadable."""
    import numpy as np

    from protocols.wire.crc import crc32c

    out: dict[int, int | None] = {}
    items = list((record.get("header") or {}).get("projections", []))
    if record.get("scout"):
        items.append(record["scout"])
    for p in items:
        fid = int(p["exposure"]["frame_id"])
        try:
            arr = np.load(out_dir / p["path"], allow_pickle=False)
            out[fid] = crc32c(np.ascontiguousarray(arr, dtype="<u2").tobytes())
        except (OSError, ValueError, KeyError, TypeError):
            out[fid] = None
    return out


def run_case(case: Case | dict[str, Any], work_dir: str | Path | None = None, *, keep: bool = False,
             capture: bool = True) -> dict[str, Any]:
    """Run ``case``; returns its result (JSON-able): case, outcome, violations, timings."""
    import simpy

    from firmware_host import connect_virtual
    from simulator.gantry import start_virtual_gantry

    case = case if isinstance(case, Case) else Case(**case)
    root = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix=f"campaign-{case.seed}-"))
    root.mkdir(parents=True, exist_ok=True)
    t_wall = time.perf_counter()
    env = simpy.Environment()
    model, endpoint = start_virtual_gantry(env, campaign_config(), seed=case.seed, data_dir=root / "device",
                                           event_log=None)
    model.detector.synthetic = True
    tap = None
    if capture:
        from hil.capture import Tap

        tap = Tap()
    fired: list[float] = []
    adapter_ref: list[Any] = []
    error: str | None = None
    record: dict[str, Any] | None = None
    exam_dir = root / "exam"
    host_peer_lost = False
    state = {"running": True}
    try:
        with connect_virtual(env, endpoint, seed=case.seed, tap=tap) as gantry:
            adapter_ref.append(gantry.adapter)

            def cap(_e: Any) -> None:
                if state["running"]:
                    raise ExamHang(f"exam still running after {EXAM_CAP_S:.0f} s of virtual time")

            env.timeout(EXAM_CAP_S).callbacks.append(cap)
            try:
                gantry.run_exam(case.exam, exam_dir, progress=_trigger(case, env, model, adapter_ref, fired))
            finally:
                state["running"] = False
            env.run(until=env.now + TAIL_S)
            host_peer_lost = not gantry.mirror.peer_alive
    except Exception as exc:  # noqa: BLE001 - any exception is invariant (g)
        tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
        error = f"{tb}"
    rec_path = exam_dir / "exam_record.json"
    if rec_path.is_file():
        try:
            record = json.loads(rec_path.read_text())
        except ValueError as exc:
            error = error or f"record unreadable: {exc}"
    capture_errors: list[dict[str, Any]] = []
    if tap is not None:
        from hil.check_capture import check_items
        from hil.decode import decode_packets

        tap.flush()
        report = check_items(decode_packets(tap.packets))
        capture_errors = [f.__dict__ for f in report.errors]
    device = model.log.records()
    exam_model = resolve_exam_model(case.exam)
    audit_lost = False
    audit_path = exam_dir / "audit.jsonl"
    if audit_path.is_file():
        audit_lost = '"kind": "peer_lost"' in audit_path.read_text() or '"kind":"peer_lost"' in audit_path.read_text()
    ev = Evidence(device=device, record=record, stored_crc=stored_crcs(exam_dir, record) if record else {},
                  paddle_force_n=float(model.paddle.force_n()), release_policy=exam_model.compression.release,
                  release_on_fault=bool(exam_model.compression.release_on_fault), capture_errors=capture_errors,
                  host_peer_lost=host_peer_lost or audit_lost, error=error)
    violations = check_all(ev)
    result = {
        "seed": case.seed, "case": case.to_dict(), "label": case.label, "injected": bool(fired),
        "status": record.get("status") if record else None, "reason": record.get("reason") if record else None,
        "fault": record.get("fault") if record else None,
        "device_exposures": sum(1 for r in device if r["kind"] == "exposure"),
        "violations": [v.to_dict() for v in violations], "virtual_s": round(float(env.now), 3),
        "wall_s": round(time.perf_counter() - t_wall, 3),
    }
    if not keep and work_dir is None:
        shutil.rmtree(root, ignore_errors=True)
    return result
