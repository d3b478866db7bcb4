"""After a host crash: reconnect, read the device's state and report the interrupted exam.

A host killed mid-sweep leaves an exam folder with the audit log, every image
taken in so far (each with its JSON sidecar) and no ``exam_record.json``. The
device's watchdog has put it in SAFE_HOLD; a new host's HELLO_REPLY names the
interrupted plan (``resumed_plan_id``, ``resumed_exposures_done``).
:func:`recover_plan` reads both sides, verifies every stored image, reads the
device's exposure ledger (GET_EXPOSURE_LOG) of the exam's plans and takes in
every frame the data channel still offers (CRC-32C checked against the ledger),
releases the compression if the exam's policy says so, and writes an
ExamRecord with status ``aborted`` that lists every exposure the device made,
each with its stored image or the reason it is missing.

When the gantry is gone, :func:`recover_offline` does the same from the audit
log (EXPOSURE_DONE and IMAGE_READY events the host had logged) and the frames
left in the data directory, each checked against its IMAGE_READY CRC.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from firmware_host.audit import read_audit_log
from firmware_host.errors import HostError
from firmware_host.exam_plan import ExamOptions, ledger_done, ledger_ready, read_ledger, release_compression
from firmware_host.intake import check_frame, frame_array, open_data_channel
from firmware_host.mirror import DeviceMirror, fault_name
from firmware_host.plans import Command, Plan
from firmware_host.policy import IDEMPOTENT_RETRIES
from firmware_host.record import ExamRecord
from firmware_host.store import PROJECTIONS_DIR, ExamStore, verify_projection
from protocols.exams import exam_from_data
from protocols.geometry import AcquisitionGeometry
from protocols.records import AcquisitionHeader, ExposureRecord, ProjectionRecord, exposure_from_done
from protocols.wire.catalogue import ANODE_FILTER_TEXT, DeviceState, FocalSpot
from protocols.wire.messages import GetStatus, Message, message_from_dict


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


def _armed_plans(root: Path) -> dict[int, dict[str, Any]]:
    """plan id -> {"is_scout", "fields"} of every plan the exam armed (audit log)."""
    log = read_audit_log(root / "audit.jsonl")
    return {int(e["plan_id"]): {"is_scout": bool(e.get("is_scout")), "fields": e.get("fields", {})}
            for e in log.entries if e["kind"] == "armed"}


def _exposure(done: Message, armed: dict[str, Any], spots_mm: tuple[float, ...]) -> ExposureRecord:
    fields = armed["fields"]
    spots = sorted(spots_mm) or [0.3]
    spot = spots[0] if fields.get("focal_spot") == int(FocalSpot.SMALL) else spots[-1]
    return exposure_from_done(done, ANODE_FILTER_TEXT.get(int(fields.get("anode_filter", 0)), "W/Rh"), spot,
                              armed["is_scout"])


def _on_disk(root: Path) -> dict[int, ProjectionRecord]:
    """frame id -> stored ProjectionRecord (projections and scout) whose image verifies."""
    out: dict[int, ProjectionRecord] = {}
    for npy in sorted((root / PROJECTIONS_DIR).glob("*.npy")) + sorted(root.glob("scout.npy")):
        side = npy.with_suffix(".json")
        try:
            rec = ProjectionRecord.model_validate(json.loads(side.read_text()))
        except (OSError, ValueError):
            continue
        if verify_projection(npy)[0]:
            out[rec.exposure.frame_id] = rec
    return out


def take_in(root: Path, store: ExamStore, channel: Any, ready: Message, exposure: ExposureRecord) -> tuple[
        ProjectionRecord | None, str]:
    """Read one frame from ``channel``, check size and CRC against ``ready``, store it; (record, problem)."""
    chk = check_frame(channel.read(ready.locator), ready)
    if chk.data is None:
        return None, chk.problem + (f" ({channel.last_problem})" if getattr(channel, "last_problem", "") else "")
    image = frame_array(chk.data, ready)
    stem = "scout" if exposure.is_scout else store.projection_stem(exposure.index)
    rec = ProjectionRecord(exposure=exposure, rows=ready.rows, cols=ready.cols, dtype=str(image.dtype.name),
                           checksum_crc32c=ready.checksum)
    return store.save_image(stem, image, rec), ""


def _account(root: Path, store: ExamStore, made: list[tuple[ExposureRecord, Message | None, str]],
             channel: Any) -> tuple[list[ExposureRecord], dict[int, ProjectionRecord], dict[int, str]]:
    """Take in every frame offered; (exposures, stored by frame id, missing reasons by frame id)."""
    stored = _on_disk(root)
    reasons: dict[int, str] = {}
    for exp, ready, why in made:
        if exp.frame_id in stored:
            continue
        if ready is None:
            reasons[exp.frame_id] = why
            continue
        rec, problem = take_in(root, store, channel, ready, exp)
        if rec is None:
            reasons[exp.frame_id] = problem
        else:
            stored[exp.frame_id] = rec
    return [e for e, _, _ in made], stored, reasons


def _exposure_key(e: ExposureRecord) -> tuple[bool, int]:
    return (e.is_scout, e.index)


def keep_the_better_record(root: Path, recovered: ExamRecord) -> ExamRecord:
    """What ``exam recover`` writes when the folder may already hold a record the host closed.

    A record the host wrote itself knows more than any recovery (reason, technique, AEC, compression,
    planned count, times), so it is never replaced: it is kept, and only what the recovery adds is
    merged into it — images it lacked (their projections, paths, and their indices taken off the
    missing list) and exposures the device made that it did not list — with a warning saying so. With
    nothing to add, the closed record is written back as it was. With no closed
    record (the host died before closing), the recovered record is the record.
    """
    path = root / "exam_record.json"
    if not path.is_file():
        return recovered
    try:
        closed = ExamRecord.model_validate_json(path.read_text())
    except ValueError:  # a damaged record: the recovery's is the better one
        return recovered
    known_exposures = {_exposure_key(e) for e in closed.exposures}
    extra_exposures = [e for e in recovered.exposures if _exposure_key(e) not in known_exposures]
    closed_projections = list(closed.header.projections) if closed.header else []
    have = {p.exposure.index for p in closed_projections}
    new_projections = [p for p in (recovered.header.projections if recovered.header else [])
                       if p.exposure.index not in have]
    new_scout = recovered.scout if closed.scout is None and recovered.scout is not None else None
    if not (extra_exposures or new_projections or new_scout):
        return closed
    gained = {p.exposure.index for p in new_projections}
    notes = []
    if new_projections or new_scout:
        notes.append(f"exam recover took in {len(new_projections) + (new_scout is not None)} image(s) the host had "
                     f"not stored: {sorted(gained)}" + (" and the scout" if new_scout else ""))
    if extra_exposures:
        notes.append(f"exam recover found {len(extra_exposures)} exposure(s) the device made that this record did "
                     f"not list")
    update: dict[str, Any] = {
        "exposures": sorted(closed.exposures + extra_exposures, key=lambda e: (not e.is_scout, e.index)),
        "missing_images": [i for i in closed.missing_images if i not in gained],
        "missing_reasons": {i: r for i, r in closed.missing_reasons.items() if i not in gained},
        "image_paths": closed.image_paths + [p.path for p in new_projections if p.path],
        "warnings": closed.warnings + notes,
    }
    if new_scout is not None:
        update["scout"] = new_scout
    if new_projections:
        projections = sorted(closed_projections + new_projections, key=lambda p: p.exposure.index)
        header = (closed.header.model_copy(update={"projections": projections}) if closed.header
                  else recovered.header)
        update["header"] = header
    if recovered.device_exposures is not None:
        update["device_exposures"] = recovered.device_exposures
    return closed.model_copy(update=update)


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
        released, _ = yield from release_compression(mirror, options.move_timeout_s, options.release_attempts)
    # The device's ledger of every plan the exam armed: every exposure it made, and its frame.
    made: list[tuple[ExposureRecord, Message | None, str]] = []
    armed = _armed_plans(root)
    ledger_ok = True
    for plan_id, plan in sorted(armed.items()):
        try:
            entries = yield from read_ledger(plan_id)
        except HostError as exc:
            warnings.append(f"exposure ledger of plan {plan_id} unreadable: {exc}")
            ledger_ok = False
            continue
        for e in entries:
            exp = _exposure(ledger_done(e), plan, session.limits.focal_spots_mm)
            if e.image_state == 1:
                made.append((exp, ledger_ready(e), ""))
            else:
                made.append((exp, None, "the device reports the detector readout failed" if e.image_state == 2
                             else "readout still pending on the device at recovery"))
    store = ExamStore(root)
    channel = open_data_channel(session.data_channel, token=session.data_token)
    try:
        exposures_all, stored, reasons = _account(root, store, made, channel)
    finally:
        channel.close()
    if not ledger_ok:  # fall back on what is on disk
        exposures_all = [p.exposure for p in _on_disk(root).values()]
        stored = _on_disk(root)
    projections = [stored[e.frame_id] for e in exposures_all if e.frame_id in stored and not e.is_scout]
    scout = next((stored[e.frame_id] for e in exposures_all if e.is_scout and e.frame_id in stored), None)
    plan_match = session.resumed_plan_id == summary["plan_id"]
    reason = (
        f"host lost during phase {summary['last_phase']!r}; the device reports plan {session.resumed_plan_id} "
        f"interrupted after {session.resumed_exposures_done} exposure(s) "
        f"({'matches' if plan_match else 'does not match'} the exam's plan {summary['plan_id']}); "
        f"device state at reconnect {session.state_at_connect}; the device's ledger lists "
        f"{len(exposures_all) if ledger_ok else 'unknown'} exposure(s); {len(projections)} image(s) stored"
    )
    geometry = AcquisitionGeometry.model_validate(summary["session"]["geometry"]) if summary["session"] else None
    thickness = status.thickness_um * 1e-3
    header = (AcquisitionHeader(geometry=geometry, compressed_thickness_mm=thickness, projections=projections)
              if geometry is not None and thickness > 0 else None)
    exposures: list[ExposureRecord] = exposures_all
    main = [e for e in exposures_all if not e.is_scout]
    exposed = {e.index for e in main}
    if not ledger_ok and plan_match:
        exposed |= set(range(session.resumed_exposures_done))
    record = ExamRecord(
        exam_name=exam.name if exam else "unknown", exam_kind=exam.kind if exam else "unknown", status="aborted",
        reason=reason, fault=fault_name(status.fault_code) if status.fault_code else "WATCHDOG",
        phase=summary["last_phase"] or "unknown", plan_id=summary["plan_id"] or 0, started_host_s=0.0,
        ended_host_s=0.0, device=session.summary(), angle_tolerance_deg=options.angle_tolerance_deg,
        compression_release=exam.compression.release if exam else "after_exam", released=released,
        header=header, exposures=exposures, planned_count=0, scout=scout,
        missing_images=sorted(exposed - {p.exposure.index for p in projections}),
        missing_reasons=reasons, device_exposures=len(exposures_all) if ledger_ok else None, warnings=warnings,
        image_paths=[p.path for p in projections if p.path],
    )
    record = keep_the_better_record(root, record)
    ExamStore(root).write_record(record)
    return record


def device_state_text(status: Any) -> str:
    return f"{DeviceState(status.state).name}, fault {fault_name(status.fault_code)}, plan {status.armed_plan_id}"


def Message_done(r: dict[str, Any], end_us: int) -> Message:  # noqa: N802 - builds a message
    """EXPOSURE_DONE from a device event-log ``exposure`` record (deg, kV, mAs, s -> wire units)."""
    return message_from_dict("EXPOSURE_DONE", {
        "plan_id": r["plan_id"], "index": r["index"], "frame_id": r["frame_id"], "status": r["status"],
        "planned_mdeg": round(r["planned_deg"] * 1000), "start_mdeg": round(r["start_deg"] * 1000),
        "end_mdeg": round(r["end_deg"] * 1000), "kv_ckv": round(r["kv"] * 100), "mas_nas": round(r["mas"] * 1e6),
        "window_start_us": max(0, end_us - round(r["window_s"] * 1e6)), "window_end_us": end_us})


def recover_offline(out_dir: str | os.PathLike[str], data_dir: str | os.PathLike[str]) -> ExamRecord:
    """The gantry is gone: take in the frames left in ``data_dir`` that the audit log announced.

    Every EXPOSURE_DONE the host logged is an exposure; its IMAGE_READY (if logged) names the
    frame file and its CRC-32C, checked before the frame is stored. Writes the ``aborted`` record.
    """
    root = Path(out_dir)
    summary = interrupted_exam_summary(root)
    log = read_audit_log(root / "audit.jsonl")
    armed = _armed_plans(root)
    session = next((e for e in log.entries if e["kind"] == "session"), {})
    spots = tuple((session.get("limits") or {}).get("focal_spots_mm") or (0.1, 0.3))
    dones: dict[tuple[int, int], Message] = {}
    readies: dict[int, Message] = {}
    for e in log.entries:
        if e["kind"] != "event":
            continue
        if e["name"] == "EXPOSURE_DONE":
            m = message_from_dict("EXPOSURE_DONE", e["fields"])
            dones.setdefault((m.plan_id, m.index), m)
        elif e["name"] == "IMAGE_READY":
            m = message_from_dict("IMAGE_READY", e["fields"])
            readies[m.frame_id] = m
    # A simulated gantry (and a rig that shares its event log) leaves its own log in the data directory, or
    # next to it (`crescent acquire`: OUT/gantry/device-events.jsonl beside OUT/gantry/data-channel): every
    # exposure it made and each frame's CRC, so exposures the host never heard of are known too.
    dev_log = next((p for p in (Path(data_dir) / "device-events.jsonl", Path(data_dir).parent / "device-events.jsonl")
                    if p.is_file()), Path(data_dir) / "device-events.jsonl")
    if dev_log.is_file():
        for line in dev_log.read_text().splitlines():
            try:
                r = json.loads(line)
            except ValueError:
                continue
            if r.get("kind") == "exposure" and int(r["plan_id"]) in armed:
                end_us = int(r["t_us"])
                dones.setdefault((int(r["plan_id"]), int(r["index"])), Message_done(r, end_us))
            elif r.get("kind") == "image" and int(r["frame_id"]) not in readies:
                readies[int(r["frame_id"])] = message_from_dict("IMAGE_READY", {
                    "frame_id": r["frame_id"], "rows": r["rows"], "cols": r["cols"], "bits": 16,
                    "checksum": r["checksum"], "size_bytes": r["size"], "locator": r["locator"]})
    made = []
    for (plan_id, _), m in sorted(dones.items()):
        plan = armed.get(plan_id, {"is_scout": False, "fields": {}})
        exp = _exposure(m, plan, spots)
        ready = readies.get(m.frame_id)
        made.append((exp, ready, "" if ready else "no IMAGE_READY was logged before the host was lost and the "
                     "gantry is unreachable"))
    store = ExamStore(root)
    channel = open_data_channel("file://" + str(Path(data_dir).resolve()))
    exposures_all, stored, reasons = _account(root, store, made, channel)
    projections = [stored[e.frame_id] for e in exposures_all if e.frame_id in stored and not e.is_scout]
    scout = next((stored[e.frame_id] for e in exposures_all if e.is_scout and e.frame_id in stored), None)
    exam = exam_from_data(summary["exam"]) if summary["exam"] else None
    geometry = AcquisitionGeometry.model_validate(session["geometry"]) if session.get("geometry") else None
    header = (AcquisitionHeader(geometry=geometry, compressed_thickness_mm=next(
        (e["thickness_mm"] for e in log.entries if e["kind"] == "compression"), 1.0), projections=projections)
        if geometry is not None else None)
    main = {e.index for e in exposures_all if not e.is_scout}
    record = ExamRecord(
        exam_name=exam.name if exam else "unknown", exam_kind=exam.kind if exam else "unknown", status="aborted",
        reason=(f"host lost during phase {summary['last_phase']!r} and the gantry is unreachable: "
                f"{len(exposures_all)} exposure(s) in the audit log, {len(projections)} image(s) stored from the data "
                f"directory {data_dir} (exposures after the host was lost are not known)"),
        fault="WATCHDOG", phase=summary["last_phase"] or "unknown", plan_id=summary["plan_id"] or 0,
        started_host_s=0.0, ended_host_s=0.0, device={"data_dir": str(data_dir)}, angle_tolerance_deg=0.25,
        compression_release=exam.compression.release if exam else "after_exam", released=False, header=header,
        exposures=exposures_all, planned_count=0, scout=scout,
        missing_images=sorted(main - {p.exposure.index for p in projections}), missing_reasons=reasons,
        warnings=["compression state unknown: the gantry is unreachable"], image_paths=[p.path for p in projections],
    )
    record = keep_the_better_record(root, record)
    store.write_record(record)
    return record
