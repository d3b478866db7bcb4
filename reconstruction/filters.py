"""Projection filters for DBT filtered backprojection.

The filter is separable, ``H(f_x, f_y) = H_x(f_x) * H_y(f_y)``, applied to each
line-integral projection in the frequency domain (edge-padded by up to 512
samples each side so the convolution does not wrap onto the image):

* along ``x`` (columns, the tube-motion direction): the ramp, written as the
  band-limited Ram-Lak kernel of Kak & Slaney (spatial kernel ``1/(4p^2)`` at 0,
  ``-1/(pi n p)^2`` at odd ``n``) so its DC term is right, blended with an
  all-pass of the same mean gain by ``ramp_fraction``::

      H_ramp'(f) = a * H_ramp(f) + (1 - a) * f_N / 2          (f_N = Nyquist, cycles/mm)

  ``a = 1`` is the pure ramp; smaller ``a`` keeps low-frequency (tissue)
  contrast, ``a = 0`` is an (amplified) shift-and-add;
* the *spectral* filter: an apodisation window on ``f_x`` (``"hann"``:
  ``0.5 (1 + cos(pi f / f_c))``; ``"cosine"``: ``cos(pi f / (2 f_c))``;
  ``"none"``) with ``f_c = cutoff * f_N``;
* the *slice-thickness* filter (Mertelmeier et al., Proc. SPIE 6142, 2006):
  in the limited-angle Fourier wedge ``|f_z| <= |f_x| tan(alpha/2)`` (``alpha`` the
  arc), so a Hann low-pass on ``f_x`` with ``f_c = 1 / (2 t tan(alpha/2))``
  limits ``f_z`` and sets an effective slice thickness ``t`` (mm). Off by default
  (it trades in-plane resolution for thicker slices);
* along ``y`` (rows): an optional low-pass (``"hann"`` with cutoff ``y_cutoff *
  f_N``, or ``"gaussian"`` with standard deviation ``y_sigma_mm`` in space),
  the filter in the "other direction" that controls noise and streaks
  perpendicular to the tube motion.

Frequencies are in cycles/mm of the detector; ``H_x`` has units 1/mm so that a
ramp-filtered line integral (dimensionless) becomes an attenuation density.

Example
-------
>>> spec = FilterSpec()
>>> h = filter_response_x(256, 0.1, spec, arc_deg=25.0)
>>> h.shape, round(float(h[-1]), 3)  # Hann apodisation reaches 0 at Nyquist
((129,), 0.0)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import scipy.fft as sfft
from pydantic import BaseModel, ConfigDict, Field


class FilterSpec(BaseModel):
    """FBP filter parameters (pydantic: comes from exam files or the CLI)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ramp_fraction: float = Field(1.0, ge=0.0, le=1.0, description="1 = pure ramp, 0 = all-pass")
    apodisation: Literal["hann", "cosine", "none"] = "hann"
    cutoff: float = Field(1.0, gt=0.0, le=1.0, description="apodisation cutoff, fraction of Nyquist")
    slice_thickness_mm: float | None = Field(None, gt=0.0, description="slice-thickness filter target, mm")
    y_window: Literal["hann", "gaussian", "none"] = "none"
    y_cutoff: float = Field(1.0, gt=0.0, le=1.0, description="Hann cutoff along y, fraction of Nyquist")
    y_sigma_mm: float = Field(0.1, gt=0.0, description="Gaussian sigma along y, mm")


def _fft_len(n: int, pad: int = 512) -> int:
    """FFT length for ``n`` samples plus ``min(n, pad)`` edge-padded samples each side.

    The Ram-Lak kernel falls as ``1/k^2``: beyond 512 samples its summed tail is
    below 1e-3 of its centre tap, so wrap-around through the padding is negligible.
    """
    return sfft.next_fast_len(n + 2 * min(n, pad), real=True)


def ramlak_response(n_fft: int, pitch_mm: float) -> np.ndarray:
    """Real frequency response (``n_fft//2 + 1`` samples, 1/mm) of the band-limited ramp."""
    k = np.arange(n_fft)
    k = np.where(k > n_fft // 2, k - n_fft, k)
    h = np.zeros(n_fft)
    h[0] = 1.0 / (4.0 * pitch_mm**2)
    odd = (k % 2) != 0
    h[odd] = -1.0 / (np.pi * k[odd] * pitch_mm) ** 2
    return np.real(np.fft.rfft(h)) * pitch_mm


def _window(f: np.ndarray, fc: float, kind: str) -> np.ndarray:
    a = np.abs(f)
    if kind == "hann":
        return np.where(a < fc, 0.5 * (1.0 + np.cos(np.pi * a / fc)), 0.0)
    if kind == "cosine":
        return np.where(a < fc, np.cos(0.5 * np.pi * a / fc), 0.0)
    return np.ones_like(a)


def filter_response_x(n_fft: int, pitch_mm: float, spec: FilterSpec, arc_deg: float) -> np.ndarray:
    """``H_x`` on the rfft grid of length ``n_fft`` (1/mm), ``arc_deg`` the full angular span."""
    f = np.fft.rfftfreq(n_fft, d=pitch_mm)
    fn = 0.5 / pitch_mm
    h = spec.ramp_fraction * ramlak_response(n_fft, pitch_mm) + (1.0 - spec.ramp_fraction) * 0.5 * fn
    h = h * _window(f, spec.cutoff * fn, spec.apodisation)
    if spec.slice_thickness_mm is not None:
        half = np.radians(max(arc_deg, 1e-3) / 2.0)
        h = h * _window(f, 1.0 / (2.0 * spec.slice_thickness_mm * np.tan(half)), "hann")
    return h


def filter_response_y(n_fft: int, pitch_mm: float, spec: FilterSpec) -> np.ndarray | None:
    """``H_y`` on the rfft grid (dimensionless), or ``None`` for no filtering along y."""
    if spec.y_window == "none":
        return None
    f = np.fft.rfftfreq(n_fft, d=pitch_mm)
    if spec.y_window == "hann":
        return _window(f, spec.y_cutoff * 0.5 / pitch_mm, "hann")
    return np.exp(-2.0 * (np.pi * spec.y_sigma_mm * f) ** 2)


@dataclass
class ProjectionFilter:
    """A filter prepared for one detector size (responses computed once)."""

    hx: np.ndarray
    hy: np.ndarray | None
    nx_fft: int
    ny_fft: int

    def __call__(self, image: np.ndarray, workers: int = -1) -> np.ndarray:
        """Filter one ``(rows, cols)`` line-integral image; returns float32 of the same shape."""
        rows, cols = image.shape
        a = np.asarray(image, dtype=np.float32)
        px = self.nx_fft - cols
        a = np.pad(a, ((0, 0), (px // 2, px - px // 2)), mode="edge")
        spec = sfft.rfft(a, axis=1, workers=workers)
        spec *= self.hx.astype(np.complex64)
        a = sfft.irfft(spec, n=self.nx_fft, axis=1, workers=workers)[:, px // 2 : px // 2 + cols]
        if self.hy is not None:
            py = self.ny_fft - rows
            a = np.pad(a, ((py // 2, py - py // 2), (0, 0)), mode="edge")
            spec = sfft.rfft(a, axis=0, workers=workers)
            spec *= self.hy[:, None].astype(np.complex64)
            a = sfft.irfft(spec, n=self.ny_fft, axis=0, workers=workers)[py // 2 : py // 2 + rows]
        return np.ascontiguousarray(a, dtype=np.float32)


def make_filter(rows: int, cols: int, pitch_mm: float, spec: FilterSpec, arc_deg: float) -> ProjectionFilter:
    """Prepare the FBP filter for ``(rows, cols)`` projections at ``pitch_mm``."""
    nx_fft, ny_fft = _fft_len(cols), _fft_len(rows)
    return ProjectionFilter(
        filter_response_x(nx_fft, pitch_mm, spec, arc_deg), filter_response_y(ny_fft, pitch_mm, spec), nx_fft, ny_fft
    )
