"""Run a campaign on Dask: one task per seed, results appended to a JSON-lines file keyed by seed.

A LocalCluster of worker processes by default (``workers`` of them, one thread each), or an
existing scheduler (``tcp://host:port``). Each case is a pure function of its seed (and the exam
list), so the results do not depend on the number of workers or their order; they are sorted by
seed. A results file that already holds some seeds is resumed: those seeds are not run again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from crescent import dask_cluster
from crescent.campaign.cases import Case, draw_case


def load_results(path: Path) -> dict[int, dict[str, Any]]:
    """Results already in ``path`` (seed -> result); a torn last line is ignored."""
    out: dict[int, dict[str, Any]] = {}
    if not path.is_file():
        return out
    for line in path.read_text().splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        out[int(r["seed"])] = r
    return out


def _run(case: dict[str, Any], keep_root: str | None) -> dict[str, Any]:
    from crescent.campaign.exam_run import run_case

    work = None if keep_root is None else Path(keep_root) / f"seed-{case['seed']}"
    return run_case(case, work, keep=keep_root is not None)


def cases_for(seeds: Iterable[int], exams: list[str]) -> list[Case]:
    """The campaign's cases (exam models loaded once to know each exam's phases)."""
    from crescent.campaign.exam_run import resolve_exam_model

    models = {e: resolve_exam_model(e) for e in exams}
    return [draw_case(s, exams, models) for s in seeds]


def run_campaign(seeds: list[int], exams: list[str], results_path: Path, *, workers: int = 2,
                 scheduler: str | None = None, keep_root: str | None = None,
                 on_result: Callable[[dict[str, Any]], None] | None = None) -> list[dict[str, Any]]:
    """Run every seed not yet in ``results_path``; returns all results of ``seeds`` sorted by seed."""
    done = load_results(results_path)
    todo = [c for c in cases_for([s for s in seeds if s not in done], exams)]
    if todo:
        from dask.distributed import as_completed

        client, cluster = dask_cluster.open_client(scheduler, workers)
        finished = False
        try:
            futures = [client.submit(_run, c.to_dict(), keep_root, key=f"campaign-seed-{c.seed}-{time.time_ns()}",
                                     pure=False) for c in todo]
            results_path.parent.mkdir(parents=True, exist_ok=True)
            with results_path.open("a") as fh:
                for fut in as_completed(futures):
                    r = fut.result()
                    fh.write(json.dumps(r, sort_keys=True) + "\n")
                    fh.flush()
                    done[int(r["seed"])] = r
                    if on_result is not None:
                        on_result(r)
            finished = True
        finally:
            dask_cluster.close(client, cluster, quiet=finished)
    return [done[s] for s in sorted(set(seeds)) if s in done]
