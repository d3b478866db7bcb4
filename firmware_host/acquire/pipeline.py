"""``crescent acquire``: one simulated (or real) exam from compression to report.

Steps: start or reach the gantry; run the exam through the host controller
(every byte captured); reconstruct; find the lesions in focus and measure
their SDNR; compute dose per projection; measure the detector MTF; write the
outputs (DICOM, NumPy/TIFF, report, capture, records). Nothing here models the
device or the physics: it calls the packages that do.

Output folder layout (``out``)::

    exam/                     audit.jsonl, exam_record.json, projections/*.npy + .json, scout (host store)
    dicom/proj_NNN.dcm        Digital Mammography X-Ray Image - For Processing, one per projection
    dicom/tomo.dcm            Breast Tomosynthesis Image (enhanced multi-frame)
    arrays/                   projections .npy + exposure records JSON, volume .npy and .tif
    report.html, *.png        the report and its figures
    capture.pcap              serial traffic both ways (Wireshark: hil/wireshark/crescent.lua)
    gantry/                   simulated gantry: config, device event log, data channel
    summary.json              the figures of the summary table
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from firmware_host.acquire import analysis
from firmware_host.acquire.gantry_launch import PtyGantryProcess, virtual_gantry, write_gantry_config
from firmware_host.acquire.timeline import timeline_from_packets
from firmware_host.api import ExamResult, connect, connect_virtual, resolve_exam
from firmware_host.exam_plan import SIMULATED_IMAGE_TIMEOUT_S, ExamOptions
from hil.capture import Tap
from hil.pcap import write_pcap
from protocols.records import AcquisitionHeader, ExposureRecord
from reconstruction.preprocess import line_integrals

ProgressFn = Callable[[str, int, int], None]

#: Phantom voxel size of the default simulated breast, mm (physics team's recommendation).
DEFAULT_PHANTOM_VOXEL_MM = 0.25
#: Read-out binning of the default simulated panel: 50 um dels binned 4x4 = 200 um images.
DEFAULT_BINNING = 4
#: Stereotactic exams read the panel at full resolution (50 um): biopsy needs sub-millimetre depth.
STEREO_BINNING = 1
#: Watchdog asked of the simulated gantry, ms: its real-time loop shares a small machine with the
#: physics and the host, and a loaded 2-core machine can stall both for a second or two.
SIMULATED_WATCHDOG_MS = 5000


class AcquireOptions(BaseModel):
    """What ``crescent acquire`` was asked to do (validated CLI input)."""

    model_config = ConfigDict(extra="forbid")

    exam: str = Field("dbt-standard", description="standard exam name or exam YAML path")
    phantom: str = Field("breast", description="phantom of the simulated gantry")
    seed: int = Field(1, ge=0, description="seed of the phantom, noise and everything random")
    port: str | None = Field(None, description="pyserial URL of a gantry; none = start the simulated gantry")
    out: Path = Field(Path("out"), description="output folder")
    virtual_time: bool = Field(False, description="simulated gantry in virtual time instead of a real pty")
    gantry_config: str | None = Field(None, description="gantry config name or YAML path (simulated gantry)")
    binning: int | None = Field(None, ge=1, le=8, description="read-out binning of the simulated panel "
                                "(default: 4 = 200 um; 1 = 50 um for stereotactic exams, which need the detail)")
    phantom_voxel_mm: float = Field(DEFAULT_PHANTOM_VOXEL_MM, gt=0.0, le=2.0)
    recon_voxel_mm: float | None = Field(None, gt=0.0, le=2.0, description="in-plane voxel (default: image pitch)")
    slice_mm: float = Field(1.0, gt=0.0, le=10.0, description="slice spacing, mm")
    watchdog_ms: int | None = Field(
        None, ge=100, le=60000,
        description="device watchdog asked for on a --port connection, ms (default 2000; the simulated gantry "
                    "this command starts gets 5000)")
    image_timeout_s: float | None = Field(
        None, gt=0.0, le=600.0,
        description="wait for each image, s (default: 3 s on a rig, 60 s on a simulated gantry, which renders "
                    "each frame)")


@dataclass
class AcquireResult:
    """Everything the summary shows, plus where the files are."""

    out: Path
    exam: ExamResult
    header: AcquisitionHeader
    exposures: list[ExposureRecord]
    findings: list[analysis.LesionFinding]
    dose: analysis.DoseSummary
    recon: analysis.Reconstruction | None
    mtf: tuple[np.ndarray, np.ndarray] | None
    stereo: list[analysis.StereoFinding] = field(default_factory=list)
    exam_mgd_mgy: float = 0.0  # every exposure made, AEC scout and images lost included
    scout_mgd_mgy: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    normalisation: str = ""  # how raw counts became line integrals (flat fields, or open field on a rig)

    @property
    def scan_time_s(self) -> float:
        if not self.exposures:
            return 0.0
        return self.exposures[-1].window_end_s - self.exposures[0].window_start_s

    def summary(self) -> dict[str, Any]:
        rec = self.exam.record
        return {
            "exam": rec.exam_name,
            "status": rec.status,
            "reason": rec.reason,
            "projections": len(self.exposures),
            "angles_deg": [round(e.mean_angle_deg, 3) for e in self.exposures],
            "max_angle_error_deg": max((abs(c.angle_error_deg) for c in rec.checks), default=0.0),
            "scan_time_s": round(self.scan_time_s, 3),
            "technique": rec.technique.model_dump() if rec.technique else None,
            "thickness_mm": self.header.compressed_thickness_mm,
            "force_n": self.header.compression_force_n,
            "hvl_mm_al": round(self.dose.hvl_mm_al, 3),
            "total_air_kerma_mgy": round(float(sum(self.dose.air_kerma_mgy)), 4),
            "total_mgd_mgy": round(self.exam_mgd_mgy, 4),
            "projections_mgd_mgy": round(self.dose.total_mgd_mgy, 4),
            "scout_mgd_mgy": round(self.scout_mgd_mgy, 4),
            "normalisation": self.normalisation,
            "lesions": [
                {"kind": f.truth.kind, "x_mm": round(f.truth.x_mm, 3), "y_mm": round(f.truth.y_mm, 3),
                 "true_z_mm": round(f.truth.z_mm, 3), "diameter_mm": round(f.truth.diameter_mm, 3),
                 "focus_z_mm": f.focus_z_mm, "depth_error_mm": round(f.depth_error_mm, 3), "sdnr": round(f.sdnr, 2),
                 "resolvable": analysis.resolvable(f.truth.diameter_mm, self.header.geometry.detector.pitch_mm)}
                for f in self.findings
            ],
            "stereo_localisation": [
                {"kind": f.truth.kind, "diameter_mm": round(f.truth.diameter_mm, 3),
                 "true_mm": [round(v, 3) for v in (f.truth.x_mm, f.truth.y_mm, f.truth.z_mm)],
                 "localised_mm": [round(v, 3) for v in f.position_mm],
                 "parallel_beam_mm": [round(v, 3) for v in f.parallel_mm],
                 "error_mm": round(f.error_mm, 3), "ray_miss_mm": round(f.miss_mm, 3)}
                for f in self.stereo
            ],
            "timings_s": {k: round(v, 2) for k, v in self.timings_s.items()},
        }


def _gantry_config(opts: AcquireOptions) -> Any:
    from simulator.gantry import load_config

    cfg = load_config(opts.gantry_config)
    binning = opts.binning or (STEREO_BINNING if resolve_exam(opts.exam).kind == "stereo" else DEFAULT_BINNING)
    det = cfg.geometry.detector  # same active area, read out with the requested binning
    rows = int(round(det.rows * det.binning / binning))
    cols = int(round(det.cols * det.binning / binning))
    detector = det.model_copy(update={"binning": binning, "rows": rows, "cols": cols})
    return cfg.with_overrides(
        geometry={"detector": detector.model_dump()},
        phantom={"name": opts.phantom, "seed": opts.seed, "voxel_mm": opts.phantom_voxel_mm},
    )


def _phantom_truth(data_dir: Path | None, cfg: Any, header: AcquisitionHeader) -> tuple[list[analysis.LesionTruth], Any]:
    """Lesion truth and the phantom object (rebuilt with the gantry's own parameters)."""
    from simulator.physics.imaging import make_phantom

    p = cfg.phantom
    phantom = make_phantom(p.name, round(header.compressed_thickness_mm, 2), header.geometry, seed=p.seed,
                           voxel_mm=p.voxel_mm, **p.options)
    truth_file = data_dir / "phantom-truth.json" if data_dir is not None else None
    if truth_file is not None and truth_file.exists():
        raw = json.loads(truth_file.read_text())
        lesions = [analysis.LesionTruth(l["kind"], *l["centre_mm"], l["diameter_mm"]) for l in raw["lesions"]]
    else:
        lesions = [analysis.LesionTruth(l.kind, *l.centre_mm, l.diameter_mm) for l in phantom.lesions]
    return lesions, phantom


def run_acquire(opts: AcquireOptions, progress: ProgressFn | None = None) -> AcquireResult:
    """Run the whole chain; ``progress(stage, index, total)`` reports exam phases, projections and slices."""
    say = progress or (lambda stage, i, n: None)
    out = opts.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    tap = Tap()
    simulated = opts.port is None
    cfg = _gantry_config(opts) if simulated else None
    gdir = out / "gantry"
    data_dir = gdir / "data-channel" if simulated else None
    options = (ExamOptions(image_timeout_s=SIMULATED_IMAGE_TIMEOUT_S, watchdog_timeout_ms=SIMULATED_WATCHDOG_MS)
               if simulated else None)
    capture = out / "capture.pcap"
    with ExitStack() as stack:
        # the capture is written however the exam ends: it is what a failure is read from
        stack.callback(lambda: write_pcap(capture, tap.packets))
        if not simulated:
            port_options = ExamOptions(watchdog_timeout_ms=opts.watchdog_ms) if opts.watchdog_ms else None
            gantry = stack.enter_context(connect(opts.port or "", seed=opts.seed, tap=tap, options=port_options))
        elif opts.virtual_time:
            gdir.mkdir(parents=True, exist_ok=True)
            write_gantry_config(cfg, gdir / "gantry-config.yaml")
            env, model, endpoint = virtual_gantry(cfg, opts.seed, data_dir, gdir / "device-events.jsonl")
            stack.callback(model.log.close)
            gantry = stack.enter_context(connect_virtual(env, endpoint, seed=opts.seed, tap=tap, options=options))
        else:
            gdir.mkdir(parents=True, exist_ok=True)
            cfg_path = write_gantry_config(cfg, gdir / "gantry-config.yaml")
            proc = stack.enter_context(PtyGantryProcess(cfg_path, data_dir, gdir / "device-events.jsonl", opts.seed))
            gantry = stack.enter_context(connect(proc.url, seed=opts.seed, tap=tap, options=options))
        result = gantry.run_exam(opts.exam, out / "exam", progress=progress,
                                 options=gantry.exam_options(opts.image_timeout_s))
        device_dark_adu = float(gantry.session.info.dark_offset_adu)  # type: ignore[attr-defined]
    timings["exam"] = time.perf_counter() - t0
    files = [result.record_path, result.audit_path, capture]
    rec = result.record
    if rec.header is None or not rec.header.projections:
        raise RuntimeError(f"exam {rec.exam_name} produced no projections: {rec.status} ({rec.reason})")
    header = rec.header
    exposures = [p.exposure for p in header.projections]
    raw = np.stack([np.load(p) for p in result.image_paths]).astype(np.float32)

    t1 = time.perf_counter()
    say("reconstruction", 0, 3)
    if simulated:
        from simulator.physics.detector import DetectorModel

        flat = analysis.flat_fields(header, exposures)
        dark = float(DetectorModel().offset_adu)
        lesions, phantom = _phantom_truth(data_dir, cfg, header)
    else:  # a rig: no flat-field calibration or phantom truth here; the device's dark offset, open-field I0
        flat, dark, lesions, phantom = None, device_dark_adu, [], None
    i0 = analysis.open_field_signal(raw, dark) if flat is None else None
    normalisation = ("flat fields of the simulated detector" if flat is not None else
                     f"no flat field: each projection's open-field signal ({analysis.OPEN_FIELD_PERCENTILE:g}th "
                     f"percentile after the device's dark offset {dark:g} ADU); heel effect and gain not corrected")
    say("reconstruction", 1, 3)
    angles = {round(e.mean_angle_deg, 2) for e in exposures}
    recon, findings, stereo = None, [], []
    if rec.exam_kind == "stereo":  # stereotactic pair (after any 0-degree view): triangulate the lesions
        pair = [i for i, e in enumerate(exposures) if abs(e.mean_angle_deg) > 1.0][-2:]
        if len(pair) == 2:
            lines = line_integrals(raw[pair], flat=None if flat is None else flat[pair], dark=dark,
                                   i0=None if i0 is None else i0[pair], clip_negative=True)
            stereo = analysis.stereo_localise(lines, header, [exposures[i] for i in pair], lesions)
    elif len(angles) >= 3:  # tomosynthesis: reconstruct slices and find the lesions in focus
        voxel = opts.recon_voxel_mm or header.geometry.detector.pitch_mm
        recon = analysis.reconstruct(raw, header, flat=flat, dark=dark, voxel_mm=voxel, slice_mm=opts.slice_mm, i0=i0)
        say("reconstruction", 2, 3)
        findings = analysis.find_lesions(recon, lesions)
    say("reconstruction", 3, 3)
    timings["reconstruction"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    if phantom is None:
        from simulator.physics.imaging import make_phantom

        phantom = make_phantom("pmma", header.compressed_thickness_mm, header.geometry, seed=0)
    dose = analysis.dose(header, exposures, phantom)  # per stored projection (DICOM, dose table)
    dose_all = analysis.dose(header, list(rec.exposures), phantom)  # every exposure made: the patient's dose
    mtf = analysis.detector_mtf(header, exposures[0].kvp, exposures[0].anode_filter) if simulated else None
    timings["dose_and_mtf"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    acq = AcquireResult(out=out, exam=result, header=header, exposures=exposures, findings=findings, dose=dose,
                        recon=recon, mtf=mtf, stereo=stereo, timings_s=timings, files=files,
                        exam_mgd_mgy=dose_all.total_mgd_mgy, normalisation=normalisation,
                        scout_mgd_mgy=sum(g for e, g in zip(rec.exposures, dose_all.mgd_mgy) if e.is_scout))
    from firmware_host.acquire.writers import write_outputs

    acq.files += write_outputs(acq, raw.astype(np.uint16), timeline_from_packets(tap.packets), opts)
    timings["outputs"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - t0
    (out / "summary.json").write_text(json.dumps(acq.summary(), indent=2))
    acq.files.append(out / "summary.json")
    return acq
