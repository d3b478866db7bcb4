"""DICOM Breast Projection X-Ray Image (enhanced multi-frame): the DBT projections of one sweep in one object.

Two SOP Classes, same layout (PS3.3 A.90, Breast Projection X-Ray Image IOD), written by
:func:`write_breast_projection_dicom`:

- For Processing, 1.2.840.10008.5.1.4.1.1.13.1.5: the raw detector signal of every projection as
  read out (LIN, larger value = more X-rays, 16 bits), one frame per exposure in acquisition order.
  Frame ``k`` is byte for byte the stored projection ``k`` (``exam/projections/proj_k.npy``).
- For Presentation, 1.2.840.10008.5.1.4.1.1.13.1.4: the same projections after the processing of
  :func:`presentation_frames` (12 bits, MONOCHROME2, higher attenuation = brighter):

  1. dark/flat correction and log: ``p = ln(I0 / (I - dark))`` per pixel (unitless line integral),
     ``I0`` the dark-corrected flat field of the simulated detector or, without one (a rig), each
     projection's open-field signal (:func:`crescent.acquire.analysis.open_field_signal`);
  2. one linear map for the whole sweep, the 0.5th percentile of ``p`` -> 0 and the 99.9th -> 4095,
     clipped (frames stay comparable);
  3. a VOI window per frame over the breast's 1st..99th percentile (Frame VOI LUT).

  No unsharp masking, thickness equalisation or other non-linear step. The Pixel Intensity
  Relationship is LOG with sign -1 (a larger stored value means fewer X-rays).

Modules (as dciodvfy's definition of the IOD has them): Patient, General Study, Patient Study,
General Series, Enhanced Mammography Series, Frame of Reference, General and Enhanced General
Equipment, Image Pixel, Enhanced Mammography Image (technique of the sweep: mean kVp, total mAs and
exposure time, compression force during exposure, AEC mode, total MGD as Organ Dose in dGy and
entrance dose in mGy), Multi-frame Functional Groups, Multi-frame Dimension, Acquisition Context,
Breast View, Patient Orientation, SOP Common. Functional groups:

- shared: Frame Anatomy, Pixel Value Transformation (identity), X-Ray Field of View, Frame Pixel
  Data Properties (imager pixel spacing, intensity relationship), X-Ray Collimator (the whole
  active area), Breast X-Ray Detector (stationary detector at the view's C-arm rotation), X-Ray Grid
  (none), X-Ray Filter;
- per frame: Frame Content (acquisition date-time and duration of that exposure's X-ray window),
  Frame VOI LUT, Irradiation Event Identification (the same UID as the exposure's event in the dose
  SR), X-Ray Frame Acquisition (kVp, mA), Breast X-Ray Positioner (Positioner Primary Angle =
  C-arm rotation + the exposure's window-mean actual arc angle, degrees), Breast X-Ray Geometry
  (central-ray distances at that angle, mm), Breast X-Ray Acquisition Dose (ms, mAs, MGD in dGy,
  entrance air kerma in mGy), Breast X-Ray Isocenter Reference System.

The Breast Projection IOD has no Pixel Measures or Plane Position/Orientation functional groups
(a projection is not a plane in the patient); the geometry is in the groups above. Isocenter
positions are given in a frame with origin on the tube's rotation axis (gantry ``(0, 0,
pivot_height_mm)``) and the gantry frame's axes (``x`` along the arc, ``y`` into the breast,
``z`` up), mm. Units as in :mod:`crescent.outputs.dicom`.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from crescent.outputs.dicom import exposure_values
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
    exposure_control,
    new_dataset,
    patient_orientation,
    projection_breast_mask,
    save,
    tm,
    voi_window,
)
from crescent.outputs.study import StudyInfo
from protocols.records import AcquisitionHeader, ExposureRecord

#: Breast Projection X-Ray Image Storage - For Processing.
BREAST_PROJECTION_PROCESSING_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.13.1.5"
#: Breast Projection X-Ray Image Storage - For Presentation.
BREAST_PROJECTION_PRESENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.13.1.4"
#: Bits of the For Presentation frames (0..4095).
PRESENTATION_BITS = 12
#: Percentiles of the sweep's line integrals mapped to 0 and to the top of the For Presentation range.
PRESENTATION_PERCENTILES = (0.5, 99.9)
#: Patient Orientation Code Sequence of a mammogram (CID 19): the patient stands.
ERECT_CODE = ("10904000", "erect")
#: Purpose of reference of the For Processing frame a For Presentation frame derives from (CID 7202).
SOURCE_FOR_PROCESSING_CODE = ("121322", "Source image for image processing operation")
#: Derivation of a For Presentation frame, standard codes of CID 7203 "Image Derivation" (DICOM PS3.16, DCM
#: scheme; checked against pydicom's PS3.16 tables, ``pydicom.sr._cid_dict.cid_concepts[7203]``, and accepted
#: without warning by dciodvfy): the dark subtraction and the flat-field division of step 1. The log and the
#: linear map of steps 1-2 have no code in CID 7203; Derivation Description states them.
DERIVATION_CODES = (("113062", "Pixel by pixel subtraction", "DCM"), ("113046", "Pixel by pixel division", "DCM"))
#: Image Processing Applied (0028,9446) of the For Presentation frames. Type 1 in the X-Ray Frame Pixel Data
#: Properties macro; its Defined Terms (DIGITAL_SUBTR, HIGH_PASS_FILTER, LOW_PASS_FILTER, MULTI_BAND_FLTR,
#: FRAME_AVERAGING, NONE) have none for a log and linear map, and NONE would misstate the pixels. Defined
#: Terms may be extended, so this term is kept (dciodvfy warns "Unrecognized defined term"; the one
#: accepted warning of the For Presentation object besides Frame Type's TOMOSYNTHESIS).
PRESENTATION_PROCESSING_TERM = "LOG_LINEAR_MAP"


def presentation_frames(line_integrals: np.ndarray) -> np.ndarray:
    """For Presentation pixel values (uint16, 0..4095) from the sweep's line integrals (see the module doc).

    ``line_integrals``: ``(n, rows, cols)`` ``ln(I0 / (I - dark))``, unitless, from
    :func:`reconstruction.preprocess.line_integrals`. The map is linear and increasing, the same for
    every frame: more attenuation -> larger (brighter, MONOCHROME2) value.
    """
    p = np.asarray(line_integrals, dtype=np.float32)
    if p.ndim != 3 or not np.all(np.isfinite(p[:, ::4, ::4])):
        raise ValueError(f"line integrals must be a finite (n, rows, cols) array, got shape {p.shape}")
    lo, hi = (float(v) for v in np.percentile(p[:, ::4, ::4], PRESENTATION_PERCENTILES))
    top = (1 << PRESENTATION_BITS) - 1
    scale = top / max(hi - lo, 1e-6)
    out = np.clip((p - lo) * scale, 0, top)
    return np.rint(out).astype(np.uint16)


def breast_projection_uid(study: StudyInfo, presentation: bool) -> str:
    """SOP Instance UID of the For Processing / For Presentation projection object of ``study``."""
    return study.uid("sop", "breast-projection", "presentation" if presentation else "processing")


def breast_projection_series_number(study: StudyInfo, presentation: bool) -> int:
    """Series of the For Processing object (the projection series) and the For Presentation one (+10)."""
    return study.projection_series_number + (10 if presentation else 0)


def _seq(**attrs: object) -> Sequence:
    item = Dataset()
    for k, v in attrs.items():
        setattr(item, k, v)
    return Sequence([item])


def write_breast_projection_dicom(
    path: str | Path,
    images: np.ndarray,
    exposures: Seq[ExposureRecord],
    header: AcquisitionHeader,
    study: StudyInfo,
    *,
    entrance_dose_mgy: Seq[float],
    mgd_mgy: Seq[float],
    half_value_layer_mm_al: float,
    presentation: bool = False,
    forces_n: Seq[float] | None = None,
    aec: bool | None = None,
    irradiation_event_uids: Seq[str] | None = None,
    processing_note: str = "",
) -> Path:
    """Write the projections of one sweep as one Breast Projection X-Ray Image (one frame per exposure).

    Parameters
    ----------
    path: output file.
    images: ``(n, rows, cols)`` uint16, row 0 at the chest wall: the raw signal (For Processing) or
        :func:`presentation_frames` output (``presentation=True``).
    exposures: the ``n`` exposures as performed (no scout), in acquisition order.
    header: geometry, compressed thickness (mm) and force at settle (N).
    study: identification; the SOP Instance UID is :func:`breast_projection_uid`.
    entrance_dose_mgy, mgd_mgy: per exposure, incident air kerma at the breast entrance and mean
        glandular dose (mGy); both Type 1 in this IOD.
    half_value_layer_mm_al: first HVL of the beam (mm Al).
    presentation: write the For Presentation SOP Class (pixels already processed).
    forces_n: compression force during each exposure's X-ray window (N); None: the header's.
    aec: technique from an AEC scout (Exposure Control Mode AUTOMATIC); None: only if the header lists one.
    irradiation_event_uids: per exposure, the Irradiation Event UID (use the dose SR's); None: derived
        from the study and the exposure.
    processing_note: what the For Presentation processing used (e.g. the flat-field source), appended
        to Derivation Description.
    """
    img = np.asarray(images)
    n = len(exposures)
    if n == 0:
        raise ValueError("no projections to write")
    if img.ndim != 3 or img.dtype != np.uint16 or img.shape[0] != n:
        raise ValueError(f"images must be (n={n}, rows, cols) uint16, got shape {img.shape} dtype {img.dtype}")
    geom, det = header.geometry, header.geometry.detector
    if img.shape[1:] != (det.rows, det.cols):
        raise ValueError(f"image shape {img.shape[1:]} does not match the detector ({det.rows}, {det.cols})")
    for name, seq in (("entrance_dose_mgy", entrance_dose_mgy), ("mgd_mgy", mgd_mgy), ("forces_n", forces_n),
                      ("irradiation_event_uids", irradiation_event_uids)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} values for {n} projections")
    if any(e.is_scout for e in exposures):
        raise ValueError("the AEC scout is not a projection of the sweep: leave it out (the dose SR lists it)")
    if presentation and int(img.max()) >= (1 << PRESENTATION_BITS):
        raise ValueError(f"For Presentation values must be below {1 << PRESENTATION_BITS}, got {int(img.max())}")
    anode_filters = {e.anode_filter for e in exposures}
    if len(anode_filters) != 1 or next(iter(anode_filters)) not in ANODE_FILTER_DICOM:
        raise ValueError(f"one known anode/filter per sweep expected, got {sorted(anode_filters)}")
    forces = list(forces_n) if forces_n is not None else [header.compression_force_n] * n
    event_uids = (list(irradiation_event_uids) if irradiation_event_uids is not None
                  else [study.uid("irradiation-event", "projection", k, e.index) for k, e in enumerate(exposures)])

    intent = "FOR PRESENTATION" if presentation else "FOR PROCESSING"
    sop_class = BREAST_PROJECTION_PRESENTATION_SOP_CLASS if presentation else BREAST_PROJECTION_PROCESSING_SOP_CLASS
    series = breast_projection_series_number(study, presentation)
    ds = new_dataset(sop_class, breast_projection_uid(study, presentation))
    t0 = study.at(exposures[0].window_start_s)
    t1 = study.at(exposures[-1].window_end_s)
    add_patient_study(ds, study)
    add_series(ds, study, series, f"DBT projections {study.laterality}{study.view} "
               f"{'for presentation' if presentation else 'for processing'}", t0)
    add_equipment(ds, study)
    ds.PresentationIntentType = intent

    # General Image / Enhanced Mammography Image: the sweep as a whole
    values = [exposure_values(e) for e in exposures]
    anode, filt, filt_mm = ANODE_FILTER_DICOM[exposures[0].anode_filter]
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = da(t1), tm(t1)
    ds.AcquisitionDateTime = dt(t0)
    ds.AcquisitionDuration = (t1 - t0).total_seconds()
    kind = "DERIVED" if presentation else "ORIGINAL"
    ds.ImageType = [kind, "PRIMARY", "TOMOSYNTHESIS", "NONE"]
    ds.ContentQualification = study.content_qualification
    ds.PositionerMotion = "ROTATION_CONT"  # the tube moves during each exposure (actual arc start..end)
    ds.TypeOfDetectorMotion = "STATIONARY"
    ds.PositionerType = "MAMMOGRAPHIC"
    ds.DetectorType = "DIRECT"
    ds.DetectorConfiguration = "AREA"
    ds.DetectorID = study.detector_id
    cal = study.detector_calibration if study.detector_calibration is not None else study.study_datetime
    ds.DateOfLastDetectorCalibration, ds.TimeOfLastDetectorCalibration = da(cal), tm(cal)
    ds.DetectorBinning = [det.binning, det.binning]
    ds.DetectorTemperature = ds_str(study.detector_temperature_c)
    ds.DetectorElementPhysicalSize = [ds_str(det.native_pitch_mm)] * 2
    ds.DetectorElementSpacing = [ds_str(det.native_pitch_mm)] * 2
    ds.DetectorActiveShape = "RECTANGLE"
    ds.DetectorActiveDimensions = [ds_str(det.height_mm), ds_str(det.width_mm)]
    ds.KVP = ds_str(float(np.mean([v["kvp"] for v in values])))
    ds.ExposureTimeInms = float(sum(v["ms"] for v in values))
    ds.ExposureInmAs = float(sum(v["mas"] for v in values))
    ds.FocalSpots = ds_str(exposures[0].focal_spot_mm)
    ds.AnodeTargetMaterial = anode
    ds.BodyPartThickness = ds_str(header.compressed_thickness_mm)
    ds.CompressionForce = ds_str(float(np.mean(forces)))  # during the X-ray windows, not at settle
    ds.PaddleDescription = study.paddle_description
    ds.ExposureControlMode, ds.ExposureControlModeDescription = exposure_control(header, aec)
    ds.OrganDose = ds_str(float(sum(mgd_mgy)) * 0.01)  # dGy: MGD of the sweep (the scout is in the dose SR)
    ds.EntranceDoseInmGy = ds_str(float(sum(entrance_dose_mgy)))
    ds.PatientOrientation = patient_orientation(study)
    ds.PatientOrientationCodeSequence = Sequence([code_item(*ERECT_CODE)])
    comments = ("processing: dark/flat correction, log, linear map of the sweep's 0.5..99.9th percentile "
                "to 0..4095 (crescent.outputs.dicom_projection.presentation_frames)" if presentation
                else "raw detector signal as read out")
    ds.ImageComments = comments + (f"; {study.reproducibility_note}" if study.reproducibility_note else "")
    derivation = comments + (f"; {processing_note}" if processing_note else "")
    ds.QualityControlImage = "NO"
    ds.BurnedInAnnotation = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"

    bits = PRESENTATION_BITS if presentation else 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = det.rows, det.cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = n
    ds.PixelData = np.ascontiguousarray(img, dtype="<u2").tobytes()
    add_breast_view(ds, study, single_frame=False)

    # Multi-frame Dimension: one dimension, the projection's place in the sweep
    dim_uid = study.uid("dimension-organization", "breast-projection", intent)
    ds.DimensionOrganizationSequence = _seq(DimensionOrganizationUID=dim_uid)
    ds.DimensionIndexSequence = _seq(DimensionOrganizationUID=dim_uid, DimensionIndexPointer=0x00209128,
                                     FunctionalGroupPointer=0x00209111,  # Temporal Position Index in Frame Content
                                     DimensionDescriptionLabel="Projection (acquisition order)")

    # Shared functional groups
    shared = Dataset()
    shared.FrameAnatomySequence = _seq(FrameLaterality=study.laterality,
                                       AnatomicRegionSequence=Sequence([code_item(*BREAST_CODE)]))
    shared.PixelValueTransformationSequence = _seq(RescaleIntercept="0", RescaleSlope="1", RescaleType="US")
    shared.FieldOfViewSequence = _seq(FieldOfViewShape="RECTANGLE",
                                      FieldOfViewDimensionsInFloat=[float(det.height_mm), float(det.width_mm)],
                                      FieldOfViewOrigin=["0", "0"], FieldOfViewRotation="0",
                                      FieldOfViewHorizontalFlip="NO")
    pitch = ds_str(det.pitch_mm)
    shared.FramePixelDataPropertiesSequence = _seq(
        FrameType=[kind, "PRIMARY", "TOMOSYNTHESIS", "NONE"],  # = Image Type (all frames alike)
        PixelIntensityRelationship="LOG" if presentation else "LIN",
        PixelIntensityRelationshipSign=-1 if presentation else 1,
        ImagerPixelSpacing=[pitch, pitch], GeometricalProperties="UNIFORM",
        ImageProcessingApplied=PRESENTATION_PROCESSING_TERM if presentation else "NONE")
    shared.CollimatorShapeSequence = _seq(  # the whole active area, pixel rows/cols (1-based edges)
        CollimatorShape="RECTANGULAR", CollimatorLeftVerticalEdge=0, CollimatorRightVerticalEdge=det.cols,
        CollimatorUpperHorizontalEdge=0, CollimatorLowerHorizontalEdge=det.rows)
    shared.DetectorPositionSequence = _seq(DetectorPrimaryAngle=ds_str(study.gantry_rotation_deg),
                                           DetectorSecondaryAngle="0")
    shared.XRayGridSequence = _seq(Grid="NONE")
    shared.XRayFilterSequence = _seq(FilterMaterial=filt, FilterThicknessMinimum=ds_str(filt_mm),
                                     FilterThicknessMaximum=ds_str(filt_mm))
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    # Per-frame functional groups: one per exposure
    pivot = geom.pivot_height_mm
    x_first, y_first = float(det.col_centres_mm()[0]), float(det.row_centres_mm()[0])
    frames = []
    for k, (e, v) in enumerate(zip(exposures, values)):
        f = Dataset()
        ta = study.at(e.window_start_s)
        f.FrameContentSequence = _seq(
            FrameAcquisitionDateTime=dt(ta), FrameReferenceDateTime=dt(ta),
            FrameAcquisitionDuration=max(e.window_s, 0.0) * 1000.0,  # ms
            FrameAcquisitionNumber=k + 1, TemporalPositionIndex=k + 1, DimensionIndexValues=[k + 1],
            FrameComments=(f"exposure {e.index} frame {e.frame_id}; planned {e.planned_angle_deg:.3f} deg, actual arc "
                           f"{e.angle_start_deg:.3f}..{e.angle_end_deg:.3f} deg; force {forces[k]:.1f} N"
                           + ("; terminated early" if e.terminated_early else "")))
        frame = img[k]
        mask = frame > np.percentile(frame, 5.0) if presentation else projection_breast_mask(frame)
        centre, width = voi_window(frame, mask)
        f.FrameVOILUTSequence = _seq(WindowCenter=ds_str(centre), WindowWidth=ds_str(width),
                                     WindowCenterWidthExplanation="breast 1st-99th percentile", VOILUTFunction="LINEAR")
        if presentation:  # frame k is derived from frame k of the For Processing object
            src = Dataset()
            src.ReferencedSOPClassUID = BREAST_PROJECTION_PROCESSING_SOP_CLASS
            src.ReferencedSOPInstanceUID = breast_projection_uid(study, False)
            src.ReferencedFrameNumber = k + 1
            src.PurposeOfReferenceCodeSequence = Sequence([code_item(*SOURCE_FOR_PROCESSING_CODE, "DCM")])
            f.DerivationImageSequence = _seq(DerivationDescription=derivation[:1024],
                                             DerivationCodeSequence=Sequence([code_item(*c) for c in DERIVATION_CODES]),
                                             SourceImageSequence=Sequence([src]))
        f.IrradiationEventIdentificationSequence = _seq(IrradiationEventUID=event_uids[k])
        f.FrameAcquisitionSequence = _seq(KVP=ds_str(v["kvp"]), XRayTubeCurrentInmA=v["ma"])
        angle = e.mean_angle_deg
        f.PositionerPositionSequence = _seq(PositionerPrimaryAngle=ds_str(study.gantry_rotation_deg + angle),
                                            PositionerSecondaryAngle="0")
        dist = central_ray_distances(geom, angle, header.compressed_thickness_mm)
        f.XRayGeometrySequence = _seq(
            DistanceSourceToDetector=ds_str(dist["sid"]), DistanceSourceToPatient=ds_str(dist["sod"]),
            DistanceSourceToIsocenter=float(geom.arm_radius_mm), DistanceSourceToEntrance=ds_str(dist["entrance"]),
            EstimatedRadiographicMagnificationFactor=ds_str(dist["magnification"]))
        f.XRayAcquisitionDoseSequence = _seq(
            ExposureTimeInms=v["ms"], ExposureInmAs=v["mas"], RelativeXRayExposure=int(round(v["uas"])),
            HalfValueLayer=ds_str(half_value_layer_mm_al), OrganDose=ds_str(float(mgd_mgy[k]) * 0.01),
            EntranceDoseInmGy=ds_str(float(entrance_dose_mgy[k])))
        iso = Dataset()
        iso.XRaySourceIsocenterPrimaryAngle = float(angle)
        iso.XRaySourceIsocenterSecondaryAngle = 0.0
        iso.BreastSupportIsocenterPrimaryAngle = 0.0
        iso.BreastSupportIsocenterSecondaryAngle = 0.0
        iso.BreastSupportXPositionToIsocenter = 0.0
        iso.BreastSupportYPositionToIsocenter = 0.0
        iso.BreastSupportZPositionToIsocenter = float(geom.support_height_mm - pivot)
        iso.DetectorIsocenterPrimaryAngle = 0.0
        iso.DetectorIsocenterSecondaryAngle = 0.0
        iso.DetectorXPositionToIsocenter = float(det.offset_x_mm)
        iso.DetectorYPositionToIsocenter = float(det.offset_y_mm + 0.5 * det.height_mm)
        iso.DetectorZPositionToIsocenter = float(-pivot)
        iso.DetectorActiveAreaTLHCPosition = [x_first, y_first, float(-pivot)]
        iso.DetectorActiveAreaOrientation = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0]
        f.IsocenterReferenceSystemSequence = Sequence([iso])
        frames.append(f)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)

    ds.AcquisitionContextSequence = Sequence()
    ds.InstanceCreationDate, ds.InstanceCreationTime = da(t1), tm(t1)
    return save(ds, path)
