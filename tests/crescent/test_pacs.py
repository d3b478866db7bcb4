"""crescent.pacs without Orthanc: address parsing, retries and refusals against a scripted pynetdicom SCP,
and `crescent send`'s exit statuses for bad input. The Orthanc round trips are in test_pacs_orthanc.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid

from crescent.pacs.address import parse_address
from crescent.pacs.association import PacsError
from crescent.pacs.store import CRESCENT_SOP_CLASSES, find_dicom_files, send_folder, storage_contexts
from orthanc import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("text, expected", [
    ("ORTHANC@127.0.0.1:4242", ("ORTHANC", "127.0.0.1", 4242)),
    ("PACS@pacs.example.org:104", ("PACS", "pacs.example.org", 104)),
    ("STORE SCP@[::1]:11112", ("STORE SCP", "::1", 11112)),
])
def test_address_parses(text: str, expected: tuple[str, str, int]) -> None:
    a = parse_address(text)
    assert (a.ae_title, a.host, a.port) == expected
    assert parse_address(str(a)) == a


@pytest.mark.parametrize("text, why", [
    ("127.0.0.1:4242", "no '@'"),
    ("@127.0.0.1:4242", "no AE title"),
    ("ORTHANC@127.0.0.1", "is not HOST:PORT"),
    ("ORTHANC@:4242", "no host"),
    ("ORTHANC@host:42x", "port '42x' is not a number"),
    ("ORTHANC@host:0", "port 0 out of range 1..65535"),
    ("ORTHANC@host:65536", "port 65536 out of range"),
    ("A_TITLE_OF_17_CHR@host:104", "17 characters, the limit is 16"),
    ("BAD\\AE@host:104", "character '\\\\' not allowed"),
])
def test_bad_address_is_named(text: str, why: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_address(text, "--to")
    msg = str(err.value)
    assert msg.startswith(f"--to {text!r}: expected AE@HOST:PORT") and why in msg, msg


def _write(folder: Path, sop_class: str, n: int = 1) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    study, series = generate_uid(), generate_uid()
    paths = []
    for i in range(n):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.PatientID, ds.PatientName, ds.Modality = "UNIT", "Unit^Test", "MG"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
        p = folder / f"obj_{len(list(folder.iterdir())):03d}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths


class ScriptedStoreScp:
    """A storage SCP answering each C-STORE with the next status of ``script`` (then 0x0000)."""

    def __init__(self, script: list[int], classes: list[str]) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.presentation import build_context

        self.script, self.received, self.associations = list(script), [], 0
        self.port = free_port()
        ae = AE(ae_title="SCRIPTED")
        ae.supported_contexts = [build_context(c, ["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"]) for c in classes]
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[
            (evt.EVT_C_STORE, self._store), (evt.EVT_ESTABLISHED, self._established)])

    def _established(self, event: Any) -> None:
        self.associations += 1

    def _store(self, event: Any) -> int:
        status = self.script.pop(0) if self.script else 0x0000
        if status == 0:
            self.received.append(str(event.request.AffectedSOPInstanceUID))
        return status


@pytest.fixture
def scp_factory():
    servers: list[ScriptedStoreScp] = []

    def make(script: list[int], classes: list[str] | None = None) -> ScriptedStoreScp:
        servers.append(ScriptedStoreScp(script, classes or list(CRESCENT_SOP_CLASSES)))
        return servers[-1]
    yield make
    for s in servers:
        s.server.shutdown()


def test_contexts_cover_crescent_classes_and_what_the_folder_holds(tmp_path: Path) -> None:
    other = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture: not one of ours, found in the folder
    _write(tmp_path, other)
    contexts = storage_contexts(find_dicom_files(tmp_path))
    assert {str(c.abstract_syntax) for c in contexts} == set(CRESCENT_SOP_CLASSES) | {other}


def test_out_of_resources_is_retried_with_backoff(tmp_path: Path, scp_factory: Any) -> None:
    files = _write(tmp_path, "1.2.840.10008.5.1.4.1.1.13.1.5", 3)
    scp = scp_factory([0x0000, 0xA700])  # the second object: out of resources once
    slept: list[float] = []
    rep = send_folder(tmp_path, parse_address(f"SCRIPTED@127.0.0.1:{scp.port}"), retries=2, backoff_s=0.25,
                      sleep=slept.append)
    assert rep.ok and rep.stored == 3 and slept == [0.25] and scp.associations == 2
    assert [r.attempts for r in rep.results] == [1, 2, 1]
    assert sorted(scp.received) == sorted(r.sop_instance_uid for r in rep.results)
    assert all(p.exists() for p in files)


def test_permanent_refusal_is_reported_not_retried(tmp_path: Path, scp_factory: Any) -> None:
    _write(tmp_path, "1.2.840.10008.5.1.4.1.1.13.1.5", 2)
    scp = scp_factory([0xA900])  # data set does not match SOP class
    slept: list[float] = []
    rep = send_folder(tmp_path, parse_address(f"SCRIPTED@127.0.0.1:{scp.port}"), retries=3, sleep=slept.append)
    assert (rep.stored, rep.failed, slept, scp.associations) == (1, 1, [], 1)
    bad = [r for r in rep.results if not r.stored][0]
    assert bad.status == 0xA900 and bad.attempts == 1 and "refused, status 0xA900" in bad.message


def test_refused_sop_class_is_named_per_object(tmp_path: Path, scp_factory: Any) -> None:
    _write(tmp_path / "a", "1.2.840.10008.5.1.4.1.1.13.1.3")
    _write(tmp_path / "b", "1.2.840.10008.5.1.4.1.1.88.67")
    scp = scp_factory([], ["1.2.840.10008.5.1.4.1.1.13.1.3"])  # a PACS that takes no dose SR
    rep = send_folder(tmp_path, parse_address(f"SCRIPTED@127.0.0.1:{scp.port}"), sleep=lambda s: None)
    by_class = {r.sop_class_uid: r for r in rep.results}
    assert by_class["1.2.840.10008.5.1.4.1.1.13.1.3"].stored
    sr = by_class["1.2.840.10008.5.1.4.1.1.88.67"]
    assert not sr.stored and "refused this SOP class" in sr.message and sr.sop_class_name.startswith("X-Ray Radiation")


def test_pacs_down_raises_after_retries_naming_the_peer(tmp_path: Path) -> None:
    files = _write(tmp_path, "1.2.840.10008.5.1.4.1.1.13.1.5", 2)
    port = free_port()  # nothing listens there
    slept: list[float] = []
    with pytest.raises(PacsError) as err:
        send_folder(tmp_path, parse_address(f"ARCHIVE@127.0.0.1:{port}"), calling_ae="MODALITY1", retries=2,
                    backoff_s=0.5, sleep=slept.append)
    msg = str(err.value)
    assert f"AE 'ARCHIVE' at 127.0.0.1:{port}" in msg and "calling AE 'MODALITY1'" in msg, msg
    assert "Connection refused" in msg and "after 3 attempts" in msg, msg
    assert slept == [0.5, 1.0]
    assert [r.attempts for r in err.value.report.results] == [3, 3]  # type: ignore[attr-defined]
    assert all(p.exists() for p in files)


def _send(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "crescent", "send", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_send_bad_input_exits_2(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("no DICOM here")
    cases = [
        ([str(tmp_path / "missing"), "--to", "A@127.0.0.1:104"], "no such file or folder"),
        ([str(tmp_path), "--to", "A@127.0.0.1:104"], "no DICOM file"),
        ([str(tmp_path), "--to", "A@127.0.0.1"], "expected AE@HOST:PORT"),
        ([str(tmp_path), "--to", "A@127.0.0.1:104", "--retries", "-1"], "--retries -1: must be 0..20"),
        ([str(tmp_path), "--to", "A@127.0.0.1:104", "--calling-ae", "X" * 17], "--calling-ae"),
    ]
    for args, why in cases:
        res = _send(*args)
        assert res.returncode == 2 and why in res.stderr, (args, res.stdout, res.stderr)


def test_worklist_fields_reach_the_study(tmp_path: Path) -> None:
    from crescent.acquire.options import AcquireOptions
    from crescent.acquire.writers import study_info
    from crescent.pacs.worklist import ScheduledStep, WorklistItem

    item = WorklistItem(patient_name="Doe^Jane", patient_id="P-1", patient_birth_date="19680214", patient_sex="F",
                        accession_number="ACC-1", requested_procedure_id="RP-1",
                        requested_procedure_description="DBT screening", study_instance_uid="1.2.3.4.5",
                        scheduled_step=ScheduledStep(step_id="SPS-1"))
    plain = study_info(AcquireOptions(exam="ffdm-cc", out=tmp_path, virtual_time=True), "ffdm-cc")
    fields = {**item.study_fields(), "study_instance_uid": item.study_instance_uid}
    s = study_info(AcquireOptions(exam="ffdm-cc", out=tmp_path, study=fields, virtual_time=True), "ffdm-cc")
    assert (s.patient_name, s.patient_id, s.patient_birth_date, s.patient_sex) == ("Doe^Jane", "P-1", "19680214", "F")
    assert (s.accession_number, s.study_id, s.study_description) == ("ACC-1", "RP-1", "DBT screening")
    assert s.uid("study") == "1.2.3.4.5" and plain.uid("study") != "1.2.3.4.5"
    assert s.uid("series", 1) != plain.uid("series", 1)  # another entry, same seed: other UIDs


@pytest.mark.parametrize("status, reason, code, meaning", [
    ("aborted", "WATCHDOG fault", "110501", "Equipment failure"),
    ("incomplete", "8 images never announced", "110513", "Discontinued for unspecified reason"),
])
def test_exam_network_discontinues_an_unfinished_exam(tmp_path: Path, status: str, reason: str, code: str,
                                                      meaning: str) -> None:
    from types import SimpleNamespace

    from crescent.acquire.options import AcquireOptions
    from crescent.acquire.network import ExamNetwork
    from orthanc import MppsScp

    scp = MppsScp()
    said: list[str] = []
    try:
        net = ExamNetwork(AcquireOptions(exam="ffdm-cc", out=tmp_path, mpps=scp.address), said.append)
        net.before()
        net.after(tmp_path, SimpleNamespace(status=status, reason=reason))
    finally:
        scp.stop()
    (uid, mods), = scp.updated
    assert scp.created[uid].PerformedProcedureStepStatus == "DISCONTINUED" and not net.failures
    c = mods.PerformedProcedureStepDiscontinuationReasonCodeSequence[0]
    assert (c.CodeValue, c.CodeMeaning) == (code, meaning)
    assert mods.CommentsOnThePerformedProcedureStep == f"exam {status}: {reason}"
    assert any("DISCONTINUED" in line for line in said)


def test_exam_network_mpps_down_is_a_failure_not_a_crash(tmp_path: Path) -> None:
    from crescent.acquire.options import AcquireOptions
    from crescent.acquire.network import ExamNetwork

    port = free_port()
    net = ExamNetwork(AcquireOptions(exam="ffdm-cc", out=tmp_path, mpps=f"RIS@127.0.0.1:{port}"), lambda m: None)
    net.before()
    assert net.mpps_uid is None and len(net.failures) == 1
    assert f"MPPS N-CREATE not sent: cannot associate with AE 'RIS' at 127.0.0.1:{port}" in net.failures[0]


def test_find_skips_non_dicom_and_dicomdir_and_names_a_broken_file(tmp_path: Path) -> None:
    _write(tmp_path / "exam", "1.2.840.10008.5.1.4.1.1.13.1.4", 2)
    (tmp_path / "exam" / "report.html").write_text("<html></html>")
    d = Dataset()
    d.FileSetID = "CRESCENT"
    d.file_meta = FileMetaDataset()
    d.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    d.file_meta.MediaStorageSOPClassUID, d.file_meta.MediaStorageSOPInstanceUID = "1.2.840.10008.1.3.10", generate_uid()
    d.save_as(tmp_path / "DICOMDIR", enforce_file_format=True)
    found = find_dicom_files(tmp_path)
    assert [f.path.name for f in found] == ["obj_000.dcm", "obj_001.dcm"]  # no html, no DICOMDIR
    broken = tmp_path / "exam" / "broken.dcm"
    broken.write_bytes(b"\0" * 128 + b"DICM" + b"\x02\x00\x10\x00garbage")
    with pytest.raises(ValueError, match="broken.dcm: (not a readable DICOM file|DICOM file without)"):
        find_dicom_files(tmp_path)


def test_mpps_discontinued_round_trip() -> None:
    from crescent.outputs.study import StudyInfo
    from crescent.pacs.address import parse_address
    from crescent.pacs.association import PacsError
    from crescent.pacs.mpps import mpps_completed, mpps_discontinued, mpps_in_progress

    from orthanc import MppsScp

    scp = MppsScp()
    try:
        addr, study = parse_address(scp.address), StudyInfo(patient_id="P-9", accession_number="ACC-9")
        uid = mpps_in_progress(addr, study, procedure="crescent dbt-standard")
        mpps_discontinued(addr, uid, "exam aborted: WATCHDOG fault", code="110501")
        (_, mods), = scp.updated
        assert mods.PerformedProcedureStepStatus == "DISCONTINUED"
        code = mods.PerformedProcedureStepDiscontinuationReasonCodeSequence[0]
        assert (code.CodeValue, code.CodingSchemeDesignator, code.CodeMeaning) == ("110501", "DCM",
                                                                                   "Equipment failure")
        assert mods.CommentsOnThePerformedProcedureStep == "exam aborted: WATCHDOG fault"
        assert scp.created[uid].ScheduledStepAttributesSequence[0].AccessionNumber == "ACC-9"
        with pytest.raises(PacsError, match=r"N-SET \(COMPLETED\) refused, status 0x0110"):  # a final step stays
            mpps_completed(addr, uid, [], study)
    finally:
        scp.stop()


def test_acquire_bad_network_options_exit_2_before_any_exam(tmp_path: Path) -> None:
    cases = [
        (["--send", "ORTHANC@127.0.0.1"], "--send: address 'ORTHANC@127.0.0.1': expected AE@HOST:PORT"),
        (["--worklist", "RIS@ris:0"], "--worklist: address 'RIS@ris:0': expected AE@HOST:PORT"),
        (["--mpps", "127.0.0.1:104"], "--mpps: address '127.0.0.1:104': expected AE@HOST:PORT"),
        (["--accession", "ACC-1"], "--accession chooses a worklist entry: it needs --worklist"),
        (["--send", "A@h:104", "--calling-ae", "X" * 17], "--calling-ae: calling AE title"),
    ]
    for args, why in cases:
        res = subprocess.run([sys.executable, "-m", "crescent", "acquire", "--virtual-time", "--no-progress",
                              "--out", str(tmp_path / "out"), *args], capture_output=True, text=True, cwd=ROOT,
                             timeout=120, env={**os.environ, "COLUMNS": "200"})
        assert res.returncode == 2 and why in res.stdout, (args, res.stdout, res.stderr)
        assert not (tmp_path / "out").exists()
