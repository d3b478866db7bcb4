"""The c and t factor tables of the Dance method, computed with :mod:`physics.dose_mc`.

Run ``python -m physics.dose_tables`` to regenerate
``physics/data/dose_factors_mc.json`` (about two minutes on one
core); the file records how it was made and how long it took. ``tests/physics/test_physics_dose_mc.py``
recomputes entries with another seed, so the shipped file cannot drift from
the code.

Layout, following Dance et al. 2000 (c) and Dance, Young & van Engen 2011 (t):

* ``c[thickness, hvl, glandularity]`` = (D/K at w) / (D/K at 50 %), for the
  breast thicknesses of the g table (20-110 mm), HVL 0.30-0.60 mm Al and
  glandularity 0.1, 25, 50, 75 and 100 % by weight. The beam for each HVL is
  Mo/Mo (HVL up to 0.40) or W/Al (0.7 mm Al, from 0.45) with its kV found by
  bisection, both through a 2 mm PMMA compression paddle.
* ``t[thickness, angle, glandularity]`` = (D/K at theta) / (D/K at 0 deg) for
  the focal spot on the default DBT arc (:class:`protocols.geometry.AcquisitionGeometry`:
  660 mm SID, pivot 40 mm, support 20 mm), K taken at the reference point
  (x 0, y 60 mm, breast top) from that projection's own focal spot, W/Al at
  HVL 0.50 mm Al. Angles 0-30 deg; t is symmetric in the angle.
"""

from __future__ import annotations

import json
import math
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from protocols.geometry import AcquisitionGeometry
from physics import spectra
from physics.dose_mc import BreastModel, DoseResult, glandular_dose_per_kerma

TABLE_PATH = Path(__file__).with_name("data") / "dose_factors_mc.json"

THICKNESS_MM = [20.0, 30.0, 40.0, 45.0, 50.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0]
HVL_MM_AL = [0.30, 0.35, 0.40, 0.45, 0.50, 0.55, 0.60]
GLANDULARITY = [0.001, 0.25, 0.50, 0.75, 1.00]
ANGLE_DEG = [0.0, 5.0, 10.0, 15.0, 20.0, 25.0, 30.0]
PADDLE_PMMA_MM = 2.0
T_TABLE_HVL = 0.50
HISTORIES = 400_000
SEED = 20001


@lru_cache(maxsize=64)
def hvl_matched_beam(hvl_mm_al: float) -> tuple[str, float]:
    """(anode/filter, kV) whose beam through the paddle has the given HVL (mm Al, +-0.001)."""
    af = "Mo/Mo" if hvl_mm_al <= 0.40 else "W/Al"

    def hvl_at(kv: float) -> float:
        return spectra.half_value_layer_mm_al(spectra.beam_spectrum(af, kv, bin_kev=0.5, extra_pmma_mm=PADDLE_PMMA_MM))

    lo, hi = 20.0, 49.0
    if not hvl_at(lo) <= hvl_mm_al <= hvl_at(hi):
        raise ValueError(f"no {af} beam between {lo} and {hi} kV has an HVL of {hvl_mm_al} mm Al")
    for _ in range(12):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if hvl_at(mid) < hvl_mm_al else (lo, mid)
    return af, round(0.5 * (lo + hi), 1)


def _spectrum(af: str, kv: float) -> spectra.Spectrum:
    return spectra.beam_spectrum(af, kv, bin_kev=0.5, extra_pmma_mm=PADDLE_PMMA_MM)


@lru_cache(maxsize=4096)
def _run(thickness_mm: float, glandularity: float, af: str, kv: float, angle_deg: float, histories: int, seed: int,
         geometry: AcquisitionGeometry) -> DoseResult:
    """One transport run, kept: the 50 % and 0 deg runs are the denominators of many table entries."""
    breast = BreastModel(thickness_mm, glandularity, bottom_z_mm=geometry.support_height_mm)
    return glandular_dose_per_kerma(_spectrum(af, kv), breast, geometry.source_position(angle_deg),
                                    histories=histories, seed=seed)


def _ratio(num: DoseResult, den: DoseResult) -> tuple[float, float]:
    """num / den and its standard error (an upper bound: it ignores the positive correlation that
    the shared seed, i.e. correlated sampling, buys)."""
    r = num.dose_per_kerma / den.dose_per_kerma
    return r, r * math.hypot(num.std_error / num.dose_per_kerma, den.std_error / den.dose_per_kerma)


def c_entry(thickness_mm: float, af: str, kv: float, glandularity: float, *, histories: int, seed: int,
            geometry: AcquisitionGeometry | None = None) -> tuple[float, float]:
    """One c value and its standard error (same seed for numerator and denominator: correlated sampling)."""
    g = geometry or AcquisitionGeometry()
    return _ratio(_run(thickness_mm, glandularity, af, kv, 0.0, histories, seed, g),
                  _run(thickness_mm, 0.5, af, kv, 0.0, histories, seed, g))


def t_entry(thickness_mm: float, angle_deg: float, glandularity: float, *, histories: int, seed: int,
            geometry: AcquisitionGeometry | None = None) -> tuple[float, float]:
    """One t value and its standard error."""
    g = geometry or AcquisitionGeometry()
    af, kv = hvl_matched_beam(T_TABLE_HVL)
    return _ratio(_run(thickness_mm, glandularity, af, kv, angle_deg, histories, seed, g),
                  _run(thickness_mm, glandularity, af, kv, 0.0, histories, seed, g))


def build_tables(histories: int = HISTORIES, seed: int = SEED) -> dict:
    """Compute both tables (minutes)."""
    import spekpy
    import xraydb

    start = time.perf_counter()
    beams = [hvl_matched_beam(h) for h in HVL_MM_AL]
    c = np.ones((len(THICKNESS_MM), len(HVL_MM_AL), len(GLANDULARITY)))
    c_err = np.zeros_like(c)
    for i, t_mm in enumerate(THICKNESS_MM):
        for j, (af, kv) in enumerate(beams):
            for k, w in enumerate(GLANDULARITY):
                if w != 0.5:
                    c[i, j, k], c_err[i, j, k] = c_entry(t_mm, af, kv, w, histories=histories, seed=seed)
    t = np.ones((len(THICKNESS_MM), len(ANGLE_DEG), len(GLANDULARITY)))
    t_err = np.zeros_like(t)
    for i, t_mm in enumerate(THICKNESS_MM):
        for j, a in enumerate(ANGLE_DEG):
            if a == 0.0:
                continue
            for k, w in enumerate(GLANDULARITY):
                t[i, j, k], t_err[i, j, k] = t_entry(t_mm, a, w, histories=histories, seed=seed)
    g = AcquisitionGeometry()
    return {
        "description": "Dance-method c and t factors computed by Crescent's Monte Carlo (physics/dose_mc.py)",
        "generator": "python -m physics.dose_tables",
        "histories_per_run": histories,
        "seed": seed,
        "seconds": round(time.perf_counter() - start, 1),
        "versions": {"spekpy": getattr(spekpy, "__version__", "unknown"), "xraydb": xraydb.__version__},
        "breast_model": {"radius_mm": 80.0, "shell_mm": 5.0, "support_height_mm": g.support_height_mm,
                         "kerma_reference": "x 0, y 60 mm, breast top; no backscatter"},
        "geometry": {"sid_mm": g.sid_mm, "pivot_height_mm": g.pivot_height_mm},
        "paddle_pmma_mm": PADDLE_PMMA_MM,
        "thickness_mm": THICKNESS_MM,
        "hvl_mm_al": HVL_MM_AL,
        "glandularity": GLANDULARITY,
        "angle_deg": ANGLE_DEG,
        "c_beams": [{"hvl_mm_al": h, "anode_filter": af, "kvp": kv} for h, (af, kv) in zip(HVL_MM_AL, beams)],
        "t_beam": dict(zip(("anode_filter", "kvp"), hvl_matched_beam(T_TABLE_HVL))),
        "c": np.round(c, 4).tolist(),
        "c_std_error": np.round(c_err, 4).tolist(),
        "t": np.round(t, 4).tolist(),
        "t_std_error": np.round(t_err, 4).tolist(),
    }


@lru_cache(maxsize=1)
def load_tables() -> dict:
    """The shipped tables, with numpy arrays for the axes and values."""
    raw = json.loads(TABLE_PATH.read_text())
    out = dict(raw)
    for key in ("thickness_mm", "hvl_mm_al", "glandularity", "angle_deg", "c", "c_std_error", "t", "t_std_error"):
        out[key] = np.asarray(raw[key], dtype=np.float64)
    return out


def _interp_axis(axis: np.ndarray, value: float, name: str, unit: str) -> tuple[int, float]:
    """Lower index and fraction for linear interpolation; values outside the axis are refused."""
    if not axis[0] - 1e-9 <= value <= axis[-1] + 1e-9:
        raise ValueError(f"{name} {value:g} {unit} outside the table ({axis[0]:g}-{axis[-1]:g} {unit})")
    i = int(np.clip(np.searchsorted(axis, value) - 1, 0, axis.size - 2))
    return i, float(np.clip((value - axis[i]) / (axis[i + 1] - axis[i]), 0.0, 1.0))


def trilinear(values: np.ndarray, axes: tuple[np.ndarray, np.ndarray, np.ndarray], point: tuple[float, float, float],
              names: tuple[tuple[str, str], ...]) -> float:
    """Trilinear interpolation of a 3-D table at ``point`` (each coordinate inside its axis)."""
    idx = [_interp_axis(ax, v, n, u) for ax, v, (n, u) in zip(axes, point, names)]
    out = 0.0
    for corner in range(8):
        weight, pos = 1.0, []
        for d, (i, f) in enumerate(idx):
            bit = (corner >> d) & 1
            weight *= f if bit else 1.0 - f
            pos.append(i + bit)
        if weight:
            out += weight * values[tuple(pos)]
    return float(out)


def main() -> None:
    tables = build_tables()
    TABLE_PATH.parent.mkdir(parents=True, exist_ok=True)
    TABLE_PATH.write_text(json.dumps(tables, indent=1) + "\n")
    print(f"wrote {TABLE_PATH} in {tables['seconds']} s")


if __name__ == "__main__":
    main()
