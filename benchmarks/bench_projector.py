"""Projector benchmark: clinical-size breast onto a 24 x 30 cm panel, against a ray-marching baseline.

Case: 5 cm compressed breast (160 x 90 mm outline) at 0.1 mm voxels
(~720 M voxels), GE-like geometry (SID 660 mm, pivot 40 mm), detector
24 x 30 cm at 100 um (2400 x 3000) and at 50 um (4800 x 6000), projection at
+12.5 deg. Prints: numba compile time (first call, on a tiny case), seconds
per projection for line integrals and for the polyenergetic sum, the speed
ratio against a straightforward ray-driven baseline (a numba ray marcher with
trilinear-free nearest sampling at half-voxel steps, parallel over rows, timed
on a subset of rows and scaled), and peak memory (ru_maxrss).

Run: ``.venv/bin/python benchmarks/bench_projector.py [--quick]``
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import numba as nb
import numpy as np

from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from simulator.physics import materials
from simulator.physics.phantoms.breast import breast_phantom
from simulator.physics.projector import label_lut, pixel_grid, polyenergetic, voxel_line_integrals
from simulator.physics.spectra import beam_spectrum


@nb.njit(cache=True, parallel=True)
def _ray_march(labels, lut, n_mat, ox, oy, oz, dx, dy, dz, sx, sy, sz, xs, ys, step, out):  # pragma: no cover
    """Baseline: march every ray source->pixel through the volume's z range with a fixed step, nearest voxel."""
    nz, ny, nx = labels.shape
    z_top = oz + nz * dz
    for r in nb.prange(ys.size):
        for c in range(xs.size):
            vx, vy, vz = xs[c] - sx, ys[r] - sy, -sz
            length = math.sqrt(vx * vx + vy * vy + vz * vz)
            t0 = (z_top - sz) / vz
            t1 = (oz - sz) / vz
            n = int((t1 - t0) * length / step) + 1
            dt = (t1 - t0) / n
            for s in range(n):
                t = t0 + (s + 0.5) * dt
                i = int((sx + t * vx - ox) / dx)
                j = int((sy + t * vy - oy) / dy)
                k = int((sz + t * vz - oz) / dz)
                if 0 <= i < nx and 0 <= j < ny and 0 <= k < nz:
                    m = lut[labels[k, j, i]]
                    if m >= 0:
                        out[m, r, c] += dt * length


def baseline(phantom, source, det, labs, row_stride: int) -> tuple[float, np.ndarray, np.ndarray]:
    """Time the baseline on every ``row_stride``-th row; return (seconds scaled to all rows, L subset, rows)."""
    xs, ys = pixel_grid(det)
    rows = np.arange(0, ys.size, row_stride)
    out = np.zeros((len(labs), rows.size, xs.size), np.float32)
    dz, dy, dx = phantom.voxel_mm
    t = time.perf_counter()
    _ray_march(phantom.labels, label_lut(labs), len(labs), *phantom.origin_mm, dx, dy, dz, *source, xs, ys[rows],
               0.5 * min(phantom.voxel_mm), out)
    return (time.perf_counter() - t) * ys.size / rows.size, out, rows


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="0.2 mm voxels instead of 0.1 mm")
    args = ap.parse_args()
    voxel = 0.2 if args.quick else 0.1
    geo = AcquisitionGeometry(sid_mm=660.0, pivot_height_mm=40.0)
    print(f"numba threads: {nb.get_num_threads()}")

    # compile time, on a tiny case (first call; cache=True makes later processes load from disk)
    tiny = breast_phantom(20.0, 20.0, seed=0, voxel_mm=1.0, width_mm=40, depth_mm=30)
    tdet = DetectorGeometry(native_pitch_mm=0.5, rows=8, cols=8)
    t = time.perf_counter()
    L = voxel_line_integrals(tiny.voxels, geo.source_position(0.0), tdet, tiny.material_labels())
    polyenergetic(L, np.ones((L.shape[0], 3)), np.ones(3), np.ones(3))
    baseline(tiny.voxels, geo.source_position(0.0), tdet, tiny.material_labels(), 1)
    print(f"numba compile/load time (first calls, tiny case): {time.perf_counter() - t:.2f} s")

    t = time.perf_counter()
    ph = breast_phantom(50.0, geo.support_height_mm, seed=1, voxel_mm=voxel)
    print(f"phantom: {ph.voxels.shape} voxels at {voxel} mm ({ph.voxels.labels.nbytes / 1e6:.0f} MB) built in "
          f"{time.perf_counter() - t:.1f} s")
    labs = ph.material_labels()
    spec = beam_spectrum("W/Rh", 29.0)
    mu = materials.attenuation_table(labs, spec.energies_kev)
    src = geo.source_position(12.5)
    for pitch in (0.1, 0.05):
        det = DetectorGeometry(native_pitch_mm=pitch, binning=1, rows=int(round(240 / pitch)), cols=int(round(300 / pitch)))
        times = []
        for _ in range(2):
            t = time.perf_counter()
            L = voxel_line_integrals(ph.voxels, src, det, labs)
            t_line = time.perf_counter() - t
            t = time.perf_counter()
            polyenergetic(L, mu, spec.fluence_per_mas, spec.fluence_per_mas * spec.energies_kev)
            times.append((t_line, time.perf_counter() - t))
        t_line, t_poly = times[-1]
        stride = 40 if pitch == 0.1 else 80
        t_base, lb, rows = baseline(ph.voxels, src, det, labs, stride)
        diff = np.abs(lb.sum(0) - L[:, rows].sum(0))
        agree = float(np.median(diff[L[:, rows].sum(0) > 10]))
        print(f"{det.rows} x {det.cols} @ {pitch * 1000:.0f} um: line integrals {t_line:.2f} s + energy sum "
              f"{t_poly:.2f} s = {t_line + t_poly:.2f} s/projection; baseline ray marcher {t_base:.2f} s "
              f"(scaled from every {stride}th row); speed ratio {t_base / t_line:.1f}x on line integrals "
              f"(median |total L| difference {agree:.3f} mm); L array {L.nbytes / 1e6:.0f} MB")
        del L
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak memory (ru_maxrss): {peak:.0f} MB")


if __name__ == "__main__":
    main()
