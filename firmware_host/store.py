"""Exam folder on disk: every image and record written as it arrives, durably.

Layout of one exam folder (``out_dir``)::

    audit.jsonl                 audit log (JSON lines, flushed per line)
    scout.npy, scout.json       AEC scout image and its ProjectionRecord (is_scout=True)
    projections/proj_000.npy    projection 0: rows x cols, uint16 little-endian (the raw frame)
    projections/proj_000.json   its ProjectionRecord (ExposureRecord, checksum, path)
    ...
    exam_record.json            the ExamRecord (written at the end, atomic rename)

Each file is written to a temporary name and renamed into place, so a crash leaves either the
whole file or none of it. Images and their sidecars are written in full before :meth:`ExamStore.save_image`
returns (a host that dies keeps them: they are in the OS's page cache and the rename is done); the
fsyncs that make them survive a power cut run on a background thread (:class:`Syncer`), because they can
take hundreds of ms on a busy disk and ``save_image`` runs on the link thread that carries the heartbeats
the device's 500 ms watchdog waits for. :meth:`ExamStore.write_record` first waits for every pending
fsync, then writes the exam record synchronously: once the record exists, everything it names is on disk.
The ``.npy`` data are exactly the frame bytes whose CRC-32C the device sent;
:func:`verify_projection` re-checks it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from pydantic import BaseModel

from firmware_host.durability import Syncer
from firmware_host.intake import fsync_dir
from protocols.records import ProjectionRecord
from protocols.wire.crc import crc32c

RECORD_NAME = "exam_record.json"
AUDIT_NAME = "audit.jsonl"
PROJECTIONS_DIR = "projections"


def atomic_write_bytes(path: Path, data: bytes, syncer: Syncer | None = None) -> None:
    """Write ``data`` to ``path`` via temp file + rename, durably: fsync of the file before the rename and
    of the directory after it, here or (with ``syncer``) on its background thread, in that order."""
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        if syncer is None:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if syncer is None:
        fsync_dir(path.parent)
    else:
        syncer.submit_path(path)


def atomic_write_model(path: Path, model: BaseModel, syncer: Syncer | None = None) -> None:
    atomic_write_bytes(path, model.model_dump_json(indent=2).encode("utf-8"), syncer)


def npy_bytes(image: np.ndarray) -> bytes:
    """The .npy file content of ``image``."""
    import io

    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(image), allow_pickle=False)
    return buf.getvalue()


class ExamStore:
    """Writes one exam's folder (see module docstring)."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.root = Path(out_dir)
        (self.root / PROJECTIONS_DIR).mkdir(parents=True, exist_ok=True)
        self.syncer = Syncer()

    @property
    def audit_path(self) -> Path:
        return self.root / AUDIT_NAME

    @property
    def record_path(self) -> Path:
        return self.root / RECORD_NAME

    def save_image(self, stem: str, image: np.ndarray, record: ProjectionRecord) -> ProjectionRecord:
        """Store ``image`` as ``stem.npy`` and its record as ``stem.json``; returns the record with its path."""
        rel = f"{stem}.npy"
        record = record.model_copy(update={"path": rel})
        atomic_write_bytes(self.root / rel, npy_bytes(image), self.syncer)
        atomic_write_model(self.root / f"{stem}.json", record, self.syncer)
        return record

    def projection_stem(self, index: int) -> str:
        return f"{PROJECTIONS_DIR}/proj_{index:03d}"

    def write_record(self, record: BaseModel) -> Path:
        """Wait for every image's fsync, then write the exam record (fsynced before this returns)."""
        self.syncer.wait()
        atomic_write_model(self.record_path, record)
        return self.record_path

    def close(self) -> None:
        """Wait for pending fsyncs and stop the background thread."""
        try:
            self.syncer.wait()
        finally:
            self.syncer.close()


def verify_projection(npy_path: str | os.PathLike[str]) -> tuple[bool, str]:
    """Check a stored projection against its sidecar: shape and CRC-32C of the raw pixels."""
    npy_path = Path(npy_path)
    side = npy_path.with_suffix(".json")
    try:
        rec = ProjectionRecord.model_validate(json.loads(side.read_text()))
        img = np.load(npy_path, allow_pickle=False)
    except Exception as exc:  # any unreadable file is a failed check, with its reason
        return False, f"{npy_path.name}: unreadable ({exc})"
    if img.shape != (rec.rows, rec.cols):
        return False, f"{npy_path.name}: shape {img.shape} != ({rec.rows}, {rec.cols})"
    crc = crc32c(np.ascontiguousarray(img).astype(img.dtype.newbyteorder("<"), copy=False).tobytes())
    if crc != rec.checksum_crc32c:
        return False, f"{npy_path.name}: CRC-32C 0x{crc:08X} != recorded 0x{rec.checksum_crc32c:08X}"
    return True, "ok"


def verify_exam_folder(out_dir: str | os.PathLike[str]) -> list[tuple[str, bool, str]]:
    """Verify every stored image of an exam folder: (relative path, ok, message)."""
    root = Path(out_dir)
    out = []
    for p in sorted(list(root.glob("*.npy")) + list((root / PROJECTIONS_DIR).glob("*.npy"))):
        ok, msg = verify_projection(p)
        out.append((str(p.relative_to(root)), ok, msg))
    return out
