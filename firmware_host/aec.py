"""Automatic exposure control: choose anode/filter, kVp and mAs from thickness and a scout.

The model (no physics here: the scout's measured signal, a technique chart and a factory calibration):

1. **Anode/filter and kVp by compressed thickness** - a technique chart shaped like
   the published automatic-mode charts of tungsten-anode DBT/FFDM systems: the
   softer filter (W/Rh) for thin and average breasts, the harder one (W/Ag) from
   about 55 mm, and a kVp that rises with compressed thickness (:data:`KVP_CHART`;
   linear interpolation, clamped to the exam's ``[kvp_min, kvp_max]``). If the
   chart's filter is not allowed by the exam, the first allowed pair is used.
   The chart stops at 36 kV for W/Ag: above it the HVL with the paddle exceeds
   0.70 mm Al, the end of the Dance g table the dose is computed with.
2. **mAs from the scout signal** - the detector signal in the AEC region is
   proportional to mAs. Between the scout's technique and the chosen one it scales
   by the ratio of the detector signal per mAs of the two techniques through the
   same thickness, read from the **factory calibration** (:data:`CALIBRATION_PATH`:
   ln(signal per mAs) through PMMA 10-110 mm, 22-49 kV, every anode/filter, as a
   manufacturer measures it with PMMA slabs; made on the simulated gantry by
   ``python -m crescent.qc.aec_calibration``; bilinear in thickness and kV,
   clamped at the grid's ends)::

       mas = scout_mas * (target / scout_signal) * S(scout, t) / S(chosen, t)

   clamped to ``[mas_floor, mas_max_per_projection]``. The signal is the mean of
   the scout image in the central AEC region divided by the detector's full scale.

The AEC holds the detector signal constant over thickness; the exam's target
signal sets the dose level. The dbt-standard target was chosen so the exam's MGD
on PMMA 20-70 mm stays below the EUREF acceptable levels (and the achievable ones
from 30 mm) within the mAs the exam's 60 ms pulses allow (README, "MGD vs PMMA
thickness"; ``python -m crescent.qc.mgd_table``). Checked end to end against the simulator's
physics in the tests (the acquired projections land on the target signal).
Units: thickness mm, kVp kV, mAs mAs, signals as fractions of full scale.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from protocols.exams.models import AecTechnique
from protocols.records import Technique

#: The factory calibration: ln(detector signal per mAs) through PMMA by anode/filter, kV and thickness
#: (written by ``python -m crescent.qc.aec_calibration``).
CALIBRATION_PATH = Path(__file__).with_name("data") / "aec_calibration.json"

#: (compressed thickness mm, anode/filter, kVp) - technique chart of the AEC.
KVP_CHART: tuple[tuple[float, str, float], ...] = (
    (20.0, "W/Rh", 26.0),
    (30.0, "W/Rh", 27.0),
    (40.0, "W/Rh", 29.0),
    (50.0, "W/Rh", 32.0),
    (60.0, "W/Ag", 32.0),
    (70.0, "W/Ag", 35.0),
    (80.0, "W/Ag", 36.0),
    (90.0, "W/Ag", 36.0),
)

#: Smallest mAs the AEC chooses per projection.
MAS_FLOOR = 0.5


@dataclass(frozen=True)
class AecRoi:
    """AEC region in pixels: rows ``[r0, r1)``, cols ``[c0, c1)``."""

    r0: int
    r1: int
    c0: int
    c1: int


@dataclass(frozen=True)
class AecDecision:
    """The AEC's inputs and choice (written to the audit log and the exam record)."""

    thickness_mm: float
    scout_signal: float
    scout_kvp: float
    scout_mas: float
    scout_anode_filter: str
    target_signal: float
    exponent: float
    technique: Technique
    clamped: str = ""
    #: detector signal per mAs of the chosen technique over the scout's (calibration), through the thickness
    signal_ratio: float = 1.0


def aec_roi(rows: int, cols: int, pitch_mm: float, depth_mm: float = 30.0, size_mm: float = 20.0) -> AecRoi:
    """The AEC region: ``size_mm`` square centred ``depth_mm`` from the chest wall (row 0), centred in x.

    Clamped to the image; at least one pixel.
    """
    half = max(1, int(round(0.5 * size_mm / pitch_mm)))
    rc = min(rows - 1, int(round(depth_mm / pitch_mm)))
    cc = cols // 2
    r0, r1 = max(0, rc - half), min(rows, rc + half)
    c0, c1 = max(0, cc - half), min(cols, cc + half)
    return AecRoi(r0, max(r1, r0 + 1), c0, max(c1, c0 + 1))


def roi_signal(image: np.ndarray, roi: AecRoi, bits: int, dark_offset_adu: float = 0.0) -> float:
    """Mean of the AEC region above the detector's dark offset, as a fraction of full scale (2**bits - 1).

    Only the signal above the dark offset grows with mAs, so the offset (DEVICE_INFO.dark_offset_adu)
    is removed before the AEC scales the scout to the target.
    """
    region = image[roi.r0 : roi.r1, roi.c0 : roi.c1]
    return max(float(region.mean()) - dark_offset_adu, 0.0) / float(2**bits - 1)


def chart_technique(thickness_mm: float) -> tuple[str, float]:
    """(anode/filter, kVp) of :data:`KVP_CHART` at ``thickness_mm`` (kVp interpolated, ends clamped)."""
    ts = [t for t, _, _ in KVP_CHART]
    kvp = float(np.interp(thickness_mm, ts, [k for _, _, k in KVP_CHART]))
    idx = min(range(len(KVP_CHART)), key=lambda i: abs(KVP_CHART[i][0] - thickness_mm))
    return KVP_CHART[idx][1], kvp


@lru_cache(maxsize=4)
def load_calibration(path: Path = CALIBRATION_PATH) -> dict[str, object]:
    """The factory calibration table (module docstring); a clear error if it is missing."""
    if not path.exists():
        raise FileNotFoundError(f"AEC calibration {path} is missing: run `python -m crescent.qc.aec_calibration`")
    data = json.loads(path.read_text())
    return {"thickness_mm": np.asarray(data["thickness_mm"], float), "kvp": np.asarray(data["kvp"], float),
            "ln": {p: np.asarray(v, float) for p, v in data["ln_signal_per_mas"].items()}}


def ln_signal_per_mas(anode_filter: str, kvp: float, thickness_mm: float) -> float:
    """ln(detector signal per mAs) of the calibration, bilinear in thickness (mm) and kVp, clamped at the ends."""
    cal = load_calibration()
    tab = cal["ln"].get(anode_filter)  # type: ignore[union-attr]
    if tab is None:
        raise ValueError(f"anode/filter {anode_filter!r} has no AEC calibration (known: {sorted(cal['ln'])})")  # type: ignore[arg-type]
    ts, ks = cal["thickness_mm"], cal["kvp"]
    per_t = [float(np.interp(kvp, ks, row)) for row in tab]  # type: ignore[arg-type]
    return float(np.interp(thickness_mm, ts, per_t))  # type: ignore[arg-type]


def signal_ratio(scout_pair: str, scout_kvp: float, pair: str, kvp: float, thickness_mm: float) -> float:
    """Detector signal per mAs of the chosen technique over the scout's, through ``thickness_mm`` (calibration)."""
    return math.exp(ln_signal_per_mas(pair, kvp, thickness_mm) - ln_signal_per_mas(scout_pair, scout_kvp, thickness_mm))


def effective_exponent(ratio: float, scout_kvp: float, kvp: float) -> float:
    """The ratio as a power of the kVp ratio (recorded for the audit log; 0 when the kVp is the scout's)."""
    return math.log(ratio) / math.log(kvp / scout_kvp) if abs(kvp - scout_kvp) > 1e-9 else 0.0


def choose_technique(aec: AecTechnique, thickness_mm: float, scout_signal: float) -> AecDecision:
    """Technique for the exam's projections from the thickness (mm) and the scout's AEC signal."""
    if aec.target_signal_fraction is None:
        raise ValueError(
            "AEC by mean glandular dose target needs a dose model, which the host does not carry; "
            "use target_signal_fraction"
        )
    pair, kvp = chart_technique(thickness_mm)
    if pair not in aec.anode_filters:
        pair = aec.anode_filters[0]
    notes = []
    if not aec.kvp_min <= kvp <= aec.kvp_max:
        notes.append(f"kVp {kvp:.1f} clamped to [{aec.kvp_min}, {aec.kvp_max}]")
        kvp = min(max(kvp, aec.kvp_min), aec.kvp_max)
    kvp = round(kvp, 2)
    ratio = signal_ratio(aec.scout_pair, aec.scout_kvp, pair, kvp, thickness_mm)
    signal = max(scout_signal, 1e-6)
    mas = aec.scout_mas * (aec.target_signal_fraction / signal) / ratio
    if mas > aec.mas_max_per_projection:
        notes.append(f"mAs {mas:.3g} clamped to the exam's ceiling {aec.mas_max_per_projection}")
        mas = aec.mas_max_per_projection
    if mas < MAS_FLOOR:
        notes.append(f"mAs {mas:.3g} raised to the floor {MAS_FLOOR}")
        mas = MAS_FLOOR
    tech = Technique(anode_filter=pair, kvp=kvp, mas=round(mas, 3), focal_spot_mm=aec.focal_spot_mm)
    return AecDecision(thickness_mm, scout_signal, aec.scout_kvp, aec.scout_mas, aec.scout_pair,
                       aec.target_signal_fraction, effective_exponent(ratio, aec.scout_kvp, kvp), tech,
                       "; ".join(notes), ratio)
