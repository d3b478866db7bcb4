"""Write the outputs of ``crescent acquire``: DICOM, NumPy/TIFF, the HTML report (see pipeline's layout)."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from crescent.outputs.arrays import write_projection_arrays
from crescent.outputs import (
    DoseRow,
    Lesion,
    MtfCurve,
    ReportData,
    SliceStack,
    StudyInfo,
    Timeline,
    write_numpy_outputs,
    write_projection_dicom,
    write_report,
    write_tomo_dicom,
)
from crescent.outputs.dicom import MG_FOR_PROCESSING_SOP_CLASS, exposure_values
from crescent.outputs.dicom_projection import (
    BREAST_PROJECTION_PROCESSING_SOP_CLASS,
    breast_projection_uid,
    presentation_frames,
    write_breast_projection_dicom,
)
from crescent.outputs.dicom_kos import Rejection, write_qc_rejection_kos
from crescent.outputs.dose_sr import IrradiationEvent, write_dose_sr
from crescent.outputs.study import DEFAULT_STUDY_DATETIME, VIRTUAL_EPOCH_S
from crescent.outputs.verdict import mgd_verdict, mtf_verdict, stereo_verdict
from firmware_host.api import resolve_exam

from crescent.acquire.options import AcquireOptions
from crescent.acquire.result import AcquireResult


def reproducibility_note(opts: AcquireOptions, exam_name: str) -> str:
    """What a virtual-time run says about its UIDs and dates (empty for a real acquisition)."""
    if not opts.virtual_time:
        return ""
    return (f"reproducible virtual-time run: UIDs derived from exam {exam_name} and seed {opts.seed}, "
            f"fixed date {DEFAULT_STUDY_DATETIME:%Y-%m-%d %H:%M}; not a real acquisition")


def study_info(opts: AcquireOptions, exam_name: str, timeline: Timeline | None = None) -> StudyInfo:
    """Study description of the run.

    Real time (simulated gantry on a pty, or a rig): fresh random UIDs and the real date and time;
    the device clock is mapped to the wall clock through the capture (``timeline.device_clock_epoch_s``).
    ``--virtual-time``: UIDs derived from the exam and seed and the fixed :data:`DEFAULT_STUDY_DATETIME`,
    so the run is bit-for-bit reproducible; the files say so (Image Comments, dose SR comment).
    ``opts.study`` (a worklist entry's patient, accession, procedure and study UID, see crescent.pacs) overrides
    the defaults; in virtual time it also salts the UID seed, so two worklist entries never share UIDs.
    """
    model = resolve_exam(opts.exam)
    view = "MLO" if getattr(model, "view", "CC") == "MLO" else "CC"
    common: dict[str, Any] = dict(view=view, laterality=getattr(model, "laterality", None) or "R",
                                  gantry_rotation_deg=45.0 if view == "MLO" else 0.0)
    wl = dict(opts.study)
    common.update(wl)
    epoch = timeline.device_clock_epoch_s if timeline is not None else None
    first = float(timeline.t_s[0]) if timeline is not None and len(timeline.t_s) else 0.0
    if opts.virtual_time:
        zero = DEFAULT_STUDY_DATETIME + timedelta(seconds=(epoch - VIRTUAL_EPOCH_S) if epoch is not None else 0.0)
        salt = "".join(f"-{wl[k]}" for k in ("accession_number", "study_instance_uid") if wl.get(k))
        return StudyInfo(uid_seed=f"crescent-{exam_name}-seed-{opts.seed}{salt}",
                         study_datetime=zero + timedelta(seconds=first),
                         clock_zero=zero, reproducibility_note=reproducibility_note(opts, exam_name), **common)
    if epoch is not None:
        zero = datetime.fromtimestamp(epoch)
        return StudyInfo(study_datetime=zero + timedelta(seconds=first), clock_zero=zero, **common)
    now = datetime.now()
    return StudyInfo(study_datetime=now, clock_zero=now, **common)


def exposure_forces(timeline: Timeline, exposures: list, default_n: float) -> list[float]:
    """Compression force (N) during each exposure's X-ray window, from telemetry; ``default_n`` if none."""
    out = []
    for e in exposures:
        f = timeline.mean_in("force_n", e.window_start_s, e.window_end_s)
        out.append(default_n if f is None else f)
    return out


#: File names of the projection objects in ``dicom/`` (README output table).
PROCESSING_FILE = "projections_for_processing.dcm"
PRESENTATION_FILE = "projections_for_presentation.dcm"
#: Key Object Selection "Rejected for Quality Reasons" written when a per-exam acquisition QC check fails.
QC_KOS_FILE = "qc_rejection_kos.dcm"


def event_uid(study: StudyInfo, role: str) -> str:
    """Irradiation Event UID of one exposure: the same in the dose SR and the projection object."""
    return study.uid("irradiation-event", role)


def dose_events(acq: AcquireResult, study: StudyInfo, timeline: Timeline) -> list[IrradiationEvent]:
    """Every exposure made (AEC scout included) as a dose-report irradiation event."""
    rec = acq.exam.record
    every = list(rec.exposures)
    dose = acq.dose_all if acq.dose_all is not None else acq.dose
    if len(dose.mgd_mgy) != len(every):  # no per-exposure dose for every exposure: the stored projections
        every = list(acq.exposures)
        dose = acq.dose
    forces = exposure_forces(timeline, every, acq.header.compression_force_n)
    out = []
    for n, (e, k, g, f) in enumerate(zip(every, dose.air_kerma_mgy, dose.mgd_mgy, forces)):
        v = exposure_values(e)
        out.append(IrradiationEvent(
            started=study.at(e.window_start_s), kvp=v["kvp"], tube_current_ma=v["ma"], exposure_time_ms=v["ms"],
            exposure_uas=v["uas"], angle_deg=study.gantry_rotation_deg + e.mean_angle_deg,
            entrance_air_kerma_mgy=k, mgd_mgy=g, thickness_mm=acq.header.compressed_thickness_mm, force_n=f,
            anode_filter=e.anode_filter, hvl_mm_al=dose.hvl_mm_al, focal_spot_mm=e.focal_spot_mm, scout=e.is_scout,
            uid_role=f"{n}-{e.index}-{e.frame_id}-{int(e.is_scout)}", exposure_index=e.index, frame_id=e.frame_id))
    return out


def incomplete_note(rec: Any) -> str:
    """What every file of an exam that did not complete says: ``INCOMPLETE: <status>: <reason>`` (else empty)."""
    if rec.status == "complete":
        return ""
    return (f"INCOMPLETE: exam {rec.status}: {rec.reason or 'no reason given'} "
            f"({len(rec.image_paths)} of {rec.planned_count} projections)")


def write_outputs(acq: AcquireResult, raw: np.ndarray, timeline: Timeline, opts: AcquireOptions,
                  progress: Any = None) -> list[Path]:
    """Every output file; returns their paths. ``progress(done, total)`` after each file group.

    An exam that did not complete says so in every file: the DICOM Image Comments and the dose SR's
    comment (through the writers' ``reproducibility_note``), the report and ``summary.json``.
    """
    out = acq.out
    files: list[Path] = []
    header = acq.header
    study = study_info(opts, acq.exam.record.exam_name, timeline)
    acq.study = study
    note = incomplete_note(acq.exam.record)
    if note:  # the DICOM writers put this note into Image Comments and the dose SR (their existing parameter)
        study = study.model_copy(update={"reproducibility_note": "; ".join(
            x for x in (note, study.reproducibility_note) if x)})
    say = progress or (lambda i, n: None)
    steps = len(raw) + 3
    say(0, steps)
    aec = any(e.is_scout for e in acq.exam.record.exposures)
    forces = exposure_forces(timeline, acq.exposures, header.compression_force_n)
    acq.forces_n = forces
    dicom_dir = out / "dicom"
    dicom_dir.mkdir(exist_ok=True)
    events = dose_events(acq, study, timeline)
    # a tomosynthesis sweep goes into Breast Projection objects unless the older form was asked for
    multi = opts.projection_sop == "breast-projection" and acq.recon is not None and acq.line_integrals is not None
    if multi:
        roles = {(ev.exposure_index, ev.frame_id): ev.uid_role for ev in events if not ev.scout}
        uids = [event_uid(study, roles[(e.index, e.frame_id)]) if (e.index, e.frame_id) in roles
                else event_uid(study, f"projection-{e.index}-{e.frame_id}") for e in acq.exposures]
        common: dict[str, Any] = dict(entrance_dose_mgy=acq.dose.air_kerma_mgy, mgd_mgy=acq.dose.mgd_mgy,
                                      half_value_layer_mm_al=acq.dose.hvl_mm_al, forces_n=forces, aec=aec,
                                      irradiation_event_uids=uids)
        files.append(write_breast_projection_dicom(dicom_dir / PROCESSING_FILE, raw, acq.exposures, header, study,
                                                   **common))
        say(len(raw) // 2, steps)
        files.append(write_breast_projection_dicom(
            dicom_dir / PRESENTATION_FILE, presentation_frames(acq.line_integrals), acq.exposures, header, study,
            presentation=True, processing_note=f"I0 from the {acq.normalisation}", **common))
        say(len(raw), steps)
        source_class, source_uids = BREAST_PROJECTION_PROCESSING_SOP_CLASS, [breast_projection_uid(study, False)]
    else:
        for i, (image, exposure) in enumerate(zip(raw, acq.exposures)):
            files.append(write_projection_dicom(
                dicom_dir / f"proj_{i:03d}.dcm", image, exposure, header, study,
                entrance_dose_mgy=acq.dose.air_kerma_mgy[i], mgd_mgy=acq.dose.mgd_mgy[i], instance_number=i + 1,
                half_value_layer_mm_al=acq.dose.hvl_mm_al, compression_force_n=forces[i], aec=aec,
            ))
            say(i + 1, steps)
        source_class, source_uids = MG_FOR_PROCESSING_SOP_CLASS, None  # one per projection, numbered 1..n
    files.append(write_dose_sr(dicom_dir / "dose_sr.dcm", study, events,
                               completed=acq.exam.record.status == "complete"))
    say(len(raw) + 1, steps)
    pitch = header.geometry.detector.pitch_mm
    if acq.recon is None:  # a 2D view or a stereo pair: projections only
        files += write_projection_arrays(out / "arrays", raw, acq.exposures, pitch_mm=pitch)
    else:
        grid = acq.recon.grid
        files.append(write_tomo_dicom(dicom_dir / "tomo.dcm", acq.recon.volume, grid, header, study,
                                      mgd_mgy=acq.exam_mgd_mgy, half_value_layer_mm_al=acq.dose.hvl_mm_al,
                                      forces_n=forces, entrance_dose_mgy=float(sum(acq.dose.air_kerma_mgy)),
                                      aec=aec, source_sop_class=source_class, source_uids=source_uids))
        files += write_numpy_outputs(out / "arrays", images=raw, exposures=acq.exposures, pitch_mm=pitch,
                                     volume=acq.recon.volume, z_mm=list(grid.z_mm), voxel_mm=grid.voxel_mm,
                                     x0_mm=grid.x_min_mm + 0.5 * grid.voxel_mm, y0_mm=grid.y_min_mm + 0.5 * grid.voxel_mm)
    failed = [v for v in acq.acquisition_qc if v.result == "FAIL"]
    if failed:  # the rejection goes into the DICOM study too (issue 18): a KOS referencing the images at fault
        images = [p for p in files if p.suffix == ".dcm" and p.name != "dose_sr.dcm"]
        files.append(write_qc_rejection_kos(
            dicom_dir / QC_KOS_FILE, study, [Rejection(v.name, v.value, v.limit, v.source, v.frames) for v in failed],
            images))
    say(len(raw) + 2, steps)
    files.append(write_report(out, _report_data(acq, raw, timeline, files)))
    say(steps, steps)
    return files


def _report_data(acq: AcquireResult, raw: np.ndarray, timeline: Timeline, files: list[Path]) -> ReportData:
    rec = acq.exam.record
    det = acq.header.geometry.detector
    mtf = None
    if acq.mtf is not None:
        mtf = MtfCurve(freq_lp_mm=acq.mtf[0], mtf=acq.mtf[1], aperture_mm=det.pitch_mm, pitch_mm=det.pitch_mm,
                       label="simulated detector, slanted-edge QA image (IEC 62220-1 method)")
    lesions = [Lesion(f.truth.x_mm, f.truth.y_mm, f.truth.z_mm, f.truth.kind, round(f.truth.diameter_mm, 2),
                      round(f.sdnr, 1)) for f in acq.findings]
    dose = [DoseRow(e.mean_angle_deg, e.kvp, e.mas, k, g)
            for e, k, g in zip(acq.exposures, acq.dose.air_kerma_mgy, acq.dose.mgd_mgy)]
    scout = []
    if acq.dose_all is not None and len(acq.dose_all.mgd_mgy) == len(rec.exposures):
        scout = [DoseRow(e.mean_angle_deg, e.kvp, e.mas, k, g)
                 for e, k, g in zip(rec.exposures, acq.dose_all.air_kerma_mgy, acq.dose_all.mgd_mgy) if e.is_scout]
    notes: dict[str, Any] = {
        "status": f"{rec.status}" + (f" ({rec.reason})" if rec.reason else ""),
        "technique": (f"{rec.technique.anode_filter} {rec.technique.kvp:.1f} kV, {rec.technique.mas:.2f} mAs/projection"
                      if rec.technique else "-"),
        "HVL": f"{acq.dose.hvl_mm_al:.3f} mm Al",
        "MGD split": (f"projections {acq.dose.total_mgd_mgy:.3f} mGy + AEC scout {acq.scout_mgd_mgy:.3f} mGy"),
        "compression force during the X-ray windows": (
            f"{min(acq.forces_n):.1f} .. {max(acq.forces_n):.1f} N (settled at {acq.header.compression_force_n:.1f} N)"
            if acq.forces_n else "-"),
        "UIDs and dates": (acq.study.reproducibility_note if acq.study is not None and acq.study.reproducibility_note
                           else "fresh UIDs, real date and time"),
        "largest angle error": f"{max((abs(c.angle_error_deg) for c in rec.checks), default=0.0):.3f} deg",
        "normalisation": acq.normalisation or "-",
        "run time": ", ".join(f"{k} {v:.1f} s" for k, v in acq.timings_s.items()),
    }
    for n, f in enumerate(acq.findings, start=1):  # numbered: two lesions may share a height
        notes[f"lesion {n}: {f.truth.kind} {f.truth.diameter_mm:.2f} mm at z={f.truth.z_mm:.1f} mm"] = (
            f"in focus at z={f.focus_z_mm:.1f} mm (error {f.depth_error_mm:+.1f} mm), SDNR {f.sdnr:.1f}")
    for s in acq.stereo:
        x, y, z = s.position_mm
        notes[f"stereo: {s.truth.kind} {s.truth.diameter_mm:.2f} mm at z={s.truth.z_mm:.1f} mm"] = (
            f"localised at ({x:.2f}, {y:.2f}, {z:.2f}) mm, error {s.error_mm:.2f} mm")
    slices = None
    if acq.recon is not None:
        g = acq.recon.grid
        slices = SliceStack(acq.recon.volume, g.voxel_mm, g.x_min_mm + 0.5 * g.voxel_mm,
                            g.y_min_mm + 0.5 * g.voxel_mm, list(g.z_mm))
    verdicts = [mgd_verdict(acq.exam_mgd_mgy, acq.header.compressed_thickness_mm)]
    if acq.mtf is not None:
        nyq = 1.0 / (2.0 * det.pitch_mm)
        verdicts.append(mtf_verdict(float(np.interp(nyq, acq.mtf[0], acq.mtf[1])), det.pitch_mm))
    if acq.stereo:
        verdicts.append(stereo_verdict([s.error_mm for s in acq.stereo]))
    verdicts += acq.acquisition_qc  # per-exam acquisition QC (crescent.acquire.acquisition_qc)
    acq.verdicts = verdicts
    note = incomplete_note(rec)
    return ReportData(
        exam=rec.exam_name,
        title=(f"{note.split(':', 1)[0]}: " if note else "") + f"Crescent acquisition report: {rec.exam_name}",
        scan_time_s=acq.scan_time_s,
        scout=scout,
        exam_mgd_mgy=acq.exam_mgd_mgy,
        warnings=([note] if note else []) + acq.warnings,
        verdicts=verdicts,
        timeline=timeline,
        projections=list(raw),
        projection_angles_deg=[e.mean_angle_deg for e in acq.exposures],
        slices=slices,
        lesions=lesions,
        mtf=mtf,
        dose=dose,
        thickness_mm=acq.header.compressed_thickness_mm,
        force_n=acq.header.compression_force_n,
        files=[str(p.relative_to(acq.out)) for p in files if p.is_relative_to(acq.out)],
        notes={k: str(v) for k, v in notes.items()},
    )
