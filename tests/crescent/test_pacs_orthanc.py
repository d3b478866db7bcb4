"""DICOM networking against a REAL Orthanc (Debian package ``orthanc``; 1.10.1 here): store, worklist, MPPS.

A module fixture starts ``/usr/sbin/Orthanc`` on free loopback ports with its own configuration and the
ModalityWorklists plugin (tests/helpers/orthanc.py) and stops it afterwards. What is checked is read back
through Orthanc's REST API, independently of our DICOM code: instance counts, SOP classes, patient and
study attributes, and the pixel data of every stored instance against the file on disk.

Orthanc has no MPPS SCP (1.10 refuses the MPPS presentation context; a test below shows it), so MPPS is
checked against a pynetdicom MPPS SCP started in the test (DISCONTINUED: test_pacs.py).

Skipped, with a note, only when /usr/sbin/Orthanc is absent (``make tools`` installs it as root).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pydicom
import pytest
from pydicom.uid import generate_uid

from orthanc import CALLING_AE, ORTHANC, MppsScp, Orthanc, free_port, write_worklist_entry

pytestmark = [
    pytest.mark.skipif(not ORTHANC.exists(), reason="Orthanc not installed (/usr/sbin/Orthanc): "
                       "`apt-get install orthanc`, or `make tools` as root"),
    pytest.mark.slow, pytest.mark.timeout(900),
]
ROOT = Path(__file__).resolve().parents[2]


def crescent(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    res = subprocess.run([sys.executable, "-m", "crescent", *args], capture_output=True, text=True, cwd=ROOT,
                         timeout=timeout)
    print(res.stdout[-3000:], res.stderr[-3000:])
    return res


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Any:
    server = Orthanc(tmp_path_factory.mktemp("orthanc"))
    print(f"Orthanc {server.get('/system')['Version']} up in {server.startup_s:.2f} s on DICOM "
          f"{server.dicom_port}, HTTP {server.http_port}")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def first_exam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small tomosynthesis exam in virtual time (9 projections, 400 um binning): the folder to send."""
    out = tmp_path_factory.mktemp("exam1") / "out"
    res = crescent("acquire", "--virtual-time", "--exam", "dbt-step", "--binning", "8", "--seed", "1",
                   "--out", str(out), "--no-progress")
    assert res.returncode == 0, res.stdout + res.stderr
    return out


@pytest.fixture(scope="module")
def worklist(orthanc: Orthanc) -> dict[str, dict[str, str]]:
    """Two scheduled MG steps in Orthanc's worklist folder, written with pydicom."""
    entries = {
        "ACC-0001": {"patient_name": "Doe^Jane", "patient_id": "P-0001", "study_uid": generate_uid()},
        "ACC-0002": {"patient_name": "Roe^Mary", "patient_id": "P-0002", "study_uid": generate_uid()},
    }
    for acc, e in entries.items():
        write_worklist_entry(orthanc.worklist_dir / f"{acc}.wl", accession=acc, **e)
    return entries


@pytest.fixture(scope="module")
def sent_first(orthanc: Orthanc, first_exam: Path) -> subprocess.CompletedProcess[str]:
    """``crescent send`` of the first exam's whole output folder (DICOM files found in it) to Orthanc."""
    return crescent("send", str(first_exam), "--to", orthanc.address)


def _stored(orthanc: Orthanc, path: Path) -> tuple[dict[str, str], bytes]:
    """Orthanc's main tags of the instance stored from ``path``, and the content of its stored copy: the pixel
    data of an image, the whole data set (JSON) of an object without pixels (a dose SR)."""
    ds = pydicom.dcmread(path, stop_before_pixels=True)
    iid = orthanc.instance_id(ds.SOPInstanceUID)
    tags = orthanc.get(f"/instances/{iid}/simplified-tags")
    stored = pydicom.dcmread(pydicom.filebase.DicomBytesIO(orthanc.get(f"/instances/{iid}/file", raw=True)))
    return tags, _content(stored)


def _content(ds: pydicom.Dataset) -> bytes:
    return bytes(ds.PixelData) if "PixelData" in ds else ds.to_json().encode()


def _files(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.dcm"))


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*.dcm"))}


def test_send_stores_every_object_of_an_exam(orthanc: Orthanc, first_exam: Path,
                                            sent_first: subprocess.CompletedProcess[str]) -> None:
    files = _files(first_exam / "dicom")
    headers = [pydicom.dcmread(p, stop_before_pixels=True) for p in files]
    res = sent_first
    assert res.returncode == 0, res.stdout + res.stderr
    assert sum(line.lstrip().startswith("stored ") for line in res.stdout.splitlines()) == len(files) >= 2
    assert f"{len(files)} of {len(files)} stored on {orthanc.address}" in res.stdout
    assert {h.SOPClassUID for h in headers} >= {"1.2.840.10008.5.1.4.1.1.13.1.3"}  # the tomosynthesis object
    (study_uid,) = {h.StudyInstanceUID for h in headers}
    study = [h["ID"] for h in orthanc.post("/tools/lookup", study_uid) if h["Type"] == "Study"]
    assert len(study) == 1
    assert len(orthanc.get(f"/studies/{study[0]}/instances")) == len(files)
    assert len(orthanc.get(f"/studies/{study[0]}/series")) == len({h.SeriesInstanceUID for h in headers})
    for path in files:
        ds = pydicom.dcmread(path)
        tags, content = _stored(orthanc, path)
        for key in ("SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID", "PatientID", "Modality"):
            assert tags[key] == str(ds[key].value), (path.name, key)
        assert content == _content(ds), path.name


def test_every_crescent_sop_class_is_negotiated_and_stored(orthanc: Orthanc, tmp_path: Path) -> None:
    """Breast projection (both), tomosynthesis, DM (both) and the dose SR: Orthanc 1.10 accepts each context."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    from crescent.pacs.address import parse_address
    from crescent.pacs.store import CRESCENT_SOP_CLASSES, send_folder

    study = generate_uid()
    for i, uid in enumerate(CRESCENT_SOP_CLASSES):
        ds = Dataset()
        ds.SOPClassUID, ds.SOPInstanceUID, ds.StudyInstanceUID, ds.SeriesInstanceUID = (
            uid, generate_uid(), study, generate_uid())
        ds.PatientID, ds.PatientName, ds.Modality = "SOP-CLASSES", "Classes^All", "SR" if "88" in uid else "MG"
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.file_meta.MediaStorageSOPClassUID, ds.file_meta.MediaStorageSOPInstanceUID = uid, ds.SOPInstanceUID
        ds.save_as(tmp_path / f"o{i}.dcm", enforce_file_format=True)
    rep = send_folder(tmp_path, parse_address(orthanc.address), CALLING_AE)
    assert rep.ok and rep.stored == len(CRESCENT_SOP_CLASSES), [r.message for r in rep.results]
    for r in rep.results:
        tags = orthanc.get(f"/instances/{orthanc.instance_id(r.sop_instance_uid)}/simplified-tags")
        assert tags["SOPClassUID"] == r.sop_class_uid


def test_worklist_c_find_returns_the_entries_written(orthanc: Orthanc, worklist: dict[str, dict[str, str]]) -> None:
    from crescent.pacs.address import parse_address
    from crescent.pacs.worklist import query_worklist

    addr = parse_address(orthanc.address)
    items = {i.accession_number: i for i in query_worklist(addr, CALLING_AE)}
    assert set(items) == set(worklist)
    for acc, e in worklist.items():
        it = items[acc]
        assert (it.patient_name, it.patient_id, it.study_instance_uid) == (e["patient_name"], e["patient_id"],
                                                                          e["study_uid"])
        assert (it.patient_birth_date, it.patient_sex, it.requested_procedure_id) == ("19680214", "F", f"RP-{acc}")
        assert it.scheduled_step.step_id == f"SPS-{acc}" and it.scheduled_step.modality == "MG"
        assert it.scheduled_step.station_ae == CALLING_AE and it.scheduled_step.start_date == "20261201"
    assert [i.patient_id for i in query_worklist(addr, CALLING_AE, accession_number="ACC-0002")] == ["P-0002"]
    assert query_worklist(addr, CALLING_AE, modality="CT") == []


def test_acquire_with_worklist_mpps_and_send_adds_a_second_study(
        orthanc: Orthanc, first_exam: Path, sent_first: subprocess.CompletedProcess[str],
        worklist: dict[str, dict[str, str]], tmp_path: Path) -> None:
    assert sent_first.returncode == 0
    first_study = orthanc.get("/studies")
    before = {p.name: _stored(orthanc, p)[1] for p in _files(first_exam / "dicom")}
    n_before = orthanc.get("/statistics")["CountInstances"]
    mpps = MppsScp()
    try:
        out = tmp_path / "out"
        res = crescent("acquire", "--virtual-time", "--exam", "ffdm-cc", "--binning", "8", "--seed", "2",
                       "--out", str(out), "--no-progress", "--worklist", orthanc.address, "--accession", "ACC-0002",
                       "--mpps", mpps.address, "--send", orthanc.address)
    finally:
        mpps.stop()
    assert res.returncode == 0, res.stdout + res.stderr
    entry = worklist["ACC-0002"]
    files = _files(out / "dicom")
    assert files and "COMPLETED" in res.stdout and f"{len(files)} of {len(files)} stored" in res.stdout
    # the worklist's patient and study reached the stored objects
    new = [s for s in orthanc.get("/studies") if s not in first_study]
    assert len(new) == 1
    study = orthanc.get(f"/studies/{new[0]}")
    assert study["MainDicomTags"]["StudyInstanceUID"] == entry["study_uid"]
    assert study["MainDicomTags"]["AccessionNumber"] == "ACC-0002"
    assert study["PatientMainDicomTags"]["PatientName"] == entry["patient_name"]
    assert study["PatientMainDicomTags"]["PatientID"] == entry["patient_id"]
    assert orthanc.get("/statistics")["CountInstances"] == n_before + len(files)
    # nothing of the first exam was overwritten
    assert {p.name: _stored(orthanc, p)[1] for p in _files(first_exam / "dicom")} == before
    # MPPS: IN PROGRESS with the scheduled step, then COMPLETED listing exactly the instances stored
    assert len(mpps.created) == 1 and mpps.calling == [CALLING_AE]
    uid, created = next(iter(mpps.created.items()))
    ssa = created.ScheduledStepAttributesSequence[0]
    assert (ssa.AccessionNumber, ssa.StudyInstanceUID, ssa.ScheduledProcedureStepID) == (
        "ACC-0002", entry["study_uid"], "SPS-ACC-0002")
    assert (str(created.PatientName), created.PatientID, created.Modality) == (entry["patient_name"],
                                                                             entry["patient_id"], "MG")
    assert [u for u, _ in mpps.updated] == [uid]
    done = mpps.updated[0][1]
    assert done.PerformedProcedureStepStatus == "COMPLETED" and done.PerformedProcedureStepEndDate
    referenced = {r.ReferencedSOPInstanceUID for s in done.PerformedSeriesSequence
                  for r in (*s.ReferencedImageSequence, *s.ReferencedNonImageCompositeSOPInstanceSequence)}
    in_orthanc = {i["MainDicomTags"]["SOPInstanceUID"] for i in orthanc.get(f"/studies/{new[0]}/instances")}
    assert referenced == in_orthanc == {str(pydicom.dcmread(p).SOPInstanceUID) for p in files}


def test_orthanc_has_no_mpps_scp(orthanc: Orthanc) -> None:
    """Orthanc 1.10 refuses the MPPS presentation context: why MPPS is a separate --mpps peer."""
    from crescent.outputs.study import StudyInfo
    from crescent.pacs.address import parse_address
    from crescent.pacs.association import PacsError
    from crescent.pacs.mpps import mpps_in_progress

    with pytest.raises(PacsError, match="accepted none of the presentation contexts.*Modality Performed"):
        mpps_in_progress(parse_address(orthanc.address), StudyInfo(), calling_ae=CALLING_AE)


def test_pacs_down_send_fails_clearly_and_keeps_the_files(first_exam: Path) -> None:
    port = free_port()  # nothing listens there
    before = _digest(first_exam / "dicom")
    res = crescent("send", str(first_exam / "dicom"), "--to", f"ORTHANC@127.0.0.1:{port}", "--retries", "1",
                   "--backoff", "0.1")
    assert res.returncode == 1
    assert f"cannot associate with AE 'ORTHANC' at 127.0.0.1:{port} (calling AE 'CRESCENT'): Connection refused" \
        in res.stderr, res.stderr
    assert "after 2 attempts; files left on disk" in res.stderr and f"0 of {len(before)} stored" in res.stderr
    assert _digest(first_exam / "dicom") == before


def test_wrong_called_ae_is_rejected_with_the_reason(orthanc: Orthanc, first_exam: Path) -> None:
    res = crescent("send", str(first_exam / "dicom" / "tomo.dcm"), "--to", f"NOTORTHANC@127.0.0.1:{orthanc.dicom_port}",
                   "--retries", "0")
    assert res.returncode == 1
    assert "association rejected permanently by the service user: Called AE title not recognised" in res.stderr


def test_acquire_with_worklist_down_stops_before_any_exposure(tmp_path: Path) -> None:
    port = free_port()
    res = crescent("acquire", "--virtual-time", "--out", str(tmp_path / "out"), "--no-progress",
                   "--worklist", f"RIS@127.0.0.1:{port}")
    assert res.returncode == 2
    assert f"AE 'RIS' at 127.0.0.1:{port}" in res.stdout and "no exam was run" in res.stdout, res.stdout
    assert not (tmp_path / "out" / "exam").exists()
