"""The DICOM network steps ``crescent acquire`` runs around an exam.

Order, for ``--worklist W``, ``--mpps M`` and ``--send P`` (each optional):

1. before any exposure: query W for the scheduled step (Modality MG, and the accession number of
   ``--accession`` if given); exactly one entry must match. Its patient, accession number, requested
   procedure and Study Instance UID go into the options' ``study`` fields, hence into every DICOM object.
   W down, or no/several matches: :class:`WorklistError`, and no exam is run.
2. MPPS N-CREATE IN PROGRESS to M. If M is down or refuses, the exam still runs (a RIS outage must not
   stop an exam already positioned); the failure is reported and the exit status is 1.
3. the exam.
4. MPPS N-SET to M: COMPLETED if the exam completed, else DISCONTINUED with the record's status and
   reason (code 110501 "Equipment failure" when the exam aborted on a device fault, else 110513).
5. C-STORE of every DICOM object in ``OUT/dicom`` to P, one line per object; failures are reported,
   the files stay on disk, to be sent later with ``crescent send OUT/dicom --to P``. An incomplete exam
   is sent (what it produced is real); an acquisition that raised is not (its outputs may be partial).

MPPS goes only where ``--mpps`` says: it is not sent to the worklist or PACS AE by default, because many
archives (Orthanc among them) have no MPPS SCP and would refuse the association.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from crescent.pacs.address import parse_address
from crescent.pacs.association import PacsError

Say = Callable[[str], None]


class WorklistError(RuntimeError):
    """The worklist could not give exactly one scheduled step: no exam should start."""


class ExamNetwork:
    """Worklist, MPPS and C-STORE around one ``crescent acquire`` run (see the module docstring)."""

    def __init__(self, opts: Any, say: Say = print) -> None:
        self.opts, self.say = opts, say
        self.calling_ae: str = opts.calling_ae
        self.worklist = parse_address(opts.worklist, "--worklist") if opts.worklist else None
        self.mpps = parse_address(opts.mpps, "--mpps") if opts.mpps else None
        self.pacs = parse_address(opts.send, "--send") if opts.send else None
        self.item: Any = None
        self.mpps_uid: str | None = None
        self.failures: list[str] = []
        self.send_report: Any = None

    # -- 1 and 2: before the exam -------------------------------------------------------------------
    def before(self) -> Any:
        """Query the worklist (if any) and return the options with its study fields; send MPPS IN PROGRESS."""
        opts = self.opts
        if self.worklist is not None:
            from crescent.pacs.worklist import query_worklist, select_item

            try:
                items = query_worklist(self.worklist, self.calling_ae, accession_number=opts.accession or "")
                self.item = select_item(items, self.worklist, opts.accession or "")
            except (PacsError, ValueError) as exc:
                raise WorklistError(str(exc)) from None
            fields = self.item.study_fields()
            if self.item.study_instance_uid:
                fields["study_instance_uid"] = self.item.study_instance_uid
            opts = opts.model_copy(update={"study": {**opts.study, **fields}})
            self.say(f"worklist {self.worklist}: {self.item.label()}")
        self.opts = opts
        if self.mpps is not None:
            from crescent.pacs.mpps import mpps_in_progress

            try:
                self.mpps_uid = mpps_in_progress(self.mpps, self.study(), item=self.item, calling_ae=self.calling_ae,
                                                 procedure=f"crescent {opts.exam}")
                self.say(f"MPPS {self.mpps}: IN PROGRESS ({self.mpps_uid})")
            except PacsError as exc:
                self._fail(f"MPPS N-CREATE not sent: {exc}")
        return opts

    def study(self) -> Any:
        """The StudyInfo the exam's DICOM objects will carry (patient, accession, station)."""
        from crescent.acquire.writers import study_info
        from firmware_host.api import resolve_exam

        return study_info(self.opts, resolve_exam(self.opts.exam).name)

    # -- 4 and 5: after the exam --------------------------------------------------------------------
    def after(self, out: Path, record: Any = None, error: BaseException | None = None) -> None:
        """MPPS COMPLETED/DISCONTINUED and C-STORE of ``out/dicom``; ``record`` the exam record, if any."""
        from crescent.pacs.store import find_dicom_files

        dicom_dir = Path(out) / "dicom"
        files = find_dicom_files(dicom_dir) if dicom_dir.is_dir() else []
        if self.mpps is not None and self.mpps_uid is not None:
            self._mpps_end(files, record, error)
        if self.pacs is not None and error is None:
            self._send(files, dicom_dir)
        elif self.pacs is not None:
            self._fail(f"nothing sent to {self.pacs}: the acquisition failed; what was written is in {out}")

    def _mpps_end(self, files: list, record: Any, error: BaseException | None) -> None:
        from crescent.pacs.mpps import mpps_completed, mpps_discontinued

        assert self.mpps is not None and self.mpps_uid is not None
        protocol = f"crescent {self.opts.exam}"
        try:
            if error is None and record is not None and record.status == "complete":
                mpps_completed(self.mpps, self.mpps_uid, files, self.study(), calling_ae=self.calling_ae,
                               ended=datetime.now(), protocol=protocol)
                self.say(f"MPPS {self.mpps}: COMPLETED ({len(files)} instance(s))")
            else:
                if error is not None:
                    reason, code = f"acquire failed: {type(error).__name__}: {error}", "110501"
                else:
                    reason = f"exam {record.status}" + (f": {record.reason}" if record.reason else "")
                    code = "110501" if record.status in ("aborted", "fault", "failed") else "110513"
                mpps_discontinued(self.mpps, self.mpps_uid, reason, code=code, files=files, study=self.study(),
                                  calling_ae=self.calling_ae, ended=datetime.now(), protocol=protocol)
                self.say(f"MPPS {self.mpps}: DISCONTINUED ({reason})")
        except PacsError as exc:
            self._fail(f"MPPS N-SET not sent: {exc}")

    def _send(self, files: list, dicom_dir: Path) -> None:
        from crescent.pacs.store import StoreResult, send_files

        assert self.pacs is not None
        if not files:
            self._fail(f"send to {self.pacs}: no DICOM object in {dicom_dir}")
            return

        def show(r: StoreResult) -> None:
            status = "-" if r.status is None else f"0x{r.status:04X}"
            self.say(f"  {'stored' if r.stored else 'FAILED'}  {r.path.name}  {r.sop_class_name}  status {status}"
                     + ("" if r.stored and r.message == "stored" else f"  {r.message}"))

        try:
            rep = send_files(files, self.pacs, self.calling_ae, retries=self.opts.send_retries, on_result=show)
        except PacsError as exc:
            self._fail(f"send: {exc}; the files are still in {dicom_dir} (crescent send {dicom_dir} --to "
                       f"{self.pacs})")
            return
        self.send_report = rep
        self.say(f"send {self.pacs}: {rep.stored} of {len(rep.results)} stored in {rep.seconds:.1f} s")
        if rep.failed:
            self._fail(f"send {self.pacs}: {rep.failed} object(s) not stored; files kept in {dicom_dir}")

    def _fail(self, msg: str) -> None:
        self.failures.append(msg)
        self.say(f"[network] {msg}")

