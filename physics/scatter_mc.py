"""Monte Carlo scatter kernels of a compressed breast: scatter-to-primary ratio and its spread on the detector.

What is computed (the "convolution method" of J. M. Boone and V. N. Cooper, "Scatter/primary in
mammography: Monte Carlo validation", Med. Phys. 27 (2000) 1818-1831: a monoenergetic pencil beam
through a laterally infinite slab, the scattered photons scored on the detector around the primary's
point of arrival, then weighted by the spectrum and convolved with the field):

* a slab of adipose/glandular mixture (glandularity by weight; Hammerstein compositions,
  :mod:`physics.materials`) of thickness ``T`` mm whose bottom lies an air gap ``g`` mm above the
  detector surface (the breast support's height; the support and detector cover are not scatterers here,
  and they attenuate primary and scatter alike, so they are left out of the ratio);
* a pencil beam of energy ``E`` entering the top surface at the origin, tilted by the projection
  angle ``theta`` in the x-z plane (the plane of the DBT arc; the beam travels toward +x);
* physics as in :mod:`physics.dose_mc` and with its samplers: photoelectric absorption, incoherent
  scattering from the Klein-Nishina cross section, coherent scattering from Thomson x the squared
  atomic form factor of the mixture (xraydb's Waasmaier-Kirfel f0); cross sections are xraydb's
  (Elam), combined by mass fraction. Binding effects on the incoherent angular distribution
  (the incoherent scattering function) are neglected, as in :mod:`physics.dose_mc`;
* score: the energy each scattered photon deposits in the detector's a-Se layer
  (``E' (1 - exp(-mu_Se(E') t / |cos|))``, ``t`` = 0.2 mm, the photon's own obliquity), tallied on a
  polar grid (radius ``r`` mm, azimuth ``phi`` from +x, folded onto 0-180 degrees since the problem is
  symmetric in y) around the point where the unscattered pencil reaches the detector. Each tally is
  divided by the primary's deposit ``E exp(-mu T / cos theta) (1 - exp(-mu_Se t / cos theta))``, so
  a table entry is *scatter per unit primary*: summed over the plane it is the scatter-to-primary
  ratio (SPR) at the centre of an infinitely wide uniform field of that slab, and summed over a
  region it is the SPR at a point of a field of that shape.

The table ``R[glandularity, angle, thickness, energy, air_gap, r, phi]`` is written by
``python -m physics.scatter_mc`` to ``physics/data/scatter_kernels.npz`` with the seed, histories,
library versions and run time; :func:`spr_kernel` weights it with a spectrum. Every run takes a
seed; the transport is single-threaded, so a seed gives the same table on every machine.

Units: mm, keV, degrees.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numba
import numpy as np

from physics import dose_mc, materials

TABLE_PATH = Path(__file__).with_name("data") / "scatter_kernels.npz"

#: Monoenergetic pencil energies of the table, keV (a spectrum is interpolated linearly between them).
ENERGY_KEV = np.arange(10.0, 50.0, 3.0)
#: Compressed thicknesses, mm (the breast phantom's range is 10-120 mm).
THICKNESS_MM = np.arange(10.0, 121.0, 10.0)
#: Projection angles of the pencil from the detector normal, degrees (DBT arcs reach +-25 deg).
ANGLE_DEG = np.array([0.0, 10.0, 20.0, 30.0])
#: Glandular fraction by weight.
GLANDULARITY = np.array([0.0, 0.5, 1.0])
#: Slab bottom above the detector surface, mm: Boone et al. 2000's 15 mm and the default support's 20 mm.
AIR_GAP_MM = np.array([15.0, 20.0])
#: Radial bin edges of the tally around the primary's arrival point, mm.
R_EDGES_MM = np.array([0.0, 1.0, 2.0, 3.0, 4.0, 6.0, 8.0, 10.0, 13.0, 16.0, 20.0, 25.0, 30.0, 40.0, 50.0,
                       60.0, 80.0, 100.0, 130.0, 160.0, 200.0])
#: Azimuth bins over 0-180 degrees (folded: +y and -y are the same).
N_PHI = 9
#: Photons that leave the slab more than this far from the entry point (laterally) are not followed, mm.
SLAB_RADIUS_MM = 400.0
#: a-Se layer thickness of the scoring detector, mm (:class:`simulator.imaging.detector.DetectorModel`'s).
SE_THICKNESS_MM = 0.200
#: What a kernel is scored in, by the thickness of its absorbing layer (mm): the product's a-Se layer, or an
#: ideal energy-integrating receptor that absorbs every photon (the image receptor of the published
#: convolution-method SPRs, Boone & Cooper 2000 and Sechopoulos et al. 2007, as reproduced by O. Diaz,
#: PhD thesis, University of Surrey, ch. 6.1: "an ideal image receptor for photon scoring ... all the
#: energy within the image receptor was recorded"). The shipped table is scored in a-Se.
RECEPTOR_LAYER_MM = {"a-Se": SE_THICKNESS_MM, "ideal": math.inf}
HISTORIES = 100_000
SEED = 20150


@numba.njit(cache=True)
def _pencil(n_histories: int, seed: int, e0: float, thickness: float, angle_rad: float, gaps: np.ndarray,
            mu: np.ndarray, p_photo: np.ndarray, p_incoh: np.ndarray, f2_row: np.ndarray, mu_se: np.ndarray,
            se_t: float, r_edges: np.ndarray, n_phi: int, slab_radius: float, out: np.ndarray) -> float:
    """Add the scattered energy deposited in the detector to ``out[gap, r, phi]`` (keV, summed over histories).

    Returns the energy of scattered photons that reached the detector plane beyond the last radial edge (keV).
    Energy tables are on :mod:`physics.dose_mc`'s grid (E_MIN_KEV + k E_STEP_KEV).
    """
    np.random.seed(seed)
    n_e = mu.size
    ux0, uz0 = math.sin(angle_rad), -math.cos(angle_rad)
    r_max = r_edges[-1]
    n_r = r_edges.size - 1
    lost = 0.0
    for _ in range(n_histories):
        x, y, z = 0.0, 0.0, thickness
        ux, uy, uz = ux0, 0.0, uz0
        e = e0
        scattered = False
        while True:
            i = int((e - dose_mc.E_MIN_KEV) / dose_mc.E_STEP_KEV + 0.5)
            if i < 0:
                break
            if i >= n_e:
                i = n_e - 1
            step = -math.log(1.0 - np.random.random()) / mu[i]
            x += ux * step
            y += uy * step
            z += uz * step
            if z < 0.0:  # left through the bottom
                if scattered:
                    back = z / uz  # > 0: distance back to the exit plane
                    x0, y0 = x - ux * back, y - uy * back
                    i = int((e - dose_mc.E_MIN_KEV) / dose_mc.E_STEP_KEV + 0.5)
                    if i >= n_e:
                        i = n_e - 1
                    w = e * (1.0 - math.exp(-mu_se[i] * se_t / abs(uz)))
                    for g in range(gaps.size):
                        s = gaps[g] / -uz
                        xp = (thickness + gaps[g]) * math.tan(angle_rad)
                        dx, dy = x0 + ux * s - xp, y0 + uy * s
                        r = math.sqrt(dx * dx + dy * dy)
                        if r >= r_max:
                            if g == gaps.size - 1:
                                lost += w
                            continue
                        k = np.searchsorted(r_edges, r, side="right") - 1
                        phi = math.atan2(abs(dy), dx)  # 0..pi
                        j = min(int(phi / math.pi * n_phi), n_phi - 1)
                        out[g, k, j] += w
                break
            if z > thickness or x * x + y * y > slab_radius * slab_radius:
                break
            xi = np.random.random()
            if xi < p_photo[i]:
                break
            if xi < p_photo[i] + p_incoh[i]:
                e, cos_t = dose_mc._sample_klein_nishina(e)
            else:
                cos_t = dose_mc._sample_coherent(e, f2_row)
            ux, uy, uz = dose_mc._rotate(ux, uy, uz, cos_t)
            scattered = True
            if e < dose_mc.E_MIN_KEV:
                break
    _ = n_r
    return lost


@lru_cache(maxsize=8)
def _tables(glandularity: float) -> tuple[np.ndarray, ...]:
    """(mu 1/mm, P(photo), P(incoherent), F^2 row, mu_Se 1/mm) on :mod:`physics.dose_mc`'s energy grid."""
    e, mu, p_photo, p_incoh, _, _ = dose_mc.interaction_tables(glandularity, float(ENERGY_KEV.max()) + 1.0)
    f2 = dose_mc._form_factor_squared(round(glandularity, 6))[1]
    mu_se = materials.linear_attenuation("a-Se", e)
    return e, np.ascontiguousarray(mu[1]), np.ascontiguousarray(p_photo[1]), np.ascontiguousarray(p_incoh[1]), f2, mu_se


def _receptor_layer_mm(receptor: str) -> float:
    if receptor not in RECEPTOR_LAYER_MM:
        raise ValueError(f"receptor={receptor!r} must be one of {sorted(RECEPTOR_LAYER_MM)}")
    return RECEPTOR_LAYER_MM[receptor]


def primary_deposit_kev(e_kev: np.ndarray, thickness_mm: float, angle_deg: float, glandularity: float,
                        receptor: str = "a-Se") -> np.ndarray:
    """Energy the unscattered pencil deposits in the receptor (:data:`RECEPTOR_LAYER_MM`) per incident photon,
    keV (analytic)."""
    e = np.asarray(e_kev, dtype=np.float64)
    c = math.cos(math.radians(angle_deg))
    mu = (materials.breast_mixture_mass_attenuation(glandularity, e)
          * materials.breast_mixture_density_g_cm3(glandularity) / 10.0)
    eta = 1.0 - np.exp(-materials.linear_attenuation("a-Se", e) * _receptor_layer_mm(receptor) / c)
    return e * np.exp(-mu * thickness_mm / c) * eta


def pencil_kernel(e_kev: float, thickness_mm: float, angle_deg: float, glandularity: float, *,
                  air_gaps_mm: np.ndarray = AIR_GAP_MM, histories: int = HISTORIES,
                  seed: int = SEED, receptor: str = "a-Se") -> tuple[np.ndarray, float]:
    """Scatter per unit primary on the polar grid, ``(n_gap, n_r, N_PHI)``, and the share lost beyond 200 mm.

    ``sum()`` over the last two axes is the infinite-field SPR for each air gap. ``receptor`` is what
    scatter and primary are scored in (:data:`RECEPTOR_LAYER_MM`).
    """
    layer = _receptor_layer_mm(receptor)
    if histories < 1:
        raise ValueError(f"histories={histories} must be at least 1")
    if not 0.0 < thickness_mm <= 200.0:
        raise ValueError(f"thickness_mm={thickness_mm} must lie in (0, 200] mm")
    if not 0.0 <= angle_deg < 60.0:
        raise ValueError(f"angle_deg={angle_deg} must lie in [0, 60) degrees")
    e, mu, p_photo, p_incoh, f2, mu_se = _tables(float(glandularity))
    gaps = np.asarray(air_gaps_mm, dtype=np.float64)
    out = np.zeros((gaps.size, R_EDGES_MM.size - 1, N_PHI))
    lost = _pencil(int(histories), int(seed), float(e_kev), float(thickness_mm), math.radians(angle_deg), gaps,
                   mu, p_photo, p_incoh, f2, mu_se, layer, R_EDGES_MM, N_PHI, SLAB_RADIUS_MM, out)
    p = float(primary_deposit_kev(np.array([e_kev]), thickness_mm, angle_deg, glandularity, receptor)[0]) * histories
    if p <= 1e-300:
        return np.zeros_like(out), 0.0
    return out / p, lost / p


def _node_weights(nodes: np.ndarray, e: np.ndarray, primary: np.ndarray) -> np.ndarray:
    """Share of the primary deposit ``primary`` (per spectrum bin at energies ``e``) given to each energy
    node by linear interpolation (sums to 1)."""
    node_w = np.zeros(nodes.size)
    idx = np.clip(np.searchsorted(nodes, e, side="right") - 1, 0, nodes.size - 2)
    frac = np.clip((e - nodes[idx]) / (nodes[idx + 1] - nodes[idx]), 0, 1)
    np.add.at(node_w, idx, primary * (1 - frac))
    np.add.at(node_w, idx + 1, primary * frac)
    return node_w / primary.sum()


def spectrum_kernel_mc(energies_kev: np.ndarray, fluence: np.ndarray, thickness_mm: float, angle_deg: float,
                       glandularity: float, air_gap_mm: float, *, receptor: str = "a-Se",
                       histories: int = 3_000_000, batches: int = 6,
                       seed: int = SEED) -> tuple[np.ndarray, np.ndarray]:
    """Scatter per unit primary on the polar grid ``(n_r, N_PHI)`` for a beam of this spectrum, straight from
    the transport (no table, no interpolation in thickness, angle, glandularity or gap).

    The spectrum is weighted onto the table's energy nodes as :func:`spr_kernel` does; ``histories`` are
    shared among the nodes in proportion to their weight (at least 1000 per node that has weight) and run
    in ``batches`` independent batches (seeded ``seed + 1000 b + node``). Returns the mean kernel and the
    batch kernels ``(batches, n_r, N_PHI)``: the spread of any figure over the batches divided by
    ``sqrt(batches)`` is its Monte Carlo standard error.
    """
    if batches < 2:
        raise ValueError(f"batches={batches} must be at least 2 (the standard error needs two)")
    e = np.asarray(energies_kev, dtype=np.float64)
    p = np.asarray(fluence, dtype=np.float64) * primary_deposit_kev(e, thickness_mm, angle_deg, glandularity,
                                                                     receptor)
    if p.sum() <= 0:
        raise ValueError("the spectrum deposits no primary behind the slab")
    w = _node_weights(ENERGY_KEV, e, p)
    per_batch = histories / batches
    out = np.zeros((batches, R_EDGES_MM.size - 1, N_PHI))
    for b in range(batches):
        for j in np.flatnonzero(w > 0):
            n = max(1000, int(round(per_batch * w[j])))
            kern, _ = pencil_kernel(float(ENERGY_KEV[j]), thickness_mm, angle_deg, glandularity,
                                    air_gaps_mm=np.array([air_gap_mm]), histories=n,
                                    seed=seed + 1000 * b + int(j), receptor=receptor)
            out[b] += w[j] * kern[0]
    return out.mean(axis=0), out


def build_table(histories: int = HISTORIES, seed: int = SEED, path: Path = TABLE_PATH) -> Path:
    """Run every (glandularity, angle, thickness, energy) pencil and write the table (seeded per entry)."""
    import importlib.metadata as md

    t0 = time.perf_counter()
    shape = (GLANDULARITY.size, ANGLE_DEG.size, THICKNESS_MM.size, ENERGY_KEV.size, AIR_GAP_MM.size,
             R_EDGES_MM.size - 1, N_PHI)
    table = np.zeros(shape, dtype=np.float32)
    k = 0
    for a, gl in enumerate(GLANDULARITY):
        for b, ang in enumerate(ANGLE_DEG):
            for c, t in enumerate(THICKNESS_MM):
                for d, e in enumerate(ENERGY_KEV):
                    kern, _ = pencil_kernel(float(e), float(t), float(ang), float(gl), histories=histories,
                                            seed=seed + k)
                    table[a, b, c, d] = kern
                    k += 1
    meta = {"seed": seed, "histories_per_pencil": histories, "seconds": round(time.perf_counter() - t0, 1),
            "versions": {p: md.version(p) for p in ("numpy", "numba", "xraydb")},
            "se_thickness_mm": SE_THICKNESS_MM, "slab_radius_mm": SLAB_RADIUS_MM,
            "axes": "glandularity, angle_deg, thickness_mm, energy_kev, air_gap_mm, r_edges_mm, phi (0-180 deg)"}
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, spr=table, glandularity=GLANDULARITY, angle_deg=ANGLE_DEG, thickness_mm=THICKNESS_MM,
                        energy_kev=ENERGY_KEV, air_gap_mm=AIR_GAP_MM, r_edges_mm=R_EDGES_MM,
                        meta=np.array(json.dumps(meta)))
    return path


# ----------------------------------------------------------------------------------- lookup
@dataclass(frozen=True)
class ScatterTable:
    """The shipped table (see the module docstring for the axes)."""

    spr: np.ndarray
    glandularity: np.ndarray
    angle_deg: np.ndarray
    thickness_mm: np.ndarray
    energy_kev: np.ndarray
    air_gap_mm: np.ndarray
    r_edges_mm: np.ndarray
    meta: dict


@lru_cache(maxsize=2)
def load_table(path: Path = TABLE_PATH) -> ScatterTable:
    """The scatter table from ``path`` (cached)."""
    if not path.exists():
        raise FileNotFoundError(f"scatter table {path} missing: run `python -m physics.scatter_mc`")
    with np.load(path) as z:
        return ScatterTable(z["spr"].astype(np.float64), z["glandularity"], z["angle_deg"], z["thickness_mm"],
                            z["energy_kev"], z["air_gap_mm"], z["r_edges_mm"], json.loads(str(z["meta"])))


def _hat(grid: np.ndarray, v: float) -> list[tuple[int, float]]:
    """Linear-interpolation (index, weight) pairs of ``v`` on ``grid`` (clamped at the ends)."""
    v = min(max(v, float(grid[0])), float(grid[-1]))
    k = int(np.clip(np.searchsorted(grid, v, side="right") - 1, 0, grid.size - 2)) if grid.size > 1 else 0
    if grid.size == 1:
        return [(0, 1.0)]
    f = (v - grid[k]) / (grid[k + 1] - grid[k])
    return [(k, 1.0 - f), (k + 1, f)]


def spr_kernel(energies_kev: np.ndarray, fluence: np.ndarray, thickness_mm: float, angle_deg: float,
               glandularity: float, air_gap_mm: float, table: ScatterTable | None = None) -> np.ndarray:
    """Scatter per unit primary on the polar grid ``(n_r, N_PHI)`` for a beam of this spectrum.

    ``fluence`` is the photon fluence per energy bin incident on the breast (its shape only is used).
    The primary weight of each energy is computed exactly (:func:`primary_deposit_kev`); the table's
    scatter-per-primary is interpolated linearly in energy, thickness, angle (|angle|), glandularity and
    air gap (clamped to the table's range). ``sum()`` is the infinite-field SPR.
    """
    tab = table or load_table()
    if not 0.0 < thickness_mm <= 200.0:
        raise ValueError(f"thickness_mm={thickness_mm} must lie in (0, 200] mm")
    e = np.asarray(energies_kev, dtype=np.float64)
    f = np.asarray(fluence, dtype=np.float64)
    out = np.zeros(tab.spr.shape[-2:])
    for ig, wg in _hat(tab.glandularity, float(glandularity)):
        for ia, wa in _hat(tab.angle_deg, abs(float(angle_deg))):
            for it, wt in _hat(tab.thickness_mm, float(thickness_mm)):
                for ip, wp in _hat(tab.air_gap_mm, float(air_gap_mm)):
                    w = wg * wa * wt * wp
                    if w == 0.0:
                        continue
                    t_node = float(tab.thickness_mm[it])
                    p = f * primary_deposit_kev(e, t_node, abs(float(angle_deg)), float(glandularity))
                    if p.sum() <= 0:
                        continue
                    node_w = _node_weights(tab.energy_kev, e, p)
                    out += w * np.tensordot(node_w, tab.spr[ig, ia, it, :, ip], axes=(0, 0))
    return out


@lru_cache(maxsize=16)
def _render_index(edges: tuple[float, ...], n_phi: int, pitch_mm: float, mirror: bool,
                  subsamples: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Flat (polar bin index or -1, number of sub-samples per cell) of each sub-sample of the Cartesian grid."""
    e = np.asarray(edges)
    n_r = e.size - 1
    half = int(math.ceil(e[-1] / pitch_mm))
    off = (np.arange(subsamples) + 0.5) / subsamples - 0.5
    c = np.arange(-half, half + 1) * pitch_mm
    xs = (c[:, None] + off[None, :] * pitch_mm).ravel()
    X, Y = np.meshgrid(xs, xs, indexing="xy")
    R = np.hypot(X, Y)
    PHI = np.arctan2(np.abs(Y), -X if mirror else X)
    k = np.searchsorted(e, R, side="right") - 1
    j = np.minimum((PHI / np.pi * n_phi).astype(np.int64), n_phi - 1)
    flat = np.where(k < n_r, k * n_phi + j, -1).astype(np.int32)
    return flat, np.asarray(2 * half + 1), subsamples


def render_kernel(polar: np.ndarray, pitch_mm: float, r_edges_mm: np.ndarray | None = None,
                  beam_dir_x: float = 1.0, subsamples: int = 4) -> np.ndarray:
    """The polar kernel on a square Cartesian grid of ``pitch_mm`` cells centred on the primary's point.

    Each cell takes the density of the polar bin at each of ``subsamples^2`` points inside it times
    the cell's area; the result is then scaled so that its sum equals ``polar.sum()`` (the SPR: nothing
    is gained or lost by the resampling). ``beam_dir_x < 0`` mirrors the kernel in x (beam travelling
    toward -x). Returns ``[row (y), col (x)]`` with odd sides.
    """
    edges = R_EDGES_MM if r_edges_mm is None else np.asarray(r_edges_mm)
    if not pitch_mm > 0:
        raise ValueError(f"pitch_mm={pitch_mm} must be positive")
    n_r, n_phi = polar.shape
    ring_area = np.pi * (edges[1:] ** 2 - edges[:-1] ** 2) / (2 * n_phi)  # each (r, phi) cell, one side of y
    density = (polar / (2.0 * ring_area[:, None])).ravel()  # per mm^2 (folded: the tally holds +y and -y)
    flat, n_arr, q = _render_index(tuple(float(v) for v in edges), n_phi, float(pitch_mm), beam_dir_x < 0,
                                   int(subsamples))
    n = int(n_arr)
    val = np.where(flat >= 0, density[np.maximum(flat, 0)], 0.0)
    cells = val.reshape(n, q, n, q).mean(axis=(1, 3)) * pitch_mm**2
    total = polar.sum()
    s = cells.sum()
    return cells * (total / s) if s > 0 else cells


if __name__ == "__main__":  # pragma: no cover - table generation
    p = build_table()
    print(p, load_table(p).meta)
