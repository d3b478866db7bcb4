"""DBT, 2D (AEC) and stereo exams over a real pseudo-terminal: `crescent gantry --pty` in another process."""

from __future__ import annotations

import pytest

from firmware_host import ExamOptions, connect, verify_exam_folder
from host_pty import PTY_EXAMS, PtyGantry


@pytest.mark.slow
def test_exams_over_a_real_pty(tmp_path) -> None:
    gantry_proc = PtyGantry(tmp_path)
    try:
        # a generous watchdog: the real-time gantry stalls while it renders an image (first spectra)
        with connect(gantry_proc.path, seed=2, options=ExamOptions(watchdog_timeout_ms=8000)) as gantry:
            assert gantry.session.state_at_connect == "IDLE"
            results = {k: gantry.run_exam(PTY_EXAMS[k], tmp_path / k) for k in ("dbt", "ffdm", "stereo")}

            def progress(phase: str, i: int, n: int) -> None:  # runs on the adapter's pump thread
                if phase == "sweep" and i == 2:
                    gantry.abort("operator abort over the pty")

            aborted = gantry.run_exam(PTY_EXAMS["dbt"], tmp_path / "abort", progress=progress).record
    finally:
        gantry_proc.stop()
    device_exposures = gantry_proc.records("exposure")
    device_images = {r["frame_id"]: r for r in gantry_proc.records("image")}
    for name, res in results.items():
        rec = res.record
        assert rec.status == "complete", f"{name}: {rec.reason}"
        assert len(rec.image_paths) == rec.planned_count
        for c in rec.checks:
            assert c.within_tolerance and abs(c.angle_error_deg) <= rec.angle_tolerance_deg
        assert all(ok for _, ok, _ in verify_exam_folder(res.out_dir))
        for p in rec.header.projections:  # the device's checksum for each frame is the one stored
            assert device_images[p.exposure.frame_id]["checksum"] == p.checksum_crc32c
    assert results["ffdm"].record.aec is not None and results["ffdm"].record.scout is not None
    assert results["stereo"].record.released is False  # "hold": the paddle stays down for the needle
    planned = {(r["plan_id"], r["index"]) for res in results.values() for r in
               [{"plan_id": res.record.plan_id, "index": c.index} for c in res.record.checks]}
    made = {(r["plan_id"], r["index"]) for r in device_exposures if r["plan_id"] in {x[0] for x in planned}}
    assert made == planned  # exactly the planned exposures, each once
    assert aborted.status == "aborted" and aborted.reason == "operator abort over the pty"
    assert aborted.phase == "sweep" and aborted.released
    assert 2 <= len(aborted.exposures) < 7


@pytest.mark.slow
def test_images_over_the_tcp_data_channel(tmp_path) -> None:
    """A host that shares no directory with the gantry: frames come from its TCP frame server."""
    gantry_proc = PtyGantry(tmp_path, data_channel="tcp")
    try:
        with connect(gantry_proc.path, seed=3, options=ExamOptions(watchdog_timeout_ms=8000)) as gantry:
            assert gantry.session.data_channel.startswith("tcp://127.0.0.1:")
            res = gantry.run_exam(PTY_EXAMS["dbt"], tmp_path / "dbt")
    finally:
        gantry_proc.stop()
    rec = res.record
    assert rec.status == "complete", rec.reason
    assert len(rec.image_paths) == rec.planned_count
    assert all(ok for _, ok, _ in verify_exam_folder(res.out_dir))
    device_images = {r["frame_id"]: r for r in gantry_proc.records("image")}
    for p in rec.header.projections:
        assert device_images[p.exposure.frame_id]["checksum"] == p.checksum_crc32c
