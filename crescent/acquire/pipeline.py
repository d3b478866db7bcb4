"""``crescent acquire``: one simulated (or real) exam from compression to report.

Steps: start or reach the gantry; run the exam through the host controller
(every byte captured); reconstruct; find the lesions in focus and measure
their SDNR; compute dose per projection; measure the detector MTF; write the
outputs (DICOM, NumPy/TIFF, report, capture, records). Nothing here models the
device or the physics: it calls the packages that do.

Output folder layout (``out``)::

    exam/                     audit.jsonl, exam_record.json, projections/*.npy + .json, scout (host store)
    dicom/projections_for_processing.dcm    Breast Projection X-Ray Image - For Processing: the sweep, one frame
                                            per projection (default; tomosynthesis exams)
    dicom/projections_for_presentation.dcm  Breast Projection X-Ray Image - For Presentation (log, linear map)
    dicom/proj_NNN.dcm        Digital Mammography X-Ray Image - For Processing, one per projection
                              (--projection-sop digital-mammography, and 2D / stereotactic exams)
    dicom/tomo.dcm            Breast Tomosynthesis Image (enhanced multi-frame)
    dicom/dose_sr.dcm         X-Ray Radiation Dose SR (TID 10001): every exposure, AEC scout included
    dicom/qc_rejection_kos.dcm  Key Object Selection "Rejected for Quality Reasons" (only when an acquisition
                              QC check fails): the reasons (CID 7011) and the images / frames at fault
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
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crescent.acquire.gantry_launch import PtyGantryProcess, virtual_gantry, write_gantry_config
from crescent.acquire.defaults import DEFAULT_BINNING, SIMULATED_WATCHDOG_MS, STEREO_BINNING
from crescent.acquire.options import AcquireOptions
from firmware_host.api import connect, connect_virtual, resolve_exam
from firmware_host.exam_plan import SIMULATED_IMAGE_TIMEOUT_S, ExamOptions
from hil.capture import Tap
from hil.pcap import PcapWriter
from protocols.records import AcquisitionHeader, ExposureRecord

if TYPE_CHECKING:
    from crescent.acquire.result import AcquireResult

# The analysis and output stack (reconstruction, dose, DICOM, report: numba, scipy, matplotlib, pydicom,
# xraydb) is imported after the exam, where it is used: a run stopped during the exam never loads it, and
# its exit does not pay the interpreter's teardown of ~1,000 more modules (0.1-0.7 s on 2 busy cores).

ProgressFn = Callable[[str, int, int], None]

#: Glandularity (by weight) assumed for the dose of a rig exam, where the breast's is unknown: Dance's
#: standard 50 % breast at the compressed thickness the device read back.
RIG_DOSE_GLANDULARITY = 0.5


def _load_stack(paths: list[Path]) -> np.ndarray:
    """The stored images ``(n, rows, cols)`` as float32, filled in place (no second full-size copy of the stack)."""
    first = np.load(paths[0])
    stack = np.empty((len(paths),) + first.shape, dtype=np.float32)
    stack[0] = first
    del first
    for k, path in enumerate(paths[1:], start=1):
        stack[k] = np.load(path)
    return stack


def _gantry_config(opts: AcquireOptions) -> Any:
    from simulator.gantry import load_config

    cfg = load_config(opts.gantry_config)
    binning = opts.binning or (STEREO_BINNING if resolve_exam(opts.exam).kind == "stereo" else DEFAULT_BINNING)
    det = cfg.geometry.detector  # same active area, read out with the requested binning
    rows = int(round(det.rows * det.binning / binning))
    cols = int(round(det.cols * det.binning / binning))
    detector = det.model_copy(update={"binning": binning, "rows": rows, "cols": cols})
    panel = {k: v for k, v in (("scatter", opts.scatter), ("grid", opts.grid),
                               ("grid_primary_transmission", opts.grid_primary_transmission),
                               ("grid_scatter_transmission", opts.grid_scatter_transmission)) if v is not None}
    return cfg.with_overrides(
        geometry={"detector": detector.model_dump()},
        phantom={"name": opts.phantom, "seed": opts.seed, "voxel_mm": opts.phantom_voxel_mm},
        **({"detector": panel} if panel else {}),
    )


class AcquireInterrupted(Exception):
    """The run was stopped by a signal: the exam went through the safe stop and its record is on disk."""

    def __init__(self, reason: str, record: Any = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.record = record


def run_acquire(opts: AcquireOptions, progress: ProgressFn | None = None,
                interrupted: Callable[[], str | None] | None = None) -> AcquireResult:
    """Run the whole chain; ``progress(stage, index, total)`` reports exam phases, images, slices, dose, outputs.

    ``interrupted()`` returns why the run must stop (a signal), or None: checked when the exam ends, so
    an interrupted exam writes its record, capture and ``summary.json`` (status and reason) and raises
    :class:`AcquireInterrupted` instead of reconstructing.
    """
    say = progress or (lambda stage, i, n: None)
    out = opts.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # pcap stamps in wall-clock epoch: the controller's clock is time.monotonic (real time) or SimPy's
    # (virtual time, mapped to the fixed study date so the capture stays reproducible)
    capture = out / "capture.pcap"
    writer = PcapWriter(capture)  # streamed: a valid pcap at every moment, whatever ends the run
    if opts.virtual_time and opts.port is None:
        from crescent.outputs.study import VIRTUAL_EPOCH_S

        clock_offset_s = VIRTUAL_EPOCH_S
    else:
        clock_offset_s = time.time() - time.monotonic()
    tap = Tap(clock_offset_s=clock_offset_s, sink=writer.write)
    simulated = opts.port is None
    cfg = _gantry_config(opts) if simulated else None
    gdir = out / "gantry"
    data_dir = gdir / "data-channel" if simulated else None
    options = (ExamOptions(image_timeout_s=SIMULATED_IMAGE_TIMEOUT_S, watchdog_timeout_ms=SIMULATED_WATCHDOG_MS)
               if simulated else None)
    with ExitStack() as stack:
        # the capture is closed however the exam ends (its bytes are on disk already): a failure is read from it
        stack.callback(writer.close)
        stack.callback(tap.flush)
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
        # stopped by a signal: the record is written; say so and leave at once (the gantry is not waited for)
        stop = interrupted() if interrupted is not None else None
        if stop is not None:
            r = result.record
            summary = {
                "exam": r.exam_name, "status": r.status, "reason": r.reason, "interrupted": stop,
                "images": len(r.image_paths), "planned": r.planned_count, "record": str(result.record_path),
                "capture": str(capture), "note": "INCOMPLETE: interrupted; no reconstruction, DICOM or report written",
                "missing_images": r.missing_images, "missing_reasons": r.missing_reasons,
            }
            if r.missing_images and data_dir is not None:
                # readouts the stop did not wait for: the gantry child writes them before it exits
                summary["recover"] = f"crescent exam recover {out} --data-dir {data_dir}"
            (out / "summary.json").write_text(json.dumps(summary, indent=2))
            raise AcquireInterrupted(stop, r)
    # a virtual gantry lives in this process: let it go (its phantom, imager and line-integral cache
    # are hundreds of MB at 50 um) before flat fields and reconstruction need the memory
    gantry = env = model = endpoint = None  # noqa: F841
    timings["exam"] = time.perf_counter() - t0
    files = [result.record_path, result.audit_path, capture]
    rec = result.record
    if rec.header is None or not rec.header.projections:
        raise RuntimeError(f"exam {rec.exam_name} produced no projections: {rec.status} ({rec.reason})")
    say("reconstruction", 0, 0)  # the analysis stack loads first (about a second)
    from crescent.acquire import analysis
    from crescent.acquire.result import AcquireResult
    from crescent.acquire.timeline import timeline_from_packets
    from crescent.acquire.writers import write_outputs
    from physics.beam_path import DEFAULT_BEAM_PATH
    from reconstruction.preprocess import line_integrals

    header = rec.header
    exposures = [p.exposure for p in header.projections]
    raw = _load_stack(result.image_paths)

    t1 = time.perf_counter()
    if simulated:
        from crescent.acquire import simulated as sim
        from simulator.imaging.detector import DetectorModel

        flat = sim.flat_fields(header, exposures, grid=cfg.detector.anti_scatter_grid())
        dark = float(DetectorModel().offset_adu)
        lesions, phantom = sim.phantom_truth(data_dir, cfg, header)
        breast = (phantom.thickness_mm, phantom.glandularity)
        beam_path = cfg.detector.beam_path.to_beam_path()  # the simulated gantry's own
        phantom = None  # only its truth, thickness and glandularity are needed from here on
    else:  # a rig: no flat-field calibration or phantom truth here; the device's dark offset, open-field I0
        flat, dark, lesions = None, device_dark_adu, []
        breast = (header.compressed_thickness_mm, RIG_DOSE_GLANDULARITY)
        beam_path = DEFAULT_BEAM_PATH
    i0 = analysis.open_field_signal(raw, dark) if flat is None else None
    normalisation = ("flat fields of the simulated detector" if flat is not None else
                     f"no flat field: each projection's open-field signal ({analysis.OPEN_FIELD_PERCENTILE:g}th "
                     f"percentile after the device's dark offset {dark:g} ADU); heel effect and gain not corrected")
    angles = {round(e.mean_angle_deg, 2) for e in exposures}
    recon, findings, stereo, lines_all = None, [], [], None
    if rec.exam_kind == "stereo":  # stereotactic pair (after any 0-degree view): triangulate the lesions
        pair = [i for i, e in enumerate(exposures) if abs(e.mean_angle_deg) > 1.0][-2:]
        if len(pair) == 2:
            sel = slice(pair[0], pair[1] + 1) if pair[1] == pair[0] + 1 else pair  # a view, not a copy, if adjacent
            lines = line_integrals(raw[sel], flat=None if flat is None else flat[sel], dark=dark,
                                   i0=None if i0 is None else i0[pair], clip_negative=True)
            stereo = analysis.stereo_localise(lines, header, [exposures[i] for i in pair], lesions)
            del lines  # full-panel line integrals of the pair: not needed past the triangulation
    elif len(angles) >= 3:  # tomosynthesis: reconstruct slices and find the lesions in focus
        voxel = opts.recon_voxel_mm or header.geometry.detector.pitch_mm
        recon = analysis.reconstruct(raw, header, flat=flat, dark=dark, voxel_mm=voxel, slice_mm=opts.slice_mm, i0=i0,
                                     on_slice=lambda i, n: say("reconstruction", i, n))
        if opts.projection_sop == "breast-projection":  # the For Presentation projections start from these
            lines_all = line_integrals(raw, flat=flat, dark=dark, i0=None if flat is not None else i0,
                                       clip_negative=True)
        findings = analysis.find_lesions(recon, lesions)
    timings["reconstruction"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    thickness_mm, glandularity = breast
    say("dose", 0, 3)
    dose = analysis.dose(header, exposures, thickness_mm=thickness_mm, glandularity=glandularity,
                         beam_path=beam_path)  # stored projections
    say("dose", 1, 3)
    dose_all = analysis.dose(header, list(rec.exposures), thickness_mm=thickness_mm, glandularity=glandularity,
                             beam_path=beam_path)  # every exposure made: the patient's dose
    say("dose", 2, 3)
    mtf = sim.detector_mtf(header, exposures[0].kvp, exposures[0].anode_filter) if simulated else None
    say("dose", 3, 3)
    timings["dose_and_mtf"] = time.perf_counter() - t2

    t3 = time.perf_counter()
    acq = AcquireResult(out=out, exam=result, header=header, exposures=exposures, findings=findings, dose=dose,
                        recon=recon, mtf=mtf, stereo=stereo, timings_s=timings, files=files,
                        exam_mgd_mgy=dose_all.total_mgd_mgy, normalisation=normalisation, dose_all=dose_all,
                        scout_mgd_mgy=sum(g for e, g in zip(rec.exposures, dose_all.mgd_mgy) if e.is_scout),
                        line_integrals=lines_all)
    from crescent.acquire.acquisition_qc import acquisition_qc

    # the QC and the outputs need the raw counts only: the flat fields go first, the float32 stack before the
    # outputs are written (a stereo pair at full resolution held both, plus a uint16 copy, at its peak)
    del flat
    acq.acquisition_qc = acquisition_qc(rec, header, exposures, raw, dark)
    raw_counts = raw.astype(np.uint16)
    del raw
    acq.files += write_outputs(acq, raw_counts, timeline_from_packets(tap.packets), opts,
                               progress=lambda i, n: say("outputs", i, n))
    timings["outputs"] = time.perf_counter() - t3
    timings["total"] = time.perf_counter() - t0
    (out / "summary.json").write_text(json.dumps(acq.summary(), indent=2))
    acq.files.append(out / "summary.json")
    return acq
