"""C-STORE every DICOM object of a folder to a PACS, with one result per object and retries.

The objects are read from disk (any file with the DICOM preamble ``DICM`` at byte
128, in any sub-folder) and never moved or deleted: a failed send leaves
everything where it was, to be sent again later (``crescent send DIR``).

Presentation contexts: one per SOP class, for every class Crescent writes
(:data:`CRESCENT_SOP_CLASSES`) plus every class found in the folder, each
offering the files' own transfer syntaxes and explicit/implicit VR little
endian. A PACS may refuse some of them; the objects of a refused class are
reported as such and not retried.

Retries: an attempt opens one association and sends every object still
pending. Objects that failed for a transient reason (association not opened
or aborted, no response, status 0xA7xx "out of resources") are tried again in
a new association after ``backoff_s * 2**(k-1)`` s (k = 1, 2, ...), up to
``retries`` more attempts. Permanent refusals (SOP class not supported, data
set does not match, 0xCxxx "cannot understand") are reported at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from pathlib import Path

from pydantic import BaseModel, Field

from crescent.pacs.address import DEFAULT_CALLING_AE, PacsAddress
from crescent.pacs.association import DEFAULT_TIMEOUT_S, MAX_CONTEXTS, PacsError, open_association

#: SOP classes of the objects ``crescent acquire`` writes, or may write (UID: name).
CRESCENT_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.13.1.3": "Breast Tomosynthesis Image Storage",
    "1.2.840.10008.5.1.4.1.1.13.1.4": "Breast Projection X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.13.1.5": "Breast Projection X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.1.2": "Digital Mammography X-Ray Image Storage - For Presentation",
    "1.2.840.10008.5.1.4.1.1.1.2.1": "Digital Mammography X-Ray Image Storage - For Processing",
    "1.2.840.10008.5.1.4.1.1.88.67": "X-Ray Radiation Dose SR Storage",
    "1.2.840.10008.5.1.4.1.1.88.59": "Key Object Selection Document Storage",
}
MEDIA_DIRECTORY = "1.2.840.10008.1.3.10"  # Media Storage Directory (DICOMDIR)
_UNCOMPRESSED = ("1.2.840.10008.1.2.1", "1.2.840.10008.1.2")  # explicit, implicit VR little endian


class DicomFile(BaseModel):
    """One DICOM object found on disk (header only)."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax_uid: str
    study_instance_uid: str = ""
    series_instance_uid: str = ""
    modality: str = ""


class StoreResult(BaseModel):
    """What happened to one object: ``stored`` (status 0x0000 or a 0xBxxx warning) or not, and why."""

    path: Path
    sop_class_uid: str
    sop_instance_uid: str
    stored: bool = False
    status: int | None = Field(None, description="last C-STORE status (None: no response)")
    attempts: int = Field(0, description="associations in which a C-STORE of this object was tried")
    message: str = ""

    @property
    def sop_class_name(self) -> str:
        return sop_class_name(self.sop_class_uid)


class SendReport(BaseModel):
    """Every object's result and the association error, if the PACS could not be used at all."""

    address: PacsAddress
    calling_ae: str
    results: list[StoreResult]
    error: str | None = Field(None, description="last association error (the PACS down or refusing us)")
    seconds: float = 0.0

    @property
    def stored(self) -> int:
        return sum(r.stored for r in self.results)

    @property
    def failed(self) -> int:
        return len(self.results) - self.stored

    @property
    def ok(self) -> bool:
        return self.failed == 0 and bool(self.results)


def sop_class_name(uid: str) -> str:
    """Human name of a SOP class UID (``uid`` itself if unknown)."""
    from pydicom.uid import UID

    return CRESCENT_SOP_CLASSES.get(uid) or UID(uid).name


def is_dicom_file(path: Path) -> bool:
    """True if ``path`` is a DICOM Part 10 file (``DICM`` at byte 128)."""
    try:
        with path.open("rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def find_dicom_files(folder: Path) -> list[DicomFile]:
    """Every DICOM Part 10 file under ``folder`` (sorted by path; a DICOMDIR is skipped); ValueError if it is
    not a folder or a file cannot be read or lacks a SOP Class/Instance UID. ``folder`` may also be one file."""
    import pydicom

    folder = Path(folder)
    if not folder.exists():
        raise ValueError(f"{folder}: no such file or folder")
    paths = [folder] if folder.is_file() else sorted(p for p in folder.rglob("*") if p.is_file())
    found: list[DicomFile] = []
    for p in paths:
        if not is_dicom_file(p):
            continue
        try:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
        except Exception as exc:  # a damaged file: bad input, named
            raise ValueError(f"{p}: not a readable DICOM file ({type(exc).__name__}: {exc})") from None
        meta = ds.file_meta
        sop_class = str(meta.get("MediaStorageSOPClassUID", "") or ds.get("SOPClassUID", ""))
        sop_inst = str(meta.get("MediaStorageSOPInstanceUID", "") or ds.get("SOPInstanceUID", ""))
        if sop_class == MEDIA_DIRECTORY:
            continue  # a DICOMDIR indexes the objects, it is not one to store
        if not sop_class or not sop_inst:
            raise ValueError(f"{p}: DICOM file without a SOP Class UID or SOP Instance UID")
        found.append(DicomFile(path=p, sop_class_uid=sop_class, sop_instance_uid=sop_inst,
                               transfer_syntax_uid=str(meta.get("TransferSyntaxUID", _UNCOMPRESSED[0])),
                               study_instance_uid=str(ds.get("StudyInstanceUID", "")),
                               series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
                               modality=str(ds.get("Modality", ""))))
    return found


def storage_contexts(files: Iterable[DicomFile]) -> list:
    """Presentation contexts for Crescent's SOP classes and every class in ``files`` (see module docstring)."""
    from pynetdicom.presentation import build_context

    syntaxes: dict[str, list[str]] = {uid: list(_UNCOMPRESSED) for uid in CRESCENT_SOP_CLASSES}
    for f in files:
        ts = syntaxes.setdefault(f.sop_class_uid, list(_UNCOMPRESSED))
        if f.transfer_syntax_uid not in ts:
            ts.insert(0, f.transfer_syntax_uid)
    if len(syntaxes) > MAX_CONTEXTS:
        raise ValueError(f"{len(syntaxes)} SOP classes in one send; one association carries at most {MAX_CONTEXTS}")
    return [build_context(uid, ts) for uid, ts in syntaxes.items()]


def _transient(status: int | None) -> bool:
    return status is None or (status & 0xFF00) == 0xA700


def send_files(files: list[DicomFile], address: PacsAddress, calling_ae: str = DEFAULT_CALLING_AE, *,
               retries: int = 2, backoff_s: float = 1.0, timeout_s: float = DEFAULT_TIMEOUT_S,
               on_result: Callable[[StoreResult], None] | None = None,
               sleep: Callable[[float], None] = time.sleep) -> SendReport:
    """C-STORE ``files`` to ``address``; ``on_result`` sees each object's final result as it is known.

    Raises :class:`PacsError` (with ``.report``, every object not stored) if no association could be opened
    in ``1 + retries`` attempts. ``retries`` >= 0; ``backoff_s`` >= 0 s.
    """
    import pydicom

    if retries < 0:
        raise ValueError(f"retries {retries}: must be >= 0")
    if backoff_s < 0:
        raise ValueError(f"backoff {backoff_s} s: must be >= 0")
    t0 = time.perf_counter()
    results = [StoreResult(path=f.path, sop_class_uid=f.sop_class_uid, sop_instance_uid=f.sop_instance_uid)
               for f in files]
    report = SendReport(address=address, calling_ae=calling_ae, results=results)
    contexts = storage_contexts(files)
    pending = list(results)
    ever_connected = False
    last_error: PacsError | None = None
    for attempt in range(1 + retries):
        if attempt:
            sleep(backoff_s * 2 ** (attempt - 1))
        try:
            assoc = open_association(address, contexts, calling_ae, timeout_s)
        except PacsError as exc:
            report.error, last_error = str(exc), exc
            for r in pending:
                r.attempts += 1
                r.message = exc.reason
            continue
        ever_connected = True
        accepted = {str(cx.abstract_syntax) for cx in assoc.accepted_contexts}
        retry: list[StoreResult] = []
        try:
            for r in pending:
                r.attempts += 1
                if r.sop_class_uid not in accepted:
                    r.status, r.message = None, "the PACS refused this SOP class's presentation context"
                    _done(r, on_result)
                    continue
                if not assoc.is_established:
                    r.status, r.message = None, "association lost before this object was sent"
                    retry.append(r)
                    continue
                try:
                    status = assoc.send_c_store(pydicom.dcmread(r.path))
                except (ValueError, AttributeError, RuntimeError) as exc:  # no usable context or a broken link
                    r.status, r.message = None, f"{type(exc).__name__}: {exc}"
                    if assoc.is_established:  # this object cannot be sent: permanent
                        _done(r, on_result)
                    else:
                        retry.append(r)
                    continue
                code = int(status.Status) if status and "Status" in status else None
                r.status = code
                if code is not None and (code == 0 or (code & 0xF000) == 0xB000):
                    r.stored = True
                    r.message = "stored" if code == 0 else f"stored with warning 0x{code:04X}"
                    r.message += _comment(status)
                    _done(r, on_result)
                elif _transient(code):
                    r.message = ("no response (timeout or association aborted)" if code is None
                                 else f"out of resources, status 0x{code:04X}") + _comment(status)
                    retry.append(r)
                else:
                    r.message = f"refused, status 0x{code:04X}{_comment(status)}"
                    _done(r, on_result)
        finally:
            if assoc.is_established:
                assoc.release()
        pending = retry
        report.error = None
        if not pending:
            break
    for r in pending:
        _done(r, on_result)
    report.seconds = time.perf_counter() - t0
    if not ever_connected and last_error is not None:
        err = PacsError(address, calling_ae, f"{last_error.reason} (after {1 + retries} attempt"
                        f"{'s' if retries else ''}; files left on disk)")
        err.report = report  # type: ignore[attr-defined]
        raise err
    return report


def send_folder(folder: Path, address: PacsAddress, calling_ae: str = DEFAULT_CALLING_AE, **kwargs) -> SendReport:
    """:func:`send_files` for every DICOM file under ``folder``; ValueError if there is none."""
    files = find_dicom_files(Path(folder))
    if not files:
        raise ValueError(f"{folder}: no DICOM file (Part 10, 'DICM' at byte 128) in it")
    return send_files(files, address, calling_ae, **kwargs)


def _done(r: StoreResult, on_result: Callable[[StoreResult], None] | None) -> None:
    if on_result is not None:
        on_result(r)


def _comment(status: object) -> str:
    text = getattr(status, "ErrorComment", "") if status is not None else ""
    return f" ({text})" if text else ""
