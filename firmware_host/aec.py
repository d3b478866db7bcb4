"""Automatic exposure control: choose anode/filter, kVp and mAs from thickness and a scout.

The model (no physics here: only the scout's measured signal and a technique chart):

1. **Anode/filter and kVp by compressed thickness** - a technique chart shaped like
   the published automatic-mode charts of tungsten-anode DBT/FFDM systems: the
   softer filter (W/Rh) for thin and average breasts, the harder one (W/Ag) above
   about 60 mm, and a kVp that rises about 1 kV per 5 mm of compressed thickness
   (:data:`KVP_CHART`; linear interpolation, clamped to the exam's
   ``[kvp_min, kvp_max]``). If the chart's filter is not allowed by the exam, the
   first allowed pair is used.
2. **mAs from the scout signal** - the detector signal in the AEC region is
   proportional to mAs. Between the scout's kVp ``k0`` and the chosen kVp ``k``
   it scales as ``(k / k0) ** n(t)``: ``n = 2`` for the tube output (kerma per mAs
   grows about as kVp squared for a constant-potential generator) plus a
   transmission term growing with thickness ``t`` (higher kVp penetrates a thicker
   breast better), ``n(t) = 2 + t / 20 mm``. A change of filter scales the signal
   by the ratio of :data:`FILTER_OUTPUT` (relative detector signal per mAs of the
   pairs at equal kVp; W/Ag transmits more than W/Rh). So::

       mas = scout_mas * (target / scout_signal) * (k0 / k) ** n(t) * out(scout) / out(chosen)

   clamped to ``[mas_floor, mas_max_per_projection]``. The signal is the mean of
   the scout image in the central AEC region divided by the detector's full scale.

The model is deliberately simple and is checked end to end against the
simulator's physics in the tests (the acquired projections land near the target
signal). Units: thickness mm, kVp kV, mAs mAs, signals as fractions of full scale.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from protocols.exams.models import AecTechnique
from protocols.records import Technique

#: (compressed thickness mm, anode/filter, kVp) - technique chart of the AEC.
KVP_CHART: tuple[tuple[float, str, float], ...] = (
    (20.0, "W/Rh", 25.0),
    (30.0, "W/Rh", 26.0),
    (40.0, "W/Rh", 28.0),
    (50.0, "W/Rh", 30.0),
    (60.0, "W/Rh", 32.0),
    (70.0, "W/Ag", 34.0),
    (80.0, "W/Ag", 36.0),
    (90.0, "W/Ag", 38.0),
)

#: Relative detector signal per mAs at equal kVp, per anode/filter pair (W/Rh = 1).
FILTER_OUTPUT: dict[str, float] = {"W/Rh": 1.0, "W/Ag": 1.15, "W/Al": 1.6, "Mo/Mo": 0.7, "Mo/Rh": 0.8, "Rh/Rh": 0.8}

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


def kvp_exponent(thickness_mm: float) -> float:
    """Exponent ``n(t) = 2 + t / 20`` of the signal's kVp dependence (module docstring)."""
    return 2.0 + thickness_mm / 20.0


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
    n = kvp_exponent(thickness_mm)
    signal = max(scout_signal, 1e-6)
    mas = (aec.scout_mas * (aec.target_signal_fraction / signal) * (aec.scout_kvp / kvp) ** n
           * FILTER_OUTPUT.get(aec.scout_pair, 1.0) / FILTER_OUTPUT.get(pair, 1.0))
    if mas > aec.mas_max_per_projection:
        notes.append(f"mAs {mas:.3g} clamped to the exam's ceiling {aec.mas_max_per_projection}")
        mas = aec.mas_max_per_projection
    if mas < MAS_FLOOR:
        notes.append(f"mAs {mas:.3g} raised to the floor {MAS_FLOOR}")
        mas = MAS_FLOOR
    tech = Technique(anode_filter=pair, kvp=kvp, mas=round(mas, 3), focal_spot_mm=aec.focal_spot_mm)
    return AecDecision(thickness_mm, scout_signal, aec.scout_kvp, aec.scout_mas, aec.scout_pair,
                       aec.target_signal_fraction, n, tech, "; ".join(notes))
