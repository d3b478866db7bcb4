"""DICOM building blocks shared by the projection and the tomosynthesis writers.

Each function fills one DICOM module (or a piece of one) on a
:class:`pydicom.dataset.Dataset`. Geometry follows the gantry frame of
:mod:`protocols.geometry` (mm; detector ``z = 0``, ``x`` along the chest wall
/ arc, ``y`` into the breast, ``z`` up); the DICOM patient frame (LPS) used
for the Frame of Reference is the gantry frame rotated by the C-arm rotation
``a`` of the view about the antero-posterior axis, with the breast pointing
anterior::

    patient = (x cos a, -y, x sin a + z)     (a = 0 for CC: x -> patient left)

so ``y`` (chest wall -> nipple) is anterior, which is how the DICOM
Patient Orientation of the images is derived.

Codes are SNOMED CT (scheme ``SCT``), as the DICOM standard has used since
2019 instead of the retired SNOMED-RT ``SRT`` codes (CID 4014 views, CID 4031
breast).
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import ExplicitVRLittleEndian, PYDICOM_IMPLEMENTATION_UID

from crescent.outputs.study import StudyInfo
from protocols.geometry import AcquisitionGeometry
from protocols.records import AcquisitionHeader

#: View codes, CID 4014 (SCT code value, code meaning) with the retired SRT equivalents in comments.
VIEW_CODES: dict[str, tuple[str, str]] = {
    "CC": ("399162004", "cranio-caudal"),  # SRT R-10242
    "MLO": ("399368009", "medio-lateral oblique"),  # SRT R-10226
}
#: Anatomic region "Breast", CID 4031 (SRT T-04000).
BREAST_CODE: tuple[str, str] = ("76752008", "Breast")

#: Anode/filter pair -> (DICOM anode target material, DICOM filter material, nominal filter thickness mm).
#: Thicknesses are the commercial values of Dance et al. 2000 (Phys. Med. Biol. 45:3225) and
#: Dance, Young & van Engen 2009 (Phys. Med. Biol. 54:4361), the same the simulator uses.
ANODE_FILTER_DICOM: dict[str, tuple[str, str, float]] = {
    "W/Rh": ("TUNGSTEN", "RHODIUM", 0.050),
    "W/Ag": ("TUNGSTEN", "SILVER", 0.050),
    "W/Al": ("TUNGSTEN", "ALUMINUM", 0.700),
    "Mo/Mo": ("MOLYBDENUM", "MOLYBDENUM", 0.030),
    "Mo/Rh": ("MOLYBDENUM", "RHODIUM", 0.025),
    "Rh/Rh": ("RHODIUM", "RHODIUM", 0.025),
}


def code_item(value: str, meaning: str, scheme: str = "SCT") -> Dataset:
    """One Code Sequence item (Basic Code Sequence macro)."""
    item = Dataset()
    item.CodeValue = value
    item.CodingSchemeDesignator = scheme
    item.CodeMeaning = meaning
    return item


def da(t: datetime) -> str:
    """DICOM DA (YYYYMMDD)."""
    return t.strftime("%Y%m%d")


def tm(t: datetime) -> str:
    """DICOM TM with microseconds (HHMMSS.FFFFFF)."""
    return t.strftime("%H%M%S.%f")


def dt(t: datetime) -> str:
    """DICOM DT (YYYYMMDDHHMMSS.FFFFFF)."""
    return t.strftime("%Y%m%d%H%M%S.%f")


def ds_str(value: float, digits: int = 6) -> str:
    """A DS string of at most 16 characters for ``value``."""
    for d in range(digits, -1, -1):
        s = f"{value:.{d}f}".rstrip("0").rstrip(".") if d else f"{value:.0f}"
        if s == "-0":
            s = "0"
        if len(s) <= 16:
            return s
    return f"{value:.6g}"


def new_dataset(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    """Dataset with file meta information and the SOP Common module (explicit VR little endian)."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class_uid
    meta.MediaStorageSOPInstanceUID = sop_instance_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    meta.ImplementationVersionName = "CRESCENT_010"
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID = sop_class_uid
    ds.SOPInstanceUID = sop_instance_uid
    return ds


def add_patient_study(ds: Dataset, study: StudyInfo) -> None:
    """Patient and General Study modules."""
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    # Patient Study module, the same in every object of the study (dcentvfy): IHE DBT and REM want these
    ds.PatientAge = study.patient_age
    ds.PatientSize = f"{study.patient_size_m:.2f}"
    ds.PatientWeight = f"{study.patient_weight_kg:.1f}"
    ds.AdmittingDiagnosesDescription = study.admitting_diagnosis
    diag = Dataset()  # SNOMED CT "Screening for malignant neoplasm of breast"
    diag.CodeValue, diag.CodingSchemeDesignator = "268547008", "SCT"
    diag.CodeMeaning = "Screening for malignant neoplasm of breast"
    ds.AdmittingDiagnosesCodeSequence = Sequence([diag])
    ds.StudyInstanceUID = study.uid("study")
    ds.StudyDate = da(study.study_datetime)
    ds.StudyTime = tm(study.study_datetime)
    ds.ReferringPhysicianName = study.referring_physician_name
    ds.StudyID = study.study_id
    ds.AccessionNumber = study.accession_number
    ds.StudyDescription = study.study_description


def add_series(ds: Dataset, study: StudyInfo, series_number: int, description: str, series_time: datetime) -> None:
    """General Series (Modality MG) and Frame of Reference modules."""
    ds.Modality = "MG"
    ds.SeriesInstanceUID = study.uid("series", series_number)
    ds.SeriesNumber = series_number
    ds.SeriesDescription = description
    ds.SeriesDate = da(series_time)
    ds.SeriesTime = tm(series_time)
    ds.OperatorsName = study.operator_name
    ds.BodyPartExamined = "BREAST"
    ds.FrameOfReferenceUID = study.uid("frame-of-reference")
    ds.PositionReferenceIndicator = ""


def add_equipment(ds: Dataset, study: StudyInfo) -> None:
    """General Equipment and Enhanced General Equipment modules."""
    ds.Manufacturer = study.manufacturer
    ds.InstitutionName = study.institution_name
    ds.InstitutionAddress = study.institution_address
    ds.InstitutionalDepartmentName = study.institutional_department_name
    ds.StationName = study.station_name
    ds.ManufacturerModelName = study.model_name
    ds.DeviceSerialNumber = study.device_serial_number
    ds.SoftwareVersions = study.software_versions


def add_breast_view(ds: Dataset, study: StudyInfo, *, single_frame: bool) -> None:
    """View Code Sequence (with empty modifier sequence), implant and partial-view flags.

    Single-frame images also carry Image Laterality and the Anatomic Region
    Sequence here; the enhanced tomosynthesis object carries them per frame
    (Frame Anatomy functional group) instead.
    """
    view = code_item(*VIEW_CODES[study.view])
    view.ViewModifierCodeSequence = Sequence()
    ds.ViewCodeSequence = Sequence([view])
    if single_frame:
        ds.ImageLaterality = study.laterality
        ds.AnatomicRegionSequence = Sequence([code_item(*BREAST_CODE)])
    ds.BreastImplantPresent = "NO"
    ds.PartialView = "NO"


def patient_axes(study: StudyInfo) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gantry ``x``, ``y``, ``z`` unit vectors expressed in the DICOM patient frame (LPS), see module doc."""
    a = math.radians(study.gantry_rotation_deg)
    ex = np.array([math.cos(a), 0.0, math.sin(a)])
    ey = np.array([0.0, -1.0, 0.0])
    ez = np.array([-math.sin(a), 0.0, math.cos(a)])
    return ex, ey, ez


def to_patient(study: StudyInfo, point_mm: tuple[float, float, float]) -> np.ndarray:
    """A gantry-frame point (mm) in the DICOM patient frame (mm)."""
    ex, ey, ez = patient_axes(study)
    x, y, z = point_mm
    return x * ex + y * ey + z * ez


def orientation_letters(v: np.ndarray) -> str:
    """DICOM Patient Orientation letters of a direction in LPS (largest components first)."""
    names = (("L", "R"), ("P", "A"), ("H", "F"))
    order = np.argsort(-np.abs(v))
    out = ""
    for axis in order:
        if abs(v[axis]) > 1e-3:
            out += names[axis][0 if v[axis] > 0 else 1]
    return out


def patient_orientation(study: StudyInfo) -> list[str]:
    """Patient Orientation (row direction, column direction) of an image stored ``[row, col]``.

    Columns run along gantry ``x``, rows from the chest wall toward the nipple (anterior).
    """
    ex, ey, _ = patient_axes(study)
    return [orientation_letters(ex), orientation_letters(ey)]


def exposure_control(header: AcquisitionHeader, aec: bool | None = None) -> tuple[str, str]:
    """Exposure Control Mode and its description.

    ``aec``: whether the technique came from an automatic exposure control scout (the exam record
    knows: its exposures include the scout, which the header's stored projections do not). None:
    AUTOMATIC when the header itself lists a scout.
    """
    if aec is None:
        aec = any(p.exposure.is_scout for p in header.projections)
    if aec:
        return "AUTOMATIC", "AEC from a low-dose pre-exposure (scout)"
    return "MANUAL", "technique set by the exam protocol"


#: Percentiles of the breast's pixel values that bound the VOI window of every image object.
VOI_PERCENTILES = (1.0, 99.0)


def voi_window(values: np.ndarray, mask: np.ndarray | None = None) -> tuple[float, float]:
    """(Window Center, Window Width) spanning the 1st..99th percentile of ``values[mask]`` (stored values).

    ``mask`` selects the breast (None: every value). Falls back to all values when the mask holds
    fewer than 100 pixels, and to a width of 1 for a flat image. DICOM LINEAR window: centre c and
    width w map ``c - 0.5 - (w - 1) / 2 .. c - 0.5 + (w - 1) / 2`` onto the output range, so
    ``c = (lo + hi + 1) / 2`` and ``w = hi - lo + 1`` put lo and hi at the ends.
    """
    v = np.asarray(values)
    sel = v[mask] if mask is not None and int(np.count_nonzero(mask)) >= 100 else v.ravel()
    lo, hi = (float(x) for x in np.percentile(sel, VOI_PERCENTILES))
    width = max(hi - lo + 1.0, 1.0)
    return lo + 0.5 * (width - 1.0) + 0.5, width


def projection_breast_mask(image: np.ndarray, dark_adu: float = 0.0) -> np.ndarray:
    """Pixels of a raw projection behind the breast: below 90 % of the open-field level (99.5th percentile)."""
    a = np.asarray(image, dtype=np.float32) - np.float32(dark_adu)
    open_field = float(np.percentile(a, 99.5))
    return a < 0.9 * open_field


def central_ray_distances(geometry: AcquisitionGeometry, angle_deg: float, thickness_mm: float) -> dict[str, float]:
    """Distances along the central ray (focal spot -> rotation axis) at arc angle ``angle_deg``, mm.

    Returns source-to-detector, source-to-support (DICOM "Distance Source to
    Patient": the support side closest to the subject), source-to-entrance
    (the paddle, at support + thickness) and the magnification SID/SOD.
    """
    sx, _, sz = geometry.source_position(angle_deg)
    c = math.cos(math.radians(angle_deg))
    sid = sz / c
    sod = (sz - geometry.support_height_mm) / c
    entrance = (sz - geometry.support_height_mm - thickness_mm) / c
    return {"sid": sid, "sod": sod, "entrance": entrance, "magnification": sid / sod}


def save(ds: Dataset, path: str | Path) -> Path:
    """Write ``ds`` as a DICOM Part 10 file (preamble, meta, explicit VR little endian)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(p, enforce_file_format=True)
    return p
