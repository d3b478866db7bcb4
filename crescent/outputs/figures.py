"""PNG figures of the acquisition report (matplotlib, Agg backend, no display needed).

Each function draws one figure from plain arrays and writes it to ``path``;
nothing here computes physics. Large images are decimated for display only
(the figure never needs more than a few hundred pixels per panel).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.patches import Circle  # noqa: E402

from crescent.outputs.report_data import Lesion, MtfCurve, SliceStack, Timeline  # noqa: E402

#: Largest displayed panel edge, pixels of the source image.
MAX_PANEL_PX = 400
DPI = 110


def _save(fig: plt.Figure, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=DPI, bbox_inches=None if fig.get_layout_engine() else "tight", facecolor="white")
    plt.close(fig)
    return p


def _stride(shape: tuple[int, ...]) -> int:
    return max(1, int(math.ceil(max(shape) / MAX_PANEL_PX)))


def _window(img: np.ndarray, lo_pct: float = 1.0, hi_pct: float = 99.0) -> tuple[float, float]:
    """Display window from percentiles (falls back to min/max for flat images)."""
    lo, hi = np.percentile(img, [lo_pct, hi_pct])
    if hi <= lo:
        lo, hi = float(img.min()), float(img.max()) + 1e-12
    return float(lo), float(hi)


def _grid(n: int, max_cols: int) -> tuple[int, int]:
    cols = min(n, max_cols)
    return int(math.ceil(n / cols)), cols


def timeline_figure(path: str | Path, tl: Timeline) -> Path:
    """Stacked traces (arc angle, velocity, kVp, mA, force) against time with the X-ray windows shaded."""
    traces = [
        (tl.angle_deg, "arc angle\n(deg)"),
        (tl.velocity_deg_s, "arc velocity\n(deg/s)"),
        (tl.kvp, "tube voltage\n(kV)"),
        (tl.tube_current_ma, "tube current\n(mA)"),
        (tl.force_n, "compression\nforce (N)"),
    ]
    fig, axes = plt.subplots(len(traces), 1, sharex=True, figsize=(10, 8.5))
    for ax, (y, label) in zip(axes, traces):
        ax.plot(tl.t_s, y, lw=1.2, color="#1f4e79", drawstyle="steps-post")
        for t0, t1 in tl.exposure_windows_s:
            ax.axvspan(t0, t1, color="#f4a261", alpha=0.45, lw=0)
        ax.set_ylabel(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_title(f"Exam timeline: {len(tl.exposure_windows_s)} exposure windows (shaded)", fontsize=11)
    axes[-1].set_xlabel("time on the device clock (s)")
    fig.align_ylabels(axes)
    return _save(fig, path)


def projection_montage(path: str | Path, images: Sequence[np.ndarray], angles_deg: Sequence[float],
                       max_cols: int = 5) -> Path:
    """Projections side by side (row 0 = chest wall at the top), titled with their actual arc angles."""
    if len(images) == 0:
        raise ValueError("no projections to show")
    rows, cols = _grid(len(images), max_cols)
    aspect = np.shape(images[0])[0] / np.shape(images[0])[1]
    fig, axes = plt.subplots(rows, cols, figsize=(2.6 * cols, (2.6 * aspect + 0.35) * rows + 0.4),
                             squeeze=False, layout="compressed")
    for ax in axes.flat:
        ax.axis("off")
    for k, img in enumerate(images):
        a = np.asarray(img, dtype=np.float32)
        a = a[:: _stride(a.shape), :: _stride(a.shape)]
        lo, hi = _window(a)
        ax = axes.flat[k]
        ax.imshow(a, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        title = f"#{k + 1}" + (f"  {angles_deg[k]:+.2f} deg" if k < len(angles_deg) else "")
        ax.set_title(title, fontsize=9)
    fig.suptitle("Projections (raw detector signal; chest wall at the top)", fontsize=11)
    return _save(fig, path)


def choose_slices(stack: SliceStack, lesions: Sequence[Lesion], n_max: int = 12) -> list[int]:
    """Slice indices to show: every slice holding a lesion, filled up with evenly spaced ones."""
    nz = len(stack.z_mm)
    focus = sorted({stack.nearest_slice(l.z_mm) for l in lesions})
    rest = [int(round(v)) for v in np.linspace(0, nz - 1, min(nz, n_max))]
    chosen = list(focus)
    for k in rest:
        if len(chosen) >= max(n_max, len(focus)):
            break
        if k not in chosen:
            chosen.append(k)
    return sorted(chosen)


def slice_montage(path: str | Path, stack: SliceStack, lesions: Sequence[Lesion], n_max: int = 12,
                  max_cols: int = 4) -> Path:
    """Reconstructed slices with each lesion circled (true diameter) on the slice nearest its depth."""
    idx = choose_slices(stack, lesions, n_max)
    vol = np.asarray(stack.volume)
    s = _stride(vol.shape[1:])
    lo, hi = _window(vol[idx, ::s, ::s])
    rows, cols = _grid(len(idx), max_cols)
    aspect = vol.shape[1] / vol.shape[2]
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, (3.2 * aspect + 0.45) * rows + 0.4),
                             squeeze=False, layout="compressed")
    for ax in axes.flat:
        ax.axis("off")
    for n, k in enumerate(idx):
        ax = axes.flat[n]
        ax.imshow(vol[k, ::s, ::s], cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        scale_bar(ax, 10.0, stack.voxel_mm * s)
        in_focus = [l for l in lesions if stack.nearest_slice(l.z_mm) == k]
        for l in in_focus:
            c, r = stack.pixel_of(l.x_mm, l.y_mm)
            # at least ~4 % of the panel, so a sub-millimetre calcification is still visibly circled
            rad = max(0.5 * l.diameter_mm / stack.voxel_mm / s * 1.6, 0.04 * max(vol.shape[1:]) / s)
            ax.add_patch(Circle((c / s, r / s), rad, fill=False, color="#e63946", lw=1.6))
            ax.annotate(f"{l.kind} {l.diameter_mm:g} mm", (c / s, r / s - rad - 2), color="#e63946", fontsize=7,
                        ha="center", va="bottom", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                                        "alpha": 0.8})
        ax.set_title(f"z = {stack.z_mm[k]:.1f} mm" + ("  (lesion)" if in_focus else ""), fontsize=9,
                     color="#e63946" if in_focus else "black")
    fig.suptitle("Reconstructed slices (height above the detector); lesions circled on their slice", fontsize=11)
    return _save(fig, path)


def scale_bar(ax: plt.Axes, length_mm: float, mm_per_px: float, label: str | None = None) -> None:
    """Draw a white ``length_mm`` bar in the lower-left corner of an image axis (``mm_per_px`` display pixel)."""
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()  # image axes: y0 is the bottom edge (largest row)
    w = abs(x1 - x0)
    n = length_mm / mm_per_px
    xs = min(x0, x1) + 0.05 * w
    ys = max(y0, y1) - 0.06 * abs(y1 - y0)
    ax.plot([xs, xs + n], [ys, ys], color="white", lw=3, solid_capstyle="butt")
    ax.text(xs + n / 2, ys - 0.02 * abs(y1 - y0), label or f"{length_mm:g} mm", color="white", ha="center",
            va="bottom", fontsize=7)


def lesion_crops(path: str | Path, stack: SliceStack, lesions: Sequence[Lesion], half_mm: float = 6.0,
                 max_cols: int = 5) -> Path:
    """Full-resolution crops (no decimation) of each lesion on the slice nearest its depth, with a 2 mm bar.

    Every lesion gets its own panel, also when several share a height.
    """
    vol = np.asarray(stack.volume)
    half = max(4, int(round(half_mm / stack.voxel_mm)))
    rows, cols = _grid(len(lesions), max_cols)
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.6 * rows), squeeze=False, layout="compressed")
    for ax in axes.flat:
        ax.axis("off")
    for n, l in enumerate(lesions):
        k = stack.nearest_slice(l.z_mm)
        c, r = (int(round(v)) for v in stack.pixel_of(l.x_mm, l.y_mm))
        r0, r1 = max(r - half, 0), min(r + half + 1, vol.shape[1])
        c0, c1 = max(c - half, 0), min(c + half + 1, vol.shape[2])
        crop = vol[k, r0:r1, c0:c1]
        ax = axes.flat[n]
        if crop.size == 0:
            ax.set_title(f"{l.kind} {l.diameter_mm:g} mm: outside the volume", fontsize=7)
            continue
        lo, hi = _window(crop)
        ax.imshow(crop, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
        ax.add_patch(Circle((c - c0, r - r0), 0.5 * l.diameter_mm / stack.voxel_mm * 1.6 + 1, fill=False,
                            color="#e63946", lw=1.0))
        scale_bar(ax, 2.0, stack.voxel_mm)
        ax.set_title(f"{l.kind} {l.diameter_mm:g} mm\nz = {stack.z_mm[k]:.1f} mm", fontsize=8)
    fig.suptitle("Lesions at full resolution", fontsize=11)
    return _save(fig, path)


def mtf_figure(path: str | Path, curve: MtfCurve) -> Path:
    """Measured MTF with the ideal del-aperture sinc and the Nyquist frequency."""
    f = np.asarray(curve.freq_lp_mm)
    nyq = 1.0 / (2.0 * curve.pitch_mm)
    keep = f <= 1.5 * nyq
    fig, ax = plt.subplots(figsize=(7, 4.2))
    ax.plot(f[keep], np.asarray(curve.mtf)[keep], lw=1.8, color="#1f4e79", label=curve.label)
    fi = np.linspace(0, f[keep].max() if keep.any() else nyq, 300)
    ax.plot(fi, np.abs(np.sinc(fi * curve.aperture_mm)), "--", color="#888888",
            label=f"ideal aperture sinc ({curve.aperture_mm * 1000:.0f} um)")
    ax.axvline(nyq, color="#e63946", lw=1, ls=":", label=f"Nyquist {nyq:.1f} lp/mm")
    ax.set_xlabel("spatial frequency (lp/mm)")
    ax.set_ylabel("MTF")
    ax.set_ylim(0, 1.05)
    ax.set_xlim(0, fi.max())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    ax.set_title("Presampled MTF", fontsize=11)
    return _save(fig, path)
