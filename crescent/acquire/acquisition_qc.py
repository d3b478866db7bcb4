"""Per-exam acquisition QC, run by ``crescent acquire`` on every exam (the seed's "AI QC", rule-based here).

Checks, each a :class:`crescent.outputs.verdict.Verdict` (PASS / FAIL / INFO) that goes into summary.json,
the report's verdict table and the exam's warnings when it fails (never silent):

* exposure consistency across projections: spread of the delivered kV and coefficient of variation of the
  delivered mAs of the sweep;
* arm motion residual: the largest difference between an exposure's measured and planned angle against
  the exam's tolerance;
* detector artefacts: defective (dead or stuck) lines in the mean projection;
* chest-wall coverage: tissue reaches the chest-wall edge of the image;
* AEC plausibility: the projections' signal in the AEC region against the AEC's target, and no clamp.

Not done: patient motion between projections (a residual of features tracked across projections against
the geometry); the arm residual above covers only the tube's motion.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crescent.outputs.verdict import Verdict

#: Largest kV spread over a sweep's projections, kV (EUREF-2D 2.1.2: kV accuracy +-1 kV).
KV_SPREAD_MAX = 1.0
#: Largest coefficient of variation of the delivered mAs of projections planned alike, % (project: the
#: simulated mAs meter's noise is 0.5 % rms; EUREF-2D 2.1.4 asks output reproducibility within 5 %).
MAS_CV_MAX = 5.0
#: AEC: projection signal / target signal, accepted range (project: a factor 2 either way means the AEC
#: did not do its job; the calibrated simulated AEC lands within 4 % on PMMA 20-70 mm and at 0.98 on the default
#: `crescent acquire` exam, README "MGD vs PMMA thickness").
AEC_RATIO = (0.5, 2.0)
#: Chest wall: share of the columns covered by tissue in the first 2 mm, relative to 10-20 mm from the chest
#: wall (project: the breast must reach the detector edge; less than 80 % means tissue was missed).
COVERAGE_MIN = 0.8


def defective_lines(img: np.ndarray, threshold: float = 0.2) -> int:
    """Columns and rows whose mean differs, in the same direction, by more than ``threshold`` (fraction of the
    neighbours' mean) from both neighbours: a dead or stuck line, not the edge of an object (a step)."""
    n = 0
    for prof in (img.mean(axis=0), img.mean(axis=1)):
        if prof.size < 3:
            continue
        p = np.pad(prof, 1, mode="edge")
        left, mid, right = p[:-2], p[1:-1], p[2:]
        dl, dr = mid - left, mid - right
        ref = np.maximum(np.abs(0.5 * (left + right)), 1e-9)
        n += int(np.sum((np.sign(dl) == np.sign(dr)) & (np.minimum(np.abs(dl), np.abs(dr)) > threshold * ref)))
    return n


def acquisition_qc(record: Any, header: Any, exposures: list[Any], raw: np.ndarray, dark_adu: float) -> list[Verdict]:
    """The checks of one exam (module docstring). ``raw``: the stored projections, ADU, ``[n, rows, cols]``."""
    out: list[Verdict] = []
    sweep = [e for e in exposures if not e.is_scout]
    kv = np.array([e.kvp for e in sweep])
    mas = np.array([e.mas for e in sweep])
    if kv.size:
        spread = float(kv.max() - kv.min())
        cv = 100.0 * float(mas.std() / mas.mean()) if mas.size > 1 and mas.mean() > 0 else 0.0
        ok = spread <= KV_SPREAD_MAX and cv <= MAS_CV_MAX
        out.append(Verdict("Exposure consistency across projections", f"kV spread {spread:.2f} kV, mAs CV {cv:.2f} %",
                           f"kV spread <= {KV_SPREAD_MAX:g} kV, mAs CV <= {MAS_CV_MAX:g} %", "PASS" if ok else "FAIL",
                           "EUREF-2D 2.1.2 (kV +-1 kV), 2.1.4 (output reproducibility 5 %)"))
    if record.checks:
        worst = max(abs(c.actual_angle_deg - c.planned_angle_deg) for c in record.checks)
        tol = float(record.angle_tolerance_deg)
        out.append(Verdict("Arm motion residual", f"{worst:.3f} deg", f"<= {tol:g} deg (the exam's tolerance)",
                           "PASS" if worst <= tol else "FAIL", "project: exam angle tolerance; patient motion "
                           "between projections is not measured"))
    img = raw.astype(np.float64).mean(axis=0) - dark_adu
    lines = defective_lines(img)
    out.append(Verdict("Detector artefacts (defective lines)", str(lines), "0", "PASS" if lines == 0 else "FAIL",
                       "project: EUREF-2D 2.4.7 no uncorrected defective lines"))
    pitch = header.geometry.detector.pitch_mm
    open_level = float(np.percentile(img, 99.5))
    tissue = img < 0.9 * open_level
    edge = tissue[: max(1, int(round(2.0 / pitch)))].mean(axis=0) > 0.5
    ref = tissue[int(round(10.0 / pitch)): int(round(20.0 / pitch))]
    ref_cols = ref.mean(axis=0) > 0.5 if ref.size else np.zeros(img.shape[1], bool)
    if ref_cols.sum() == 0:
        out.append(Verdict("Chest-wall coverage", "no tissue 10-20 mm from the chest wall", "-", "INFO", "project"))
    else:
        share = float((edge & ref_cols).sum() / ref_cols.sum())
        out.append(Verdict("Chest-wall coverage", f"{100 * share:.0f} % of the tissue columns reach the edge",
                           f">= {100 * COVERAGE_MIN:.0f} %", "PASS" if share >= COVERAGE_MIN else "FAIL",
                           "project: tissue at 10-20 mm must reach the chest-wall edge (missed tissue)"))
    if record.aec is not None:
        from firmware_host.aec import aec_roi

        det = header.geometry.detector
        roi = aec_roi(det.rows, det.cols, pitch)
        region = raw[:, roi.r0:roi.r1, roi.c0:roi.c1].astype(np.float64)
        signal = float(region.mean()) - dark_adu
        ratio = signal / 65535.0 / record.aec.target_signal_fraction
        clamped = record.aec.note
        ok = AEC_RATIO[0] <= ratio <= AEC_RATIO[1] and not clamped
        out.append(Verdict("AEC plausibility", f"signal / target {ratio:.2f}" + (f"; {clamped}" if clamped else ""),
                           f"{AEC_RATIO[0]:g} .. {AEC_RATIO[1]:g}, technique not clamped", "PASS" if ok else "FAIL",
                           "project: the AEC reached its own target"))
    return out
