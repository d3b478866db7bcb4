"""fsync off the link thread (firmware_host.durability): images are whole on disk when save_image returns,
their fsyncs run in order on a background thread, and the exam record is written only after all of them."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest

from firmware_host import durability, store as store_mod
from firmware_host.durability import Syncer
from firmware_host.store import ExamStore
from protocols.records import ProjectionRecord


def test_jobs_run_in_order_and_wait_reraises_the_first_failure() -> None:
    done: list[int] = []
    s = Syncer()
    for i in range(50):
        s.submit(lambda i=i: done.append(i))
    s.wait()
    assert done == list(range(50))

    def fail() -> None:
        raise OSError(5, "EIO on fsync")
    s.submit(fail)
    s.submit(lambda: done.append(99))
    with pytest.raises(OSError, match="EIO"):
        s.wait()
    assert done[-1] == 99  # later jobs still ran
    s.close()


def _record(rows: int, cols: int) -> ProjectionRecord:
    from protocols.records import ExposureRecord

    exp = ExposureRecord(index=0, frame_id=1, planned_angle_deg=0.0, angle_start_deg=0.0, angle_end_deg=0.0,
                         kvp=28.0, mas=1.0, anode_filter="W/Rh", focal_spot_mm=0.3, window_start_s=0.0,
                         window_end_s=0.02, terminated_early=False, is_scout=False)
    return ProjectionRecord(exposure=exp, rows=rows, cols=cols, checksum_crc32c=0, path="")


def test_the_record_is_written_only_after_every_image_fsync(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A slow disk: each fsync takes 50 ms. save_image returns at once with the file whole (readable); the
    record's write waits until every image and sidecar has been fsynced."""
    synced: list[str] = []
    order: list[str] = []
    real = durability.fsync_path

    def slow_fsync(path: Path) -> None:
        time.sleep(0.05)
        real(path)
        synced.append(path.name)
        order.append(f"sync {path.name}")
    monkeypatch.setattr(durability, "fsync_path", slow_fsync)
    real_write = store_mod.atomic_write_model

    def record_write(path: Path, model, syncer=None):  # type: ignore[no-untyped-def]
        if syncer is None:
            order.append(f"write {path.name}")
        return real_write(path, model, syncer)
    monkeypatch.setattr(store_mod, "atomic_write_model", record_write)

    st = ExamStore(tmp_path)
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    t0 = time.perf_counter()
    for i in range(4):
        st.save_image(st.projection_stem(i), image, _record(3, 4))
        assert np.array_equal(np.load(tmp_path / f"projections/proj_{i:03d}.npy"), image)  # whole at once
    returned_s = time.perf_counter() - t0
    st.write_record(_record(3, 4))
    assert sorted(synced) == sorted([f"proj_{i:03d}.{ext}" for i in range(4) for ext in ("npy", "json")])
    assert order[-1] == f"write {store_mod.RECORD_NAME}" and order.count(f"write {store_mod.RECORD_NAME}") == 1
    print(f"4 images stored in {returned_s * 1000:.0f} ms with 8 x 50 ms fsyncs pending")
    st.close()


def test_the_audit_log_fsyncs_durable_lines_off_the_writing_thread(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    from firmware_host import audit as audit_mod

    threads: list[str] = []
    real = audit_mod.os.fsync

    def spy(fd: int) -> None:
        threads.append(threading.current_thread().name)
        real(fd)
    monkeypatch.setattr(audit_mod.os, "fsync", spy)
    log = audit_mod.JsonlAudit(tmp_path / "audit.jsonl")
    log.write({"t": 0.0, "kind": "exposure", "index": 0})
    assert (tmp_path / "audit.jsonl").read_text().count("\n") == 1  # flushed at once
    log.sync()
    log.close()
    assert "crescent-audit-fsync" in threads  # the durable line was fsynced by the background thread
    assert threads[-1] == threading.current_thread().name  # close() fsyncs on the caller, last
