"""DICOM Breast Tomosynthesis Image (enhanced multi-frame) for a reconstructed DBT volume.

SOP Class 1.2.840.10008.5.1.4.1.1.13.1.3 (PS3.3 A.55): Patient, General Study,
General Series, Enhanced Mammography Series, Frame of Reference, General and
Enhanced General Equipment, Image Pixel, Multi-frame Functional Groups,
Multi-frame Dimension, Acquisition Context, X-Ray 3D Image, X-Ray 3D
Reconstruction, Breast Tomosynthesis Acquisition (the X-Ray 3D Acquisition
Sequence with one Per Projection Acquisition item per exposure: actual arc
angle, kVp, mA, ms, mAs), Breast View, SOP Common.

One frame per slice, slice ``k`` at height ``z_mm[k]`` above the detector.
The attenuation volume (1/mm, float) is stored as uint16 scaled over its full
range, ``mu = stored * slope + intercept``. The Breast Tomosynthesis IOD
constrains the Pixel Value Transformation to the identity (Rescale Slope 1,
Intercept 0), so the slope and intercept are carried by the Real World Value
Mapping functional group in 1/mm (UCUM ``/mm``) and repeated in Image Comments. Frame positions are in the patient
frame derived from the gantry frame (see :mod:`crescent.outputs.dicom_common`).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from crescent.outputs.dicom_common import (
    ANODE_FILTER_DICOM,
    BREAST_CODE,
    add_breast_view,
    add_equipment,
    add_patient_study,
    add_series,
    central_ray_distances,
    code_item,
    da,
    ds_str,
    dt,
    new_dataset,
    patient_axes,
    exposure_control,
    voi_window,
    save,
    tm,
    to_patient,
)
from crescent.outputs.dicom import exposure_values, projection_sop_uid
from crescent.outputs.study import StudyInfo
from protocols.records import AcquisitionHeader, ExposureRecord
from reconstruction.geometry import VolumeGrid

#: Breast Tomosynthesis Image Storage.
BREAST_TOMO_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.13.1.3"

#: Plain description of a grid: (in-plane voxel mm, x of the first voxel centre mm,
#: y of the first voxel centre mm, slice heights mm).
GridTuple = tuple[float, float, float, Seq[float]]


def grid_centres(
    grid: VolumeGrid | GridTuple, shape: tuple[int, int, int]
) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """(voxel mm, x centres, y centres, z heights) of a volume of ``shape`` ``(nz, ny, nx)``, gantry frame mm."""
    nz, ny, nx = shape
    if isinstance(grid, VolumeGrid):
        g = grid.to_grid()
        voxel, x, y, z = grid.voxel_mm, g.x_mm, g.y_mm, g.z_mm
    else:
        voxel, x0, y0, zs = grid
        x = x0 + np.arange(nx) * voxel
        y = y0 + np.arange(ny) * voxel
        z = np.asarray(list(zs), dtype=np.float64)
    if (z.size, y.size, x.size) != shape:
        raise ValueError(f"grid ({z.size}, {y.size}, {x.size}) does not match the volume shape {shape}")
    return float(voxel), np.asarray(x, float), np.asarray(y, float), z


def to_uint16(volume: np.ndarray) -> tuple[np.ndarray, float, float]:
    """Linear map of a float volume onto 0..65535: returns ``(stored, slope, intercept)``.

    ``volume ~= stored * slope + intercept`` within half a step (``slope / 2``). Works slice by
    slice, so a clinical volume needs only its uint16 copy besides the input.
    """
    v = np.asarray(volume)
    lo, hi = float(np.min(v)), float(np.max(v))
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError("volume contains NaN or infinite values")
    slope = (hi - lo) / 65535.0 if hi > lo else 1.0  # stored as FD (Real World Value Slope): no rounding
    intercept = lo
    stored = np.empty(v.shape, dtype=np.uint16)
    buf = np.empty(v.shape[1:], dtype=np.float32)  # float32 keeps the rounding error below 0.01 step
    for k in range(v.shape[0]):
        np.subtract(v[k], intercept, out=buf, casting="unsafe")
        np.multiply(buf, np.float32(1.0 / slope), out=buf)
        np.rint(buf, out=buf)
        np.clip(buf, 0, 65535, out=buf)
        stored[k] = buf
    return stored, slope, intercept


def _slabs(z: np.ndarray) -> np.ndarray:
    """Thickness attributed to each slice (half-way to its neighbours), mm."""
    if z.size == 1:
        return np.ones(1)
    edges = np.concatenate(([z[0] - 0.5 * (z[1] - z[0])], 0.5 * (z[1:] + z[:-1]), [z[-1] + 0.5 * (z[-1] - z[-2])]))
    return np.diff(edges)


def _acquisition_item(
    header: AcquisitionHeader,
    exposures: list[ExposureRecord],
    study: StudyInfo,
    mgd_mgy: float | None,
    half_value_layer_mm_al: float,
    relative_exposures: Seq[float] | None,
    *,
    forces_n: Seq[float] | None = None,
    entrance_dose_mgy: float | None = None,
    aec: bool | None = None,
    source_sop_class: str = "1.2.840.10008.5.1.4.1.1.1.2.1",
    source_uids: Seq[str] | None = None,
) -> Dataset:
    """One X-Ray 3D Acquisition Sequence item: the whole sweep with a Per Projection Acquisition item each.

    ``forces_n``: compression force during each exposure (N); its mean is the item's Compression
    Force. ``entrance_dose_mgy``: incident air kerma of the sweep at the breast entrance (mGy).
    ``source_sop_class`` / ``source_uids``: the projection objects this volume was reconstructed
    from (default: one single-frame Digital Mammography object per exposure, numbered 1..n).
    """
    geom, det = header.geometry, header.geometry.detector
    item = Dataset()
    dist = central_ray_distances(geom, 0.0, header.compressed_thickness_mm)
    angles = [e.mean_angle_deg for e in exposures]
    values = [exposure_values(e) for e in exposures]
    anode, filt, filt_mm = ANODE_FILTER_DICOM[exposures[0].anode_filter]
    item.FieldOfViewShape = "RECTANGLE"
    item.FieldOfViewDimensionsInFloat = [float(det.height_mm), float(det.width_mm)]
    item.FieldOfViewOrigin = ["0", "0"]
    item.FieldOfViewRotation = "0"
    item.FieldOfViewHorizontalFlip = "NO"
    item.Grid = "NONE"
    item.DistanceSourceToDetector = ds_str(dist["sid"])
    item.DistanceSourceToPatient = ds_str(dist["sod"])
    item.EstimatedRadiographicMagnificationFactor = ds_str(dist["magnification"])
    item.KVP = ds_str(float(np.mean([v["kvp"] for v in values])))
    item.XRayTubeCurrentInmA = float(np.mean([v["ma"] for v in values]))
    item.ExposureTimeInms = float(sum(v["ms"] for v in values))
    item.ExposureInmAs = float(sum(v["mas"] for v in values))
    item.FocalSpots = ds_str(exposures[0].focal_spot_mm)
    item.AnodeTargetMaterial = anode
    item.FilterMaterial = filt
    item.FilterThicknessMinimum = ds_str(filt_mm)
    item.FilterThicknessMaximum = ds_str(filt_mm)
    item.BodyPartThickness = ds_str(header.compressed_thickness_mm)
    force = header.compression_force_n if not forces_n else float(np.mean(forces_n))
    item.CompressionForce = ds_str(force)
    item.ExposureControlMode, item.ExposureControlModeDescription = exposure_control(header, aec)
    item.XRayReceptorType = "DIGITAL_DETECTOR"
    item.DetectorTemperature = ds_str(study.detector_temperature_c)
    item.PaddleDescription = study.paddle_description
    item.HalfValueLayer = ds_str(half_value_layer_mm_al)
    item.FilterType = "FLAT"
    item.PrimaryPositionerScanArc = float(max(angles) - min(angles))
    item.PrimaryPositionerScanStartAngle = float(study.gantry_rotation_deg + angles[0])
    if len(angles) > 1:
        item.PrimaryPositionerIncrement = float((angles[-1] - angles[0]) / (len(angles) - 1))
    if mgd_mgy is not None:
        item.OrganDose = ds_str(mgd_mgy * 0.01)  # dGy
    if entrance_dose_mgy is not None:
        item.EntranceDoseInmGy = ds_str(entrance_dose_mgy)
    per = []
    if relative_exposures is None:
        relative_exposures = [v["uas"] for v in values]
    if len(relative_exposures) != len(exposures):
        raise ValueError(f"{len(relative_exposures)} relative exposures for {len(exposures)} projections")
    for e, v, rel in zip(exposures, values, relative_exposures):
        p = Dataset()
        p.RelativeXRayExposure = int(round(rel))
        p.KVP = ds_str(v["kvp"])
        p.XRayTubeCurrentInmA = v["ma"]
        p.ExposureTimeInms = v["ms"]
        p.ExposureInmAs = v["mas"]
        p.PositionerPrimaryAngle = ds_str(study.gantry_rotation_deg + e.mean_angle_deg)
        per.append(p)
    item.PerProjectionAcquisitionSequence = Sequence(per)
    if source_uids is None:
        source_uids = [projection_sop_uid(study, e, n) for n, e in enumerate(exposures, start=1)]
    srcs = []
    for uid in dict.fromkeys(source_uids):  # a multi-frame source is referenced once
        ref = Dataset()
        ref.ReferencedSOPClassUID = source_sop_class
        ref.ReferencedSOPInstanceUID = uid
        srcs.append(ref)
    item.SourceImageSequence = Sequence(srcs)
    return item


def contributing_source(study: StudyInfo, acquired: datetime, header: AcquisitionHeader) -> Dataset:
    """One Contributing Sources item: the device and detector that acquired the projections, and when (IHE DBT)."""
    det = header.geometry.detector
    src = Dataset()
    src.Manufacturer = study.manufacturer
    src.ManufacturerModelName = study.model_name
    src.DeviceSerialNumber = study.device_serial_number
    src.SoftwareVersions = study.software_versions
    src.StationName = study.station_name
    src.AcquisitionDateTime = dt(acquired)
    src.DetectorID = study.detector_id
    src.DetectorType = "DIRECT"
    src.DetectorElementSpacing = [ds_str(det.native_pitch_mm)] * 2
    cal = study.detector_calibration if study.detector_calibration is not None else study.study_datetime
    src.DateOfLastDetectorCalibration, src.TimeOfLastDetectorCalibration = da(cal), tm(cal)
    src.Rows, src.Columns = det.rows, det.cols  # the projections' matrix
    src.BitsStored = 16
    src.LossyImageCompression = "00"
    return src


def write_tomo_dicom(
    path: str | Path,
    volume: np.ndarray,
    grid: VolumeGrid | GridTuple,
    header: AcquisitionHeader,
    study: StudyInfo,
    *,
    mgd_mgy: float | None,
    half_value_layer_mm_al: float,
    relative_exposures: Seq[float] | None = None,
    forces_n: Seq[float] | None = None,
    entrance_dose_mgy: float | None = None,
    aec: bool | None = None,
    source_sop_class: str = "1.2.840.10008.5.1.4.1.1.1.2.1",
    source_uids: Seq[str] | None = None,
) -> Path:
    """Write a reconstructed volume as a Breast Tomosynthesis Image (one frame per slice).

    Parameters
    ----------
    path: output file.
    volume: ``(nz, ny, nx)`` float attenuation in 1/mm, slice ``k`` at ``z_mm[k]`` above the detector,
        rows along gantry ``y`` (row 0 nearest the chest wall), columns along gantry ``x``.
    grid: the reconstruction :class:`~reconstruction.geometry.VolumeGrid`, or
        ``(voxel_mm, x0_mm, y0_mm, z_mm)`` with ``x0``/``y0`` the first voxel centre (mm).
    header: gantry geometry, thickness, force and the projections (their exposure records fill the
        X-Ray 3D Acquisition Sequence; scouts are left out). The referenced projection SOP Instance
        UIDs assume the projections were written with ``instance_number`` = 1-based position among
        the non-scout projections of ``header.projections``.
    study: identification; UIDs derive from ``study.uid_seed``.
    mgd_mgy: total mean glandular dose of the sweep (mGy) or None.
    half_value_layer_mm_al: first HVL of the beam, mm Al (Type 1 in this IOD).
    relative_exposures: Relative X-Ray Exposure of each non-scout projection (e.g. the mean raw
        detector signal); defaults to the delivered uAs, which is proportional to the detector
        exposure at fixed kVp, anode/filter and thickness.
    """
    vol = np.asarray(volume)
    if vol.ndim != 3:
        raise ValueError(f"volume must be 3-D (nz, ny, nx), got shape {vol.shape}")
    voxel, x, y, z = grid_centres(grid, vol.shape)
    exposures = [p.exposure for p in header.projections if not p.exposure.is_scout]
    if not exposures:
        raise ValueError("header lists no (non-scout) projections: the acquisition sequence needs them")
    stored, slope, intercept = to_uint16(vol)
    nz, ny, nx = vol.shape

    ds = new_dataset(BREAST_TOMO_SOP_CLASS, study.uid("sop", "tomo", study.tomo_series_number))
    t0 = study.at(min(e.window_start_s for e in exposures))
    t1 = study.at(max(e.window_end_s for e in exposures))
    add_patient_study(ds, study)
    add_series(ds, study, study.tomo_series_number, f"DBT slices {study.laterality}{study.view}", t1)
    add_equipment(ds, study)

    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = da(t1), tm(t1)
    ds.ImageType = ["ORIGINAL", "PRIMARY", "TOMOSYNTHESIS", "NONE"]
    ds.ContentQualification = study.content_qualification
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "TOMOSYNTHESIS"
    ds.ImageComments = (f"linear attenuation 1/mm = stored * {slope:.9e} + {intercept:.9e}"
                        + (f"; {study.reproducibility_note}" if study.reproducibility_note else ""))

    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = ny, nx
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = nz
    ds.PixelData = np.ascontiguousarray(stored, dtype="<u2").tobytes()

    add_breast_view(ds, study, single_frame=False)

    # Multi-frame Dimension: stack id + in-stack position (slice order = increasing z)
    dim_uid = study.uid("dimension-organization")
    org = Dataset()
    org.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = Sequence([org])
    ds.DimensionOrganizationType = "3D"
    idx = []
    for ptr, label in ((0x00209056, "Stack ID"), (0x00209057, "In-Stack Position Number")):
        d = Dataset()
        d.DimensionOrganizationUID = dim_uid
        d.DimensionIndexPointer = ptr
        d.FunctionalGroupPointer = 0x00209111  # Frame Content Sequence
        d.DimensionDescriptionLabel = label
        idx.append(d)
    ds.DimensionIndexSequence = Sequence(idx)

    # Shared functional groups
    shared = Dataset()
    ex, ey, _ = patient_axes(study)
    orient = Dataset()
    orient.ImageOrientationPatient = [ds_str(float(v), 10) for v in (*ex, *ey)]
    shared.PlaneOrientationSequence = Sequence([orient])
    voi = Dataset()  # the breast's 1st..99th percentile (the stored values span the whole volume's range)
    step = max(1, min(ny, nx) // 256)  # a subsample of a large volume is enough for percentiles
    sample = stored[:, ::step, ::step]
    breast = sample > 0.25 * float(np.percentile(sample, 99.0))
    centre, width = voi_window(sample, breast)
    voi.WindowCenter = ds_str(centre)
    voi.WindowWidth = ds_str(width)
    voi.WindowCenterWidthExplanation = "breast 1st-99th percentile"
    voi.VOILUTFunction = "LINEAR"
    shared.FrameVOILUTSequence = Sequence([voi])
    pvt = Dataset()  # the Breast Tomosynthesis IOD requires the identity transformation here
    pvt.RescaleIntercept = "0"
    pvt.RescaleSlope = "1"
    pvt.RescaleType = "US"
    shared.PixelValueTransformationSequence = Sequence([pvt])
    rwv = Dataset()  # ... so the physical scale lives in the Real World Value Mapping
    rwv.RealWorldValueFirstValueMapped = 0
    rwv.RealWorldValueLastValueMapped = 65535
    rwv.RealWorldValueIntercept = intercept
    rwv.RealWorldValueSlope = slope
    rwv.LUTExplanation = "linear attenuation coefficient"
    rwv.LUTLabel = "MU_PER_MM"
    rwv.MeasurementUnitsCodeSequence = Sequence([code_item("/mm", "per millimeter", "UCUM")])
    shared.RealWorldValueMappingSequence = Sequence([rwv])
    anat = Dataset()
    anat.FrameLaterality = study.laterality
    anat.AnatomicRegionSequence = Sequence([code_item(*BREAST_CODE)])
    shared.FrameAnatomySequence = Sequence([anat])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    # Per-frame functional groups
    slabs = _slabs(z)
    frames = []
    for k in range(nz):
        f = Dataset()
        pm = Dataset()
        pm.PixelSpacing = [ds_str(voxel, 10), ds_str(voxel, 10)]
        pm.SliceThickness = ds_str(float(slabs[k]), 10)
        f.PixelMeasuresSequence = Sequence([pm])
        pos = Dataset()
        pos.ImagePositionPatient = [ds_str(float(v), 8) for v in to_patient(study, (x[0], y[0], z[k]))]
        f.PlanePositionSequence = Sequence([pos])
        fc = Dataset()
        fc.FrameAcquisitionDateTime = dt(t0)
        fc.FrameReferenceDateTime = dt(t0)
        fc.FrameAcquisitionDuration = (t1 - t0).total_seconds() * 1000.0  # ms
        fc.StackID = "1"
        fc.InStackPositionNumber = k + 1
        fc.DimensionIndexValues = [1, k + 1]
        fc.FrameComments = f"z = {z[k]:.3f} mm above the detector"
        f.FrameContentSequence = Sequence([fc])
        ft = Dataset()
        ft.FrameType = ["ORIGINAL", "PRIMARY", "TOMOSYNTHESIS", "NONE"]
        ft.PixelPresentation = "MONOCHROME"
        ft.VolumetricProperties = "VOLUME"
        ft.VolumeBasedCalculationTechnique = "TOMOSYNTHESIS"
        ft.ReconstructionIndex = 1  # item 1 of the X-Ray 3D Reconstruction Sequence
        f.XRay3DFrameTypeSequence = Sequence([ft])
        frames.append(f)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)

    acquisition = _acquisition_item(header, exposures, study, mgd_mgy, half_value_layer_mm_al, relative_exposures,
                                    forces_n=forces_n, entrance_dose_mgy=entrance_dose_mgy, aec=aec,
                                    source_sop_class=source_sop_class, source_uids=source_uids)
    ds.XRay3DAcquisitionSequence = Sequence([acquisition])
    ds.ContributingSourcesSequence = Sequence([contributing_source(study, t0, header)])
    rec = Dataset()
    rec.ReconstructionDescription = "filtered backprojection of the DBT projections"
    rec.ApplicationName = "crescent"
    rec.ApplicationVersion = study.software_versions.split()[-1]
    rec.ApplicationManufacturer = study.manufacturer
    rec.AlgorithmType = "FILTER_BACK_PROJ"
    rec.AlgorithmDescription = "slice-parallel FBP, Crescent reconstruction package"
    rec.AcquisitionIndex = [1]
    ds.XRay3DReconstructionSequence = Sequence([rec])

    ds.AcquisitionContextSequence = Sequence()
    ds.InstanceCreationDate, ds.InstanceCreationTime = da(t1), tm(t1)
    return save(ds, path)
