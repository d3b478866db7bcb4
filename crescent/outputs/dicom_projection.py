"""DICOM Breast Projection X-Ray Image (enhanced multi-frame): the DBT projections of one sweep in one object.

Two SOP Classes, same layout (PS3.3 A.90, Breast Projection X-Ray Image IOD):

- For Processing, 1.2.840.10008.5.1.4.1.1.13.1.5: the raw detector signal of every
  projection (LIN, larger value = more X-rays), one frame per exposure in acquisition order;
- For Presentation, 1.2.840.10008.5.1.4.1.1.13.1.4: the same projections after the
  processing of :func:`presentation_frames` (log, flat/normalise, window; see there).

Per frame: Frame Content (acquisition date-time and duration of that exposure's X-ray
window), Pixel Measures (spacing at the breast support), Frame Anatomy, Frame VOI LUT
(1st..99th percentile of the breast in that frame), Pixel Value Transformation, and the
Per Projection Acquisition data of the X-Ray 3D Acquisition Sequence (actual arc angle,
kVp, mA, ms, mAs) plus compression force, entrance dose and MGD per exposure in
Frame Comments. Units as in :mod:`crescent.outputs.dicom`.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from crescent.outputs.dicom_common import (
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
    patient_orientation,
    projection_breast_mask,
    save,
    tm,
    voi_window,
)
from crescent.outputs.dicom_tomo import _acquisition_item, contributing_source
from crescent.outputs.study import StudyInfo
from protocols.records import AcquisitionHeader, ExposureRecord

#: Breast Projection X-Ray Image Storage - For Processing.
BREAST_PROJECTION_PROCESSING_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.13.1.5"
#: Breast Projection X-Ray Image Storage - For Presentation.
BREAST_PROJECTION_PRESENTATION_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.13.1.4"
#: Bits of the For Presentation frames (0..4095).
PRESENTATION_BITS = 12


def presentation_frames(line_integrals: np.ndarray) -> np.ndarray:
    """For Presentation pixel values from the projections' line integrals (documented processing).

    1. log: the caller gives ``p = ln(I0 / (I - dark))`` per pixel (unitless attenuation line
       integral), with ``I0`` the flat field of the detector (simulated gantry) or the open-field
       signal of each projection (rig), see :func:`reconstruction.preprocess.line_integrals`;
    2. normalise: one linear map for the whole sweep, the 0.5th percentile of ``p`` -> 0 and the
       99.9th -> 4095, clipped (so frames stay comparable; denser tissue is brighter, MONOCHROME2);
    3. window: each frame's VOI window is set by the writer to the breast's 1st..99th percentile.

    No unsharp masking, thickness equalisation or other non-linear processing.
    """
    p = np.asarray(line_integrals, dtype=np.float32)
    lo, hi = (float(v) for v in np.percentile(p[:, ::4, ::4], (0.5, 99.9)))
    scale = ((1 << PRESENTATION_BITS) - 1) / max(hi - lo, 1e-6)
    out = np.clip((p - lo) * scale, 0, (1 << PRESENTATION_BITS) - 1)
    return np.rint(out).astype(np.uint16)


def write_breast_projection_dicom(
    path: str | Path,
    images: np.ndarray,
    exposures: Seq[ExposureRecord],
    header: AcquisitionHeader,
    study: StudyInfo,
    *,
    presentation: bool = False,
    entrance_dose_mgy: Seq[float] | None = None,
    mgd_mgy: Seq[float] | None = None,
    half_value_layer_mm_al: float,
    forces_n: Seq[float] | None = None,
    aec: bool | None = None,
    series_number: int | None = None,
) -> Path:
    """Write the projections of one sweep as one Breast Projection X-Ray Image (one frame per exposure).

    Parameters
    ----------
    images: ``(n, rows, cols)`` uint16, row 0 at the chest wall: the raw signal (For Processing) or
        :func:`presentation_frames` output (``presentation=True``).
    exposures: the ``n`` exposures as performed (no scout), in acquisition order.
    header: geometry, thickness (mm) and force at settle (N).
    study: identification; the SOP Instance UID is ``study.uid("sop", "breast-projection", intent)``.
    entrance_dose_mgy, mgd_mgy: per exposure, incident air kerma and MGD (mGy), or None.
    half_value_layer_mm_al: first HVL of the beam (mm Al).
    forces_n: compression force during each exposure's X-ray window (N); None: the header's.
    aec: technique from an AEC scout (Exposure Control Mode AUTOMATIC).
    series_number: default ``study.projection_series_number`` (+10 for the For Presentation set).
    """
    img = np.asarray(images)
    n = len(exposures)
    if img.ndim != 3 or img.dtype != np.uint16 or img.shape[0] != n:
        raise ValueError(f"images must be (n={n}, rows, cols) uint16, got shape {img.shape} dtype {img.dtype}")
    if n == 0:
        raise ValueError("no projections to write")
    geom, det = header.geometry, header.geometry.detector
    if img.shape[1:] != (det.rows, det.cols):
        raise ValueError(f"image shape {img.shape[1:]} does not match the detector ({det.rows}, {det.cols})")
    for name, seq in (("entrance_dose_mgy", entrance_dose_mgy), ("mgd_mgy", mgd_mgy), ("forces_n", forces_n)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"{name} has {len(seq)} values for {n} projections")
    intent = "FOR PRESENTATION" if presentation else "FOR PROCESSING"
    sop_class = BREAST_PROJECTION_PRESENTATION_SOP_CLASS if presentation else BREAST_PROJECTION_PROCESSING_SOP_CLASS
    series = series_number or (study.projection_series_number + (10 if presentation else 0))
    ds = new_dataset(sop_class, breast_projection_uid(study, presentation))
    t0 = study.at(exposures[0].window_start_s)
    t1 = study.at(exposures[-1].window_end_s)
    add_patient_study(ds, study)
    add_series(ds, study, series, f"DBT projections {study.laterality}{study.view} "
               f"{'for presentation' if presentation else 'for processing'}", t0)
    add_equipment(ds, study)
    ds.PresentationIntentType = intent

    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = da(t1), tm(t1)
    ds.AcquisitionDateTime = dt(t0)
    ds.AcquisitionNumber = study.acquisition_number
    ds.AcquisitionDuration = (t1 - t0).total_seconds()
    kind = "DERIVED" if presentation else "ORIGINAL"
    ds.ImageType = [kind, "PRIMARY", "TOMOSYNTHESIS", "NONE"]
    ds.ContentQualification = study.content_qualification
    ds.BurnedInAnnotation = "NO"
    ds.RecognizableVisualFeatures = "NO"
    ds.LossyImageCompression = "00"
    ds.PresentationLUTShape = "IDENTITY"
    ds.PixelPresentation = "MONOCHROME"
    ds.VolumetricProperties = "VOLUME"
    ds.VolumeBasedCalculationTechnique = "NONE"
    ds.PatientOrientation = patient_orientation(study)
    ds.ImageComments = ("processing: log, flat/normalise, window (crescent.outputs.dicom_projection."
                        "presentation_frames)" if presentation else "raw detector signal")
    if study.reproducibility_note:
        ds.ImageComments += f"; {study.reproducibility_note}"

    bits = PRESENTATION_BITS if presentation else 16
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = det.rows, det.cols
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits, bits - 1
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = n
    ds.PixelData = np.ascontiguousarray(img, dtype="<u2").tobytes()
    add_breast_view(ds, study, single_frame=False)

    dim_uid = study.uid("dimension-organization", "breast-projection", intent)
    org = Dataset()
    org.DimensionOrganizationUID = dim_uid
    ds.DimensionOrganizationSequence = Sequence([org])
    idx = Dataset()
    idx.DimensionOrganizationUID = dim_uid
    idx.DimensionIndexPointer = 0x00209128  # Temporal Position Index
    idx.FunctionalGroupPointer = 0x00209111  # Frame Content Sequence
    idx.DimensionDescriptionLabel = "Projection (acquisition order)"
    ds.DimensionIndexSequence = Sequence([idx])

    shared = Dataset()
    anat = Dataset()
    anat.FrameLaterality = study.laterality
    anat.AnatomicRegionSequence = Sequence([code_item(*BREAST_CODE)])
    shared.FrameAnatomySequence = Sequence([anat])
    pvt = Dataset()
    pvt.RescaleIntercept, pvt.RescaleSlope, pvt.RescaleType = "0", "1", "US"
    shared.PixelValueTransformationSequence = Sequence([pvt])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])

    frames = []
    for k, e in enumerate(exposures):
        f = Dataset()
        dist = central_ray_distances(geom, e.mean_angle_deg, header.compressed_thickness_mm)
        pm = Dataset()
        ps = ds_str(det.pitch_mm / dist["magnification"])
        pm.PixelSpacing = [ps, ps]
        f.PixelMeasuresSequence = Sequence([pm])
        fc = Dataset()
        ta = study.at(e.window_start_s)
        fc.FrameAcquisitionDateTime = dt(ta)
        fc.FrameReferenceDateTime = dt(ta)
        fc.FrameAcquisitionDuration = max(e.window_s, 0.0) * 1000.0  # ms
        fc.FrameAcquisitionNumber = k + 1
        fc.TemporalPositionIndex = k + 1
        fc.DimensionIndexValues = [k + 1]
        note = [f"exposure {e.index}, actual arc {e.angle_start_deg:.3f}..{e.angle_end_deg:.3f} deg"]
        if forces_n is not None:
            note.append(f"force {forces_n[k]:.1f} N")
        if entrance_dose_mgy is not None:
            note.append(f"entrance air kerma {entrance_dose_mgy[k]:.4f} mGy")
        if mgd_mgy is not None:
            note.append(f"MGD {mgd_mgy[k]:.4f} mGy")
        fc.FrameComments = "; ".join(note)
        f.FrameContentSequence = Sequence([fc])
        voi = Dataset()
        frame = img[k]
        mask = projection_breast_mask(frame) if not presentation else frame > np.percentile(frame, 5.0)
        centre, width = voi_window(frame, mask)
        voi.WindowCenter, voi.WindowWidth = ds_str(centre), ds_str(width)
        voi.WindowCenterWidthExplanation = "breast 1st-99th percentile"
        voi.VOILUTFunction = "LINEAR"
        f.FrameVOILUTSequence = Sequence([voi])
        frames.append(f)
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)

    mgd_total = None if mgd_mgy is None else float(sum(mgd_mgy))
    kerma_total = None if entrance_dose_mgy is None else float(sum(entrance_dose_mgy))
    item = _acquisition_item(header, list(exposures), study, mgd_total, half_value_layer_mm_al, None,
                             forces_n=forces_n, entrance_dose_mgy=kerma_total, aec=aec, source_uids=[])
    del item.SourceImageSequence
    ds.XRay3DAcquisitionSequence = Sequence([item])
    ds.ContributingSourcesSequence = Sequence([contributing_source(study, t0, header)])
    ds.AcquisitionContextSequence = Sequence()
    ds.InstanceCreationDate, ds.InstanceCreationTime = da(t1), tm(t1)
    return save(ds, path)


def breast_projection_uid(study: StudyInfo, presentation: bool) -> str:
    """SOP Instance UID of the For Processing / For Presentation projection object of ``study``."""
    return study.uid("sop", "breast-projection", "presentation" if presentation else "processing")
