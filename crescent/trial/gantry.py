"""A trial case over the wire: the virtual-time simulated gantry and the host controller, as ``crescent acquire
--virtual-time`` runs them, imaging the case's own breast; and the cross-check against the direct path.

**Which cases** (:func:`over_wire`): the trial file's ``gantry_subset`` - the first K cases, or each case with
probability ``fraction`` drawn from its own seed (stream 4) - in all its arms or the listed ones. Membership
depends only on the trial file and the case index, so it is the same in every worker and in a resumed or
grown trial.

**The exam** (:func:`run_wire_exam`): :func:`crescent.acquire.gantry_launch.virtual_gantry` (the gantry
``crescent acquire --virtual-time`` builds) plus :func:`firmware_host.connect_virtual` and
:meth:`~firmware_host.api.Gantry.run_exam` (the host's exam: compression, scout, AEC, sweep, image intake
from the data channel, record). What differs from a default acquire, and why:

* the object on the support is the case's breast sub-volume (``Detector.phantom_object``), not a
  configured phantom;
* the panel reads out the case's detector window extended toward the chest wall on the same pixel grid
  (:func:`wire_window`), so that the host's AEC region (20 mm square, 30 mm from row 0) lies where the
  direct path renders its AEC scout (on the window alone it read other tissue: scout signals -35 % to
  +7 % off the direct path's); about 2.5 times the window's pixels for DBT at 100 um;
* scatter and focal-spot samples as the trial's ``imaging``; the arm's ``dose_scale`` scales the exam's
  AEC target and mAs ceiling (:func:`wire_exam`);
* the paddle stops at the case's drawn thickness: the exam's thickness floor is set to it and the
  breast model (free thickness 1.25 t) is soft enough to reach it at about 60 % of the exam's target
  force (:data:`COMPRESSION_FORCE_RATIO`), which the host records as a warning ("COMPRESS stopped ... before
  the target").

The device's event log and the host's record are checked with the fault campaign's invariants
(:func:`crescent.campaign.invariants.check_all`: no exposure outside an armed window, none twice, every
exposure's image stored with the device's CRC, ...); a violation fails the case.

**Cross-check** (:func:`rerender_check`): every frame the host received (scout included) is rendered again
by the direct path's imager from the exposure record the device reported (actual encoder angles,
measured kV, delivered mAs, frame id) on the same window: the two must be equal pixel for pixel (the
gantry renders each image from exactly that record), else the case fails. The case is also imaged
through the direct path proper (planned exposures, the trial's own AEC emulation) and both results are
kept. The direct path plans and renders as the wire does (:func:`crescent.trial.cases.technique_for`: the
host's scout stretched to its minimum window, the gantry's tube-current limits and frame numbering, the
generator's mean delivered kV), so the two differ only by the device's own noise: its kV ripple, the
delivered mAs (each a different quantum-noise level) and the wire's rounding; measured on ``wire-check``:
kV within 0.06 kV, scout signal and mAs within about 3 %. Scoring rates both with the same
templates (``rating_<observer>_direct``) and ``gantry_crosscheck.csv`` reports the differences in
standard deviations of the observer's lesion-absent ratings, against the stated tolerance
(:data:`crescent.trial.results.CROSSCHECK_TOLERANCE_SD`; README, "virtual clinical trial").
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: Force at the case's thickness as a fraction of the exam's stop force (the visco-elastic overshoot while
#: driving, at most the breast's relaxation ratio 0.4 times it, stays below the target: the paddle reaches
#: the thickness floor).
COMPRESSION_FORCE_RATIO = 0.6
#: Free (uncompressed) thickness of the case's breast model over its compressed thickness.
FREE_THICKNESS_RATIO = 1.25
#: Where a wire exam keeps its data channel, device log and host store while it runs (a folder
#: ``crescent-trial-wire-XXXXXXXX`` here, removed after). Fixed, not the trial's output folder: the
#: data channel's URL crosses the simulated UART in DEVICE_INFO, and its length shifts the exam's virtual
#: timing (a 40-byte longer path ended compression's settling one host sample, 0.25 s, earlier; images
#: are unchanged). The timing is therefore not in the results; this keeps a re-run's exam identical.
WIRE_DIR = "/tmp"


def over_wire(spec: Any, index: int, seed: int) -> list[str]:
    """Arms of case ``index`` (case seed ``seed``) imaged through the gantry over the wire (empty: none)."""
    sub = spec.gantry_subset
    if sub is None:
        return []
    if sub.cases is not None:
        chosen = index < sub.cases
    else:
        chosen = bool(np.random.default_rng([int(seed), 4]).random() < sub.fraction)
    if not chosen:
        return []
    return [a.name for a in spec.arms if sub.arms is None or a.name in sub.arms]


def wire_window(window: Any) -> Any:
    """The case's detector window extended toward the chest wall on the same pixel grid, so that its row 0 lies
    within one pixel of y = 0 (the panel's chest-wall edge) and the host's AEC region falls where the direct
    path renders its AEC scout."""
    p = window.pitch_mm
    m = max(0, int(math.ceil(window.offset_y_mm / p - 1e-9)))
    return window.model_copy(update={"rows": window.rows + m, "offset_y_mm": round(window.offset_y_mm - m * p, 6)})


def wire_config(spec: Any, window: Any, thickness_mm: float, exam: Any) -> Any:
    """The trial's gantry preset reading out ``window``, with the trial's imaging and a breast that stops at the thickness."""
    from simulator.gantry import load_config

    cfg = load_config(spec.gantry)
    lim = cfg.limits
    stop_n = min(exam.compression.target_force_n, lim.compression_force_max_n, lim.compression_initial_drive_max_n)
    free = FREE_THICKNESS_RATIO * thickness_mm
    exponent = cfg.breast.exponent
    stiffness = COMPRESSION_FORCE_RATIO * stop_n / math.expm1(exponent * (free - thickness_mm) / free)
    return cfg.with_overrides(
        geometry={"detector": window.model_dump()},
        detector={"scatter": spec.imaging.scatter, "motion_substeps": spec.imaging.motion_substeps},
        breast={"free_thickness_mm": round(free, 4), "stiffness_n": stiffness},
    )


def wire_exam(exam: Any, thickness_mm: float, dose_scale: float = 1.0) -> Any:
    """The arm's exam with its compression floor at the case's thickness (mm) and the arm's ``dose_scale``.

    The direct path multiplies the AEC's chosen mAs by ``dose_scale``; on the wire the host's AEC chooses, so
    the exam's target signal and mAs ceiling are scaled instead (the same mAs, clamped cases included, but
    for the AEC's 0.5 mAs floor and the 3-decimal rounding); a manual technique's mAs is scaled.
    """
    from protocols.exams.models import AecTechnique

    update: dict[str, Any] = {"compression": exam.compression.model_copy(update={"min_thickness_mm": thickness_mm})}
    tech = exam.technique
    if dose_scale != 1.0:
        if isinstance(tech, AecTechnique):
            if tech.target_signal_fraction is None:
                raise ValueError(f"exam {exam.name}: a dose_scale over the wire needs an AEC target_signal_fraction")
            update["technique"] = tech.model_copy(update={
                "target_signal_fraction": tech.target_signal_fraction * dose_scale,
                "mas_max_per_projection": tech.mas_max_per_projection * dose_scale})
        else:
            update["technique"] = tech.model_copy(update={
                k: getattr(tech, k) * dose_scale for k in ("mas_per_projection", "mas_total")
                if getattr(tech, k) is not None})
    return exam.model_copy(update=update)


@dataclass
class WireExam:
    """What the host received: projections (uint16, stacked), their and the scouts' exposure records, the scout
    image (or None), the AEC notes, the geometry read out, and the evidence that the wire was used."""

    raw: np.ndarray
    exposures: list[Any]
    scouts: list[Any]
    scout_image: np.ndarray | None
    notes: dict[str, Any]
    geometry: Any
    evidence: dict[str, Any]


def run_wire_exam(spec: Any, draw: Any, exam: Any, phantom: Any, window: Any, work: Path | None = None,
                  dose_scale: float = 1.0) -> WireExam:
    """Run the arm's exam on a virtual-time simulated gantry imaging ``phantom`` (see the module doc)."""
    from crescent.acquire.gantry_launch import virtual_gantry
    from crescent.campaign.exam_run import stored_crcs
    from crescent.campaign.invariants import Evidence, check_all
    from firmware_host import connect_virtual

    cfg = wire_config(spec, wire_window(window), draw.thickness_mm, exam)
    ex = wire_exam(exam, draw.thickness_mm, dose_scale)
    with tempfile.TemporaryDirectory(prefix="crescent-trial-wire-", dir=work or WIRE_DIR) as tmp:
        root = Path(tmp)
        env, model, endpoint = virtual_gantry(cfg, draw.seed, root / "data-channel", root / "device-events.jsonl")
        model.detector.phantom_object = phantom
        try:
            with connect_virtual(env, endpoint, seed=draw.seed) as gantry:
                result = gantry.run_exam(ex, root / "exam")
        finally:
            model.log.close()
        rec = result.record
        if rec.status != "complete" or rec.header is None:
            raise RuntimeError(f"case {draw.index}: the exam {exam.name} over the wire ended {rec.status}: {rec.reason}")
        device = model.log.records()
        record = rec.model_dump(mode="json")
        violations = check_all(Evidence(
            device=device, record=record, stored_crc=stored_crcs(root / "exam", record),
            paddle_force_n=float(model.paddle.force_n()), release_policy=ex.compression.release,
            release_on_fault=bool(ex.compression.release_on_fault), capture_errors=[], host_peer_lost=False,
            error=None))
        if violations:
            raise RuntimeError(f"case {draw.index}: the exam {exam.name} over the wire broke invariants: "
                               + "; ".join(f"({v.invariant}) {v.message}" for v in violations))
        raw = np.stack([np.load(p) for p in result.image_paths])
        scout_image = np.load(result.scout_path) if result.scout_path is not None else None
        exposures = [p.exposure for p in rec.header.projections]
        scouts = [e for e in rec.exposures if e.is_scout]
        notes: dict[str, Any] = {}
        if rec.aec is not None:
            notes = {"scout_signal": round(rec.aec.scout_signal_fraction, 6), "aec_clamped": rec.aec.note}
        evidence = {
            "gantry_device_exposures": sum(1 for r in device if r["kind"] == "exposure"),
            "gantry_device_images": sum(1 for r in device if r["kind"] == "image"),
            "gantry_host_exposures": len(rec.exposures),
            "gantry_thickness_mm": rec.compressed_thickness_mm,
            "gantry_warnings": len(rec.warnings),
        }
    return WireExam(raw, exposures, scouts, scout_image, notes, cfg.geometry, evidence)


def rerender_check(wire: WireExam, imager: Any) -> dict[str, Any]:
    """Render every frame of ``wire`` again from its exposure record with ``imager`` (the direct path's, on the
    wire's geometry); RuntimeError unless every pixel is equal. Returns the row fields of the check."""
    pairs = list(zip(wire.exposures, wire.raw))
    if wire.scout_image is not None and wire.scouts:
        pairs.append((wire.scouts[-1], wire.scout_image))
    worst, differing = 0, 0
    for e, got in pairs:
        again = imager.image(e)
        d = np.abs(again.astype(np.int32) - got.astype(np.int32))
        n = int(np.count_nonzero(d))
        if n:
            differing += 1
            worst = max(worst, int(d.max()))
    if differing:
        raise RuntimeError(f"{differing} of {len(pairs)} frames received over the wire differ from the direct "
                           f"path's rendering of the same exposure records (up to {worst} ADU)")
    return {"xcheck_frames_equal": len(pairs), "xcheck_max_abs_adu": worst}
