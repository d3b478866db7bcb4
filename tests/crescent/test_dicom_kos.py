"""The quality-rejection KOS (crescent.outputs.dicom_kos) and the For Presentation projection object's dciodvfy
warnings, on small synthetic objects (fast; the default-exam versions are in test_qc_motion_kos.py).

Independent checks: dciodvfy (dicom3tools) on every object, and pydicom's PS3.16 context-group tables for the
codes (CID 7010 titles, CID 7011 reasons, CID 7203 derivations).
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pydicom.sr._cid_dict import cid_concepts
from pydicom.sr._concepts_dict import concepts

from crescent.outputs import StudyInfo, write_projection_dicom, write_tomo_dicom
from crescent.outputs.dicom_kos import REASON_CODES, REJECTED_FOR_QUALITY, Rejection, write_qc_rejection_kos
from crescent.outputs.dicom_projection import DERIVATION_CODES, presentation_frames, write_breast_projection_dicom
from reconstruction.geometry import default_grid
from tests.crescent.test_outputs_dicom import image, make_header, non_scout

needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")
#: The For Presentation object's only accepted dciodvfy warnings (reasons in test_qc_motion_kos.PRESENTATION_WARNINGS).
PRESENTATION_WARNINGS = {
    "Warning - Unrecognized defined term <TOMOSYNTHESIS> for value 3 of attribute <Frame Type>",
    "Warning - Unrecognized defined term <LOG_LINEAR_MAP> for value 1 of attribute <Image Processing Applied>",
}


def _in_cid(cid: int, code: tuple[str, str, str]) -> bool:
    value, scheme, meaning = code
    return any(concepts[scheme][name].get(value, (None,))[0] == meaning for name in cid_concepts[cid].get(scheme, []))


def _vfy(path: Path) -> list[str]:
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return [l for l in (res.stdout + res.stderr).splitlines() if l.startswith(("Error", "Warning"))]


def test_codes_are_the_standard_ones() -> None:
    assert _in_cid(7010, REJECTED_FOR_QUALITY)
    assert all(_in_cid(7011, c) for c in REASON_CODES.values())
    assert all(_in_cid(7203, (value, scheme, meaning)) for value, meaning, scheme in DERIVATION_CODES)
    assert not _in_cid(7011, ("111210", "DCM", "Motion blurr"))  # the check itself can say no


@pytest.fixture
def objects(tmp_path: Path) -> tuple[StudyInfo, list[Path]]:
    study = StudyInfo()
    header = make_header()
    exps = non_scout(header)
    raw = np.stack([image(k) for k in range(len(exps))])
    common = dict(entrance_dose_mgy=[0.4] * len(exps), mgd_mgy=[0.1] * len(exps), half_value_layer_mm_al=0.5)
    proc = write_breast_projection_dicom(tmp_path / "proc.dcm", raw, exps, header, study, **common)
    lines = np.log(65536.0 / np.maximum(raw.astype(np.float32), 1.0))
    pres = write_breast_projection_dicom(tmp_path / "pres.dcm", presentation_frames(lines), exps, header, study,
                                         presentation=True, **common)
    grid = default_grid(header, voxel_mm=0.4, slice_spacing_mm=2.0)
    vol = np.random.default_rng(3).normal(0.05, 0.01, grid.to_grid().shape).astype(np.float32)
    tomo = write_tomo_dicom(tmp_path / "tomo.dcm", vol, grid, header, study, mgd_mgy=1.1, half_value_layer_mm_al=0.5)
    return study, [proc, pres, tomo]


@needs_dciodvfy
def test_kos_is_clean_and_references_the_frames_at_fault(tmp_path: Path, objects) -> None:
    study, files = objects
    rej = [Rejection("Patient motion between projections", "1.2 mm", "<= 0.5 mm", "project", (4, 5)),
           Rejection("Chest-wall coverage", "50 %", ">= 80 %", "project")]
    kos = write_qc_rejection_kos(tmp_path / "kos.dcm", study, rej, files)
    assert _vfy(kos) == []
    ds = pydicom.dcmread(kos)
    assert [i.ConceptCodeSequence[0].CodeMeaning for i in ds.ContentSequence if i.ValueType == "CODE"] == [
        "Motion blur", "Positioning"]
    frames = [i.ReferencedSOPSequence[0].get("ReferencedFrameNumber") for i in ds.ContentSequence
              if i.ValueType == "IMAGE"]
    assert [list(f) if f is not None else None for f in frames] == [[4, 5], [4, 5], None]  # not the tomo slices
    evidence = ds.CurrentRequestedProcedureEvidenceSequence[0]
    assert evidence.StudyInstanceUID == study.uid("study") and len(evidence.ReferencedSeriesSequence) == 3


@needs_dciodvfy
def test_dciodvfy_sees_a_broken_kos(tmp_path: Path, objects) -> None:
    study, files = objects
    kos = write_qc_rejection_kos(tmp_path / "kos.dcm", study, [Rejection("x", "1", "0", "project")], files)
    ds = pydicom.dcmread(kos)
    del ds.CurrentRequestedProcedureEvidenceSequence
    ds.save_as(tmp_path / "broken.dcm")
    assert any("CurrentRequestedProcedureEvidenceSequence" in l for l in _vfy(tmp_path / "broken.dcm"))


def test_kos_refuses_nothing_to_reject_and_a_foreign_study(tmp_path: Path, objects) -> None:
    study, files = objects
    with pytest.raises(ValueError, match="at least one failed check"):
        write_qc_rejection_kos(tmp_path / "k.dcm", study, [], files)
    with pytest.raises(ValueError, match="is not this exam's"):
        write_qc_rejection_kos(tmp_path / "k.dcm", StudyInfo(uid_seed="another"), [Rejection("x", "1", "0", "p")], files)


@needs_dciodvfy
def test_for_presentation_object_has_only_the_listed_warnings(objects) -> None:
    _, (proc, pres, _) = objects
    lines = _vfy(pres)
    assert [l for l in lines if l.startswith("Error")] == []
    assert set(lines) == PRESENTATION_WARNINGS, lines
    d = pydicom.dcmread(pres, stop_before_pixels=True).PerFrameFunctionalGroupsSequence[0].DerivationImageSequence[0]
    assert [(c.CodeValue, c.CodingSchemeDesignator) for c in d.DerivationCodeSequence] == [("113062", "DCM"),
                                                                                        ("113046", "DCM")]
