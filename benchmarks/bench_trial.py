"""Benchmark: virtual-clinical-trial throughput - DBT cases per hour and memory per dask worker.

Case: the shipped example's cohort (``crescent/trial/examples/ffdm-vs-dbt.yaml``: compressed thickness
N(50, 8) mm clipped to 35-70 mm, masses and calcification clusters) imaged in the ``dbt-standard`` arm
only: host AEC on a rendered scout, 15 projections at 100 um (binning 2) onto the detector window of the
two ROI sites (~ 210 x 750 pixels), a 0.2 mm breast sub-volume, FBP of the in-focus slice, two 8 mm ROIs,
MGD. ``run_trial``'s default path: a LocalCluster of ``--workers`` single-threaded worker processes.

Printed: cluster start-up, the wall time of ``--cases`` cases (first calls of numba kernels and the
tube-spectrum model included: a longer run amortises them), cases per hour, and each worker's peak
resident memory (ru_maxrss).

Run: ``.venv/bin/python benchmarks/bench_trial.py [--cases 4] [--workers 2]`` (about a minute as given).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

from crescent.trial.model import load_trial
from crescent.trial.runner import run_trial

EXAMPLE = Path(__file__).resolve().parents[1] / "crescent/trial/examples/ffdm-vs-dbt.yaml"


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cases", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--seed", type=int, default=99, help="cohort seed (a fresh store each run)")
    args = ap.parse_args()
    spec = load_trial(EXAMPLE)
    spec = spec.model_copy(update={
        "arms": [a for a in spec.arms if a.exam == "dbt-standard"],
        "cohort": spec.cohort.model_copy(update={"n_cases": args.cases, "seed": args.seed})})
    rss: dict[str, float] = {}

    def grab(client, futures):  # type: ignore[no-untyped-def]
        from distributed import wait

        wait(futures)
        rss.update(client.run(_peak_rss_mb))

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        info = run_trial(spec, Path(tmp), workers=args.workers, say=lambda s: None, progress=False, on_submitted=grab)
        total = time.perf_counter() - t0
    print(f"{args.cases} DBT cases (dbt-standard, 15 projections, 100 um) on {info.workers} worker processes")
    print(f"wall time: {info.wall_s:.1f} s (cluster start-up and shut-down included; whole call {total:.1f} s)")
    print(f"throughput: {3600 * args.cases / info.wall_s:.0f} DBT cases per hour (goal >= 60 on 2 cores)")
    for w, mb in sorted(rss.items()):
        print(f"worker {w}: peak resident memory {mb:.0f} MB")


if __name__ == "__main__":
    main()
