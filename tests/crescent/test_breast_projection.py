"""Issue 16: DBT projections as Breast Projection X-Ray Images (For Processing + For Presentation), the default.

The product default (Breast Projection objects) is the session's `crescent acquire --out` run as `make run` runs
it (real-time simulated gantry; ``default_run`` in conftest.py), and one `crescent acquire --virtual-time
--projection-sop digital-mammography` run (8x-binned panel to keep it short). Third-party checks: dciodvfy on each
object, dcentvfy across the study; pixel and angle checks against the exam record written by the host.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pydicom
import pytest

from crescent.outputs.dicom_projection import presentation_frames

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1500)]
needs_dicom3tools = pytest.mark.skipif(shutil.which("dciodvfy") is None or shutil.which("dcentvfy") is None,
                                       reason="dicom3tools (dciodvfy, dcentvfy) not installed: apt-get install dicom3tools")

PROCESSING = "1.2.840.10008.5.1.4.1.1.13.1.5"
PRESENTATION = "1.2.840.10008.5.1.4.1.1.13.1.4"
MG_PROCESSING = "1.2.840.10008.5.1.4.1.1.1.2.1"
#: dciodvfy warnings accepted, each a value dicom3tools' term lists do not know (not a missing attribute):
#: Frame Type value 3 TOMOSYNTHESIS (= Image Type, which dciodvfy accepts) and the Image Processing Applied of
#: the For Presentation frames (no standard term fits); the derivation codes are standard (CID 7203) since
#: issue 16's 99CRESCENT warnings were removed (tests/crescent/test_qc_motion_kos.py lists the two with reasons).
KNOWN_WARNINGS = ("<TOMOSYNTHESIS> for value 3 of attribute <Frame Type>", "<LOG_LINEAR_MAP>")


def _acquire(out: Path, *extra: str) -> Path:
    proc = subprocess.run([sys.executable, "-m", "crescent", "acquire", "--virtual-time", "--out", str(out),
                           "--no-progress", *extra], capture_output=True, text=True, timeout=1400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def mg_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _acquire(tmp_path_factory.mktemp("mg") / "out", "--projection-sop", "digital-mammography", "--binning", "8")


def vfy(path: Path) -> tuple[list[str], list[str]]:
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=120)
    lines = (res.stdout + res.stderr).splitlines()
    return [l for l in lines if l.startswith("Error")], [l for l in lines if l.startswith("Warning")]


def dcentvfy(paths: list[Path]) -> list[str]:
    res = subprocess.run(["dcentvfy", *map(str, paths)], capture_output=True, text=True, timeout=120)
    # dcentvfy files AccessionNumber under Study for one IOD and Series for another: the values agree
    return [l for l in (res.stdout + res.stderr).splitlines() if l.startswith(("Error", "Warning"))
            and "Different information entities for attribute - Element=<AccessionNumber>" not in l]


def record(run: Path) -> dict:
    return json.loads((run / "exam" / "exam_record.json").read_text())


# ---- the default run --------------------------------------------------------------------------------------

def test_default_writes_breast_projection_objects_and_tomo_references_them(default_run: Path) -> None:
    d = default_run / "dicom"
    assert not list(d.glob("proj_*.dcm"))  # no single-frame objects by default
    proc = pydicom.dcmread(d / "projections_for_processing.dcm")
    pres = pydicom.dcmread(d / "projections_for_presentation.dcm")
    assert (proc.SOPClassUID, pres.SOPClassUID) == (PROCESSING, PRESENTATION)
    assert (proc.PresentationIntentType, pres.PresentationIntentType) == ("FOR PROCESSING", "FOR PRESENTATION")
    n = len(record(default_run)["image_paths"])
    assert int(proc.NumberOfFrames) == int(pres.NumberOfFrames) == n == 15
    tomo = pydicom.dcmread(d / "tomo.dcm")
    src = tomo.XRay3DAcquisitionSequence[0].SourceImageSequence
    assert [(s.ReferencedSOPClassUID, s.ReferencedSOPInstanceUID) for s in src] == [(PROCESSING, proc.SOPInstanceUID)]
    for ds in (proc, pres):
        assert (ds.StudyInstanceUID, ds.FrameOfReferenceUID) == (tomo.StudyInstanceUID, tomo.FrameOfReferenceUID)
    # every presentation frame names the processing frame it comes from
    der = [f.DerivationImageSequence[0].SourceImageSequence[0] for f in pres.PerFrameFunctionalGroupsSequence]
    assert {s.ReferencedSOPInstanceUID for s in der} == {proc.SOPInstanceUID}
    assert [int(s.ReferencedFrameNumber) for s in der] == list(range(1, n + 1))


def test_frames_are_the_stored_projections_with_their_own_angle_and_technique(default_run: Path) -> None:
    rec = record(default_run)
    proc = pydicom.dcmread(default_run / "dicom" / "projections_for_processing.dcm")
    pixels = proc.pixel_array
    frames = proc.PerFrameFunctionalGroupsSequence
    times = []
    for k, rel in enumerate(rec["image_paths"]):
        assert np.array_equal(pixels[k], np.load(default_run / "exam" / rel)), k
        exp = rec["header"]["projections"][k]["exposure"]
        f = frames[k]
        angle = float(f.PositionerPositionSequence[0].PositionerPrimaryAngle)
        assert angle == pytest.approx(0.5 * (exp["angle_start_deg"] + exp["angle_end_deg"]), abs=1e-3)  # CC: no C-arm rotation
        assert float(f.FrameAcquisitionSequence[0].KVP) == pytest.approx(exp["kvp"], abs=1e-4)
        dose = f.XRayAcquisitionDoseSequence[0]
        assert float(dose.ExposureInmAs) == pytest.approx(exp["mas"], rel=1e-6)
        assert float(dose.ExposureTimeInms) == pytest.approx(1000 * (exp["window_end_s"] - exp["window_start_s"]), rel=1e-6)
        times.append(f.FrameContentSequence[0].FrameAcquisitionDateTime)
    assert times == sorted(times) and len(set(times)) == len(times)
    # the frames' irradiation events are the dose SR's events
    sr = pydicom.dcmread(default_run / "dicom" / "dose_sr.dcm")
    def walk(items):
        for it in items:
            yield it
            yield from walk(it.get("ContentSequence", []))
    sr_uids = {it.UID for it in walk(sr.ContentSequence) if it.ValueType == "UIDREF"}
    frame_uids = {f.IrradiationEventIdentificationSequence[0].IrradiationEventUID for f in frames}
    assert len(frame_uids) == len(frames) and frame_uids <= sr_uids


def test_presentation_is_brighter_where_attenuation_is_higher(default_run: Path) -> None:
    proc = pydicom.dcmread(default_run / "dicom" / "projections_for_processing.dcm").pixel_array.astype(np.float64)
    pres = pydicom.dcmread(default_run / "dicom" / "projections_for_presentation.dcm").pixel_array.astype(np.float64)
    def blocks(x: np.ndarray, s: int = 16) -> np.ndarray:  # 16x16 means: the per-pixel gain (flat field) averages out
        r, c = (x.shape[0] // s) * s, (x.shape[1] // s) * s
        return x[:r, :c].reshape(r // s, s, c // s, s).mean(axis=(1, 3)).ravel()

    for k in range(proc.shape[0]):
        a, b = blocks(proc[k]), blocks(pres[k])
        m = (b > 5) & (b < 4090)  # blocks the linear map did not clip
        ra, rb = np.argsort(np.argsort(a[m])), np.argsort(np.argsort(b[m]))
        rho = np.corrcoef(ra, rb)[0, 1]  # Spearman: fewer X-rays (higher attenuation) -> larger value
        assert m.sum() > 100 and rho < -0.98, (k, rho)
        # what the map clipped to black is the open field, the brightest raw signal
        assert proc[k][pres[k] == 0].mean() > proc[k][pres[k] > 0].mean()
    assert int(pres.max()) <= 4095


def test_presentation_frames_are_an_increasing_map_of_the_line_integrals() -> None:
    p = np.random.default_rng(5).gamma(2.0, 0.5, (3, 40, 50)).astype(np.float32)
    out = presentation_frames(p).astype(np.int64)
    order = np.argsort(p.ravel())
    assert np.all(np.diff(out.ravel()[order]) >= 0)  # monotone non-decreasing, one map for the whole sweep
    assert out.min() == 0 and out.max() == 4095
    with pytest.raises(ValueError, match="finite"):
        presentation_frames(np.full((1, 8, 8), np.nan, np.float32))


@needs_dicom3tools
def test_default_run_is_clean_under_dciodvfy_and_dcentvfy(default_run: Path) -> None:
    d = default_run / "dicom"
    paths = [d / "projections_for_processing.dcm", d / "projections_for_presentation.dcm", d / "tomo.dcm",
             d / "dose_sr.dcm"]
    counts = {}
    for p in paths:
        errors, warnings = vfy(p)
        counts[p.name] = (len(errors), len(warnings))
        assert errors == [], (p.name, errors)
        assert [w for w in warnings if not any(k in w for k in KNOWN_WARNINGS)] == [], (p.name, warnings)
    print("dciodvfy (errors, warnings):", counts)
    assert dcentvfy(paths) == []


@needs_dicom3tools
def test_dciodvfy_sees_a_missing_per_frame_group(default_run: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(default_run / "dicom" / "projections_for_processing.dcm")
    del ds.PerFrameFunctionalGroupsSequence[4].XRayAcquisitionDoseSequence
    ds.save_as(tmp_path / "broken.dcm")
    errors, _ = vfy(tmp_path / "broken.dcm")
    assert any("XRayAcquisitionDoseSequence" in e for e in errors), errors


# ---- --projection-sop digital-mammography ------------------------------------------------------------------

@needs_dicom3tools
def test_digital_mammography_option_is_clean_and_referenced(mg_run: Path) -> None:
    d = mg_run / "dicom"
    projs = sorted(d.glob("proj_*.dcm"))
    assert len(projs) == len(record(mg_run)["image_paths"]) == 15
    assert not (d / "projections_for_processing.dcm").exists()
    ds = [pydicom.dcmread(p) for p in projs]
    assert {x.SOPClassUID for x in ds} == {MG_PROCESSING}
    tomo = pydicom.dcmread(d / "tomo.dcm")
    src = tomo.XRay3DAcquisitionSequence[0].SourceImageSequence
    assert {s.ReferencedSOPClassUID for s in src} == {MG_PROCESSING}
    assert [s.ReferencedSOPInstanceUID for s in src] == [x.SOPInstanceUID for x in ds]
    for p in (projs[0], projs[-1], d / "tomo.dcm"):
        errors, warnings = vfy(p)
        assert errors == [] and not [w for w in warnings if "Missing" in w or "Empty" in w], (p.name, errors, warnings)
    assert dcentvfy([*projs, d / "tomo.dcm", d / "dose_sr.dcm"]) == []
