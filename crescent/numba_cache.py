"""``python -m crescent.numba_cache``: compile the project's numba kernels into numba's cache now.

Numba compiles a ``cache=True`` kernel the first time a process calls it with given argument types and keeps
the machine code in the ``__pycache__`` folder beside its source; a later process loads it in milliseconds.
On a fresh checkout every process that starts before that cache exists compiles the same kernels again: the
two test workers, the gantries, the render workers and the trial workers of the test suite's first minute
each spent seconds of CPU on the same compilation. ``make`` runs this module once after installing, so the
first ``make run`` and the test suite load the kernels instead of compiling them.

Each part calls the product's own entry points on tiny inputs (a 16 x 20 pixel frame, a 3-projection
reconstruction, a few hundred Monte Carlo histories), so the kernels get the argument types the product
gives them. It prints the seconds each part took: compilation the first time, the cache's load time after.
Nothing is written but numba's cache: the few X-ray spectra the parts need are computed and not kept, unless
``CRESCENT_CACHE_DIR`` names a folder for them.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable


def imaging() -> None:
    """Projector, detector, scatter and phantom kernels: the tiny frames a render worker's warm-up draws
    (a uniform slab and the default gantry's textured breast), rendered in this process."""
    from simulator.gantry.config import load_config
    from simulator.gantry.detector import render_job
    from simulator.gantry.render_worker import warm_up_jobs

    for args in warm_up_jobs(load_config("default"), 0):
        render_job(*args)


def reconstruction() -> None:
    """Filtered backprojection, shift-and-add and one SART pass over three tiny projections (float32, as the
    pipeline streams them)."""
    import numpy as np

    from reconstruction.fbp import fbp, shift_and_add
    from reconstruction.geometry import ProjectionGeometry, VolumeGrid
    from reconstruction.iterative import sart

    angles = np.array([-10.0, 0.0, 10.0])
    sources = np.array([[660 * np.sin(t), 0.0, 660 * np.cos(t)] for t in np.radians(angles)])
    pg = ProjectionGeometry(sources, angles, 0.1, 64, 128, 0.0, 0.0, 20.0, 20.0)
    grid = VolumeGrid(voxel_mm=0.2, x_min_mm=-2, x_max_mm=2, y_min_mm=1, y_max_mm=5, z_mm=(25.0, 30.0))
    projections = np.zeros((3, 64, 128), np.float32)
    fbp(projections, pg, grid)
    shift_and_add(projections, pg, grid)
    sart(projections, pg, grid, n_iter=1)


def dose_monte_carlo() -> None:
    """The dose Monte Carlo (physics.dose_mc), a few hundred histories of a 28 kV W/Rh beam and of one
    scattering at 20 keV."""
    from physics.dose_mc import BreastModel, glandular_dose_per_kerma, sample_scattering
    from physics.spectra import beam_spectrum

    glandular_dose_per_kerma(beam_spectrum("W/Rh", 28.0), BreastModel(40.0), (0.0, 0.0, 660.0), histories=300)
    sample_scattering(20.0, 300)


def scatter_monte_carlo() -> None:
    """The scatter Monte Carlo (physics.scatter_mc), a few hundred histories of a 20 keV pencil beam."""
    from physics.scatter_mc import pencil_kernel

    pencil_kernel(20.0, 40.0, 0.0, 0.5, histories=300)


PARTS: dict[str, Callable[[], None]] = {
    "imaging (projector, detector, scatter, phantoms)": imaging,
    "reconstruction": reconstruction,
    "dose Monte Carlo": dose_monte_carlo,
    "scatter Monte Carlo": scatter_monte_carlo,
}


def main(argv: list[str] | None = None) -> int:
    """Run every part; print each one's seconds (wall) and the total. Exit status 0."""
    import os

    os.environ.setdefault("CRESCENT_CACHE_DIR", "off")
    start = time.perf_counter()
    for name, part in PARTS.items():
        t0 = time.perf_counter()
        part()
        print(f"numba kernels, {name}: {time.perf_counter() - t0:.1f} s", flush=True)
    print(f"numba kernels compiled or loaded in {time.perf_counter() - start:.1f} s (cached in __pycache__)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
