"""Benchmark: DBT filtered backprojection of a clinical-size case, against a voxel-driven baseline.

Case: 15 projections over +/-12.5 deg (GE-like gantry: SID 660 mm, rotation
centre 40 mm), each 2400 x 3000 pixels at 100 um (the whole 24 x 30 cm
detector); volume over the whole detector area at 0.1 mm voxels (2400 x 3000
per slice), 50 slices every 1 mm from the breast support (z = 20 mm) through a
50 mm compressed breast. Projections are closed-form line integrals of a
half-elliptical 50 mm breast (uniform mu = 0.05 /mm) with Poisson noise.
Slices are streamed (each slice is produced and dropped), as a reader would
write them to disk.

Also timed: the Joseph-style forward projection of the whole 50-slice volume
onto every full detector (what each SART/SIRT pass costs), unless ``--no-forward``.

Printed: numba first-call time (compile or cache load) on its own line, FBP
seconds (filter and backprojection separately), the straightforward
voxel-driven backprojector (plain numba loop over voxels, computing every
voxel's projection and bilinear sample, no separable tables) timed on
``--baseline-slices`` slices and scaled to all slices, the ratio, and the
process's peak resident memory.

Run: ``.venv/bin/python benchmarks/bench_recon.py [--slices 50] [--baseline-slices 2]``
"""

from __future__ import annotations

import argparse
import math
import resource
import time

import numpy as np
from numba import njit, prange

from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from protocols.records import AcquisitionHeader, ExposureRecord, ProjectionRecord
from reconstruction import FilterSpec, VolumeGrid, iter_fbp, slice_heights
from reconstruction.projector import Window, backproject_slices, forward_project
from reconstruction.fbp import angular_weights, filtered_stack, resolve_geometry
from reconstruction.geometry import Grid, ProjectionGeometry


def make_case(n_proj: int, rows: int, cols: int, pitch: float, thickness: float, seed: int):
    """Header and line-integral projections of a uniform half-elliptical breast (closed form)."""
    det = DetectorGeometry(native_pitch_mm=pitch, rows=rows, cols=cols)
    geo = AcquisitionGeometry(sid_mm=660.0, pivot_height_mm=40.0, support_height_mm=20.0, detector=det)
    angles = np.linspace(-12.5, 12.5, n_proj)
    recs = [
        ProjectionRecord(
            exposure=ExposureRecord(index=i, frame_id=i, planned_angle_deg=a, angle_start_deg=a - 0.05,
                                    angle_end_deg=a + 0.05, kvp=29.0, mas=4.0, anode_filter="W/Rh",
                                    window_start_s=0.3 * i, window_end_s=0.3 * i + 0.05),
            rows=rows, cols=cols, checksum_crc32c=0)
        for i, a in enumerate(angles)
    ]
    hdr = AcquisitionHeader(geometry=geo, compressed_thickness_mm=thickness, projections=recs)
    rng = np.random.default_rng(seed)
    x = det.col_centres_mm()
    y = det.row_centres_mm()
    proj = np.empty((n_proj, rows, cols), np.float32)
    z_mid = geo.support_height_mm + thickness / 2
    for k, a in enumerate(angles):
        sx, _, sz = geo.source_position(float(a))
        m = sz / (sz - z_mid)
        # breast outline (semi-axes 110 mm along x, 100 mm along y) at mid-height, projected
        inside = ((x[None, :] - sx * (1 - m)) / (110 * m)) ** 2 + (y[:, None] / (100 * m)) ** 2 <= 1.0
        path = np.sqrt((x[None, :] - sx) ** 2 + y[:, None] ** 2 + sz**2) / sz
        li = np.where(inside, 0.05 * thickness * path, 0.0)
        counts = rng.poisson(2000.0 * np.exp(-li))
        proj[k] = -np.log(np.maximum(counts, 0.5) / 2000.0)
    return hdr, proj


@njit(parallel=True, cache=True)
def voxel_driven_slice(proj, sources, z, xs, ys, pitch, off_x, off_y, weights, out):
    """Baseline: for every voxel and projection, project the voxel centre and sample bilinearly."""
    n, rows, cols = proj.shape
    for j in prange(ys.size):
        for i in range(xs.size):
            acc = 0.0
            for k in range(n):
                sx, sy, sz = sources[k, 0], sources[k, 1], sources[k, 2]
                m = sz / (sz - z)
                u = sx + (xs[i] - sx) * m
                v = sy + (ys[j] - sy) * m
                c = (u - off_x) / pitch + (cols - 1) / 2.0
                r = (v - off_y) / pitch - 0.5
                if c < 0 or r < 0 or c > cols - 1 or r > rows - 1:
                    continue
                c0 = min(int(math.floor(c)), cols - 2)
                r0 = min(int(math.floor(r)), rows - 2)
                fc = c - c0
                fr = r - r0
                a = proj[k, r0, c0] * (1 - fc) + proj[k, r0, c0 + 1] * fc
                b = proj[k, r0 + 1, c0] * (1 - fc) + proj[k, r0 + 1, c0 + 1] * fc
                acc += weights[k] * (a * (1 - fr) + b * fr)
            out[j, i] = acc


def warm_up() -> float:
    """First calls of every kernel on a tiny case: numba compile (or cache load) time, s."""
    t0 = time.perf_counter()
    hdr, proj = make_case(3, 32, 48, 0.5, 20.0, 0)
    grid = VolumeGrid(voxel_mm=0.5, x_min_mm=-5, x_max_mm=5, y_min_mm=0, y_max_mm=10, z_mm=(25.0, 30.0))
    for _ in iter_fbp(proj, hdr, grid):
        pass
    pg = resolve_geometry(proj, hdr)
    g = grid.to_grid()
    out = np.zeros((g.y_mm.size, g.x_mm.size), np.float32)
    voxel_driven_slice(proj, pg.sources_mm, 25.0, g.x_mm, g.y_mm, pg.pitch_mm, 0.0, 0.0, np.ones(3), out)
    return time.perf_counter() - t0


def baseline_seconds(proj: np.ndarray, pg: ProjectionGeometry, grid, stack, n_slices: int) -> tuple[float, float]:
    """Seconds of the voxel-driven and the separable backprojector on the same ``n_slices`` slices.

    The two are interleaved slice by slice so that load from other processes hits both alike.
    """
    g = grid.to_grid()
    out = np.zeros((g.y_mm.size, g.x_mm.size), np.float32)
    w = angular_weights(pg.angles_deg)
    t_base = t_sep = 0.0
    for iz in range(n_slices):
        z = float(g.z_mm[iz])
        t0 = time.perf_counter()
        voxel_driven_slice(proj, pg.sources_mm, z, g.x_mm, g.y_mm, pg.pitch_mm, pg.offset_x_mm, pg.offset_y_mm, w, out)
        t_base += time.perf_counter() - t0
        one = Grid(g.x_mm, g.y_mm, g.z_mm[iz : iz + 1])
        t0 = time.perf_counter()
        for _ in backproject_slices(stack, pg, one, w, mag_power=1.0):
            pass
        t_sep += time.perf_counter() - t0
    return t_base, t_sep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--projections", type=int, default=15)
    ap.add_argument("--slices", type=int, default=50)
    ap.add_argument("--baseline-slices", type=int, default=2)
    ap.add_argument("--no-forward", action="store_true", help="skip the forward-projection timing")
    args = ap.parse_args()

    print(f"numba first call (compile or cache load): {warm_up():.2f} s")
    rows, cols, pitch = 2400, 3000, 0.1
    t0 = time.perf_counter()
    hdr, proj = make_case(args.projections, rows, cols, pitch, 50.0, seed=1)
    print(f"case: {args.projections} projections of {rows} x {cols} at {pitch * 1000:.0f} um "
          f"(made in {time.perf_counter() - t0:.1f} s)")
    grid = VolumeGrid(voxel_mm=0.1, x_min_mm=-150.0, x_max_mm=150.0, y_min_mm=0.0, y_max_mm=240.0,
                      z_mm=slice_heights(20.0, 20.0 + args.slices, 1.0))
    g = grid.to_grid()
    print(f"volume: {g.shape[2]} x {g.shape[1]} x {g.shape[0]} voxels (x, y, slices), 0.1 mm, 1 mm slices, streamed")
    pg = resolve_geometry(proj, hdr)

    # the two stages of reconstruction.iter_fbp, timed separately
    t0 = time.perf_counter()
    stack = filtered_stack(proj, pg, g, FilterSpec())
    t_filter = time.perf_counter() - t0
    weights = angular_weights(pg.angles_deg) / np.cos(np.radians(pg.angles_deg))
    t0 = time.perf_counter()
    checksum = 0.0
    for _, _, img in backproject_slices(stack, pg, g, weights, mag_power=1.0):
        checksum += float(img[::97, ::89].sum())
    t_bp = time.perf_counter() - t0
    t_fbp = t_filter + t_bp
    print(f"FBP total: {t_fbp:.2f} s  (filtering {t_filter:.2f} s, backprojection {t_bp:.2f} s, "
          f"{t_bp / g.shape[0] * 1000:.0f} ms/slice)  checksum {checksum:.4g}")

    nb = max(1, min(args.baseline_slices, g.shape[0]))
    t_b, t_s = baseline_seconds(proj, pg, grid, stack, nb)
    del stack
    t_base = t_b * g.shape[0] / nb
    print(f"voxel-driven baseline backprojection: {t_base:.2f} s for {g.shape[0]} slices "
          f"(timed on {nb}, scaled)")
    print(f"ratio backprojection baseline / separable, same {nb} slices interleaved: {t_b / max(t_s, 1e-9):.2f}x")
    print(f"ratio backprojection baseline (scaled) / separable (all slices): {t_base / max(t_bp, 1e-9):.2f}x")
    print(f"ratio FBP with baseline backprojector / FBP: {(t_filter + t_base) / t_fbp:.2f}x")
    if not args.no_forward:
        vol = np.empty(g.shape, np.float32)
        vol[:] = 0.05 * (1.0 + 0.1 * np.sin(g.x_mm / 7.0))[None, None, :].astype(np.float32)
        t0 = time.perf_counter()
        for k in range(pg.n):
            p = forward_project(vol, pg, g, k, window=Window(0, pg.rows, 0, pg.cols))
        t_fp = time.perf_counter() - t0
        print(f"forward projection of the {g.shape[0]}-slice volume onto all {pg.n} full detectors: {t_fp:.2f} s "
              f"({t_fp / pg.n:.2f} s/view, last view mean {float(p.data.mean()):.3f})")
        del vol
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    print(f"peak resident memory: {peak_mb:.0f} MB")


if __name__ == "__main__":
    main()
