"""After a host crash: reconnect, read the device's state and report the interrupted exam.

A host killed mid-sweep leaves an exam folder with the audit log, every image
taken in so far (each with its JSON sidecar) and no ``exam_record.json``. The
device's watchdog has put it in SAFE_HOLD; a new host's HELLO_REPLY names the
interrupted plan (``resumed_plan_id``, ``resumed_exposures_done``).
:func:`recover_exam` reads both sides, verifies every stored image, releases
the compression if the exam's policy says so, and writes an ExamRecord with
status ``aborted`` that says what happened.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from firmware_host.audit import read_audit_log
from firmware_host.exam_plan import ExamOptions, release_compression
from firmware_host.mirror import DeviceMirror, fault_name
from firmware_host.plans import Command, Plan
from firmware_host.policy import IDEMPOTENT_RETRIES
from firmware_host.record import ExamRecord
from firmware_host.store import PROJECTIONS_DIR, ExamStore, verify_projection
from protocols.exams import exam_from_data
from protocols.geometry import AcquisitionGeometry
from protocols.records import AcquisitionHeader, ExposureRecord, ProjectionRecord
from protocols.wire.catalogue import DeviceState
from protocols.wire.messages import GetStatus


def interrupted_exam_summary(out_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """What the folder of an exam says about itself: exam, plan id, last phase, exposures, images, torn log."""
    root = Path(out_dir)
    log = read_audit_log(root / "audit.jsonl")
    start = next((e for e in log.entries if e["kind"] == "exam_start"), None)
    phases = [e["phase"] for e in log.entries if e["kind"] == "phase" and e["phase"] not in ("image",)]
    exposures = [e for e in log.entries if e["kind"] == "exposure" and not e.get("is_scout")]
    session = next((e for e in log.entries if e["kind"] == "session"), {})
    images = sorted((root / PROJECTIONS_DIR).glob("proj_*.npy"))
    checks = {p.name: verify_projection(p) for p in images}
    return {
        "exam": start["exam_definition"] if start else None,
        "plan_id": start["plan_id"] if start else None,
        "last_phase": phases[-1] if phases else None,
        "exposures_logged": len(exposures),
        "images": [p.name for p in images],
        "image_checks": checks,
        "audit_entries": len(log.entries),
        "audit_torn_last_line": log.torn_last_line,
        "session": session,
        "finished": any(e["kind"] == "exam_end" for e in log.entries),
    }


def recover_plan(out_dir: str | os.PathLike[str], session: Any, mirror: DeviceMirror,
                 options: ExamOptions | None = None) -> Plan:
    """Plan: read STATUS, release as the exam says, write the ``aborted`` ExamRecord; returns it."""
    options = options or ExamOptions()
    root = Path(out_dir)
    summary = interrupted_exam_summary(root)
    status = yield Command(GetStatus(), retries=IDEMPOTENT_RETRIES)
    exam = exam_from_data(summary["exam"]) if summary["exam"] else None
    warnings: list[str] = []
    released = status.force_dn < 10  # the device's own release (e.g. on its watchdog) may have freed the breast
    if summary["audit_torn_last_line"]:
        warnings.append("the audit log ended in a torn line (the host died mid-write); it was ignored")
    bad = [f"{n}: {msg}" for n, (ok, msg) in summary["image_checks"].items() if not ok]
    warnings.extend(bad)
    if exam is not None and exam.compression.release_on_fault and status.force_dn > 0:
        released, _ = yield from release_compression(mirror, options.move_timeout_s)
    projections: list[ProjectionRecord] = []
    for name in summary["images"]:
        side = root / PROJECTIONS_DIR / name.replace(".npy", ".json")
        try:
            projections.append(ProjectionRecord.model_validate(json.loads(side.read_text())))
        except (OSError, ValueError) as exc:
            warnings.append(f"{side.name}: {exc}")
    plan_match = session.resumed_plan_id == summary["plan_id"]
    reason = (
        f"host lost during phase {summary['last_phase']!r}; the device reports plan {session.resumed_plan_id} "
        f"interrupted after {session.resumed_exposures_done} exposure(s) "
        f"({'matches' if plan_match else 'does not match'} the exam's plan {summary['plan_id']}); "
        f"device state at reconnect {session.state_at_connect}; {len(projections)} image(s) on disk"
    )
    geometry = AcquisitionGeometry.model_validate(summary["session"]["geometry"]) if summary["session"] else None
    thickness = status.thickness_um * 1e-3
    header = (AcquisitionHeader(geometry=geometry, compressed_thickness_mm=thickness, projections=projections)
              if geometry is not None and thickness > 0 else None)
    exposures: list[ExposureRecord] = [p.exposure for p in projections]
    exposed = set(range(session.resumed_exposures_done)) if plan_match else {p.exposure.index for p in projections}
    record = ExamRecord(
        exam_name=exam.name if exam else "unknown", exam_kind=exam.kind if exam else "unknown", status="aborted",
        reason=reason, fault=fault_name(status.fault_code) if status.fault_code else "WATCHDOG",
        phase=summary["last_phase"] or "unknown", plan_id=summary["plan_id"] or 0, started_host_s=0.0,
        ended_host_s=0.0, device=session.summary(), angle_tolerance_deg=options.angle_tolerance_deg,
        compression_release=exam.compression.release if exam else "after_exam", released=released,
        header=header, exposures=exposures, planned_count=0,
        missing_images=sorted(exposed - {p.exposure.index for p in projections}), warnings=warnings,
        image_paths=[p.path for p in projections if p.path],
    )
    ExamStore(root).write_record(record)
    return record


def device_state_text(status: Any) -> str:
    return f"{DeviceState(status.state).name}, fault {fault_name(status.fault_code)}, plan {status.armed_plan_id}"
