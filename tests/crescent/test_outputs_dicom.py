"""DICOM and array outputs: third-party validation (dciodvfy), pydicom round trips, geometry by hand."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pydicom
import pytest
import tifffile

from crescent.outputs import StudyInfo, write_numpy_outputs, write_projection_dicom, write_tomo_dicom
from crescent.outputs.dicom_tomo import to_uint16
from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from protocols.records import AcquisitionHeader, ExposureRecord, ProjectionRecord
from reconstruction.geometry import default_grid

ROWS, COLS = 24, 36
ANGLES = np.linspace(-12.5, 12.5, 5)


def make_header(scout: bool = False, anode_filter: str = "W/Rh") -> AcquisitionHeader:
    """Five projections over 25 deg, continuous motion (0.4 deg travel per 50 ms window, 0.1 deg ahead of plan)."""
    det = DetectorGeometry(native_pitch_mm=0.05, binning=2, rows=ROWS, cols=COLS)
    records = []
    if scout:
        e = ExposureRecord(index=0, frame_id=100, planned_angle_deg=0.0, angle_start_deg=0.0, angle_end_deg=0.0,
                           kvp=29.0, mas=0.5, anode_filter=anode_filter, window_start_s=0.2, window_end_s=0.22,
                           is_scout=True)
        records.append(ProjectionRecord(exposure=e, rows=ROWS, cols=COLS, checksum_crc32c=0))
    for i, a in enumerate(ANGLES):
        e = ExposureRecord(index=i + scout, frame_id=i, planned_angle_deg=a, angle_start_deg=a - 0.1,
                           angle_end_deg=a + 0.3, kvp=29.0 + 0.1 * i, mas=1.25, anode_filter=anode_filter,
                           window_start_s=1.0 + 0.5 * i, window_end_s=1.05 + 0.5 * i)
        records.append(ProjectionRecord(exposure=e, rows=ROWS, cols=COLS, checksum_crc32c=0))
    return AcquisitionHeader(geometry=AcquisitionGeometry(detector=det), compressed_thickness_mm=12.0,
                             compression_force_n=110.0, projections=records)


def image(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65536, size=(ROWS, COLS), dtype=np.uint16)


def non_scout(header: AcquisitionHeader) -> list[ExposureRecord]:
    return [p.exposure for p in header.projections if not p.exposure.is_scout]


def dciodvfy(path: Path) -> list[str]:
    """dciodvfy's output lines (it reports on stderr)."""
    res = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True, timeout=60)
    return (res.stdout + res.stderr).splitlines()


needs_dciodvfy = pytest.mark.skipif(shutil.which("dciodvfy") is None, reason="dicom3tools (dciodvfy) not installed")

VARIANTS = [
    pytest.param(StudyInfo(), False, "W/Rh", id="R-CC"),
    pytest.param(StudyInfo(laterality="L", view="MLO", gantry_rotation_deg=45.0), True, "Mo/Mo", id="L-MLO-AEC"),
]


@needs_dciodvfy
@pytest.mark.parametrize("study,scout,af", VARIANTS)
def test_projection_passes_dciodvfy(tmp_path: Path, study: StudyInfo, scout: bool, af: str) -> None:
    header = make_header(scout, af)
    e = non_scout(header)[1]
    for doses in ((0.4, 0.1), (None, None)):
        p = write_projection_dicom(tmp_path / "p.dcm", image(1), e, header, study, entrance_dose_mgy=doses[0],
                                   mgd_mgy=doses[1], instance_number=2, half_value_layer_mm_al=0.5)
        out = dciodvfy(p)
        assert any("MammographyImageForProcessing" in line for line in out), out
        errors = [line for line in out if line.startswith("Error")]
        assert errors == [], "\n".join(out)


@needs_dciodvfy
@pytest.mark.parametrize("study,scout,af", VARIANTS)
def test_tomo_passes_dciodvfy(tmp_path: Path, study: StudyInfo, scout: bool, af: str) -> None:
    header = make_header(scout, af)
    grid = default_grid(header, voxel_mm=0.4, slice_spacing_mm=2.0)
    vol = np.random.default_rng(3).normal(0.05, 0.01, grid.to_grid().shape).astype(np.float32)
    p = write_tomo_dicom(tmp_path / "t.dcm", vol, grid, header, study, mgd_mgy=1.1, half_value_layer_mm_al=0.5)
    out = dciodvfy(p)
    assert any("BreastTomosynthesisImage" in line for line in out), out
    errors = [line for line in out if line.startswith("Error")]
    assert errors == [], "\n".join(out)


def test_projection_round_trip_and_geometry(tmp_path: Path) -> None:
    header = make_header()
    e = non_scout(header)[4]  # +12.5 deg planned, actual window 12.4 .. 12.8 deg
    img = image(2)
    p = write_projection_dicom(tmp_path / "p.dcm", img, e, header, StudyInfo(), entrance_dose_mgy=0.42,
                               mgd_mgy=0.095, instance_number=5)
    ds = pydicom.dcmread(p)
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.1.2.1"
    assert ds.file_meta.TransferSyntaxUID == pydicom.uid.ExplicitVRLittleEndian
    np.testing.assert_array_equal(ds.pixel_array, img)
    assert (ds.Modality, ds.PresentationIntentType, ds.PixelIntensityRelationship) == ("MG", "FOR PROCESSING", "LIN")
    assert (ds.BurnedInAnnotation, ds.DetectorType, ds.ImageLaterality) == ("NO", "DIRECT", "R")
    assert ds.ViewCodeSequence[0].CodeValue == "399162004"  # SNOMED CT cranio-caudal
    assert ds.AnatomicRegionSequence[0].CodeValue == "76752008"  # SNOMED CT breast
    # the actual (window-mean) angle, not the planned one
    assert float(ds.PositionerPrimaryAngle) == pytest.approx(12.6, abs=1e-6)
    # by hand: source at z = 40 + 620 cos(12.6 deg); along the central ray SID = z / cos, SOD = (z - 20) / cos
    c = math.cos(math.radians(12.6))
    sz = 40.0 + 620.0 * c
    assert float(ds.DistanceSourceToDetector) == pytest.approx(sz / c, abs=1e-3)
    assert float(ds.DistanceSourceToPatient) == pytest.approx((sz - 20.0) / c, abs=1e-3)
    assert float(ds.DistanceSourceToEntrance) == pytest.approx((sz - 32.0) / c, abs=1e-3)
    assert [float(v) for v in ds.ImagerPixelSpacing] == [0.1, 0.1]
    assert [float(v) for v in ds.DetectorElementSpacing] == [0.05, 0.05]
    assert float(ds.PixelSpacing[0]) == pytest.approx(0.1 * (sz - 20.0) / sz, rel=1e-5)
    assert float(ds.BodyPartThickness) == 12.0 and float(ds.CompressionForce) == 110.0
    assert float(ds.KVP) == pytest.approx(29.4)
    assert ds.ExposureInuAs == 1250 and ds.ExposureTime == 50
    assert float(ds.XRayTubeCurrentInuA) == pytest.approx(25000.0)  # 1.25 mAs in 50 ms
    assert float(ds.EntranceDoseInmGy) == pytest.approx(0.42)
    assert float(ds.OrganDose) == pytest.approx(0.00095)  # dGy
    assert (ds.AnodeTargetMaterial, ds.FilterMaterial) == ("TUNGSTEN", "RHODIUM")
    assert float(ds.FilterThicknessMinimum) == pytest.approx(0.05)
    assert list(ds.PatientOrientation) == ["L", "A"]


def test_mlo_orientation_and_positioner_angle(tmp_path: Path) -> None:
    header = make_header()
    e = non_scout(header)[0]
    study = StudyInfo(laterality="L", view="MLO", gantry_rotation_deg=45.0)
    ds = pydicom.dcmread(write_projection_dicom(tmp_path / "p.dcm", image(3), e, header, study,
                                                entrance_dose_mgy=None, mgd_mgy=None, instance_number=1))
    assert ds.ViewCodeSequence[0].CodeValue == "399368009"  # medio-lateral oblique
    assert float(ds.PositionerPrimaryAngle) == pytest.approx(45.0 - 12.5 + 0.1)
    assert ds.PatientOrientation[1] == "A"
    assert set(ds.PatientOrientation[0]) == {"L", "H"}
    assert "OrganDose" not in ds and "EntranceDoseInmGy" not in ds


def test_same_seed_same_bytes_other_seed_other_uids(tmp_path: Path) -> None:
    header = make_header()
    e = non_scout(header)[2]
    paths = []
    for name, seed in (("a", "s1"), ("b", "s1"), ("c", "s2")):
        paths.append(write_projection_dicom(tmp_path / f"{name}.dcm", image(4), e, header, StudyInfo(uid_seed=seed),
                                            entrance_dose_mgy=0.3, mgd_mgy=0.1, instance_number=3))
    assert paths[0].read_bytes() == paths[1].read_bytes()
    a, c = pydicom.dcmread(paths[0]), pydicom.dcmread(paths[2])
    for kw in ("SOPInstanceUID", "StudyInstanceUID", "SeriesInstanceUID", "FrameOfReferenceUID"):
        assert a[kw].value != c[kw].value
        assert pydicom.uid.UID(a[kw].value).is_valid


def test_tomo_round_trip_positions_and_sources(tmp_path: Path) -> None:
    header = make_header(scout=True)
    study = StudyInfo(uid_seed="tomo")
    exps = non_scout(header)
    proj_uids = []
    for n, e in enumerate(exps, start=1):
        p = write_projection_dicom(tmp_path / f"p{n}.dcm", image(n), e, header, study, entrance_dose_mgy=0.3,
                                   mgd_mgy=0.1, instance_number=n)
        proj_uids.append(pydicom.dcmread(p).SOPInstanceUID)
    grid = default_grid(header, voxel_mm=0.3, slice_spacing_mm=1.5)
    g = grid.to_grid()
    vol = np.random.default_rng(5).normal(0.05, 0.01, g.shape).astype(np.float32)
    ds = pydicom.dcmread(write_tomo_dicom(tmp_path / "t.dcm", vol, grid, header, study, mgd_mgy=0.9,
                                          half_value_layer_mm_al=0.55))
    assert ds.SOPClassUID == "1.2.840.10008.5.1.4.1.1.13.1.3"
    assert int(ds.NumberOfFrames) == g.shape[0] and (ds.Rows, ds.Columns) == g.shape[1:]
    rw = ds.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
    mu = ds.pixel_array.astype(np.float64) * rw.RealWorldValueSlope + rw.RealWorldValueIntercept
    np.testing.assert_allclose(mu, vol, atol=rw.RealWorldValueSlope * 0.51 + 1e-9)
    pvt = ds.SharedFunctionalGroupsSequence[0].PixelValueTransformationSequence[0]
    assert (float(pvt.RescaleSlope), float(pvt.RescaleIntercept)) == (1.0, 0.0)
    # CC: patient = (x, -y, z) of the first voxel centre of each slice
    for k, fg in enumerate(ds.PerFrameFunctionalGroupsSequence):
        pos = [float(v) for v in fg.PlanePositionSequence[0].ImagePositionPatient]
        assert pos == pytest.approx([g.x_mm[0], -g.y_mm[0], g.z_mm[k]], abs=1e-5)
        assert fg.FrameContentSequence[0].InStackPositionNumber == k + 1
        assert float(fg.PixelMeasuresSequence[0].PixelSpacing[0]) == pytest.approx(0.3)
    acq = ds.XRay3DAcquisitionSequence[0]
    angles = [float(p.PositionerPrimaryAngle) for p in acq.PerProjectionAcquisitionSequence]
    assert angles == pytest.approx([a + 0.1 for a in ANGLES])  # actual angles; the scout is not listed
    assert [r.ReferencedSOPInstanceUID for r in acq.SourceImageSequence] == proj_uids
    assert acq.ExposureInmAs == pytest.approx(1.25 * len(exps))
    assert acq.ExposureControlMode == "AUTOMATIC"  # the header holds an AEC scout
    assert float(acq.OrganDose) == pytest.approx(0.009)
    assert ds.StudyInstanceUID == pydicom.dcmread(tmp_path / "p1.dcm").StudyInstanceUID


def test_tomo_grid_tuple_matches_volume_grid(tmp_path: Path) -> None:
    header = make_header()
    grid = default_grid(header, voxel_mm=0.6, slice_spacing_mm=3.0)
    g = grid.to_grid()
    vol = np.zeros(g.shape, np.float32)
    vol[1, 2, 3] = 0.08
    a = pydicom.dcmread(write_tomo_dicom(tmp_path / "a.dcm", vol, grid, header, StudyInfo(), mgd_mgy=None,
                                         half_value_layer_mm_al=0.5))
    b = pydicom.dcmread(write_tomo_dicom(tmp_path / "b.dcm", vol, (0.6, g.x_mm[0], g.y_mm[0], list(g.z_mm)),
                                         header, StudyInfo(), mgd_mgy=None, half_value_layer_mm_al=0.5))
    assert a.PerFrameFunctionalGroupsSequence == b.PerFrameFunctionalGroupsSequence
    np.testing.assert_array_equal(a.pixel_array, b.pixel_array)
    assert a.pixel_array[1, 2, 3] == 65535 and a.pixel_array.sum() == 65535


def test_to_uint16_uses_full_range() -> None:
    v = np.linspace(-0.01, 0.09, 1000).reshape(10, 10, 10)
    stored, slope, intercept = to_uint16(v)
    assert stored.min() == 0 and stored.max() == 65535
    assert np.max(np.abs(stored * slope + intercept - v)) <= slope * 0.51 + 1e-12


def test_bad_inputs_are_rejected(tmp_path: Path) -> None:
    header = make_header()
    e = non_scout(header)[0]
    with pytest.raises(ValueError, match="uint16"):
        write_projection_dicom(tmp_path / "p.dcm", image(1).astype(np.float32), e, header, StudyInfo(),
                               entrance_dose_mgy=None, mgd_mgy=None, instance_number=1)
    with pytest.raises(ValueError, match="detector"):
        write_projection_dicom(tmp_path / "p.dcm", image(1)[:-1], e, header, StudyInfo(),
                               entrance_dose_mgy=None, mgd_mgy=None, instance_number=1)
    with pytest.raises(ValueError, match="does not match"):
        write_tomo_dicom(tmp_path / "t.dcm", np.zeros((2, 3, 4), np.float32), default_grid(header), header,
                         StudyInfo(), mgd_mgy=None, half_value_layer_mm_al=0.5)
    with pytest.raises(ValueError, match="NaN"):
        to_uint16(np.array([[[np.nan]]]))


def test_numpy_outputs_round_trip(tmp_path: Path) -> None:
    header = make_header()
    exps = non_scout(header)
    imgs = [image(10 + k) for k in range(len(exps))]
    vol = np.random.default_rng(6).random((4, 5, 6)).astype(np.float32)
    z = [21.0, 22.5, 24.0, 25.5]
    paths = write_numpy_outputs(tmp_path, images=iter(imgs), exposures=exps, pitch_mm=0.1, volume=vol, z_mm=z,
                                voxel_mm=0.2, x0_mm=-1.0, y0_mm=0.1)
    assert sorted(p.name for p in paths) == ["projections.json", "projections.npy", "volume.npy", "volume.tif"]
    np.testing.assert_array_equal(np.load(tmp_path / "projections.npy"), np.stack(imgs))
    meta = json.loads((tmp_path / "projections.json").read_text())
    assert [ExposureRecord.model_validate(d) for d in meta["exposures"]] == exps
    np.testing.assert_array_equal(np.load(tmp_path / "volume.npy"), vol)
    with tifffile.TiffFile(tmp_path / "volume.tif") as tf:
        assert len(tf.pages) == 4
        np.testing.assert_array_equal(tf.asarray(), vol)
        md = tf.shaped_metadata[0]
    assert md["z_mm"] == z and md["voxel_mm"] == 0.2 and md["unit"] == "1/mm"
    with pytest.raises(ValueError, match="images for"):
        write_numpy_outputs(tmp_path / "x", images=imgs[:2], exposures=exps, pitch_mm=0.1, volume=None)
