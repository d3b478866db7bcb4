"""`crescent acquire --port` as on a rig: a gantry started elsewhere, images over its TCP data channel.

The rig path has no flat-field calibration and no phantom truth: it must take the device's dark
offset, normalise each projection to its open field, and still write every output.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from host_pty import PTY_EXAMS, PtyGantry


@pytest.mark.slow
def test_acquire_on_a_port_with_images_over_tcp(tmp_path) -> None:
    """Host and gantry in two processes; the host process imports no ``simulator`` module at all."""
    exam_file = tmp_path / "dbt-pty.yaml"
    exam_file.write_text(yaml.safe_dump(PTY_EXAMS["dbt"].model_dump(mode="json")))
    gantry = PtyGantry(tmp_path, data_channel="tcp")
    try:
        host = subprocess.run([sys.executable, "-X", "importtime", "-m", "crescent", "acquire", "--port", gantry.path,
                               "--exam", str(exam_file), "--out", str(tmp_path / "out"), "--seed", "2",
                               "--watchdog-ms", "8000", "--no-progress"], capture_output=True, text=True, timeout=600)
    finally:
        gantry.stop()
    imported = {line.rsplit("|", 1)[-1].strip() for line in host.stderr.splitlines() if line.startswith("import time:")}
    assert {"crescent.acquire.pipeline", "physics.exposure_dose", "reconstruction"} <= imported  # the host did its work
    assert sorted(m for m in imported if m.split(".")[0] == "simulator") == []
    assert host.returncode == 0, host.stdout[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["projections"] == 7
    assert summary["total_mgd_mgy"] > 0 and len(summary["lesions"]) == 0  # dose from physics; no phantom truth on a rig
    assert len(list((tmp_path / "out" / "arrays").glob("*volume*.npy"))) == 1
    assert summary["normalisation"].startswith("no flat field") and "dark offset 100 ADU" in summary["normalisation"]
    assert (tmp_path / "out" / "report.html").exists() and list((tmp_path / "out").rglob("*.dcm"))
