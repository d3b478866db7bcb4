"""X-Ray Radiation Dose SR (TID 10001, projection X-ray) of one exam, built with pydicom only.

SOP Class 1.2.840.10008.5.1.4.1.1.88.67. One report per exam, with one Irradiation
Event X-Ray Data container (TID 10003 with 10003a mechanical and 10003b source data)
for *every* exposure made, the AEC scout included, and the accumulated mammography
dose (TID 10005/10007: accumulated average glandular dose per breast). Each event
carries: start date-time, event UID, kVp (kV), tube current (mA), exposure time (ms),
exposure (uA.s), arc angle (deg), entrance exposure at the reference point (incident
air kerma at the breast entrance, mGy), average glandular dose (mGy), compression
thickness (mm) and force (N), anode and filter, HVL (mm Al).

Code values come from :data:`pydicom.sr.codedict.codes` (DICOM PS3.16), not typed
in by hand, except the SCT procedure code for mammography. Units are UCUM.

highdicom (``highdicom.sr``) could build this tree too; it is not a dependency, so the
content tree is assembled here by :class:`_Tree` helpers (one function per template).
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

from crescent.outputs.dicom_common import (
    ANODE_FILTER_DICOM,
    add_equipment,
    add_patient_study,
    da,
    dt,
    new_dataset,
    save,
    tm,
)
from crescent.outputs.study import StudyInfo

#: X-Ray Radiation Dose SR Storage.
XRAY_DOSE_SR_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.67"
#: SNOMED CT "Mammography" (procedure), CID 10000-style procedure reported.
MAMMOGRAPHY_PROCEDURE = Code("71651007", "SCT", "Mammography")
#: SNOMED CT "Screening for malignant neoplasm of breast": the reason for a screening DBT exam.
SCREENING_DIAGNOSIS = Code("268547008", "SCT", "Screening for malignant neoplasm of breast")
#: Anode/filter element names -> SNOMED CT codes (CID 10016 / 10006).
_MATERIAL = {"TUNGSTEN": codes.SCT.Tungsten, "RHODIUM": codes.SCT.Rhodium, "MOLYBDENUM": codes.SCT.Molybdenum,
             "SILVER": codes.SCT.Silver, "ALUMINUM": codes.SCT.Aluminum}


@dataclass(frozen=True)
class IrradiationEvent:
    """One exposure as made, for the dose report.

    started: wall time of X-ray on; kvp (kV), tube_current_ma (mA, mean over the window),
    exposure_time_ms (ms), exposure_uas (uA.s), angle_deg (actual arc angle incl. the C-arm
    rotation, degrees), entrance_air_kerma_mgy (incident air kerma at the breast entrance, mGy),
    mgd_mgy (mean glandular dose, mGy), thickness_mm (compressed breast, mm), force_n (N),
    anode_filter (e.g. ``"W/Rh"``), hvl_mm_al (mm Al), scout: the AEC pre-exposure.
    uid_role: the Irradiation Event UID is ``study.uid("irradiation-event", uid_role)`` (the projection
    objects repeat it per frame); exposure_index, frame_id: the exposure record's (-1: unknown).
    """

    started: datetime
    kvp: float
    tube_current_ma: float
    exposure_time_ms: float
    exposure_uas: float
    angle_deg: float
    entrance_air_kerma_mgy: float
    mgd_mgy: float
    thickness_mm: float
    force_n: float
    anode_filter: str
    hvl_mm_al: float
    focal_spot_mm: float
    scout: bool = False
    uid_role: str = ""
    exposure_index: int = -1
    frame_id: int = -1


def _item(rel: str | None, value_type: str, concept: Code) -> Dataset:
    ds = Dataset()
    if rel is not None:
        ds.RelationshipType = rel
    ds.ValueType = value_type
    ds.ConceptNameCodeSequence = Sequence([_code(concept)])
    return ds


def _code(c: Code) -> Dataset:
    d = Dataset()
    d.CodeValue = c.value
    d.CodingSchemeDesignator = c.scheme_designator
    d.CodeMeaning = c.meaning
    return d


def container(rel: str | None, concept: Code, children: Seq[Dataset]) -> Dataset:
    ds = _item(rel, "CONTAINER", concept)
    ds.ContinuityOfContent = "SEPARATE"
    ds.ContentSequence = Sequence(list(children))
    return ds


def code_value(rel: str, concept: Code, value: Code) -> Dataset:
    ds = _item(rel, "CODE", concept)
    ds.ConceptCodeSequence = Sequence([_code(value)])
    return ds


def num(rel: str, concept: Code, value: float, unit: str, meaning: str) -> Dataset:
    """A NUM content item with a UCUM unit (e.g. ``"mGy"``, ``"kV"``)."""
    ds = _item(rel, "NUM", concept)
    mv = Dataset()
    mv.NumericValue = f"{value:.6g}"[:16]
    mv.FloatingPointValue = float(value)
    mv.MeasurementUnitsCodeSequence = Sequence([_code(Code(unit, "UCUM", meaning))])
    ds.MeasuredValueSequence = Sequence([mv])
    return ds


def text(rel: str, concept: Code, value: str) -> Dataset:
    ds = _item(rel, "TEXT", concept)
    ds.TextValue = value
    return ds


def uidref(rel: str, concept: Code, uid: str) -> Dataset:
    ds = _item(rel, "UIDREF", concept)
    ds.UID = uid
    return ds


def datetime_item(rel: str, concept: Code, when: datetime) -> Dataset:
    ds = _item(rel, "DATETIME", concept)
    ds.DateTime = dt(when)
    return ds


def observer_context(study: StudyInfo) -> list[Dataset]:
    """TID 1002 with a device observer (TID 1004): the gantry that irradiated."""
    return [
        code_value("HAS OBS CONTEXT", codes.DCM.ObserverType, codes.DCM.Device),
        uidref("HAS OBS CONTEXT", codes.DCM.DeviceObserverUID, study.uid("device", study.device_serial_number)),
        text("HAS OBS CONTEXT", codes.DCM.DeviceObserverName, study.station_name),
        text("HAS OBS CONTEXT", codes.DCM.DeviceObserverManufacturer, study.manufacturer),
        text("HAS OBS CONTEXT", codes.DCM.DeviceObserverModelName, study.model_name),
        text("HAS OBS CONTEXT", codes.DCM.DeviceObserverSerialNumber, study.device_serial_number),
    ]


def _breast(study: StudyInfo) -> Code:
    return codes.SCT.LeftBreast if study.laterality == "L" else codes.SCT.RightBreast


def accumulated_dose(study: StudyInfo, events: Seq[IrradiationEvent]) -> Dataset:
    """TID 10002 with TID 10005/10007 (accumulated mammography dose) for the one breast imaged."""
    total = sum(e.mgd_mgy for e in events)
    agd = num("CONTAINS", codes.DCM.AccumulatedAverageGlandularDose, total, "mGy", "mGy")
    agd.ContentSequence = Sequence([code_value("HAS CONCEPT MOD", codes.SCT.Laterality,
                                               codes.SCT.Left if study.laterality == "L" else codes.SCT.Right)])
    return container("CONTAINS", codes.DCM.AccumulatedXRayDoseData, [
        code_value("HAS CONCEPT MOD", codes.DCM.AcquisitionPlane, codes.DCM.SinglePlane),
        agd,
    ])


def irradiation_event(study: StudyInfo, e: IrradiationEvent) -> Dataset:
    """TID 10003 (with 10003a mechanical and 10003b source data) of one exposure."""
    anode, filt, filt_mm = ANODE_FILTER_DICOM[e.anode_filter]
    filters = container("CONTAINS", codes.DCM.XRayFilters, [
        code_value("CONTAINS", codes.DCM.XRayFilterType, codes.DCM.FlatFilter),
        code_value("CONTAINS", codes.DCM.XRayFilterMaterial, _MATERIAL[filt]),
        num("CONTAINS", codes.DCM.XRayFilterThicknessMinimum, filt_mm, "mm", "mm"),
        num("CONTAINS", codes.DCM.XRayFilterThicknessMaximum, filt_mm, "mm", "mm"),
    ])
    agd = num("CONTAINS", codes.DCM.AverageGlandularDose, e.mgd_mgy, "mGy", "mGy")
    agd.ContentSequence = Sequence([code_value("HAS CONCEPT MOD", codes.SCT.Laterality,
                                               codes.SCT.Left if study.laterality == "L" else codes.SCT.Right)])
    children = [
        code_value("CONTAINS", codes.DCM.AcquisitionPlane, codes.DCM.SinglePlane),
        datetime_item("CONTAINS", codes.DCM.DatetimeStarted, e.started),
        code_value("CONTAINS", codes.DCM.IrradiationEventType, codes.DCM.StationaryAcquisition),
        text("CONTAINS", codes.DCM.AcquisitionProtocol, "AEC scout" if e.scout else "DBT projection"),
        code_value("CONTAINS", codes.DCM.TargetRegion, _breast(study)),
        uidref("CONTAINS", codes.DCM.IrradiationEventUID, study.uid("irradiation-event", e.uid_role)),
        num("CONTAINS", codes.DCM.PositionerPrimaryAngle, e.angle_deg, "deg", "degree"),
        num("CONTAINS", codes.DCM.CompressionThickness, e.thickness_mm, "mm", "mm"),
        num("CONTAINS", codes.DCM.CompressionForce, e.force_n, "N", "Newton"),
        num("CONTAINS", codes.DCM.KVP, e.kvp, "kV", "kV"),
        num("CONTAINS", codes.DCM.XRayTubeCurrent, e.tube_current_ma, "mA", "mA"),
        num("CONTAINS", codes.DCM.ExposureTime, e.exposure_time_ms, "ms", "ms"),
        num("CONTAINS", codes.DCM.Exposure, e.exposure_uas, "uA.s", "uA.s"),
        num("CONTAINS", codes.DCM.FocalSpotSize, e.focal_spot_mm, "mm", "mm"),
        code_value("CONTAINS", codes.DCM.AnodeTargetMaterial, _MATERIAL[anode]),
        filters,
        num("CONTAINS", codes.DCM.HalfValueLayer, e.hvl_mm_al, "mm", "mm"),
        num("CONTAINS", codes.DCM.EntranceExposureAtRP, e.entrance_air_kerma_mgy, "mGy", "mGy"),
        text("CONTAINS", codes.DCM.ReferencePointDefinition, "breast entrance surface (compression paddle), "
             "incident air kerma without backscatter"),
        agd,
    ]
    return container("CONTAINS", codes.DCM.IrradiationEventXRayData, children)


def write_dose_sr(path: str | Path, study: StudyInfo, events: Seq[IrradiationEvent], *,
                  completed: bool = True) -> Path:
    """Write the exam's X-Ray Radiation Dose SR (TID 10001) with one event per exposure (scout included)."""
    if not events:
        raise ValueError("a dose report needs at least one irradiation event")
    ds = new_dataset(XRAY_DOSE_SR_SOP_CLASS, study.uid("sop", "dose-sr"))
    t_end = max(e.started for e in events)
    add_patient_study(ds, study)
    add_equipment(ds, study)
    ds.Modality = "SR"
    ds.SeriesInstanceUID = study.uid("series", "dose-sr")
    ds.SeriesNumber = study.tomo_series_number + 900
    ds.SeriesDescription = "Radiation dose report"
    ds.SeriesDate, ds.SeriesTime = da(t_end), tm(t_end)
    pps = Dataset()  # the MPPS of the exam (crescent/send creates it with this UID)
    pps.ReferencedSOPClassUID = "1.2.840.10008.3.1.2.3.3"
    pps.ReferencedSOPInstanceUID = study.uid("mpps")
    ds.ReferencedPerformedProcedureStepSequence = Sequence([pps])
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = da(t_end), tm(t_end)
    ds.CompletionFlag = "COMPLETE" if completed else "PARTIAL"
    ds.VerificationFlag = "UNVERIFIED"
    ds.PerformedProcedureCodeSequence = Sequence([_code(MAMMOGRAPHY_PROCEDURE)])
    ds.InstanceCreationDate, ds.InstanceCreationTime = da(t_end), tm(t_end)

    procedure = code_value("HAS CONCEPT MOD", codes.DCM.ProcedureReported, MAMMOGRAPHY_PROCEDURE)
    procedure.ContentSequence = Sequence([code_value("HAS CONCEPT MOD", codes.SCT.HasIntent,
                                                     codes.SCT.DiagnosticIntent)])
    scope = code_value("HAS ACQ CONTEXT", codes.DCM.ScopeOfAccumulation, codes.DCM.Study)
    scope.ContentSequence = Sequence([uidref("HAS PROPERTIES", codes.DCM.StudyInstanceUID, study.uid("study"))])
    children = [procedure, *observer_context(study), scope, accumulated_dose(study, events),
                *(irradiation_event(study, e) for e in events)]
    if study.reproducibility_note:
        children.append(text("CONTAINS", codes.DCM.Comment, study.reproducibility_note))
    root = container(None, codes.DCM.XRayRadiationDoseReport, children)
    ds.ValueType = root.ValueType
    ds.ConceptNameCodeSequence = root.ConceptNameCodeSequence
    ds.ContinuityOfContent = root.ContinuityOfContent
    ds.ContentTemplateSequence = Sequence([_template("10001")])
    ds.ContentSequence = root.ContentSequence
    return save(ds, path)


def _template(tid: str) -> Dataset:
    d = Dataset()
    d.MappingResource = "DCMR"
    d.TemplateIdentifier = tid
    return d
