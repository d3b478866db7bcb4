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

The worker runs numba on every core at a lower priority (:data:`RENDER_NICE`), so the
real-time loop preempts it whenever it wakes, and asks the kernel to kill it when the
gantry process dies (Linux ``PR_SET_PDEATHSIG``).
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
#: Niceness of the render worker (Linux/Unix): below normal, and at least 2 below the gantry's loop.
#: Safety comes before images: the device's loop and the host's heartbeats (at normal priority, often on
#: the same small machine as a simulated gantry) must never wait for a render; on a busy machine images
#: come later (a simulated device gets a 60 s image timeout), never a watchdog trip.
RENDER_NICE = 5


class _Result:
    """Future-like view of a ``multiprocessing`` AsyncResult (``done()`` / ``result()``)."""

    def __init__(self, res: Any) -> None:
        self._res = res

    def done(self) -> bool:
        return bool(self._res.ready())

    def result(self) -> Any:
        return self._res.get(0)


class RenderPool:
    """One spawned worker process for image formation; :meth:`terminate` kills it at once.

    Jobs run one at a time in submission order (a single worker), so a :meth:`prepare` submitted
    before an exposure's render is finished before that render starts.
    """

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pool = ctx.Pool(1, initializer=_init_worker)
        self._prepared: tuple | None = None

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Result:
        """Run ``fn(*args)`` in the worker; returns a future with ``done()`` / ``result()``."""
        return _Result(self._pool.apply_async(fn, args))

    def prepare(self, *args: Any) -> None:
        """Build the imager (phantom, spectrum) of ``args`` ahead of the first exposure; once per key."""
        from simulator.gantry.detector import prepare_job

        if args != self._prepared:
            self._prepared = args
            self.submit(prepare_job, *args)

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
        self.submit(render_job, tiny.model_dump_json(), PhantomConfig(name="uniform").model_dump_json(),
                    config.detector.model_dump_json(), seed, 40.0, rec.model_dump_json())
        return self.submit(render_job, tiny.model_dump_json(), config.phantom.model_dump_json(),
                           config.detector.model_dump_json(), seed, 40.0, rec.model_dump_json())

    def terminate(self) -> None:
        self._pool.terminate()
        self._pool.join()


def _init_worker() -> None:
    """Pool initializer: limit numba's threads, and die with the gantry process."""
    os.environ["NUMBA_NUM_THREADS"] = str(RENDER_THREADS)  # read when numba is first imported here
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
