"""Threads for the steps of image formation that run beside numba's own parallel kernels.

scipy's 1-D filters (the per-material aperture filter of :meth:`simulator.imaging.imager.ExposureImager.projection`)
and numpy's random samplers (the read-out's noise, :meth:`simulator.imaging.detector.DetectorModel.read_out`)
run without the GIL, so independent pieces of a frame (a material's plane, a band of rows) can share the cores
that numba's kernels use; the scatter kernels (numpy, releasing the GIL in their array loops) are computed here
while the focal-spot samples are summed. One pool per process, as many threads as numba may use; ``None`` where
numba is held to one thread (a trial worker started with ``NUMBA_NUM_THREADS=1``): the caller then does the work itself.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numba

_POOL: ThreadPoolExecutor | None = None
_LOCK = threading.Lock()


def image_threads() -> ThreadPoolExecutor | None:
    """The process's pool for GIL-free image-formation steps, or ``None`` when numba runs on one thread."""
    global _POOL
    n = numba.get_num_threads()
    if n < 2:
        return None
    with _LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(n, thread_name_prefix="image-formation")
        return _POOL


def _forget_pool() -> None:
    """After fork: the child has the pool object but not its threads (a map would wait for ever); start afresh."""
    global _POOL, _LOCK
    _POOL = None
    _LOCK = threading.Lock()


os.register_at_fork(after_in_child=_forget_pool)
