"""`crescent acquire --port` as on a rig: a gantry started elsewhere, images over its TCP data channel.

The rig path has no flat-field calibration and no phantom truth: it must take the device's dark
offset, normalise each projection to its open field, and still write every output.
"""

from __future__ import annotations

import json

import pytest
import yaml

from firmware_host.acquire.pipeline import AcquireOptions, run_acquire
from host_pty import PTY_EXAMS, PtyGantry


@pytest.mark.slow
def test_acquire_on_a_port_with_images_over_tcp(tmp_path) -> None:
    exam_file = tmp_path / "dbt-pty.yaml"
    exam_file.write_text(yaml.safe_dump(PTY_EXAMS["dbt"].model_dump(mode="json")))
    gantry = PtyGantry(tmp_path, data_channel="tcp")
    try:
        acq = run_acquire(AcquireOptions(port=gantry.path, exam=str(exam_file), out=tmp_path / "out", seed=2,
                                         watchdog_ms=8000))
    finally:
        gantry.stop()
    rec = acq.exam.record
    assert rec.status == "complete" and len(acq.exposures) == rec.planned_count == 7
    assert acq.recon is not None and acq.recon.volume.shape[0] >= 1
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["normalisation"].startswith("no flat field") and "dark offset 100 ADU" in summary["normalisation"]
    assert (tmp_path / "out" / "report.html").exists() and list((tmp_path / "out").rglob("*.dcm"))
