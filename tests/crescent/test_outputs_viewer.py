"""The report's slice viewer and projection cine (issue 20): every slice at full resolution, embedded.

The embedded PNGs are decoded with Pillow (an independent PNG reader) and compared with the
volume windowed to 8 bits; the lesion marks sit where the lesions are.
"""

from __future__ import annotations

import base64
import io
import json
import re
from pathlib import Path

import numpy as np
from PIL import Image

from crescent.outputs.report import write_report
from crescent.outputs.report_data import Lesion, ReportData, SliceStack
from crescent.outputs.viewer import MAX_SLICES, png_bytes, to_8bit


def test_png_bytes_decodes_to_the_same_pixels() -> None:
    rng = np.random.default_rng(20)
    img = rng.integers(0, 256, size=(37, 53), dtype=np.uint8)
    back = np.asarray(Image.open(io.BytesIO(png_bytes(img))))
    assert back.dtype == np.uint8 and np.array_equal(back, img)


def _uris(script_var: str, text: str) -> list[str]:
    m = re.search(rf"var {script_var} = (\[.*?\]);", text, re.S)
    assert m, script_var
    return json.loads(m.group(1))


def test_the_report_embeds_every_slice_at_full_resolution_with_lesion_marks(tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    nz, ny, nx = 12, 40, 60
    vol = rng.normal(0.05, 0.002, size=(nz, ny, nx)).astype(np.float32)
    z = [float(i) for i in range(nz)]
    les = Lesion(x_mm=10.0 + 30 * 0.2, y_mm=5.0 + 20 * 0.2, z_mm=7.0, kind="calcification", diameter_mm=0.4)
    vol[7, 20, 30] = 0.2  # the lesion, bright in its slice
    stack = SliceStack(vol, 0.2, 10.0, 5.0, z)
    projections = [rng.normal(1000, 30, size=(30, 45)) for _ in range(5)]
    d = ReportData(exam="t", slices=stack, lesions=[les], projections=projections,
                   projection_angles_deg=[-10, -5, 0, 5, 10])
    html = write_report(tmp_path, d).read_text()
    assert 'id="viewer"' in html and 'id="cine"' in html and "<script>" in html
    slices = _uris("S", html)
    assert len(slices) == nz  # every slice
    decoded = [np.asarray(Image.open(io.BytesIO(base64.b64decode(u.split(",", 1)[1])))) for u in slices]
    assert all(im.shape == (ny, nx) for im in decoded)  # full resolution
    lo, hi = np.percentile(vol[:, ::1, ::1], [1.0, 99.0])
    assert np.array_equal(decoded[7], to_8bit(vol[7], lo, hi))
    marks = _uris("M", html)
    assert len(marks) == 1 and marks[0]["on"] == [7]
    assert round(marks[0]["c"]) == 30 and round(marks[0]["r"]) == 20  # on the lesion's voxel
    frames = _uris("F", html)
    assert len(frames) == 5
    assert len(html) < 2_000_000


def test_more_slices_than_the_cap_keep_every_kth(tmp_path: Path) -> None:
    nz = MAX_SLICES + 50
    vol = np.zeros((nz, 4, 4), dtype=np.float32)
    vol += np.arange(nz, dtype=np.float32)[:, None, None]
    html = write_report(tmp_path, ReportData(exam="t", slices=SliceStack(vol, 1.0, 0.0, 0.0, list(range(nz))))).read_text()
    assert len(_uris("S", html)) == -(-nz // 2) and "Every 2th slice" in html
