"""Raw array outputs: projections as NumPy with their exposure records, the volume as NumPy and TIFF.

Files written in ``out_dir``:

* ``projections.npy``: ``(n, rows, cols)`` uint16, in the order of the exposure records;
* ``projections.json``: the :class:`protocols.records.ExposureRecord` of each projection (JSON list,
  same order), plus the detector pitch;
* ``volume.npy``: ``(nz, ny, nx)`` float32 attenuation, 1/mm, slice ``k`` at ``z_mm[k]``;
* ``volume.tif``: the same stack as a multi-page float32 TIFF, one page per slice; its JSON
  description carries ``z_mm`` (slice heights above the detector, mm), ``voxel_mm``, the first voxel
  centre ``x0_mm``/``y0_mm`` (gantry frame) and ``unit`` ``"1/mm"``
  (read it with ``tifffile.TiffFile(p).shaped_metadata[0]``).

Projections are streamed into a memory-mapped ``.npy`` one at a time, so an
iterator of images never needs the whole stack in memory.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import tifffile

from protocols.records import ExposureRecord


def write_projection_arrays(
    out_dir: str | Path,
    images: Iterable[np.ndarray],
    exposures: Sequence[ExposureRecord],
    *,
    pitch_mm: float,
) -> list[Path]:
    """Write ``projections.npy`` (uint16 stack) and ``projections.json`` (exposure records); returns both paths.

    ``images`` yields one ``(rows, cols)`` uint16 image per record of ``exposures``, in order.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(exposures)
    if n == 0:
        raise ValueError("no exposures given")
    npy = out / "projections.npy"
    stack = None
    count = 0
    for k, img in enumerate(images):
        a = np.asarray(img)
        if a.ndim != 2 or a.dtype != np.uint16:
            raise ValueError(f"projection {k}: need a 2-D uint16 image, got shape {a.shape} dtype {a.dtype}")
        if k >= n:
            raise ValueError(f"more images than exposure records ({n})")
        if stack is None:
            stack = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint16, shape=(n, *a.shape))
        elif a.shape != stack.shape[1:]:
            raise ValueError(f"projection {k} has shape {a.shape}, the first had {stack.shape[1:]}")
        stack[k] = a
        count += 1
    if count != n:
        raise ValueError(f"{count} images for {n} exposure records")
    assert stack is not None
    stack.flush()
    del stack
    meta = {"pitch_mm": pitch_mm, "dtype": "uint16", "layout": "[projection, row, col]; row 0 at the chest wall",
            "exposures": [e.model_dump(mode="json") for e in exposures]}
    js = out / "projections.json"
    js.write_text(json.dumps(meta, indent=1))
    return [npy, js]


def write_volume_arrays(
    out_dir: str | Path,
    volume: np.ndarray,
    *,
    z_mm: Sequence[float],
    voxel_mm: float,
    x0_mm: float,
    y0_mm: float,
) -> list[Path]:
    """Write ``volume.npy`` and the multi-page ``volume.tif`` with slice heights in its metadata.

    ``volume``: ``(nz, ny, nx)`` attenuation, 1/mm; ``z_mm``: the ``nz`` slice heights above the
    detector (mm); ``voxel_mm``: in-plane voxel size; ``x0_mm``, ``y0_mm``: centre of voxel
    ``[:, 0, 0]`` in the gantry frame (mm).
    """
    vol = np.asarray(volume, dtype=np.float32)
    if vol.ndim != 3 or vol.shape[0] != len(z_mm):
        raise ValueError(f"volume shape {vol.shape} does not match {len(z_mm)} slice heights")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    npy = out / "volume.npy"
    np.save(npy, vol)
    tif = out / "volume.tif"
    meta = {"z_mm": [float(z) for z in z_mm], "voxel_mm": float(voxel_mm), "x0_mm": float(x0_mm),
            "y0_mm": float(y0_mm), "unit": "1/mm", "axes": "ZYX"}
    tifffile.imwrite(tif, vol, metadata=meta, photometric="minisblack")
    return [npy, tif]


def write_numpy_outputs(
    out_dir: str | Path,
    *,
    images: Iterable[np.ndarray],
    exposures: Sequence[ExposureRecord],
    pitch_mm: float,
    volume: np.ndarray | None,
    z_mm: Sequence[float] | None = None,
    voxel_mm: float | None = None,
    x0_mm: float = 0.0,
    y0_mm: float = 0.0,
) -> list[Path]:
    """Projections (+ records) and, if given, the volume: see the module docstring for the files."""
    paths = write_projection_arrays(out_dir, images, exposures, pitch_mm=pitch_mm)
    if volume is not None:
        if z_mm is None or voxel_mm is None:
            raise ValueError("a volume needs its slice heights z_mm and voxel_mm")
        paths += write_volume_arrays(out_dir, volume, z_mm=z_mm, voxel_mm=voxel_mm, x0_mm=x0_mm, y0_mm=y0_mm)
    return paths
