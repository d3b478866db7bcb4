"""``crescent acquire``: progress through every phase and never backwards; an incomplete exam says so
in every output file (issue 20).

One quick virtual-time run (binning 8, 0.5 mm phantom voxels) whose simulated detector stalls on the
last projection, so the exam ends incomplete (14 of 15 images) but still reconstructs and writes
every output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pydicom
import pytest

from crescent.acquire.command import PHASES, PhaseProgress
from firmware_host.exam_plan import EXAM_PHASES


@pytest.fixture(scope="module")
def incomplete_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, list[tuple[str, int, int]]]:
    from crescent.acquire.options import AcquireOptions
    from crescent.acquire.pipeline import run_acquire
    from simulator.gantry.firmware import Gantry as Firmware

    real = Firmware._readout
    count = [0]

    def stall_last(self: Any, record: Any, thickness_mm: float) -> Any:
        count[0] += 1
        if count[0] == 16:  # scout + 15 projections: the last one is 30 virtual s late
            yield self.env.timeout(30.0)
        return (yield from real(self, record, thickness_mm))

    mp = pytest.MonkeyPatch()
    mp.setattr(Firmware, "_readout", stall_last)
    calls: list[tuple[str, int, int]] = []
    try:
        opts = AcquireOptions(out=tmp_path_factory.mktemp("acq") / "out", virtual_time=True, binning=8,
                              phantom_voxel_mm=0.5, image_timeout_s=5.0)
        acq = run_acquire(opts, lambda s, i, n: calls.append((s, i, n)))
    finally:
        mp.undo()
    return acq, calls


def test_the_phase_list_follows_the_exam_plan() -> None:
    host = [p for p in EXAM_PHASES if p != "done"]
    assert [p for p in PHASES if p in host] == host  # same order as the host announces them
    assert PHASES[-4:] == ("reconstruction", "dose", "outputs", "finished")


def test_the_host_phase_sequence_never_goes_backwards() -> None:
    """The order an AEC exam announces its phases (was: 'scout 5/10' then 'position 3/10')."""
    seen = ["prepare", "compress", "scout", "position", "arm", "sweep", "readout", "release"]
    positions = [PHASES.index(p) for p in seen]
    assert positions == sorted(positions)


def test_progress_moves_through_every_long_phase_and_never_backwards(incomplete_run: Any) -> None:
    acq, calls = incomplete_run
    stages = {s for s, _, _ in calls}
    assert {"scout", "sweep", "image", "reconstruction", "dose", "outputs"} <= stages
    nz = acq.recon.volume.shape[0]
    assert ("reconstruction", nz, nz) in calls  # every slice counted
    assert sum(1 for s, i, n in calls if s == "sweep" and n) >= 15  # each projection
    written = len(list((acq.out / "dicom").glob("*.dcm")))
    assert sum(1 for s, _, _ in calls if s == "outputs") > written  # each DICOM file, then the report
    state = PhaseProgress()
    shown = []
    for call in calls:
        state.update(*call)
        shown.append(state.position)
    assert shown == sorted(shown)
    assert state.images == 14


def test_an_incomplete_exam_says_so_in_every_file(incomplete_run: Any) -> None:
    acq, _ = incomplete_run
    out: Path = acq.out
    rec = acq.exam.record
    assert rec.status == "incomplete" and len(rec.image_paths) == 14
    assert "--image-timeout" in rec.reason
    dicoms = sorted((out / "dicom").glob("*.dcm"))
    # the product default: projections For Processing + For Presentation (multi-frame, 14 frames), tomo, dose SR
    assert [p.name for p in dicoms] == ["dose_sr.dcm", "projections_for_presentation.dcm",
                                        "projections_for_processing.dcm", "tomo.dcm"]
    assert int(pydicom.dcmread(out / "dicom" / "projections_for_processing.dcm", stop_before_pixels=True)
               .NumberOfFrames) == 14
    for path in dicoms:
        ds = pydicom.dcmread(path)
        text = str(ds.get("ImageComments", "")) + " ".join(
            str(item.get("TextValue", "")) for item in ds.get("ContentSequence", []))
        assert "INCOMPLETE: exam incomplete" in text, path.name
    report = (out / "report.html").read_text()
    assert "INCOMPLETE: exam incomplete" in report
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "incomplete" and summary["note"].startswith("INCOMPLETE")
    assert summary["verdict"] == "INCOMPLETE" and summary["report"].endswith("report.html")
