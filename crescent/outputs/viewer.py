"""The report's slice viewer and projection cine: every slice at full resolution, in the HTML itself.

Each slice and projection is an 8-bit grayscale PNG embedded as a ``data:`` URI (no server, no files
beside the report); a slider (or the arrow keys) moves through the stack, lesions are marked with
SVG circles on the slices within half a diameter of their true depth, and a play button runs the
projections as a cine. The PNGs are written by :func:`png_bytes` (zlib, no imaging library).

Size: slices are embedded at full resolution (one PNG pixel per voxel) up to :data:`MAX_SLICES`
slices (the default 1 mm spacing gives about 50); beyond it every k-th slice is kept and the caption
says so. Projections wider or taller than :data:`MAX_PROJECTION_PX` are shown decimated by the
smallest integer factor that fits (the caption says by how much); full-resolution projections are in
``arrays/`` and the DICOM files.
"""

from __future__ import annotations

import base64
import html
import json
import struct
import zlib
from collections.abc import Sequence

import numpy as np

from crescent.outputs.report_data import Lesion, SliceStack

#: Largest number of slices embedded (every slice up to this; beyond it every k-th).
MAX_SLICES = 200
#: Projections larger than this (pixels, either side) are decimated for the cine.
MAX_PROJECTION_PX = 1024


def png_bytes(img8: np.ndarray) -> bytes:
    """An 8-bit grayscale PNG of ``img8`` (2-D uint8), PNG specification (ISO/IEC 15948) chunks."""
    a = np.ascontiguousarray(img8, dtype=np.uint8)
    if a.ndim != 2:
        raise ValueError(f"need a 2-D image, got shape {a.shape}")
    h, w = a.shape
    raw = np.empty((h, w + 1), dtype=np.uint8)
    raw[:, 0] = 1  # filter type 1 (Sub): each byte minus its left neighbour, mod 256
    raw[:, 1] = a[:, 0]
    raw[:, 2:] = np.diff(a, axis=1)  # uint8 arithmetic wraps mod 256, as the filter wants

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw.tobytes(), 6)) + chunk(b"IEND", b""))


def data_uri(img8: np.ndarray) -> str:
    return "data:image/png;base64," + base64.b64encode(png_bytes(img8)).decode("ascii")


def to_8bit(img: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Window ``[lo, hi]`` -> 0..255."""
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip((np.asarray(img, dtype=np.float64) - lo) * scale, 0, 255).astype(np.uint8)


def _window(values: np.ndarray) -> tuple[float, float]:
    lo, hi = np.percentile(values, [1.0, 99.0])
    if hi <= lo:
        lo, hi = float(values.min()), float(values.max()) + 1e-12
    return float(lo), float(hi)


def viewer_html(slices: SliceStack, lesions: Sequence[Lesion]) -> str:
    """The slice viewer section body: full-resolution slices, a slider, lesion marks."""
    vol = np.asarray(slices.volume)
    nz, ny, nx = vol.shape
    step = max(1, -(-nz // MAX_SLICES))
    keep = list(range(0, nz, step))
    sample = vol[:, :: max(1, ny // 128), :: max(1, nx // 128)]
    lo, hi = _window(sample)  # one window for the whole stack: brightness comparable slice to slice
    uris = [data_uri(to_8bit(vol[k], lo, hi)) for k in keep]
    z = [round(float(slices.z_mm[k]), 3) for k in keep]
    marks = []
    for n, les in enumerate(lesions):
        shown = [i for i, k in enumerate(keep) if abs(float(slices.z_mm[k]) - les.z_mm) <= max(0.5 * les.diameter_mm, 0.5)]
        if not shown:  # thinner than the slice spacing: mark it on the nearest kept slice
            shown = [int(np.argmin([abs(zz - les.z_mm) for zz in z]))]
        marks.append({"c": (les.x_mm - slices.x0_mm) / slices.voxel_mm, "r": (les.y_mm - slices.y0_mm) / slices.voxel_mm,
                      "rad": max(0.5 * les.diameter_mm / slices.voxel_mm + 2.0, 3.0), "on": shown,
                      "label": f"{n + 1}: {les.kind} {les.diameter_mm:g} mm, z {les.z_mm:.1f} mm"})
    start = marks[0]["on"][len(marks[0]["on"]) // 2] if marks else len(keep) // 2
    note = "" if step == 1 else f" Every {step}th slice of {nz} is embedded (more than {MAX_SLICES})."
    return f"""<p class="cap">Every reconstructed slice at full resolution ({nx} x {ny} voxels of
{slices.voxel_mm:g} mm, one screen pixel per voxel; scroll sideways on a narrow screen). Move through the
stack with the slider or the arrow keys. Circles mark each lesion's true position on the slices within half
its diameter of its true depth. Display window: 1st-99th percentile of the whole volume.{html.escape(note)}</p>
<div><input type="range" id="sv-range" min="0" max="{len(keep) - 1}" value="{start}" style="width:60%">
<span id="sv-label"></span></div>
<div style="overflow:auto;max-height:90vh"><div style="position:relative;width:{nx}px;height:{ny}px">
<img id="sv-img" src="{uris[start]}" alt="reconstructed slice" style="width:{nx}px;height:{ny}px;image-rendering:pixelated;margin:0">
<svg id="sv-marks" viewBox="-0.5 -0.5 {nx} {ny}" width="{nx}" height="{ny}" style="position:absolute;left:0;top:0"></svg>
</div></div>
<script>
(function () {{
  var S = {json.dumps(uris)};
  var Z = {json.dumps(z)};
  var M = {json.dumps(marks)};
  var range = document.getElementById("sv-range"), img = document.getElementById("sv-img"),
      label = document.getElementById("sv-label"), svg = document.getElementById("sv-marks");
  function show(i) {{
    img.src = S[i];
    var here = M.filter(function (m) {{ return m.on.indexOf(i) >= 0; }});
    label.textContent = "slice " + (i + 1) + " of " + S.length + ", z = " + Z[i].toFixed(1) + " mm" +
      (here.length ? "; lesions " + here.map(function (m) {{ return m.label; }}).join("; ") : "");
    svg.innerHTML = here.map(function (m) {{
      return '<circle cx="' + m.c + '" cy="' + m.r + '" r="' + m.rad +
             '" fill="none" stroke="red" stroke-width="1"><title>' + m.label + '</title></circle>';
    }}).join("");
  }}
  range.addEventListener("input", function () {{ show(+range.value); }});
  document.addEventListener("keydown", function (e) {{
    if (e.key !== "ArrowUp" && e.key !== "ArrowDown") return;
    range.value = Math.max(0, Math.min(S.length - 1, +range.value + (e.key === "ArrowUp" ? 1 : -1)));
    show(+range.value); e.preventDefault();
  }});
  show(+range.value);
}})();
</script>"""


def cine_html(projections: Sequence[np.ndarray], angles_deg: Sequence[float]) -> str:
    """The projection cine section body: every projection as a frame, play/pause and a slider."""
    h, w = np.shape(projections[0])
    k = max(1, -(-max(h, w) // MAX_PROJECTION_PX))
    frames = []
    for p in projections:  # decimated before it is converted: one small float copy at a time
        small = np.asarray(np.asarray(p)[::k, ::k], dtype=np.float64)
        lo, hi = _window(small)  # each projection its own window: the signal changes with the angle
        frames.append(data_uri(to_8bit(small, lo, hi)))
    note = "" if k == 1 else f" Shown decimated by {k} (every {k}th pixel); full resolution in arrays/ and dicom/."
    labels = [f"projection {i + 1} of {len(frames)}, {a:+.2f} deg" for i, a in enumerate(angles_deg)]
    return f"""<p class="cap">The projections in acquisition order as a cine (display window 1st-99th percentile of
each); chest wall at the top.{html.escape(note)}</p>
<div><button id="cine-play" type="button">play</button>
<input type="range" id="cine-range" min="0" max="{len(frames) - 1}" value="0" style="width:50%">
<span id="cine-label"></span></div>
<img id="cine-img" src="{frames[0]}" alt="projection" style="max-width:100%;image-rendering:pixelated">
<script>
(function () {{
  var F = {json.dumps(frames)};
  var L = {json.dumps(labels)};
  var range = document.getElementById("cine-range"), img = document.getElementById("cine-img"),
      label = document.getElementById("cine-label"), play = document.getElementById("cine-play"), timer = null;
  function show(i) {{ img.src = F[i]; label.textContent = L[i]; range.value = i; }}
  range.addEventListener("input", function () {{ show(+range.value); }});
  play.addEventListener("click", function () {{
    if (timer) {{ clearInterval(timer); timer = null; play.textContent = "play"; return; }}
    play.textContent = "pause";
    timer = setInterval(function () {{ show((+range.value + 1) % F.length); }}, 200);
  }});
  show(0);
}})();
</script>"""
