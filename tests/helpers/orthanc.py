"""A real Orthanc (Debian package ``orthanc``) on free loopback ports, for the DICOM network tests.

:class:`Orthanc` writes its own JSON configuration in a temporary folder (storage and index there,
``DicomAet`` ``ORTHANC``, called-AE check on, our calling AE registered in ``DicomModalities`` so C-STORE
and worklist C-FIND are allowed, the ModalityWorklists plugin serving ``*.wl`` files from ``wl/``), starts
``/usr/sbin/Orthanc``, waits for its REST API and DICOM port, and stops it on :meth:`stop`.

Configuration keys are those of Orthanc 1.10 (``/etc/orthanc/orthanc.json`` and ``worklists.json`` of the
Debian package). Orthanc has no MPPS SCP: :class:`MppsScp` is a pynetdicom one that records what it gets.
"""

from __future__ import annotations

import json
import socket
import subprocess
import time
import urllib.request
from pathlib import Path
from typing import Any

ORTHANC = Path("/usr/sbin/Orthanc")
WORKLIST_PLUGIN = Path("/usr/share/orthanc/plugins/libModalityWorklists.so")
AET = "ORTHANC"
CALLING_AE = "CRESCENT"


def free_port() -> int:
    """A TCP port free on the loopback interface now (the OS's choice)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Orthanc:
    """One Orthanc process; ``dicom_port``, ``http_port``, ``worklist_dir``, :meth:`get`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.worklist_dir = root / "wl"
        self.worklist_dir.mkdir(parents=True, exist_ok=True)
        (root / "db").mkdir(exist_ok=True)
        self.dicom_port, self.http_port = free_port(), free_port()
        self.config = {
            "Name": "crescent-test", "StorageDirectory": str(root / "db"), "IndexDirectory": str(root / "db"),
            "Plugins": [str(WORKLIST_PLUGIN)],
            "Worklists": {"Enable": True, "Database": str(self.worklist_dir)},
            "HttpServerEnabled": True, "HttpPort": self.http_port, "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False, "OrthancExplorerEnabled": False, "WebDavEnabled": False,
            "DicomServerEnabled": True, "DicomAet": AET, "DicomPort": self.dicom_port, "DicomCheckCalledAet": True,
            "DicomAlwaysAllowStore": False, "DicomAlwaysAllowFind": False, "DicomAlwaysAllowFindWorklist": False,
            "DicomAlwaysAllowEcho": True, "UnknownSopClassAccepted": False,
            "DicomModalities": {"crescent": [CALLING_AE, "127.0.0.1", free_port()]},
        }
        (root / "orthanc.json").write_text(json.dumps(self.config, indent=1))
        self.log = (root / "orthanc.log").open("w")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen([str(ORTHANC), str(root / "orthanc.json")], stdout=self.log,
                                     stderr=subprocess.STDOUT, cwd=root)
        self._wait()
        self.startup_s = time.perf_counter() - t0

    @property
    def address(self) -> str:
        return f"{AET}@127.0.0.1:{self.dicom_port}"

    def _wait(self, timeout_s: float = 30.0) -> None:
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"Orthanc exited with {self.proc.returncode}: "
                                   + (self.root / "orthanc.log").read_text()[-2000:])
            try:
                self.get("/system")
                with socket.create_connection(("127.0.0.1", self.dicom_port), timeout=1.0):
                    return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"Orthanc did not answer within {timeout_s} s: "
                           + (self.root / "orthanc.log").read_text()[-2000:])

    def get(self, path: str, raw: bool = False) -> Any:
        """GET ``path`` of the REST API: parsed JSON, or bytes with ``raw``."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.http_port}{path}", timeout=10) as r:
            body = r.read()
        return body if raw else json.loads(body)

    def post(self, path: str, body: bytes | str) -> Any:
        data = body.encode() if isinstance(body, str) else body
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}{path}", data=data, method="POST")
        with urllib.request.urlopen(req, timeout=10) as r:
            return json.loads(r.read())

    def instance_id(self, sop_instance_uid: str) -> str:
        """Orthanc's id of the instance with this SOP Instance UID (AssertionError if not exactly one)."""
        hits = [h for h in self.post("/tools/lookup", sop_instance_uid) if h["Type"] == "Instance"]
        assert len(hits) == 1, (sop_instance_uid, hits)
        return str(hits[0]["ID"])

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def write_worklist_entry(path: Path, *, accession: str, patient_name: str, patient_id: str,
                         study_uid: str, procedure: str = "DBT screening, right CC", modality: str = "MG",
                         station_ae: str = CALLING_AE) -> None:
    """One Modality Worklist entry as a DICOM file (what the ModalityWorklists plugin serves)."""
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = patient_name, patient_id, "19680214", "F"
    ds.AccessionNumber, ds.ReferringPhysicianName = accession, "Referrer^Rita"
    ds.RequestedProcedureID, ds.RequestedProcedureDescription = f"RP-{accession}", procedure
    ds.StudyInstanceUID = study_uid
    sps = Dataset()
    sps.Modality, sps.ScheduledStationAETitle = modality, station_ae
    sps.ScheduledProcedureStepStartDate, sps.ScheduledProcedureStepStartTime = "20261201", "093000"
    sps.ScheduledProcedureStepID, sps.ScheduledProcedureStepDescription = f"SPS-{accession}", procedure
    sps.ScheduledPerformingPhysicianName = ""
    ds.ScheduledProcedureStepSequence = [sps]
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.31"
    ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.save_as(path, enforce_file_format=True)


class MppsScp:
    """A pynetdicom MPPS SCP on a free loopback port; ``created`` and ``updated`` hold what it received.

    It keeps each instance's attributes and applies N-SETs to them, refusing an N-SET of an unknown
    instance (0x0112) or of one no longer IN PROGRESS (0x0110), as PS3.4 F.7.2.2 requires.
    """

    AET = "MPPS_SCP"

    def __init__(self) -> None:
        from pynetdicom import AE, evt
        from pynetdicom.sop_class import ModalityPerformedProcedureStep

        self.port = free_port()
        self.created: dict[str, Any] = {}
        self.updated: list[tuple[str, Any]] = []
        self.calling: list[str] = []
        ae = AE(ae_title=self.AET)
        ae.add_supported_context(ModalityPerformedProcedureStep)
        self.server = ae.start_server(("127.0.0.1", self.port), block=False, evt_handlers=[
            (evt.EVT_N_CREATE, self._create), (evt.EVT_N_SET, self._set)])

    @property
    def address(self) -> str:
        return f"{self.AET}@127.0.0.1:{self.port}"

    def _create(self, event: Any) -> tuple[int, Any]:
        uid = str(event.request.AffectedSOPInstanceUID)
        ds = event.attribute_list
        self.calling.append(event.assoc.requestor.ae_title)
        if uid in self.created or ds.get("PerformedProcedureStepStatus") != "IN PROGRESS":
            return 0x0106, None  # invalid attribute value
        self.created[uid] = ds
        return 0x0000, ds

    def _set(self, event: Any) -> tuple[int, Any]:
        uid = str(event.request.RequestedSOPInstanceUID)
        if uid not in self.created:
            return 0x0112, None  # no such SOP instance
        current = self.created[uid]
        if current.PerformedProcedureStepStatus != "IN PROGRESS":
            return 0x0110, None  # processing failure: the step is final
        mods = event.modification_list
        for elem in mods:
            current[elem.tag] = elem
        self.updated.append((uid, mods))
        return 0x0000, current

    def stop(self) -> None:
        self.server.shutdown()
