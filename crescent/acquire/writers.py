"""Write the outputs of ``crescent acquire``: DICOM, NumPy/TIFF, the HTML report (see pipeline's layout)."""

from __future__ import annotations

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
from firmware_host.api import resolve_exam

from crescent.acquire.options import AcquireOptions
from crescent.acquire.result import AcquireResult


def study_info(opts: AcquireOptions, exam_name: str) -> StudyInfo:
    """Study description of the run; UIDs derive from the seed and exam, so a seed reproduces the files.

    ``opts.study`` (a worklist entry's patient, accession, procedure and study UID) overrides the defaults
    and is part of the UID seed, so two worklist entries never share UIDs.
    """
    model = resolve_exam(opts.exam)
    view = "MLO" if getattr(model, "view", "CC") == "MLO" else "CC"
    wl = dict(opts.study)
    salt = "".join(f"-{wl[k]}" for k in ("accession_number", "study_instance_uid") if wl.get(k))
    return StudyInfo(**{"uid_seed": f"crescent-{exam_name}-seed-{opts.seed}{salt}", "view": view,
                        "laterality": getattr(model, "laterality", None) or "R",
                        "gantry_rotation_deg": 45.0 if view == "MLO" else 0.0, **wl})


def write_outputs(acq: AcquireResult, raw: np.ndarray, timeline: Timeline, opts: AcquireOptions) -> list[Path]:
    """Every output file; returns their paths."""
    out = acq.out
    files: list[Path] = []
    header = acq.header
    study = study_info(opts, acq.exam.record.exam_name)
    dicom_dir = out / "dicom"
    dicom_dir.mkdir(exist_ok=True)
    for i, (image, exposure) in enumerate(zip(raw, acq.exposures)):
        files.append(write_projection_dicom(
            dicom_dir / f"proj_{i:03d}.dcm", image, exposure, header, study,
            entrance_dose_mgy=acq.dose.air_kerma_mgy[i], mgd_mgy=acq.dose.mgd_mgy[i], instance_number=i + 1,
            half_value_layer_mm_al=acq.dose.hvl_mm_al,
        ))
    pitch = header.geometry.detector.pitch_mm
    if acq.recon is None:  # a 2D view or a stereo pair: projections only
        files += write_projection_arrays(out / "arrays", raw, acq.exposures, pitch_mm=pitch)
    else:
        grid = acq.recon.grid
        files.append(write_tomo_dicom(dicom_dir / "tomo.dcm", acq.recon.volume, grid, header, study,
                                      mgd_mgy=acq.exam_mgd_mgy, half_value_layer_mm_al=acq.dose.hvl_mm_al))
        files += write_numpy_outputs(out / "arrays", images=raw, exposures=acq.exposures, pitch_mm=pitch,
                                     volume=acq.recon.volume, z_mm=list(grid.z_mm), voxel_mm=grid.voxel_mm,
                                     x0_mm=grid.x_min_mm + 0.5 * grid.voxel_mm, y0_mm=grid.y_min_mm + 0.5 * grid.voxel_mm)
    files.append(write_report(out, _report_data(acq, raw, timeline, files)))
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
    notes: dict[str, Any] = {
        "status": f"{rec.status}" + (f" ({rec.reason})" if rec.reason else ""),
        "technique": (f"{rec.technique.anode_filter} {rec.technique.kvp:.1f} kV, {rec.technique.mas:.2f} mAs/projection"
                      if rec.technique else "-"),
        "HVL": f"{acq.dose.hvl_mm_al:.3f} mm Al",
        "MGD of the exam": (f"{acq.exam_mgd_mgy:.3f} mGy (projections {acq.dose.total_mgd_mgy:.3f} "
                            f"+ AEC scout {acq.scout_mgd_mgy:.3f})"),
        "largest angle error": f"{max((abs(c.angle_error_deg) for c in rec.checks), default=0.0):.3f} deg",
        "normalisation": acq.normalisation or "-",
        "run time": ", ".join(f"{k} {v:.1f} s" for k, v in acq.timings_s.items()),
    }
    for f in acq.findings:
        notes[f"{f.truth.kind} at z={f.truth.z_mm:.1f} mm"] = (
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
    return ReportData(
        exam=rec.exam_name,
        title=f"Crescent acquisition report: {rec.exam_name}",
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
