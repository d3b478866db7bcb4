"""MGD versus PMMA thickness of the shipped exams' AEC, against the EUREF limits and published clinical doses.

``python -m crescent.qc.mgd_table`` runs the shipped ``dbt-standard`` (15 projections) and ``ffdm-cc``
exams, unchanged from the exam library, on PMMA 20-70 mm on the default simulated gantry in virtual time
(the product path: the host's AEC on a scout, the gantry's physics) and prints a Markdown table: the
technique the AEC chose, the MGD to the Dance equivalent breast of each thickness (the EUREF method:
incident air kerma with the paddle in place, Dance g c s, and t for the tilted DBT projections; the scout
is included, as a dosimeter would see it), the EUREF acceptable and achievable levels, and the published
clinical figures (:data:`crescent.qc.limits.DBT_TYPICAL_MGD` for DBT, :data:`~crescent.qc.limits.FFDM_TYPICAL_MGD`
for 2D). ``--exam`` limits the run to one exam.

``--calibrate EXAM`` derives the exam's AEC target (the detector signal it holds, ``target_signal_fraction``)
from the published clinical MGD at 45 mm PMMA: the AEC's mAs is proportional to its target (the kV chart
depends on the thickness only), so one run at the shipped target, its scout's dose taken apart, gives the
target that lands the exam on the published figure; a second run at that target checks it. About 10 s.

The PMMA slabs are 240 x 180 mm; only a 100 x 100 mm patch of the panel at the chest wall is read out
(400 um pixels), which holds the AEC region (dose does not depend on the read-out). 1-2 minutes.
Units: mm, kV, mAs, mGy.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

THICKNESSES_MM = (20, 30, 40, 45, 50, 60, 70)
EXAMS = ("dbt-standard", "ffdm-cc")
#: Read-out of the simulated panel for these runs: (rows, cols, binning, offset x mm, offset y mm).
PATCH = (250, 250, 8, 0.0, 0.0)


@dataclass(frozen=True)
class MgdRow:
    """One exam on one PMMA thickness."""

    exam: str
    pmma_mm: int
    breast_mm: float
    glandularity: float
    anode_filter: str
    kvp: float
    mas_per_projection: float
    projections: int
    mgd_mgy: float
    acceptable_mgy: float
    achievable_mgy: float
    typical_mgy: float | None
    aec_note: str
    signal_over_target: float
    #: MGD of the AEC scout alone (included in ``mgd_mgy``), mGy.
    scout_mgy: float = 0.0
    #: the AEC target the exam ran with (fraction of full scale).
    target_signal_fraction: float = float("nan")
    #: the exam's kind ("dbt" or "ffdm").
    kind: str = "dbt"


def typical_mgd(exam_kind: str, pmma_mm: int) -> float | None:
    """The published clinical MGD for this kind of exam ("dbt" or "ffdm") at ``pmma_mm``, if there is one."""
    from crescent.qc import limits

    table = limits.DBT_TYPICAL_MGD if exam_kind == "dbt" else limits.FFDM_TYPICAL_MGD
    return table.get(pmma_mm)


def typical_ratio(exam_kind: str) -> tuple[float, float]:
    """The tolerated band around :func:`typical_mgd` (simulated / published)."""
    from crescent.qc import limits

    return limits.DBT_TYPICAL_RATIO if exam_kind == "dbt" else limits.FFDM_TYPICAL_RATIO


def measure(exam_name: str, pmma_mm: int, workdir: Path, *, seed: int = 1, mas_scale: float = 1.0,
            target_signal_fraction: float | None = None) -> MgdRow:
    """Run the shipped exam ``exam_name`` on ``pmma_mm`` of PMMA; its MGD to the EUREF equivalent breast.

    ``mas_scale`` multiplies the delivered mAs of every exposure before the dose is computed (only to show
    that the checks of this table can fail; 1 = the product). ``target_signal_fraction`` replaces the
    exam's AEC target (calibration; None = the shipped exam).
    """
    import numpy as np

    from crescent.qc import limits
    from crescent.qc.site import PhantomSpec, SimulatedSite
    from firmware_host.aec import aec_roi
    from physics.exposure_dose import exposure_mgd_mgy
    from protocols.exams import load_standard_exam

    exam = load_standard_exam(exam_name)
    if target_signal_fraction is not None:
        exam = exam.model_copy(update={"technique": exam.technique.model_copy(
            update={"target_signal_fraction": float(target_signal_fraction)})})
    site = SimulatedSite(workdir, seed=seed)
    acq = site.acquire(exam, PhantomSpec("pmma", float(pmma_mm), detector=PATCH))
    acceptable, achievable, breast_mm, gland = limits.EUREF_MGD[pmma_mm]
    g = acq.header.geometry
    mgd = scout = 0.0
    for e in acq.record.exposures:
        e = e.model_copy(update={"mas": e.mas * mas_scale}) if mas_scale != 1.0 else e
        dose = exposure_mgd_mgy(g, e, thickness_mm=breast_mm, glandularity=gland)
        mgd += dose
        scout += dose if e.is_scout else 0.0
    first = acq.exposures[0]
    det = g.detector
    roi = aec_roi(det.rows, det.cols, det.pitch_mm)
    signal = float(acq.images[:, roi.r0:roi.r1, roi.c0:roi.c1].mean()) - acq.dark_adu
    aec = acq.record.aec
    ratio = signal / 65535.0 / aec.target_signal_fraction if aec is not None else float("nan")
    return MgdRow(exam_name, pmma_mm, breast_mm, gland, first.anode_filter, float(np.round(first.kvp, 2)),
                  float(np.mean([e.mas for e in acq.exposures])), len(acq.exposures), mgd, acceptable, achievable,
                  typical_mgd(exam.kind, pmma_mm), aec.note if aec is not None else "", ratio, scout,
                  aec.target_signal_fraction if aec is not None else float("nan"), exam.kind)


def run(exams: tuple[str, ...] = EXAMS, thicknesses: tuple[int, ...] = THICKNESSES_MM, *, seed: int = 1,
        mas_scale: float = 1.0) -> list[MgdRow]:
    """Every exam on every thickness (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="crescent-mgd-") as tmp:
        return [measure(x, t, Path(tmp) / f"{x}-{t}", seed=seed, mas_scale=mas_scale)
                for x in exams for t in thicknesses]


def problems(rows: list[MgdRow]) -> list[str]:
    """What is wrong with the rows: an MGD above the EUREF acceptable level, an MGD outside
    :func:`typical_ratio` of the published clinical figure (DBT: the published system; 2D: the UK survey),
    an AEC that clamped or missed its target signal by more than 10 %. Empty = the table holds."""
    out = []
    for r in rows:
        where = f"{r.exam} on {r.pmma_mm} mm PMMA"
        lo, hi = typical_ratio(r.kind)
        if not r.mgd_mgy <= r.acceptable_mgy:
            out.append(f"{where}: MGD {r.mgd_mgy:.2f} mGy above the EUREF acceptable {r.acceptable_mgy} mGy")
        if r.typical_mgy is not None and not lo <= r.mgd_mgy / r.typical_mgy <= hi:
            out.append(f"{where}: MGD {r.mgd_mgy:.2f} mGy is {r.mgd_mgy / r.typical_mgy:.2f} x the published "
                       f"{r.typical_mgy} mGy, outside {lo:g}-{hi:g} x")
        if r.aec_note:
            out.append(f"{where}: AEC {r.aec_note}")
        if not 0.9 <= r.signal_over_target <= 1.1:
            out.append(f"{where}: projection signal {r.signal_over_target:.2f} x the AEC target")
    return out


def markdown(rows: list[MgdRow]) -> str:
    """The table as Markdown (one line per exam and thickness)."""
    from crescent.qc.limits import DBT_TYPICAL_SOURCE, FFDM_TYPICAL_SOURCE

    out = ["| exam | PMMA mm | equivalent breast | AEC technique (per projection) | MGD mGy | EUREF acceptable / "
           "achievable mGy | published clinical mGy |",
           "|---|---|---|---|---|---|---|"]
    for r in rows:
        typ = f"{r.typical_mgy:.2f}" if r.typical_mgy is not None else "-"
        note = f" ({r.aec_note})" if r.aec_note else ""
        out.append(f"| {r.exam} | {r.pmma_mm} | {r.breast_mm:.0f} mm, {100 * r.glandularity:.0f} % | "
                   f"{r.projections} x {r.anode_filter} {r.kvp:.1f} kV {r.mas_per_projection:.2f} mAs{note} | "
                   f"{r.mgd_mgy:.2f} | {r.acceptable_mgy:.1f} / {r.achievable_mgy:.1f} | {typ} |")
    out.append("")
    out.append(f"Published clinical, DBT: {DBT_TYPICAL_SOURCE}; 2D: {FFDM_TYPICAL_SOURCE}")
    return "\n".join(out)


@dataclass(frozen=True)
class TargetCalibration:
    """An exam's AEC target derived from a published clinical MGD at one PMMA thickness (:func:`calibrate`)."""

    exam: str
    pmma_mm: int
    reference_mgy: float
    shipped_target: float
    shipped_mgy: float
    scout_mgy: float
    target: float
    check_mgy: float


#: PMMA thickness the targets are calibrated at: the standard breast (EUREF's 45 mm, equivalent 53 mm).
CALIBRATION_PMMA_MM = 45


def calibrate(exam_name: str, *, pmma_mm: int = CALIBRATION_PMMA_MM, seed: int = 1) -> TargetCalibration:
    """The AEC target that lands ``exam_name`` on the published clinical MGD at ``pmma_mm`` (module docstring).

    MGD = scout + (exam's own exposures), and the exam's own mAs is proportional to the target, so
    target = shipped target x (published - scout) / (shipped MGD - scout); a run at that target is the check.
    """
    from protocols.exams import load_standard_exam

    kind = load_standard_exam(exam_name).kind
    ref = typical_mgd(kind, pmma_mm)
    if ref is None:
        raise ValueError(f"no published clinical MGD for a {kind} exam at {pmma_mm} mm PMMA")
    with tempfile.TemporaryDirectory(prefix="crescent-aec-target-") as tmp:
        first = measure(exam_name, pmma_mm, Path(tmp) / "shipped", seed=seed)
        if first.aec_note:
            raise RuntimeError(f"{exam_name} at {pmma_mm} mm: the AEC {first.aec_note}; the target is not linear")
        target = first.target_signal_fraction * (ref - first.scout_mgy) / (first.mgd_mgy - first.scout_mgy)
        check = measure(exam_name, pmma_mm, Path(tmp) / "calibrated", seed=seed, target_signal_fraction=target)
    return TargetCalibration(exam_name, pmma_mm, ref, first.target_signal_fraction, first.mgd_mgy, first.scout_mgy,
                             target, check.mgd_mgy)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m crescent.qc.mgd_table", description=__doc__.splitlines()[0])
    p.add_argument("--exam", action="append", choices=EXAMS, help="only this exam (repeatable)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--calibrate", choices=EXAMS, metavar="EXAM",
                   help="print the AEC target that lands EXAM on the published clinical MGD at 45 mm PMMA "
                   f"({', '.join(EXAMS)}) instead of the table")
    a = p.parse_args(argv)
    if a.calibrate:
        c = calibrate(a.calibrate, seed=a.seed)
        print(f"{c.exam} on {c.pmma_mm} mm PMMA: shipped target_signal_fraction {c.shipped_target:.5g} gives "
              f"{c.shipped_mgy:.3f} mGy (scout {c.scout_mgy:.3f}); published {c.reference_mgy:.2f} mGy needs "
              f"{c.target:.4g}, which gives {c.check_mgy:.3f} mGy")
        return 0
    rows = run(tuple(a.exam or EXAMS), seed=a.seed)
    print(markdown(rows))
    bad = problems(rows)
    for b in bad:
        print(f"PROBLEM: {b}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
