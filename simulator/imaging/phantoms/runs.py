"""Run-length encoding of a label volume along x (one list of runs per voxel row ``(k, j)``).

A breast phantom is mostly long runs of one label along each voxel row (air
outside the outline, adipose or glandular texture at the 0.5 mm scale inside),
so the projector integrates a whole run in O(1) instead of visiting each
voxel (:mod:`simulator.imaging.projector`).

Layout (compressed-sparse-row style): row ``q = k * ny + j`` owns the runs
``offsets[q] .. offsets[q + 1] - 1``; run ``n`` starts at voxel column
``starts[n]`` (its end is the next run's start - 1, or ``nx - 1`` for the last
run of the row) and carries label ``labels[n]``. Every row has at least one
run; adjacent runs always differ in label.

Example
-------
>>> lab = np.zeros((1, 2, 6), np.uint8); lab[0, 1, 2:4] = 5
>>> rr = row_runs(lab)
>>> rr.offsets.tolist(), rr.starts.tolist(), rr.labels.tolist()
([0, 1, 4], [0, 0, 2, 4], [0, 0, 5, 0])
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np


@dataclass(frozen=True)
class RowRuns:
    """Runs of equal label along x of a ``[nz, ny, nx]`` label volume (see module docstring)."""

    shape: tuple[int, int, int]
    offsets: np.ndarray  # int64 (nz * ny + 1,)
    starts: np.ndarray  # int32 (n_runs,)
    labels: np.ndarray  # uint8 (n_runs,)

    @property
    def n_runs(self) -> int:
        return int(self.starts.size)

    @property
    def nbytes(self) -> int:
        return int(self.offsets.nbytes + self.starts.nbytes + self.labels.nbytes)


@nb.njit(cache=True, parallel=True)
def _count(labels, counts):  # pragma: no cover - numba
    nz, ny, nx = labels.shape
    for q in nb.prange(nz * ny):
        k = q // ny
        j = q - k * ny
        n = 1
        prev = labels[k, j, 0]
        for i in range(1, nx):
            v = labels[k, j, i]
            if v != prev:
                n += 1
                prev = v
        counts[q] = n


@nb.njit(cache=True, parallel=True)
def _fill(labels, offsets, starts, labs):  # pragma: no cover - numba
    nz, ny, nx = labels.shape
    for q in nb.prange(nz * ny):
        k = q // ny
        j = q - k * ny
        n = offsets[q]
        prev = labels[k, j, 0]
        starts[n] = 0
        labs[n] = prev
        for i in range(1, nx):
            v = labels[k, j, i]
            if v != prev:
                n += 1
                starts[n] = i
                labs[n] = v
                prev = v


def row_runs(labels: np.ndarray) -> RowRuns:
    """Run-length encode a C-contiguous uint8 ``[nz, ny, nx]`` label volume along x (two parallel passes)."""
    if labels.dtype != np.uint8 or labels.ndim != 3:
        raise ValueError("labels must be a 3-D uint8 array [nz, ny, nx]")
    nz, ny, nx = labels.shape
    lab = np.ascontiguousarray(labels)
    counts = np.empty(nz * ny, dtype=np.int64)
    _count(lab, counts)
    offsets = np.zeros(nz * ny + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    n = int(offsets[-1])
    starts = np.empty(n, dtype=np.int32)
    labs = np.empty(n, dtype=np.uint8)
    _fill(lab, offsets, starts, labs)
    return RowRuns((nz, ny, nx), offsets, starts, labs)


def decode(runs: RowRuns) -> np.ndarray:
    """Inverse of :func:`row_runs` (for tests): the dense ``[nz, ny, nx]`` label volume."""
    nz, ny, nx = runs.shape
    out = np.empty((nz, ny, nx), dtype=np.uint8)
    flat = out.reshape(nz * ny, nx)
    for q in range(nz * ny):
        lo, hi = int(runs.offsets[q]), int(runs.offsets[q + 1])
        bounds = list(runs.starts[lo:hi]) + [nx]
        for n in range(hi - lo):
            flat[q, bounds[n]:bounds[n + 1]] = runs.labels[lo + n]
    return out
