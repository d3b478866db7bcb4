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
included) costs one render only.

Determinism: the worker calls the same :func:`simulator.gantry.detector.render_image`
as the in-process (virtual-time) path; noise depends only on ``(seed, frame_id)``, so
a worker-rendered frame equals the in-process one bit for bit.

A large panel (the default gantry's) gets two workers that take the frames in turn
(:func:`render_workers`): one frame's single-threaded steps overlap the next one's parallel
kernels, so a sweep's frames (one every ~0.5 s) do not queue behind each other.

Each worker runs numba on every core at the lowest priority (:data:`RENDER_NICE`, 19), so
the real-time loop, the host and the kernel's own tty work preempt it whenever they wake
(idle OpenMP threads sleep rather than spin: the workers share the cores), and asks the
kernel to kill it when the gantry process dies (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Numba threads of the render worker: every core. The control loop keeps its period by priority,
#: not by a core kept idle: the worker runs at a lower priority (:data:`RENDER_NICE`), so the loop
#: (which sleeps between its 1 ms polls) preempts it whenever it wakes.
RENDER_THREADS = max(1, os.cpu_count() or 1)
#: Niceness of the render workers (Linux/Unix): the lowest. Safety comes before images: the device's loop, the
#: host's heartbeats and the kernel's pty work (at normal priority, often on the same small machine as a
#: simulated gantry) must never wait for a render; on a busy machine images come later (a simulated device gets a
#: 60 s image timeout), never a watchdog trip. Render time is the idle cores' time.
RENDER_NICE = 19
#: Panels of at least this many pixels (the default gantry's 1200 x 1500) get :data:`LARGE_PANEL_WORKERS` render
#: workers; smaller ones (test and QC panels, which render in milliseconds) one.
LARGE_PANEL_PIXELS = 1_000_000
#: Render workers for a large panel (on a machine with at least two cores): frames go to them in turn, so one
#: frame's single-threaded steps (read-out noise, scatter, Python) overlap the next frame's parallel ones and a
#: sweep's frames keep up with its exposures (each worker holds its own phantom: about 0.6 GB for the default).
LARGE_PANEL_WORKERS = 2


def render_workers(panel_pixels: int) -> int:
    """How many render workers a gantry with a ``panel_pixels`` panel starts (``CRESCENT_RENDER_WORKERS`` overrides)."""
    forced = os.environ.get("CRESCENT_RENDER_WORKERS")
    if forced:
        return max(1, int(forced))
    if panel_pixels >= LARGE_PANEL_PIXELS and (os.cpu_count() or 1) >= 2:
        return LARGE_PANEL_WORKERS
    return 1


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

    Renders go to the workers in turn; each worker runs its jobs one at a time in submission order, and
    :meth:`prepare` and :meth:`warm_up` go to every worker, so a preparation submitted before an exposure's
    render is finished before that render starts, whichever worker renders it.
    """

    @property
    def workers(self) -> int:
        return len(self._pools)

    def __init__(self, workers: int = 1) -> None:
        ctx = multiprocessing.get_context("spawn")
        n = max(1, int(workers))
        self._pools = [ctx.Pool(1, initializer=_init_worker) for _ in range(n)]
        self._next = 0
        self._prepared: tuple | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Result:
        """Run ``fn(*args)`` in the next worker in turn; returns a future with ``done()`` / ``result()``."""
        pool = self._pools[self._next]
        self._next = (self._next + 1) % len(self._pools)
        return _Result(pool.apply_async(fn, args))

    def submit_to_all(self, fn: Callable[..., Any], *args: Any) -> list[_Result]:
        """Run ``fn(*args)`` in every worker (preparation: each keeps its own imager and spectra)."""
        return [_Result(pool.apply_async(fn, args)) for pool in self._pools]

    def prepare(self, *args: Any) -> None:
        """Build the imager (phantom, spectrum) of ``args`` in every worker ahead of the first exposure; once per key."""
        from simulator.gantry.detector import prepare_job

        if args != self._prepared:
            self._prepared = args
            self.submit_to_all(prepare_job, *args)

    def warm_up(self, config: Any, seed: int) -> _Result:
        """Render a tiny throw-away frame of the configured phantom so numba compiles (or loads its cache)
        before the first exam, phantom generation included.

        Cheap on purpose (16 x 20 pixels): kernels compile per type, not per size.
        """
        from protocols.geometry import DetectorGeometry
        from protocols.records import ExposureRecord
        from simulator.gantry.config import PhantomConfig
        from simulator.gantry.detector import render_job


        tiny = config.geometry.model_copy(update={"detector": DetectorGeometry(native_pitch_mm=0.05, binning=8,
                                                                               rows=16, cols=20)})
        rec = ExposureRecord(index=0, frame_id=0, planned_angle_deg=0.0, angle_start_deg=-0.2, angle_end_deg=0.2,
                             kvp=29.0, mas=1.0, anode_filter=config.limits.anode_filters[0], window_start_s=0.0,
                             window_end_s=0.05)
        self.submit_to_all(render_job, tiny.model_dump_json(), PhantomConfig(name="uniform").model_dump_json(),
                           config.detector.model_dump_json(), seed, 40.0, rec.model_dump_json())
        return self.submit_to_all(render_job, tiny.model_dump_json(), config.phantom.model_dump_json(),
                                  config.detector.model_dump_json(), seed, 40.0, rec.model_dump_json())[-1]

    def terminate(self) -> None:
        for pool in self._pools:
            pool.terminate()
        for pool in self._pools:
            pool.join()


def _init_worker() -> None:
    """Pool initializer: limit numba's threads, and die with the gantry process."""
    os.environ["NUMBA_NUM_THREADS"] = str(RENDER_THREADS)  # read when numba is first imported here
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep: workers share the cores
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
