"""DICOM of one trial case in one arm (``crescent trial run --dicom DIR``), with the writers of :mod:`crescent.outputs`.

Layout: ``DIR/case-<index, 5 digits>/<arm>/``

* a DBT arm: ``projections_for_processing.dcm`` (Breast Projection X-Ray Image, For Processing: the raw
  uint16 frames), ``tomo.dcm`` (Breast Tomosynthesis Image holding the one reconstructed slice, the
  in-focus slice at the lesion's height, 1/mm) and ``dose_sr.dcm`` (X-Ray Radiation Dose SR, scout included);
* a 2D arm: ``proj_<n, 3 digits>.dcm`` (Digital Mammography X-Ray Image, For Processing, one per
  exposure) and ``dose_sr.dcm``.

The images are those of the case's *sub-volume* on its *detector window* (see :mod:`crescent.trial.cases`):
the files' detector is that window (its rows, columns and size), not the whole panel; compression
force is not simulated (0 N). One patient per case (Patient ID ``<trial name>-<index>``), one study per
(case, arm). UIDs derive from the trial hash, the case seed and the arm, and dates are the fixed
:data:`~crescent.outputs.study.DEFAULT_STUDY_DATETIME`, so a case written twice (resumed or re-run) has
the same UIDs and bytes; Image Comments say so.

Writing is streamed: a worker writes each (case, arm) right after imaging it, into a temporary
folder renamed into place (a killed task leaves no partial ``<arm>/``), and keeps nothing.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np


def case_dicom_dir(root: Path, index: int, arm: str) -> Path:
    """Folder of the DICOM files of case ``index`` in ``arm``."""
    return root / f"case-{index:05d}" / arm


def case_study(spec: Any, trial_hash: str, draw: Any, arm: str, exam: Any) -> Any:
    """The :class:`~crescent.outputs.study.StudyInfo` of one (case, arm): deterministic UIDs, fixed date."""
    from crescent.outputs.study import DEFAULT_STUDY_DATETIME, StudyInfo

    view = "MLO" if getattr(exam, "view", "CC") == "MLO" else "CC"
    note = (f"virtual clinical trial {spec.name} (hash {trial_hash}), case {draw.index} (seed {draw.seed}), arm {arm}: "
            f"breast sub-volume on a detector window; UIDs derived from trial hash, case seed and arm, fixed date "
            f"{DEFAULT_STUDY_DATETIME:%Y-%m-%d %H:%M}; not a real acquisition")
    return StudyInfo(uid_seed=f"crescent-trial-{trial_hash}-case-{draw.seed}-arm-{arm}", reproducibility_note=note,
                     patient_name=f"Trial^Case{draw.index:05d}", patient_id=f"{spec.name[:50]}-{draw.index:05d}",
                     study_id=f"{draw.index}"[:16], study_description=f"Virtual clinical trial {spec.name}, arm {arm}"[:64],
                     view=view, laterality=getattr(exam, "laterality", None) or "R",
                     gantry_rotation_deg=45.0 if view == "MLO" else 0.0)


def write_case_dicom(root: Path, spec: Any, trial_hash: str, draw: Any, exam: Any, images: Any) -> list[Path]:
    """Write one (case, arm)'s DICOM (see module doc) from :class:`~crescent.trial.cases.ArmImages`; returns the files."""
    final = case_dicom_dir(root, draw.index, images.arm)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f".{images.arm}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    tmp.mkdir()
    try:
        names = _write(tmp, spec, trial_hash, draw, exam, images)
        try:
            os.rename(tmp, final)  # atomic; fails if another run of this task got there first
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(tmp)  # the same bytes are already in place
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [final / n for n in names]


def _write(d: Path, spec: Any, trial_hash: str, draw: Any, exam: Any, im: Any) -> list[str]:
    import crc32c

    from crescent.outputs import write_projection_dicom, write_tomo_dicom
    from crescent.outputs.dicom import exposure_values
    from crescent.outputs.dicom_projection import (
        BREAST_PROJECTION_PROCESSING_SOP_CLASS,
        breast_projection_uid,
        write_breast_projection_dicom,
    )
    from crescent.outputs.dose_sr import IrradiationEvent, write_dose_sr
    from physics.exposure_dose import exposure_hvl_mm_al
    from protocols.records import AcquisitionHeader, ProjectionRecord

    study = case_study(spec, trial_hash, draw, im.arm, exam)
    raw = np.asarray(im.raw)
    det = im.geometry.detector
    projections = [ProjectionRecord(exposure=e, rows=det.rows, cols=det.cols,
                                    checksum_crc32c=crc32c.crc32c(np.ascontiguousarray(raw[k], "<u2").tobytes()))
                   for k, e in enumerate(im.exposures)]
    header = AcquisitionHeader(geometry=im.geometry, compressed_thickness_mm=im.thickness_mm, projections=projections)
    hvl = exposure_hvl_mm_al(im.exposures[0])
    aec = bool(im.scouts)
    every = [(e, k, g) for e, k, g in zip(im.scouts, im.scout_air_kerma_mgy, im.scout_mgd_mgy)]
    every += list(zip(im.exposures, im.air_kerma_mgy, im.mgd_mgy))
    events, uid_of = [], {}
    for n, (e, k, g) in enumerate(every):
        v = exposure_values(e)
        role = f"{n}-{e.index}-{e.frame_id}-{int(e.is_scout)}"
        uid_of[(e.index, e.frame_id, e.is_scout)] = study.uid("irradiation-event", role)
        events.append(IrradiationEvent(
            started=study.at(e.window_start_s), kvp=v["kvp"], tube_current_ma=v["ma"], exposure_time_ms=v["ms"],
            exposure_uas=v["uas"], angle_deg=study.gantry_rotation_deg + e.mean_angle_deg, entrance_air_kerma_mgy=k,
            mgd_mgy=g, thickness_mm=im.thickness_mm, force_n=0.0, anode_filter=e.anode_filter,
            hvl_mm_al=exposure_hvl_mm_al(e), focal_spot_mm=e.focal_spot_mm, scout=e.is_scout, uid_role=role,
            exposure_index=e.index, frame_id=e.frame_id))
    names: list[str] = []
    if im.mode == "dbt":
        uids = [uid_of[(e.index, e.frame_id, False)] for e in im.exposures]
        write_breast_projection_dicom(d / "projections_for_processing.dcm", raw, im.exposures, header, study,
                                      entrance_dose_mgy=im.air_kerma_mgy, mgd_mgy=im.mgd_mgy, half_value_layer_mm_al=hvl,
                                      aec=aec, irradiation_event_uids=uids)
        write_tomo_dicom(d / "tomo.dcm", np.asarray(im.slice_mu)[None], im.grid, header, study,
                         mgd_mgy=float(sum(im.mgd_mgy) + sum(im.scout_mgd_mgy)), half_value_layer_mm_al=hvl,
                         entrance_dose_mgy=float(sum(im.air_kerma_mgy)), aec=aec,
                         source_sop_class=BREAST_PROJECTION_PROCESSING_SOP_CLASS,
                         source_uids=[breast_projection_uid(study, False)])
        names += ["projections_for_processing.dcm", "tomo.dcm"]
    else:
        for k, e in enumerate(im.exposures):
            name = f"proj_{k:03d}.dcm"
            write_projection_dicom(d / name, raw[k], e, header, study, entrance_dose_mgy=im.air_kerma_mgy[k],
                                   mgd_mgy=im.mgd_mgy[k], instance_number=k + 1, half_value_layer_mm_al=hvl, aec=aec)
            names.append(name)
    write_dose_sr(d / "dose_sr.dcm", study, events)
    names.append("dose_sr.dcm")
    return names
