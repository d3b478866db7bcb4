"""Image formation for the real-time gantry, in a separate worker process.

The firmware's control loop never waits for physics: each exposure's
:class:`protocols.records.ExposureRecord` is handed to one spawned worker process
(``multiprocessing`` context ``"spawn"``: no forked copy of the gantry's threads
or file descriptors), which renders the image, writes it to the data directory as a
*staged* file (``.frame_<id>.raw.staged``, uint16 LE) with its CRC-32C, and sends
back only the small :class:`simulator.gantry.detector.Frame` description. The
gantry publishes the frame (an atomic rename to ``frame_<id>.raw``) and sends
IMAGE_READY once the detector's readout time has passed and the render is done.
Pixels therefore never cross the control loop: no pickling, no CRC, no file
write on it.

Before the first exposure the worker is made ready: at start it compiles the numba
kernels on a tiny frame (:meth:`RenderPool.warm_up`); when the breast is compressed
or a plan armed, :meth:`RenderPool.prepare` builds the phantom at the compressed
thickness and the beam spectrum of the plan's kV, so the first image (the AEC scout
included) costs one render only. (With a second worker, its preparation waits for
the gantry's first frame: see :class:`RenderPool`.)

Determinism: the worker calls the same :func:`simulator.gantry.detector.render_image`
as the in-process (virtual-time) path; noise depends only on ``(seed, frame_id)``, so
a worker-rendered frame equals the in-process one bit for bit.

``CRESCENT_RENDER_WORKERS=2`` starts a second worker that takes every other frame
(:func:`render_workers` gives the measured trade-off; one by default).

Each worker runs numba on every core at a lower priority (:data:`RENDER_NICE`), so the
real-time loop preempts it whenever it wakes (its idle OpenMP threads sleep rather than spin),
and asks the kernel to kill it when the gantry process dies (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Numba threads of the render worker: every core. The control loop keeps its period by priority,
#: not by a core kept idle: the worker runs at a lower priority (:data:`RENDER_NICE`), so the loop
#: (which sleeps between its 1 ms polls) preempts it whenever it wakes.
RENDER_THREADS = max(1, os.cpu_count() or 1)
#: Niceness of the render workers (Linux/Unix): below normal, and at least 2 below the gantry's loop.
#: Safety comes before images: the device's loop and the host's heartbeats (at normal priority, often on
#: the same small machine as a simulated gantry) must never wait for a render; on a busy machine images
#: come later (a simulated device gets a 60 s image timeout), never a watchdog trip. (19 was tried: a
#: CPU-hog companion then starved the renders, AEC scout image 4.6 s.)
RENDER_NICE = 5


def render_workers() -> int:
    """How many render workers a gantry starts: one, or ``CRESCENT_RENDER_WORKERS``.

    A second worker takes every other frame, so one frame's single-threaded steps overlap the next one's
    kernels. Measured on an otherwise idle 2-core machine (``benchmarks/bench_realtime.py``, default gantry,
    1200 x 1500, a 0.47 s frame): IMAGE_READY p95 0.84-0.97 s with two in three quiet runs, but the AEC scout's
    image 0.42-1.05 s and telemetry p99 4.4-10.5 ms; with one, p95 0.77-0.81 s in four of six quiet runs and
    1.26-1.27 s in two, the scout 0.34-0.42 s, telemetry p99 2.5-4.3 ms. On a busy machine two are worse (with the
    CPU-hog companion, an earlier build: the scout 2.9-3.2 s against 0.4-0.6 s), and each worker holds its own
    phantom (about 0.6 GB for the default gantry): hence one by default.
    """
    forced = os.environ.get("CRESCENT_RENDER_WORKERS", "").strip()
    if not forced:
        return 1
    try:
        n = int(forced)
    except ValueError:
        raise ValueError(f"CRESCENT_RENDER_WORKERS={forced!r}: a whole number of render workers (1 or more)") from None
    if n < 1:
        raise ValueError(f"CRESCENT_RENDER_WORKERS={n}: at least 1 render worker")
    return n


class _Result:
    """Future-like view of a ``multiprocessing`` AsyncResult (``done()`` / ``result()``)."""

    def __init__(self, res: Any) -> None:
        self._res = res

    def done(self) -> bool:
        return bool(self._res.ready())

    def result(self) -> Any:
        return self._res.get(0)


class RenderPool:
    """``workers`` spawned processes for image formation (:func:`render_workers`); :meth:`terminate` kills them.

    Renders go to the workers in turn, the gantry's first one (its first exam's AEC scout) to worker 0; each
    worker runs its jobs one at a time in submission order. Until the gantry's first frame has been rendered,
    :meth:`prepare` goes to worker 0 only: the phantom and spectra the scout needs are built without a second
    worker competing for the cores. Once that frame is done the latest preparation goes to the other workers
    (later exams prepare every worker at once). A render runs after every preparation its worker has been
    given; one that reaches another worker before the first frame is done builds what it needs itself (the
    same imager: the frame does not depend on which worker renders it).
    """

    def __init__(self, workers: int = 1) -> None:
        ctx = multiprocessing.get_context("spawn")
        n = max(1, int(workers))
        self._pools = [ctx.Pool(1, initializer=_init_worker, initargs=(n,)) for _ in range(n)]
        self._next = 0
        self._prepared: tuple | None = None
        self._lock = threading.Lock()
        self._rendered = False  # a frame has been rendered: preparations go to every worker at once
        self._waiting: list[tuple] = []  # preparations for workers 1.. until then
        self._closed = False  # terminate() began: nothing more is submitted

    @property
    def workers(self) -> int:
        return len(self._pools)

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Result:
        """Run ``fn(*args)`` in the next worker in turn; returns a future with ``done()`` / ``result()``."""
        with self._lock:
            pool = self._pools[self._next]
            self._next = (self._next + 1) % len(self._pools)
            if not self._rendered and len(self._pools) > 1:
                return _Result(pool.apply_async(fn, args, callback=self._first_done))
            return _Result(pool.apply_async(fn, args))

    def _first_done(self, _value: Any) -> None:
        """A render finished (the pool's result thread): release the preparations held for workers 1..."""
        with self._lock:
            if self._rendered or self._closed:
                return
            self._rendered = True
            waiting, self._waiting = self._waiting[-1:], []  # the latest: a worker keeps one imager
            for fn, args in waiting:
                for pool in self._pools[1:]:
                    try:
                        pool.apply_async(fn, args)
                    except ValueError:  # the pool is closing (this runs on its result thread: never raise)
                        return

    def submit_to_all(self, fn: Callable[..., Any], *args: Any) -> list[_Result]:
        """Run ``fn(*args)`` in every worker now (each keeps its own imager and spectra)."""
        return [_Result(pool.apply_async(fn, args)) for pool in self._pools]

    def prepare(self, *args: Any) -> None:
        """Build the imager (phantom, spectrum) of ``args`` in every worker ahead of the first exposure; once per key.

        Before the first frame is rendered, only in worker 0 now; the others get it once that frame is done."""
        from simulator.gantry.detector import prepare_job

        with self._lock:
            if args == self._prepared:
                return
            self._prepared = args
            if self._rendered or len(self._pools) == 1:
                for pool in self._pools:
                    pool.apply_async(prepare_job, args)
                return
            self._pools[0].apply_async(prepare_job, args)
            self._waiting.append((prepare_job, args))
            # the next render goes to worker 0 (the scout); the turn restarts there
            self._next = 0

    def warm_up(self, config: Any, seed: int) -> _Result:
        """Render the tiny throw-away frames of :func:`warm_up_jobs` in every worker so numba compiles (or
        loads its cache) before the first exam, phantom generation included."""
        from simulator.gantry.detector import render_job

        last = None
        for args in warm_up_jobs(config, seed):
            last = self.submit_to_all(render_job, *args)[-1]
        return last

    def terminate(self) -> None:
        with self._lock:
            self._closed = True
        for pool in self._pools:
            pool.terminate()
        for pool in self._pools:
            pool.join()


def warm_up_jobs(config: Any, seed: int) -> list[tuple[str, str, str, int, float, str]]:
    """Arguments of :func:`simulator.gantry.detector.render_job` for two tiny throw-away frames of ``config``'s
    gantry: a uniform slab, then the configured phantom (for the default gantry the textured breast, 40 mm).

    Cheap on purpose (16 x 20 pixels): numba's kernels compile per argument type, not per size. Used by the
    render workers' warm-up and by ``python -m crescent.numba_cache``.
    """
    from protocols.geometry import DetectorGeometry
    from protocols.records import ExposureRecord
    from simulator.gantry.config import PhantomConfig

    tiny = config.geometry.model_copy(update={"detector": DetectorGeometry(native_pitch_mm=0.05, binning=8,
                                                                           rows=16, cols=20)})
    rec = ExposureRecord(index=0, frame_id=0, planned_angle_deg=0.0, angle_start_deg=-0.2, angle_end_deg=0.2,
                         kvp=29.0, mas=1.0, anode_filter=config.limits.anode_filters[0], window_start_s=0.0,
                         window_end_s=0.05)
    return [(tiny.model_dump_json(), phantom.model_dump_json(), config.detector.model_dump_json(), seed, 40.0,
             rec.model_dump_json()) for phantom in (PhantomConfig(name="uniform"), config.phantom)]


def _init_worker(workers: int = 1) -> None:
    """Pool initializer: limit numba's threads, and die with the gantry process (``workers``: how many share the cores)."""
    os.environ["NUMBA_NUM_THREADS"] = str(RENDER_THREADS)  # read when numba is first imported here
    # Idle OpenMP threads sleep rather than spin (read when numba's OpenMP layer starts): between numba's kernels a
    # frame's numpy and scipy steps, its image-formation threads, the control loop and the host need the cores. A
    # spinning idle thread held them (bench_realtime, quiet, this machine: IMAGE_READY p95 under 1 s in 3 of 10 runs
    # with spinning threads, in 5 of 7 with sleeping ones).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:  # below the loop's priority (inherited), and not above normal
        os.setpriority(os.PRIO_PROCESS, 0, max(RENDER_NICE, os.getpriority(os.PRIO_PROCESS, 0) + 2))
    except (AttributeError, OSError):
        pass
    die_with_parent(signal.SIGTERM)


def die_with_parent(sig: int = signal.SIGTERM) -> bool:
    """On Linux, ask the kernel to send ``sig`` to this process when its parent dies; True if set."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        return libc.prctl(1, int(sig)) == 0  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return False


def staged_path(data_dir: Path, frame_id: int) -> Path:
    """Where the worker leaves a rendered frame until the gantry publishes it."""
    return Path(data_dir) / f".frame_{frame_id}.raw.staged"
