"""Modality Worklist query (C-FIND, PS3.4 annex K.6): who is to be examined, and for which procedure.

:func:`query_worklist` asks a worklist SCP (a RIS, or Orthanc's ModalityWorklists
plugin) for the scheduled procedure steps matching a modality (``MG`` by
default), optionally a station AE title, a date, a patient ID or an accession
number, and returns one :class:`WorklistItem` per answer.
:meth:`WorklistItem.study_fields` maps an item onto the patient and study fields
of :class:`crescent.outputs.study.StudyInfo`, so the DICOM objects of the exam
carry the worklist's patient, accession number and requested procedure.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from crescent.pacs.address import DEFAULT_CALLING_AE, PacsAddress
from crescent.pacs.association import DEFAULT_TIMEOUT_S, PacsError, open_association

MWL_FIND = "1.2.840.10008.5.1.4.31"  # Modality Worklist Information Model - FIND


class ScheduledStep(BaseModel):
    """One Scheduled Procedure Step (item of the Scheduled Procedure Step Sequence, 0040,0100)."""

    step_id: str = Field("", description="Scheduled Procedure Step ID (0040,0009)")
    description: str = Field("", description="Scheduled Procedure Step Description (0040,0007)")
    modality: str = ""
    station_ae: str = Field("", description="Scheduled Station AE Title (0040,0001)")
    start_date: str = Field("", description="YYYYMMDD")
    start_time: str = Field("", description="HHMMSS[.ffffff]")
    performing_physician: str = ""


class WorklistItem(BaseModel):
    """One worklist entry: the patient, the requested procedure and its scheduled step."""

    patient_name: str = ""
    patient_id: str = ""
    patient_birth_date: str = Field("", description="YYYYMMDD or empty")
    patient_sex: str = ""
    accession_number: str = ""
    referring_physician_name: str = ""
    requested_procedure_id: str = ""
    requested_procedure_description: str = ""
    study_instance_uid: str = Field("", description="the study the RIS assigned (may be empty)")
    scheduled_step: ScheduledStep = Field(default_factory=ScheduledStep)

    def label(self) -> str:
        """One line naming the entry (for choosing among several)."""
        s = self.scheduled_step
        return (f"accession {self.accession_number or '-'}: {self.patient_name or '-'} ({self.patient_id or '-'}), "
                f"{self.requested_procedure_description or s.description or '-'}, {s.start_date} {s.start_time}")

    def study_fields(self) -> dict[str, Any]:
        """Keyword arguments of ``StudyInfo`` set from this entry (values that fit its constraints only)."""
        fields: dict[str, Any] = {}
        if self.patient_name:
            fields["patient_name"] = self.patient_name
        if self.patient_id:
            fields["patient_id"] = self.patient_id
        if len(self.patient_birth_date) == 8 and self.patient_birth_date.isdigit():
            fields["patient_birth_date"] = self.patient_birth_date
        if self.patient_sex in ("F", "M", "O"):
            fields["patient_sex"] = self.patient_sex
        if self.accession_number:
            fields["accession_number"] = self.accession_number[:16]
        if self.requested_procedure_id:
            fields["study_id"] = self.requested_procedure_id[:16]
        desc = self.requested_procedure_description or self.scheduled_step.description
        if desc:
            fields["study_description"] = desc[:64]
        if self.referring_physician_name:
            fields["referring_physician_name"] = self.referring_physician_name
        return fields


def _query(modality: str, station_ae: str, date: str, patient_id: str, accession_number: str) -> Any:
    from pydicom.dataset import Dataset

    ds = Dataset()
    ds.PatientName = ""
    ds.PatientID = patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.AccessionNumber = accession_number
    ds.ReferringPhysicianName = ""
    ds.RequestedProcedureID = ""
    ds.RequestedProcedureDescription = ""
    ds.StudyInstanceUID = ""
    sps = Dataset()
    sps.Modality = modality
    sps.ScheduledStationAETitle = station_ae
    sps.ScheduledProcedureStepStartDate = date
    sps.ScheduledProcedureStepStartTime = ""
    sps.ScheduledProcedureStepID = ""
    sps.ScheduledProcedureStepDescription = ""
    sps.ScheduledPerformingPhysicianName = ""
    ds.ScheduledProcedureStepSequence = [sps]
    return ds


def _item(ds: Any) -> WorklistItem:
    def get(d: Any, key: str) -> str:
        v = d.get(key, "") if d is not None else ""
        return "" if v is None else str(v).strip()

    seq = ds.get("ScheduledProcedureStepSequence") or [None]
    sps = seq[0]
    return WorklistItem(
        patient_name=get(ds, "PatientName"), patient_id=get(ds, "PatientID"),
        patient_birth_date=get(ds, "PatientBirthDate"), patient_sex=get(ds, "PatientSex"),
        accession_number=get(ds, "AccessionNumber"), referring_physician_name=get(ds, "ReferringPhysicianName"),
        requested_procedure_id=get(ds, "RequestedProcedureID"),
        requested_procedure_description=get(ds, "RequestedProcedureDescription"),
        study_instance_uid=get(ds, "StudyInstanceUID"),
        scheduled_step=ScheduledStep(
            step_id=get(sps, "ScheduledProcedureStepID"), description=get(sps, "ScheduledProcedureStepDescription"),
            modality=get(sps, "Modality"), station_ae=get(sps, "ScheduledStationAETitle"),
            start_date=get(sps, "ScheduledProcedureStepStartDate"),
            start_time=get(sps, "ScheduledProcedureStepStartTime"),
            performing_physician=get(sps, "ScheduledPerformingPhysicianName")))


def query_worklist(address: PacsAddress, calling_ae: str = DEFAULT_CALLING_AE, *, modality: str = "MG",
                   station_ae: str = "", date: str = "", patient_id: str = "", accession_number: str = "",
                   timeout_s: float = DEFAULT_TIMEOUT_S) -> list[WorklistItem]:
    """Scheduled steps matching the given keys (empty = any); :class:`PacsError` if the query fails."""
    from pynetdicom.presentation import build_context

    assoc = open_association(address, [build_context(MWL_FIND)], calling_ae, timeout_s, required=[MWL_FIND])
    items: list[WorklistItem] = []
    try:
        for status, identifier in assoc.send_c_find(_query(modality, station_ae, date, patient_id,
                                                           accession_number), MWL_FIND):
            code = int(status.Status) if status and "Status" in status else None
            if code in (0xFF00, 0xFF01):
                if identifier is not None:
                    items.append(_item(identifier))
            elif code == 0x0000:
                break
            else:
                why = ("no C-FIND response: the association was aborted or timed out (does the peer know our "
                       f"calling AE {calling_ae!r}?)") if code is None else \
                    f"C-FIND failed with status 0x{code:04X}" + (f" ({status.ErrorComment})"
                                                                  if "ErrorComment" in status else "")
                raise PacsError(address, calling_ae, why, action="query the worklist of")
    finally:
        if assoc.is_established:
            assoc.release()
    return items


def select_item(items: list[WorklistItem], address: PacsAddress, accession_number: str = "") -> WorklistItem:
    """The one entry to use: the only answer, or the one with ``accession_number``; ValueError otherwise."""
    if accession_number:
        items = [i for i in items if i.accession_number == accession_number]
    if len(items) == 1:
        return items[0]
    what = f"accession {accession_number!r}" if accession_number else "the query"
    if not items:
        raise ValueError(f"worklist {address}: no scheduled step matches {what}")
    raise ValueError(f"worklist {address}: {len(items)} scheduled steps match {what}; choose one with "
                     "--accession:\n  " + "\n  ".join(i.label() for i in items))
