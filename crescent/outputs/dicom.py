"""DICOM Digital Mammography X-Ray Image (For Processing) for each DBT projection (``--projection-sop dx``).

The default projection objects of ``crescent acquire`` are Breast Projection X-Ray
Images (:mod:`crescent.outputs.dicom_projection`); this single-frame form stays for
archives that do not know that SOP Class.

One file per projection, SOP Class 1.2.840.10008.5.1.4.1.1.1.2.1, with the
modules of the Digital Mammography IOD (PS3.3 A.27): Patient, General Study,
General Series, DX Series, Mammography Series, Frame of Reference, General
Equipment, General Acquisition, General Image, Image Pixel, DX Anatomy Imaged,
DX Image, DX Detector, DX Positioning, X-Ray Acquisition Dose, X-Ray
Generation, X-Ray Filtration, X-Ray Grid, Mammography Image, Acquisition
Context, SOP Common. Values come from the exposure as performed
(:class:`protocols.records.ExposureRecord`: actual window-mean arc angle,
delivered kVp and mAs) and the gantry (:class:`protocols.records.AcquisitionHeader`).

Units in DICOM: distances mm, angles degrees, force N, Entrance Dose in mGy
(0040,8302) mGy, Organ Dose (0040,0316) dGy (the standard's unit), exposure
uAs / mAs, current uA / mA, time us / ms.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.sequence import Sequence

from crescent.outputs.dicom_common import (
    ANODE_FILTER_DICOM,
    add_breast_view,
    add_equipment,
    add_patient_study,
    add_series,
    central_ray_distances,
    exposure_control,
    da,
    ds_str,
    dt,
    new_dataset,
    patient_orientation,
    save,
    tm,
)
from crescent.outputs.study import StudyInfo
from protocols.records import AcquisitionHeader, ExposureRecord

#: Digital Mammography X-Ray Image Storage - For Processing.
MG_FOR_PROCESSING_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.2.1"


def exposure_values(exposure: ExposureRecord) -> dict[str, float]:
    """Delivered technique in DICOM units: kVp, mAs, uAs, ms, us, mA, uA (mean current over the window)."""
    ms = max(exposure.window_s, 0.0) * 1000.0
    ma = exposure.mas / (ms / 1000.0) if ms > 0 else 0.0
    return {"kvp": exposure.kvp, "mas": exposure.mas, "uas": exposure.mas * 1000.0, "ms": ms, "us": ms * 1000.0,
            "ma": ma, "ua": ma * 1000.0}


def projection_sop_uid(study: StudyInfo, exposure: ExposureRecord, instance_number: int) -> str:
    """SOP Instance UID of a projection file (deterministic in the study seed, the exposure and its number)."""
    return study.uid("sop", "projection", instance_number, exposure.index, exposure.frame_id)


def write_projection_dicom(
    path: str | Path,
    image: np.ndarray,
    exposure: ExposureRecord,
    header: AcquisitionHeader,
    study: StudyInfo,
    *,
    entrance_dose_mgy: float | None,
    mgd_mgy: float | None,
    instance_number: int,
    half_value_layer_mm_al: float | None = None,
    compression_force_n: float | None = None,
    aec: bool | None = None,
) -> Path:
    """Write one projection as a Digital Mammography X-Ray Image, For Processing.

    Parameters
    ----------
    path: output file.
    image: raw detector image ``(rows, cols)`` uint16, row 0 at the chest wall, stored as is
        (LIN, MONOCHROME2: larger value = more X-rays).
    exposure: the exposure as performed; its window-mean actual arc angle becomes Positioner
        Primary Angle (plus the view's C-arm rotation ``study.gantry_rotation_deg``).
    header: gantry geometry, compressed thickness (mm) and compression force (N).
    study: identification; UIDs derive from ``study.uid_seed`` and ``instance_number``.
    entrance_dose_mgy: incident air kerma at the breast entrance (mGy) or None if unknown.
    mgd_mgy: mean glandular dose of this projection (mGy) or None if unknown.
    instance_number: 1-based position in the projection series (the tomosynthesis object references
        the projections by this number: use the 1-based position among the non-scout projections).
    half_value_layer_mm_al: first HVL of the beam, mm Al, or None if unknown.
    compression_force_n: force on the breast during this exposure's X-ray window (N, from telemetry);
        None: the header's force at settle.
    aec: whether the technique came from an AEC scout (Exposure Control Mode AUTOMATIC); None: only
        if the header lists a scout.
    """
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype != np.uint16:
        raise ValueError(f"projection must be a 2-D uint16 array, got shape {img.shape} dtype {img.dtype}")
    geom = header.geometry
    det = geom.detector
    if img.shape != (det.rows, det.cols):
        raise ValueError(f"image shape {img.shape} does not match the detector ({det.rows}, {det.cols})")
    if exposure.anode_filter not in ANODE_FILTER_DICOM:
        raise ValueError(f"unknown anode/filter {exposure.anode_filter!r}")

    ds = new_dataset(MG_FOR_PROCESSING_SOP_CLASS, projection_sop_uid(study, exposure, instance_number))
    t_acq = study.at(exposure.window_start_s)
    add_patient_study(ds, study)
    add_series(ds, study, study.projection_series_number, f"DBT projections {study.laterality}{study.view}",
               study.study_datetime)
    add_equipment(ds, study)
    ds.PresentationIntentType = "FOR PROCESSING"  # DX Series

    # General Image / General Acquisition
    ds.InstanceNumber = instance_number
    ds.PatientOrientation = patient_orientation(study)
    ds.ContentDate, ds.ContentTime = da(t_acq), tm(t_acq)
    ds.AcquisitionDate, ds.AcquisitionTime = da(t_acq), tm(t_acq)
    ds.AcquisitionDateTime = dt(t_acq)
    ds.AcquisitionNumber = study.acquisition_number  # one acquisition: the whole sweep
    ds.ImageType = ["ORIGINAL", "PRIMARY"]
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.LossyImageCompression = "00"
    ds.ImageComments = (
        f"exposure {exposure.index} frame {exposure.frame_id}; planned {exposure.planned_angle_deg:.3f} deg; "
        f"actual {exposure.angle_start_deg:.3f}..{exposure.angle_end_deg:.3f} deg"
        + ("; terminated early" if exposure.terminated_early else "")
        + (f"; {study.reproducibility_note}" if study.reproducibility_note else "")
    )

    # Image Pixel / DX Image
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = int(img.shape[0]), int(img.shape[1])
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LIN"
    ds.PixelIntensityRelationshipSign = 1
    ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "0", "1", "US"
    ds.PresentationLUTShape = "IDENTITY"
    ds.PixelPaddingValue = 0  # IHE Mammo: no pixel is padding unless it reads exactly 0
    ds.RelativeXRayExposure = int(round(float(img.mean())))  # mean raw detector signal, ADU
    # no VOI window: the DX IODs allow one only in For Presentation images (dciodvfy enforces it)
    ds.PixelData = np.ascontiguousarray(img, dtype="<u2").tobytes()

    # DX Anatomy Imaged / Mammography Image / Breast view
    add_breast_view(ds, study, single_frame=True)
    ds.OrganExposed = "BREAST"
    ds.PositionerType = "MAMMOGRAPHIC"
    angle = exposure.mean_angle_deg
    ds.PositionerPrimaryAngle = ds_str(study.gantry_rotation_deg + angle)
    ds.PositionerSecondaryAngle = "0"
    ds.DetectorPrimaryAngle = ds_str(study.gantry_rotation_deg)
    ds.DetectorSecondaryAngle = "0"

    # DX Detector (pitch of the delivered image; native del pitch x binning)
    ds.DetectorType = "DIRECT"
    ds.DetectorConfiguration = "AREA"
    ds.DetectorID = study.detector_id
    cal = study.detector_calibration if study.detector_calibration is not None else study.study_datetime
    ds.DateOfLastDetectorCalibration, ds.TimeOfLastDetectorCalibration = da(cal), tm(cal)
    ds.DetectorBinning = [det.binning, det.binning]
    pitch = ds_str(det.pitch_mm)
    ds.ImagerPixelSpacing = [pitch, pitch]
    ds.DetectorElementSpacing = [ds_str(det.native_pitch_mm)] * 2
    ds.DetectorElementPhysicalSize = [ds_str(det.native_pitch_mm)] * 2
    ds.DetectorActiveShape = "RECTANGLE"
    ds.DetectorActiveDimensions = [ds_str(det.height_mm), ds_str(det.width_mm)]
    ds.FieldOfViewShape = "RECTANGLE"
    ds.FieldOfViewDimensions = [int(round(det.height_mm)), int(round(det.width_mm))]
    ds.FieldOfViewOrigin = ["0", "0"]
    ds.FieldOfViewRotation = "0"
    ds.FieldOfViewHorizontalFlip = "NO"
    dist = central_ray_distances(geom, angle, header.compressed_thickness_mm)
    # Pixel Spacing calibrated to the breast-support plane along the central ray.
    ps = ds_str(det.pitch_mm / dist["magnification"])
    ds.PixelSpacing = [ps, ps]
    ds.PixelSpacingCalibrationType = "GEOMETRY"
    ds.PixelSpacingCalibrationDescription = "imager spacing / magnification at breast support"

    # DX Positioning
    ds.DistanceSourceToDetector = ds_str(dist["sid"])
    ds.DistanceSourceToPatient = ds_str(dist["sod"])
    ds.EstimatedRadiographicMagnificationFactor = ds_str(dist["magnification"])
    ds.BodyPartThickness = ds_str(header.compressed_thickness_mm)
    force = header.compression_force_n if compression_force_n is None else compression_force_n
    ds.CompressionForce = ds_str(force)

    # X-Ray Acquisition Dose / Generation / Filtration / Grid
    ev = exposure_values(exposure)
    anode, filt, filt_mm = ANODE_FILTER_DICOM[exposure.anode_filter]
    ds.KVP = ds_str(ev["kvp"])
    ds.XRayTubeCurrentInuA = ds_str(ev["ua"])
    ds.ExposureTimeInuS = ds_str(ev["us"])
    ds.ExposureInuAs = int(round(ev["uas"]))
    ds.XRayTubeCurrent = int(round(ev["ma"]))
    ds.ExposureTime = int(round(ev["ms"]))
    ds.Exposure = int(round(ev["mas"]))
    ds.ExposureControlMode, ds.ExposureControlModeDescription = exposure_control(header, aec)
    ds.ExposureStatus = "ABORTED" if exposure.terminated_early else "NORMAL"
    ds.FocalSpots = ds_str(exposure.focal_spot_mm)
    ds.AnodeTargetMaterial = anode
    ds.RectificationType = "CONST POTENTIAL"
    ds.DistanceSourceToEntrance = ds_str(dist["entrance"])
    if entrance_dose_mgy is not None:
        ds.EntranceDoseInmGy = ds_str(entrance_dose_mgy)
    if mgd_mgy is not None:
        ds.OrganDose = ds_str(mgd_mgy * 0.01)  # (0040,0316) is in dGy
        ds.CommentsOnRadiationDose = f"Organ Dose is the mean glandular dose, {mgd_mgy:.4f} mGy"
    ds.FilterMaterial = filt
    ds.FilterThicknessMinimum = ds_str(filt_mm)
    ds.FilterThicknessMaximum = ds_str(filt_mm)
    if half_value_layer_mm_al is not None:
        ds.HalfValueLayer = ds_str(half_value_layer_mm_al)
    ds.Grid = "NONE"

    ds.AcquisitionContextSequence = Sequence()
    ds.InstanceCreationDate, ds.InstanceCreationTime = da(t_acq), tm(t_acq)
    return save(ds, path)
