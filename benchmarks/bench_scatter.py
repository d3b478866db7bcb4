"""Scatter benchmark: what the Monte Carlo scatter adds to one projection of the default `crescent acquire`.

Case: the default exam's breast (50 mm, 0.25 mm voxels, seed 1) onto the 4 x 4 binned 200 um panel
(1200 x 1500), W/Rh 29 kV, at 0 and 12.5 deg, noise off. Prints seconds per projection with scatter off
and on (best of 3 after a warm-up that loads the table and renders the kernels), the scatter part alone
(:meth:`ExposureImager.scatter_signal`), and peak memory (ru_maxrss).

Run: ``.venv/bin/python benchmarks/bench_scatter.py``
"""

from __future__ import annotations

import resource
import time

import numpy as np

from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from protocols.records import ExposureRecord
from simulator.imaging.imager import ExposureImager, make_phantom


def best_of(fn, n: int = 3) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    g = AcquisitionGeometry(detector=DetectorGeometry(native_pitch_mm=0.05, binning=4, rows=1200, cols=1500))
    ph = make_phantom("breast", 50.0, g, seed=1, voxel_mm=0.25)
    for angle in (0.0, 12.5):
        e = ExposureRecord(index=0, frame_id=1, planned_angle_deg=angle, angle_start_deg=angle, angle_end_deg=angle,
                           kvp=29, mas=50, anode_filter="W/Rh", window_start_s=0, window_end_s=0.1)
        off = ExposureImager(ph, g, seed=1, noise=False, scatter=False)
        on = ExposureImager(ph, g, seed=1, noise=False, scatter=True)
        off.expected_signal(e)
        on.expected_signal(e)  # warm-up: projection cached, table loaded, kernels rendered
        t_off = best_of(lambda: off.expected_signal(e))
        t_on = best_of(lambda: on.expected_signal(e))
        p, _ = off.expected_signal(e)
        path = on.projection(on.source_samples(e)[0])[0].sum(axis=0)
        src = on.source_samples(e).mean(axis=0)
        on.scatter_signal(p, path, e, src)
        t_s = best_of(lambda: on.scatter_signal(p, path, e, src))
        print(f"{angle:5.1f} deg: projection {t_off:.3f} s without scatter, {t_on:.3f} s with "
              f"(+{t_on - t_off:.3f} s); scatter_signal alone {t_s:.3f} s")
    print(f"peak memory {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")
    _ = np


if __name__ == "__main__":
    main()
