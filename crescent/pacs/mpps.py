"""Modality Performed Procedure Step (PS3.4 annex F.7): tell the RIS an exam started, and how it ended.

:func:`mpps_in_progress` sends N-CREATE with status IN PROGRESS when the exam
starts (patient and scheduled step from the worklist item, if any);
:func:`mpps_completed` sends N-SET COMPLETED with the series and instances
written (read from the DICOM files on disk); :func:`mpps_discontinued` sends
N-SET DISCONTINUED with a reason code of CID 9300 and the reason in words in
Comments on the Performed Procedure Step (0040,0280).

Each call opens its own short association: an exam lasts minutes, and an
association left open that long would be timed out by many SCPs.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime
from typing import Any

from crescent.pacs.address import DEFAULT_CALLING_AE, PacsAddress
from crescent.pacs.association import DEFAULT_TIMEOUT_S, PacsError, open_association
from crescent.pacs.store import DicomFile
from crescent.pacs.worklist import WorklistItem

MPPS = "1.2.840.10008.3.1.2.3.3"  # Modality Performed Procedure Step SOP Class

#: Reasons for discontinuing (CID 9300, scheme DCM): code value -> code meaning.
DISCONTINUATION_REASONS = {
    "110501": "Equipment failure",
    "110505": "Patient refused to continue procedure",
    "110513": "Discontinued for unspecified reason",
}


def _code(value: str, meaning: str, scheme: str = "DCM") -> Any:
    from pydicom.dataset import Dataset

    c = Dataset()
    c.CodeValue, c.CodingSchemeDesignator, c.CodeMeaning = value, scheme, meaning
    return c


def _date_time(when: datetime) -> tuple[str, str]:
    return when.strftime("%Y%m%d"), when.strftime("%H%M%S")


def _check(address: PacsAddress, calling_ae: str, status: Any, what: str) -> None:
    code = int(status.Status) if status and "Status" in status else None
    if code is None:
        raise PacsError(address, calling_ae, f"{what}: no response (timeout or association aborted)",
                        action="report the procedure step to")
    if code != 0 and (code & 0xF000) != 0xB000:
        comment = f" ({status.ErrorComment})" if "ErrorComment" in status else ""
        raise PacsError(address, calling_ae, f"{what} refused, status 0x{code:04X}{comment}",
                        action="report the procedure step to")


def _session(address: PacsAddress, calling_ae: str, timeout_s: float) -> Any:
    from pynetdicom.presentation import build_context

    return open_association(address, [build_context(MPPS)], calling_ae, timeout_s, required=[MPPS])


def mpps_in_progress(address: PacsAddress, study: Any, *, item: WorklistItem | None = None,
                     calling_ae: str = DEFAULT_CALLING_AE, started: datetime | None = None,
                     procedure: str = "", step_id: str = "", modality: str = "MG",
                     timeout_s: float = DEFAULT_TIMEOUT_S) -> str:
    """N-CREATE an MPPS instance IN PROGRESS; returns its SOP Instance UID.

    ``study``: a :class:`crescent.outputs.study.StudyInfo` (patient, accession, station, operator), or any
    object with the same attributes. ``procedure``: what is being performed (e.g. the exam name).
    """
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    started = started or datetime.now()
    d, t = _date_time(started)
    ds = Dataset()
    ssa = Dataset()  # Scheduled Step Attributes: the worklist's, or empty for an unscheduled exam
    ssa.StudyInstanceUID = (item.study_instance_uid if item and item.study_instance_uid else generate_uid())
    ssa.ReferencedStudySequence = []
    ssa.AccessionNumber = study.accession_number
    ssa.RequestedProcedureID = item.requested_procedure_id if item else ""
    ssa.RequestedProcedureDescription = item.requested_procedure_description if item else ""
    ssa.ScheduledProcedureStepID = item.scheduled_step.step_id if item else ""
    ssa.ScheduledProcedureStepDescription = item.scheduled_step.description if item else ""
    ssa.ScheduledProtocolCodeSequence = []
    ds.ScheduledStepAttributesSequence = [ssa]
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = study.patient_birth_date
    ds.PatientSex = study.patient_sex
    ds.ReferencedPatientSequence = []
    ds.PerformedProcedureStepID = (step_id or started.strftime("%y%m%d%H%M%S"))[:16]
    ds.PerformedStationAETitle = calling_ae
    ds.PerformedStationName = study.station_name
    ds.PerformedLocation = ""
    ds.PerformedProcedureStepStartDate, ds.PerformedProcedureStepStartTime = d, t
    ds.PerformedProcedureStepEndDate = ds.PerformedProcedureStepEndTime = ""
    ds.PerformedProcedureStepStatus = "IN PROGRESS"
    ds.PerformedProcedureStepDescription = procedure[:64]
    ds.PerformedProcedureTypeDescription = ""
    ds.ProcedureCodeSequence = []
    ds.Modality = modality
    ds.StudyID = study.study_id
    ds.PerformedProtocolCodeSequence = []
    ds.PerformedSeriesSequence = []
    uid = str(generate_uid())
    assoc = _session(address, calling_ae, timeout_s)
    try:
        status, _ = assoc.send_n_create(ds, MPPS, uid)
    finally:
        if assoc.is_established:
            assoc.release()
    _check(address, calling_ae, status, "N-CREATE (IN PROGRESS)")
    return uid


def _performed_series(files: list[DicomFile], study: Any, calling_ae: str, protocol: str) -> list[Any]:
    from pydicom.dataset import Dataset

    by_series: dict[str, list[DicomFile]] = defaultdict(list)
    for f in files:
        by_series[f.series_instance_uid].append(f)
    out = []
    for series_uid, members in by_series.items():
        s = Dataset()
        s.PerformingPhysicianName = ""
        s.ProtocolName = protocol[:64]
        s.OperatorsName = study.operator_name
        s.SeriesInstanceUID = series_uid
        s.SeriesDescription = ""
        s.RetrieveAETitle = ""
        images, others = [], []
        for f in members:
            r = Dataset()
            r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID = f.sop_class_uid, f.sop_instance_uid
            (others if f.modality == "SR" else images).append(r)
        s.ReferencedImageSequence = images
        s.ReferencedNonImageCompositeSOPInstanceSequence = others
        out.append(s)
    return out


def _n_set(address: PacsAddress, uid: str, ds: Any, calling_ae: str, timeout_s: float, what: str) -> None:
    assoc = _session(address, calling_ae, timeout_s)
    try:
        status, _ = assoc.send_n_set(ds, MPPS, uid)
    finally:
        if assoc.is_established:
            assoc.release()
    _check(address, calling_ae, status, what)


def mpps_completed(address: PacsAddress, uid: str, files: list[DicomFile], study: Any, *,
                   calling_ae: str = DEFAULT_CALLING_AE, ended: datetime | None = None, protocol: str = "",
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """N-SET the MPPS ``uid`` COMPLETED, listing the series and instances of ``files``."""
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime = _date_time(ended or datetime.now())
    ds.PerformedProcedureStepStatus = "COMPLETED"
    ds.PerformedSeriesSequence = _performed_series(files, study, calling_ae, protocol)
    _n_set(address, uid, ds, calling_ae, timeout_s, "N-SET (COMPLETED)")


def mpps_discontinued(address: PacsAddress, uid: str, reason: str, *, code: str = "110513",
                      files: list[DicomFile] | None = None, study: Any = None,
                      calling_ae: str = DEFAULT_CALLING_AE, ended: datetime | None = None, protocol: str = "",
                      timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """N-SET the MPPS ``uid`` DISCONTINUED, with a CID 9300 ``code`` and ``reason`` in words."""
    from pydicom.dataset import Dataset

    if code not in DISCONTINUATION_REASONS:
        raise ValueError(f"discontinuation reason code {code!r}: one of {sorted(DISCONTINUATION_REASONS)}")
    ds = Dataset()
    ds.PerformedProcedureStepEndDate, ds.PerformedProcedureStepEndTime = _date_time(ended or datetime.now())
    ds.PerformedProcedureStepStatus = "DISCONTINUED"
    ds.PerformedProcedureStepDiscontinuationReasonCodeSequence = [_code(code, DISCONTINUATION_REASONS[code])]
    ds.CommentsOnThePerformedProcedureStep = reason[:10240]
    if files and study is not None:
        ds.PerformedSeriesSequence = _performed_series(files, study, calling_ae, protocol)
    _n_set(address, uid, ds, calling_ae, timeout_s, "N-SET (DISCONTINUED)")
