"""`crescent exam recover` never replaces a record the host closed with a worse one (issue 20).

A folder `crescent acquire --quick` closed (virtual time, the gantry's data directory left beside it):
recovering it again leaves the record as it was; a closed record that lacks an image the gantry still
holds gets that image merged in, and keeps everything only the host knew (reason, technique, AEC,
compression, planned count, times).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HOST_ONLY = ("status", "reason", "technique", "aec", "compression_force_n", "compressed_thickness_mm",
             "planned_count", "started_host_s", "ended_host_s", "released", "checks")


def _crescent(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "crescent", *args], capture_output=True, text=True, timeout=600,
                          cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.fixture(scope="module")
def closed_exam(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("closed") / "out"
    res = _crescent("acquire", "--quick", "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out


def _recover(out: Path) -> dict:
    res = _crescent("exam", "recover", str(out), "--data-dir", str(out / "gantry" / "data-channel"))
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout[res.stdout.index("{"):])


def test_recovering_a_closed_complete_exam_leaves_its_record_as_it_was(closed_exam: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(closed_exam, out)
    before = json.loads((out / "exam" / "exam_record.json").read_text())
    assert before["status"] == "complete"
    report = _recover(out)
    after = json.loads((out / "exam" / "exam_record.json").read_text())
    assert after == before
    assert report["status"] == "complete" and report["images"] == len(before["image_paths"])


def test_an_image_the_closed_record_lacks_is_merged_in_and_the_host_s_knowledge_kept(closed_exam: Path,
                                                                                      tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(closed_exam, out)
    path = out / "exam" / "exam_record.json"
    record = json.loads(path.read_text())
    # the host closed the exam without image 7 (its readout was still pending when the host stopped)
    lost = "projections/proj_007.npy"
    record["status"] = "incomplete"
    record["reason"] = "stopped by the operator (SIGTERM) during 'sweep'"
    record["image_paths"].remove(lost)
    record["header"]["projections"] = [p for p in record["header"]["projections"] if p["path"] != lost]
    record["missing_images"] = [7]
    record["missing_reasons"] = {"7": "readout still pending on the device when the operator's stop ended the exam"}
    path.write_text(json.dumps(record))
    for suffix in (".npy", ".json"):
        (out / "exam" / lost).with_suffix(suffix).unlink()

    report = _recover(out)
    after = json.loads(path.read_text())
    for key in HOST_ONLY:
        assert after[key] == record[key], key
    assert lost in after["image_paths"] and (out / "exam" / lost).is_file()
    assert after["missing_images"] == [] and after["missing_reasons"] == {}
    assert [p["exposure"]["index"] for p in after["header"]["projections"]] == list(range(15))
    assert any("exam recover took in 1 image" in w for w in after["warnings"])
    assert report["images"] == 15 and report["status"] == "incomplete"
    res = _crescent("exam", "verify", str(out))
    assert res.returncode == 0, res.stdout + res.stderr
