"""Run a trial's cases as tasks on ``dask.distributed``; results stored per case, resumable.

* **Scheduler**: a :class:`distributed.LocalCluster` of worker *processes*, one single-threaded worker
  per core (``workers``), by default; ``scheduler="tcp://HOST:PORT"`` uses an existing cluster (started
  with ``dask scheduler`` / ``dask worker``, dask-jobqueue or dask-kubernetes: see the README). Workers
  need this package importable (same version) and write to ``out`` - on a cluster, a shared file system.
* **Store**: ``out/cases/<trial hash>/<case seed>/<arm>.npz`` holds the two ROIs (lesion site, control
  site; float32) and the case's row (JSON); a (case, arm) imaged over the wire (``gantry_subset``)
  also holds the direct path's two ROIs (``rois_direct``), its cross-check. The trial hash (:meth:`TrialSpec.trial_hash` plus the
  resolved exams) changes with anything that changes images, so an edited trial never reuses stale
  cases. Files are written to a temporary name and renamed: a task killed mid-write leaves nothing,
  and a task run twice (a worker lost after finishing) rewrites the same bytes.
* **Resume**: a re-run submits only the cases with a missing (case, arm) file.
* **Determinism**: each case depends only on its seed (:func:`crescent.trial.cases.case_seed`), never
  on the worker, the order or the number of workers; the table is assembled from the store in case
  order, one row per (case, arm) key, so no case is counted twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crescent import dask_cluster
from crescent.trial.model import TrialSpec, resolve_exam


def exams_json(spec: TrialSpec, base_dir: Path | None) -> dict[str, dict[str, Any]]:
    """The resolved exam of every arm, as plain data (what workers rebuild the exams from)."""
    return {a.name: resolve_exam(a.exam, base_dir).model_dump(mode="json") for a in spec.arms}


#: Version of the imaging path's model (what a stored case's images depend on beyond the trial file, its exams
#: and the calibrations :func:`imaging_inputs` reads). Raise it when a change to the code of the physics, the
#: direct path or the observers' inputs would give a finished case other ROIs: a store made by another version
#: is then a different trial, never reused.
#: 2: the direct path renders the generator's delivered kV (rise deficit) and the gantry's frame numbering.
#: 3: spectra on spekpy's 0.1 keV grid.
#: 4: the read-out's noise in bands of about 1 Mpx, each from its own stream
#:    (simulator.imaging.detector.NOISE_BAND_PIXELS): a window over 1 Mpx (e.g. 20 mm ROIs on 50 um pixels)
#:    gets another noise realisation; smaller ones, as in the shipped example, keep theirs.
IMAGING_MODEL_VERSION = 4


def imaging_inputs() -> dict[str, Any]:
    """The data behind the images that is not in the trial file or the code: the AEC's factory calibration
    (``firmware_host/data/aec_calibration.json``, by SHA-256: a re-measured table moves every AEC technique) and
    the spectra's energy grid (keV) with spekpy's version. Part of :func:`full_hash`."""
    from firmware_host.aec import CALIBRATION_PATH
    from physics.spectra import SPEKPY_DK_KEV, spekpy_version

    return {"aec_calibration_sha256": hashlib.sha256(CALIBRATION_PATH.read_bytes()).hexdigest(),
            "spekpy_dk_kev": SPEKPY_DK_KEV, "spekpy": spekpy_version()}


def full_hash(spec: TrialSpec, exams: dict[str, dict[str, Any]]) -> str:
    """Trial hash including the exams' content (an edited exam file is a different trial),
    :data:`IMAGING_MODEL_VERSION` and :func:`imaging_inputs`, 16 hex digits."""
    blob = json.dumps({"spec": spec.trial_hash(), "exams": exams, "imaging_model": IMAGING_MODEL_VERSION,
                       "inputs": imaging_inputs()}, sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def case_path(store: Path, seed: int, arm: str) -> Path:
    """Result file of one (case seed, arm) in a trial's store."""
    return store / str(seed) / f"{arm}.npz"


def _arm_done(store: Path, dicom: Path | None, index: int, seed: int, arm: str) -> bool:
    """Whether (case, arm) is stored and, when DICOM is asked for, written as DICOM too."""
    from crescent.trial.dicom import case_dicom_dir

    return case_path(store, seed, arm).exists() and (dicom is None or case_dicom_dir(dicom, index, arm).is_dir())


def run_case_task(spec_json: str, exams: dict[str, dict[str, Any]], index: int, arms: list[str],
                  store: str, dicom: str | None = None, trial_hash: str = "") -> list[str]:
    """Worker task: image case ``index`` in ``arms`` and store each (case, arm) atomically; returns the arms done.

    ``dicom``: also write each (case, arm) as DICOM under that folder (:mod:`crescent.trial.dicom`), in the
    worker, as soon as the arm is imaged.
    """
    from crescent.trial.cases import draw_case, image_case
    from crescent.trial.gantry import over_wire
    from protocols.exams import exam_from_data

    try:  # one compute thread per worker process: the cluster gives the parallelism
        import numba

        numba.set_num_threads(1)
    except (ImportError, ValueError):
        pass
    spec = TrialSpec.model_validate_json(spec_json)
    ex = {name: exam_from_data(data) for name, data in exams.items()}
    draw = draw_case(spec, index)
    dicom_dir = Path(dicom) if dicom else None
    todo = [a for a in arms if not _arm_done(Path(store), dicom_dir, index, draw.seed, a)]
    if not todo:
        return []
    on_images = None
    if dicom_dir is not None:
        from crescent.trial.dicom import case_dicom_dir, write_case_dicom

        def on_images(images: Any) -> None:
            if not case_dicom_dir(dicom_dir, index, images.arm).is_dir():
                write_case_dicom(dicom_dir, spec, trial_hash, draw, ex[images.arm], images)

    wire = [a for a in over_wire(spec, index, draw.seed) if a in todo]
    results = image_case(spec, draw, ex, todo, on_images=on_images, wire_arms=wire)
    for arm, res in results.items():
        path = case_path(Path(store), draw.seed, arm)
        if path.exists():  # imaged again only for its DICOM: the stored result is the same
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        row = {**draw.as_row(), **res["row"]}
        tmp = path.with_name(f".{arm}.{os.getpid()}.{time.monotonic_ns()}.tmp.npz")
        with open(tmp, "wb") as fh:
            extra = {"rois_direct": res["rois_direct"]} if "rois_direct" in res else {}
            np.savez(fh, rois=res["rois"], row=np.array(json.dumps(row)), **extra)
        os.replace(tmp, path)
    return todo


@dataclass
class RunInfo:
    """What a run did: store, counts, wall time, where the dashboard was."""

    store: Path
    trial_hash: str
    n_cases: int
    submitted: int
    skipped: int
    wall_s: float
    workers: int
    dashboard: str | None
    rows: list[dict[str, Any]] = field(default_factory=list)
    rois: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)
    #: the direct path's ROIs of the (case, arm)s imaged over the wire (the cross-check)
    rois_direct: dict[tuple[int, str], np.ndarray] = field(default_factory=dict)


#: Where a LocalCluster serves the dask dashboard (dask's usual port; dask takes a free one if it is busy).
DEFAULT_DASHBOARD = ":8787"


def _client(scheduler: str | None, workers: int | None, dashboard: str = DEFAULT_DASHBOARD) -> tuple[Any, Any]:
    env = {"NUMBA_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return dask_cluster.open_client(scheduler, workers or os.cpu_count() or 1, env=env, dashboard_address=dashboard)


def dashboard_address(client: Any) -> str | None:
    """The dask dashboard's URL (``http://HOST:PORT/status``), or None when it is not served.

    A LocalCluster serves it only when bokeh>=3.1 is importable (``pip install crescent[dashboard]``);
    with ``--scheduler`` it is whatever the scheduler serves (asked of the scheduler, not guessed).
    """
    try:
        services = client.scheduler_info().get("services", {})
    except Exception:  # noqa: BLE001 - no answer: say nothing rather than guess
        return None
    if "dashboard" not in services:
        return None
    return client.dashboard_link


def load_store(spec: TrialSpec, store: Path, direct: dict[tuple[int, str], np.ndarray] | None = None
               ) -> tuple[list[dict[str, Any]], dict[tuple[int, str], np.ndarray]]:
    """Rows (case order, arm order) and ROIs of every finished (case, arm) of the trial's first ``n_cases``.

    ``direct``: a dict that receives the direct path's ROIs of the (case, arm)s imaged over the wire.
    """
    from crescent.trial.cases import case_seed

    rows, rois = [], {}
    for i in range(spec.cohort.n_cases):
        seed = case_seed(spec.cohort.seed, i)
        for arm in spec.arms:
            p = case_path(store, seed, arm.name)
            if not p.exists():
                continue
            with np.load(p) as z:
                row = json.loads(str(z["row"]))
                rois[(i, arm.name)] = z["rois"]
                if direct is not None and "rois_direct" in z.files:
                    direct[(i, arm.name)] = z["rois_direct"]
            rows.append(row)
    return rows, rois


def run_trial(spec: TrialSpec, out: Path, *, scheduler: str | None = None, workers: int | None = None,
              base_dir: Path | None = None, say: Callable[[str], None] = print, progress: bool = True,
              on_submitted: Callable[[Any, list[Any]], None] | None = None, dicom: Path | None = None,
              dashboard: str = DEFAULT_DASHBOARD) -> RunInfo:
    """Image every unfinished case of ``spec`` on dask and return the assembled store (see module doc).

    ``dicom``: write every (case, arm) as DICOM under that folder too (cases stored earlier without their
    DICOM are imaged again for it: same seed, same images). ``dashboard``: the LocalCluster's dashboard
    address (``:8787``; ``:0`` any free port).
    """
    from distributed import as_completed

    from crescent.trial.cases import case_seed

    exams = exams_json(spec, base_dir)
    th = full_hash(spec, exams)
    store = (out / "cases" / th).resolve()
    store.mkdir(parents=True, exist_ok=True)
    arm_names = [a.name for a in spec.arms]
    dicom_dir = dicom.resolve() if dicom is not None else None
    if dicom_dir is not None:
        dicom_dir.mkdir(parents=True, exist_ok=True)
        import shutil

        for stale in dicom_dir.glob("case-*/.*.tmp"):  # left by a task killed mid-write in an earlier run
            shutil.rmtree(stale, ignore_errors=True)
    todo: list[tuple[int, list[str]]] = []
    for i in range(spec.cohort.n_cases):
        seed = case_seed(spec.cohort.seed, i)
        missing = [a for a in arm_names if not _arm_done(store, dicom_dir, i, seed, a)]
        if missing:
            todo.append((i, missing))
    skipped = spec.cohort.n_cases - len(todo)
    say(f"trial {spec.name} (hash {th}): {spec.cohort.n_cases} cases x {len(arm_names)} arms; "
        f"{skipped} finished before, {len(todo)} to run; store {store}"
        + (f"; DICOM in {dicom_dir}" if dicom_dir is not None else ""))
    t0 = time.perf_counter()
    n_workers, dash = 0, None
    if todo:
        client, cluster = _client(scheduler, workers, dashboard)
        finished = False
        try:
            n_workers = len(client.scheduler_info()["workers"])
            dash = dashboard_address(client)
            say(f"dask scheduler {client.scheduler.address}, {n_workers} workers; dashboard: "
                f"{dash or 'not served (pip install bokeh>=3.1, or crescent[dashboard], for it)'}"
                + (" (open it in a browser while the trial runs)" if dash else ""))
            spec_json = spec.model_dump_json()
            futures = [client.submit(run_case_task, spec_json, exams, i, arms, str(store),
                                     str(dicom_dir) if dicom_dir is not None else None, th,
                                     key=f"case-{th}-{i}", retries=2, pure=False) for i, arms in todo]
            if on_submitted is not None:
                on_submitted(client, futures)
            _wait(futures, as_completed, progress)
            finished = True
        finally:
            dask_cluster.close(client, cluster, quiet=finished)
    direct: dict[tuple[int, str], np.ndarray] = {}
    rows, rois = load_store(spec, store, direct)
    info = RunInfo(store, th, spec.cohort.n_cases, len(todo), skipped, time.perf_counter() - t0, n_workers, dash,
                   rows, rois, direct)
    missing = spec.cohort.n_cases * len(arm_names) - len(rows)
    if missing:
        raise RuntimeError(f"{missing} (case, arm) results missing from {store} after the run")
    return info


def _wait(futures: list[Any], as_completed: Any, progress: bool) -> None:
    errors = []
    if progress:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn, TimeRemainingColumn

        with Progress("[progress.description]{task.description}", BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn()) as bar:
            task = bar.add_task("cases", total=len(futures))
            for fut in as_completed(futures):
                if fut.status == "error":
                    errors.append(fut)
                bar.advance(task)
    else:
        for fut in as_completed(futures):
            if fut.status == "error":
                errors.append(fut)
    if errors:
        exc = errors[0].exception()
        raise RuntimeError(f"{len(errors)} case task(s) failed; first: {exc!r}") from exc
