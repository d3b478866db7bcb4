"""How much faster than real time a whole virtual-time session runs (target: >= 200x, DESIGN.md).

The session: HELLO, HOME, COMPRESS, ARM, a 25-exposure continuous sweep on a small detector, release,
against the simulated gantry in virtual time. The baseline is real time itself: the ratio printed is
virtual seconds simulated per wall second, best of five runs (as ``timeit`` does), with the numba
kernels compiled before the timed runs (compile time printed apart).

Run: ``python benchmarks/bench_virtual_time.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numba

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "simulator"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "helpers"))

from test_gantry_sweep import run_sweep, small_config  # noqa: E402

TARGET_RATIO = 200.0


def main() -> int:
    cfg = small_config()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_sweep(cfg, Path(tmp) / "warm")
        print(f"first session (numba compile or cache load included): {time.perf_counter() - t0:.2f} s")
        threads = numba.get_num_threads()
        numba.set_num_threads(1)  # 24 x 30 pixel frames: parallel kernels would only add thread start-up
        try:
            runs = [run_sweep(cfg, Path(tmp) / f"timed{i}") for i in range(5)]
        finally:
            numba.set_num_threads(threads)
    env = runs[0][0]
    wall = min(r[3] for r in runs)
    ratio = env.now / wall
    print(f"25-projection continuous sweep session: {env.now:.2f} s virtual in {wall:.3f} s wall (best of 5)")
    print(f"ratio to real time: {ratio:.0f}x (target >= {TARGET_RATIO:.0f}x): {'met' if ratio >= TARGET_RATIO else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
