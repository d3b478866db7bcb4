"""DICOM Key Object Selection (KOS) document that flags the images of an exam its acquisition QC rejected.

Issue 18: the per-exam acquisition QC verdicts go "into the DICOM study (for example a Key Object Selection
with the reason)". :func:`write_qc_rejection_kos` writes one Key Object Selection Document (PS3.3 A.35.4,
SOP Class 1.2.840.10008.5.1.4.1.1.88.59) with the content of TID 2010 "Key Object Selection":

- document title (CID 7010): (113001, DCM, "Rejected for Quality Reasons"), the title an IHE Image
  Object Change Management (IOCM) archive reads as "these instances were rejected for quality";
- one Document Title Modifier (113011, DCM) per distinct reason, from CID 7011 "Rejected for Quality
  Reason" (:data:`REASON_CODES` maps each acquisition QC check to one);
- Key Object Description (113012, DCM), TEXT: every failed check with its measured value, its limit
  and the limit's source;
- one IMAGE content item per referenced object (the projections For Processing and For Presentation,
  the reconstruction), with Referenced Frame Number where a check names the frames at fault (patient
  motion);
- Current Requested Procedure Evidence Sequence listing the same objects by study and series.

Codes are the PS3.16 ones as pydicom's PS3.16 tables hold them (``pydicom.sr._cid_dict.cid_concepts[7010]``,
``[7011]``); dciodvfy checks the object in the tests. The document goes into its own series (Modality KO).
Nothing is written when no check failed: a KOS that rejects nothing would be noise in a PACS.
"""

from __future__ import annotations

from collections.abc import Sequence as Seq
from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from crescent.outputs.dicom_common import add_equipment, add_patient_study, da, new_dataset, save, tm
from crescent.outputs.study import StudyInfo

#: Key Object Selection Document Storage.
KOS_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.88.59"
#: CID 7010 document title.
REJECTED_FOR_QUALITY = ("113001", "DCM", "Rejected for Quality Reasons")
DOCUMENT_TITLE_MODIFIER = ("113011", "DCM", "Document Title Modifier")
KEY_OBJECT_DESCRIPTION = ("113012", "DCM", "Key Object Description")
#: CID 7011 reason for each acquisition QC check (crescent.acquire.acquisition_qc); unknown names -> Other failure.
REASON_CODES: dict[str, tuple[str, str, str]] = {
    "Exposure consistency across projections": ("111217", "DCM", "Electrical failure"),
    "Arm motion residual": ("111216", "DCM", "Mechanical failure"),
    "Patient motion between projections": ("111210", "DCM", "Motion blur"),
    "Detector artefacts (defective lines)": ("111214", "DCM", "Detector artifact(s)"),
    "Chest-wall coverage": ("111209", "DCM", "Positioning"),
    "AEC plausibility": ("111220", "DCM", "Other failure"),  # under or over: the value says which
}
OTHER_FAILURE = ("111220", "DCM", "Other failure")
#: Objects whose frames are the sweep's projections (frame k = projection k): Breast Projection X-Ray Image
#: For Presentation and For Processing. Frames named in a rejection are referenced in these only.
PROJECTION_SOP_CLASSES = ("1.2.840.10008.5.1.4.1.1.13.1.4", "1.2.840.10008.5.1.4.1.1.13.1.5")


@dataclass(frozen=True)
class Rejection:
    """One failed check: its name, measured value, limit, the limit's source, and the frames at fault (1-based
    frame numbers of the multi-frame projection objects; empty = the whole exam)."""

    check: str
    value: str
    limit: str
    source: str
    frames: tuple[int, ...] = field(default_factory=tuple)


def _code(value: str, scheme: str, meaning: str) -> Dataset:
    d = Dataset()
    d.CodeValue, d.CodingSchemeDesignator, d.CodeMeaning = value, scheme, meaning
    return d


def _item(rel: str, value_type: str, concept: tuple[str, str, str]) -> Dataset:
    d = Dataset()
    d.RelationshipType = rel
    d.ValueType = value_type
    d.ConceptNameCodeSequence = Sequence([_code(*concept)])
    return d


def write_qc_rejection_kos(path: str | Path, study: StudyInfo, rejections: Seq[Rejection],
                           referenced: Seq[str | Path], *, series_number: int | None = None) -> Path:
    """Write the exam's "Rejected for Quality Reasons" KOS referencing the DICOM files ``referenced``.

    ``rejections``: the failed checks (at least one). ``referenced``: image files of this study (their SOP
    Class, SOP Instance, Series and Study UIDs are read from them). Frames named in a rejection are referenced
    frame by frame in the Breast Projection objects; any other object is referenced whole.
    """
    if not rejections:
        raise ValueError("a quality rejection KOS needs at least one failed check")
    refs = []
    for p in referenced:
        h = pydicom.dcmread(p, stop_before_pixels=True)
        if str(h.StudyInstanceUID) != study.uid("study"):
            raise ValueError(f"{p}: study {h.StudyInstanceUID} is not this exam's ({study.uid('study')})")
        refs.append((str(h.SOPClassUID), str(h.SOPInstanceUID), str(h.SeriesInstanceUID),
                     int(getattr(h, "NumberOfFrames", 1) or 1)))
    if not refs:
        raise ValueError("a quality rejection KOS must reference at least one image")
    when = study.at(0.0)
    ds = new_dataset(KOS_SOP_CLASS, study.uid("sop", "qc-rejection-kos"))
    add_patient_study(ds, study)
    add_equipment(ds, study)
    # Key Object Document Series
    ds.Modality = "KO"
    ds.SeriesInstanceUID = study.uid("series", "qc-rejection-kos")
    ds.SeriesNumber = series_number if series_number is not None else study.tomo_series_number + 950
    ds.SeriesDescription = "Acquisition QC: rejected for quality reasons"
    ds.SeriesDate, ds.SeriesTime = da(when), tm(when)
    ds.ReferencedPerformedProcedureStepSequence = Sequence()
    # Key Object Document
    ds.InstanceNumber = 1
    ds.ContentDate, ds.ContentTime = da(when), tm(when)
    by_series: dict[str, list[tuple[str, str]]] = {}
    for cls, uid, series, _ in refs:
        by_series.setdefault(series, []).append((cls, uid))
    series_items = []
    for series, sops in by_series.items():
        s = Dataset()
        s.SeriesInstanceUID = series
        items = []
        for cls, uid in sops:
            r = Dataset()
            r.ReferencedSOPClassUID, r.ReferencedSOPInstanceUID = cls, uid
            items.append(r)
        s.ReferencedSOPSequence = Sequence(items)
        series_items.append(s)
    evidence = Dataset()
    evidence.StudyInstanceUID = study.uid("study")
    evidence.ReferencedSeriesSequence = Sequence(series_items)
    ds.CurrentRequestedProcedureEvidenceSequence = Sequence([evidence])
    # SR Document Content, TID 2010
    ds.ValueType = "CONTAINER"
    ds.ConceptNameCodeSequence = Sequence([_code(*REJECTED_FOR_QUALITY)])
    ds.ContinuityOfContent = "SEPARATE"
    tmpl = Dataset()
    tmpl.MappingResource, tmpl.TemplateIdentifier = "DCMR", "2010"
    ds.ContentTemplateSequence = Sequence([tmpl])
    content = []
    reasons: list[tuple[str, str, str]] = []
    for r in rejections:
        code = REASON_CODES.get(r.check, OTHER_FAILURE)
        if code not in reasons:
            reasons.append(code)
    for code in reasons:
        m = _item("HAS CONCEPT MOD", "CODE", DOCUMENT_TITLE_MODIFIER)
        m.ConceptCodeSequence = Sequence([_code(*code)])
        content.append(m)
    desc = _item("CONTAINS", "TEXT", KEY_OBJECT_DESCRIPTION)
    desc.TextValue = "; ".join(
        f"{r.check}: {r.value} (limit {r.limit}; {r.source})"
        + (f"; frames {', '.join(map(str, r.frames))}" if r.frames else "") for r in rejections)[:10240]
    content.append(desc)
    frames = sorted({f for r in rejections for f in r.frames})
    for cls, uid, _, n_frames in refs:
        img = _item("CONTAINS", "IMAGE", ("", "", ""))
        del img.ConceptNameCodeSequence  # an IMAGE item of TID 2010 has no concept name
        sop = Dataset()
        sop.ReferencedSOPClassUID, sop.ReferencedSOPInstanceUID = cls, uid
        own = [f for f in frames if f <= n_frames]
        if cls in PROJECTION_SOP_CLASSES and n_frames > 1 and own and len(own) < n_frames:
            sop.ReferencedFrameNumber = own
        img.ReferencedSOPSequence = Sequence([sop])
        content.append(img)
    ds.ContentSequence = Sequence(content)
    ds.InstanceCreationDate, ds.InstanceCreationTime = da(when), tm(when)
    return save(ds, path)
