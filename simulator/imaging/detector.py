"""Direct-conversion a-Se flat-panel detector: absorption, gain, noise, aperture.

Model (per exposure, per pixel of the delivered image):

* absorption: a photon of energy E is absorbed in the a-Se layer with
  probability ``eta(E) = 1 - exp(-mu_Se(E) t)`` (xraydb attenuation; K-fluorescence
  escape is neglected) and deposits E. The energy-integrating signal is
  ``S1 = sum_E N(E) eta(E) E`` keV; its quantum variance is the compound-Poisson
  ``S2 = sum_E N(E) eta(E) E^2`` keV^2 (Swank). Noise is drawn as a scaled
  Poisson with those two moments exactly: ``n ~ Poisson(S1^2/S2)``, signal
  ``n * S2/S1``.
* gain: ``gain_adu_per_kev`` ADU per keV absorbed in one native del; binned
  pixels report the *mean* of their dels (ADU scale independent of binning).
* electronic noise: Gaussian, ``electronic_noise_adu`` rms per native del
  (so ``/binning`` after averaging), plus a dark ``offset_adu``.
* aperture: a pixel integrates the *intensity* over its area before it is
  sampled (the presampled MTF of an ideal square del is ``|sinc(f a)|``, with no
  mirror at Nyquist). Two renderings:

  - ``aperture_oversample = q > 1``: every pixel is rendered on a q x q
    sub-pixel grid and binned (the reference; exact in the limit, q^2 cost);
  - ``aperture_oversample == 1`` (the product default): analytic objects are
    integrated over the pixel by supersampling (``edge_subsamples`` per axis)
    exactly where their projection is not smooth inside the pixel (their
    boundaries, and the whole shadow of objects a few pixels across); the
    voxel phantom's line integrals, already pre-filtered by the bilinear
    (Joseph) interpolation of the voxels, are box-filtered over the pixel with
    the discrete aperture filter :func:`aperture_filter` before the energy sum.
    Sampling the intensity at pixel centres and multiplying its spectrum by
    ``sinc(f a)`` afterwards (:func:`aperture_fourier`, the previous default)
    mirrors the response at Nyquist and is no longer used for rendering.
* scatter is added by the imager from the Monte Carlo kernels of
  :mod:`physics.scatter_mc` (see :mod:`simulator.imaging.scatter`).

Units: keV, mm, ADU. Images are ``[row, col]``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

from physics import materials
from simulator.imaging.threads import image_threads


@dataclass(frozen=True)
class DetectorModel:
    """Physical parameters of the a-Se panel (geometry lives in ``protocols.geometry.DetectorGeometry``)."""

    se_thickness_mm: float = 0.200
    gain_adu_per_kev: float = 0.05
    electronic_noise_adu: float = 2.0
    offset_adu: float = 100.0
    aperture_oversample: int = 1
    edge_subsamples: int = 8
    max_adu: int = 65535

    def __post_init__(self) -> None:
        if int(self.aperture_oversample) < 1:
            raise ValueError(f"aperture_oversample={self.aperture_oversample} must be >= 1 (sub-pixels per axis)")
        if int(self.edge_subsamples) < 1:
            raise ValueError(f"edge_subsamples={self.edge_subsamples} must be >= 1 (sub-samples per axis)")

    def absorption(self, energies_kev: np.ndarray) -> np.ndarray:
        """Fraction of photons absorbed in the a-Se layer, eta(E)."""
        mu = materials.linear_attenuation("a-Se", energies_kev)
        return 1.0 - np.exp(-mu * self.se_thickness_mm)

    def energy_weights(self, energies_kev: np.ndarray, fluence_per_mm2: np.ndarray,
                       pixel_area_mm2: float) -> tuple[np.ndarray, np.ndarray]:
        """Per-bin weights (w1 keV, w2 keV^2) of the unattenuated beam for one pixel of the given area."""
        n = fluence_per_mm2 * pixel_area_mm2 * self.absorption(energies_kev)
        return n * energies_kev, n * energies_kev**2

    def read_out(self, s1_kev: np.ndarray, s2_kev2: np.ndarray, binning: int,
                 rng: np.random.Generator | None) -> np.ndarray:
        """Raw uint16 ADU image from the mean absorbed energy ``s1`` and its second moment ``s2``.

        ``rng=None`` gives the noiseless expected image (still rounded and clipped). ``rng`` must be seeded through a
        :class:`numpy.random.SeedSequence` (as ``np.random.default_rng(seed)`` is): a panel of more than
        :data:`NOISE_BAND_PIXELS` draws its further bands from ``rng.spawn`` children, which are then reproducible.
        """
        scale = self.gain_adu_per_kev / binning**2
        if rng is None:  # in bands of rows of BAND_PIXELS: no full-panel float temporaries
            s1_kev = np.asarray(s1_kev)
            expected = np.empty(s1_kev.shape, dtype=np.uint16)
            step = max(1, BAND_PIXELS // max(1, s1_kev.shape[1] if s1_kev.ndim > 1 else 1))
            for r0 in range(0, s1_kev.shape[0], step):
                adu = self.offset_adu + scale * s1_kev[r0:r0 + step]
                expected[r0:r0 + step] = np.clip(np.rint(adu), 0, self.max_adu)
            return expected
        s1 = np.ascontiguousarray(s1_kev, dtype=np.float64)
        s2 = np.ascontiguousarray(s2_kev2, dtype=np.float64)
        # In bands of equal rows (the last may be shorter; about NOISE_BAND_PIXELS each), so a full-resolution panel
        # (28.8 Mpx) holds a few float64 bands beyond its inputs, never a whole float64 panel. Each band draws its
        # quanta and then its electronic noise from a stream of its own: the first band from ``rng`` itself, band
        # k >= 1 from the (k-1)-th child that ``rng.spawn`` gives. The bands are then independent, so they run on the image-formation
        # threads (numpy's samplers and these kernels release the GIL) and the image does not depend on how many
        # threads there are or in which order they finish. A panel of one band (any image of at most
        # NOISE_BAND_PIXELS) draws only from ``rng``: its quanta, then its noise, in C order.
        rows = s1.shape[0]
        n_bands = max(1, -(-s1.size // NOISE_BAND_PIXELS))  # bands of equal rows, each about NOISE_BAND_PIXELS
        band = max(1, -(-rows // n_bands))  # (an empty panel: one empty band)
        starts = range(0, rows, band)
        streams = [rng, *rng.spawn(len(starts) - 1)] if len(starts) > 1 else [rng]
        sigma = self.electronic_noise_adu / binning
        out = np.empty(s1.shape, dtype=np.uint16)

        def one_band(k: int) -> None:
            r0 = starts[k]
            r1 = min(r0 + band, rows)
            n_eff = np.empty_like(s1[r0:r1])
            e_eff = np.empty_like(n_eff)
            _quanta(s1[r0:r1], s2[r0:r1], n_eff, e_eff)
            signal = n_eff  # offset + scale x counts x energy per quantum (ADU before the noise), over n_eff
            _signal_adu(streams[k].poisson(n_eff), e_eff, self.offset_adu, scale, signal)
            del e_eff
            _digitise(signal, streams[k].normal(0.0, sigma, size=signal.shape), float(self.max_adu), out[r0:r1])

        pool = image_threads() if len(starts) > 1 else None
        if pool is None:
            for k in range(len(starts)):
                one_band(k)
        else:
            list(pool.map(one_band, range(len(starts))))
        return out


#: Pixels per band of rows of the read-out's noise (:meth:`DetectorModel.read_out`): a panel of N pixels is cut into
#: ceil(N / NOISE_BAND_PIXELS) bands of ceil(rows / that) rows (the last one shorter, so sometimes one band fewer),
#: each drawing from its own random stream, so the bands run in parallel.
#: Part of the imaging model: another value gives another noise realisation of a panel larger than it (the default
#: gantry's 1200 x 1500 frame is two bands). Distinct from :data:`BAND_PIXELS`, which only bounds memory.
NOISE_BAND_PIXELS = 1 << 20

#: Pixels per band of rows in the full-panel loops of image formation (the noiseless :meth:`DetectorModel.read_out`,
#: the imager's energy per quantum, :func:`simulator.imaging.scatter.scatter_image`): 1 Mpx, about 8 MB per float64
#: band, against 230 MB for a whole full-resolution (50 um, 4800 x 6000) float64 panel.
BAND_PIXELS = 1 << 20


@nb.njit(cache=True, nogil=True)
def _quanta(s1, s2, n_eff, e_eff):  # pragma: no cover - numba
    """Effective quanta ``s1^2 / s2`` and energy per quantum ``s2 / s1`` (0 where s1 <= 0), one pass."""
    a1, a2 = s1.ravel(), s2.ravel()
    n, e = n_eff.ravel(), e_eff.ravel()
    for i in range(a1.size):
        if a1[i] > 0:
            n[i] = a1[i] ** 2 / max(a2[i], 1e-30)
            e[i] = a2[i] / max(a1[i], 1e-30)
        else:
            n[i] = 0.0
            e[i] = 0.0


@nb.njit(cache=True, nogil=True)
def _signal_adu(counts, e_eff, offset, scale, out):  # pragma: no cover - numba
    """``offset + scale * counts * e_eff`` (ADU before the electronic noise), one pass."""
    c, e, o = counts.ravel(), e_eff.ravel(), out.ravel()
    for i in range(c.size):
        o[i] = offset + scale * c[i] * e[i]


@nb.njit(cache=True, nogil=True)
def _digitise(signal, noise, max_adu, out):  # pragma: no cover - numba
    """``clip(rint(signal + noise), 0, max_adu)`` as uint16, one pass."""
    a, g, o = signal.ravel(), noise.ravel(), out.ravel()
    for i in range(a.size):
        v = np.rint(a[i] + g[i])
        o[i] = np.uint16(min(max(v, 0.0), max_adu))


def aperture_fourier(img: np.ndarray, fill: float = 1.0, pad: int = 16) -> np.ndarray:
    """Apply the square-del aperture transfer ``sinc(f a) sinc(g a)`` (a = fill x pitch) to a point-sampled image.

    The image is edge-padded by at least ``pad`` pixels (the kernel decays as
    1/x^2), up to a length with small prime factors on the far side (an image
    width such as 1500 + 32 = 4 x 383 would otherwise take a slow prime-length
    FFT), and filtered with a real FFT (scipy, 2 workers).
    """
    import scipy.fft as sfft

    r, c = img.shape
    fr_len, fc_len = sfft.next_fast_len(r + 2 * pad, real=True), sfft.next_fast_len(c + 2 * pad, real=True)
    padded = np.pad(img, ((pad, fr_len - r - pad), (pad, fc_len - c - pad)), mode="edge")
    fr = np.fft.fftfreq(padded.shape[0])
    fc = np.fft.rfftfreq(padded.shape[1])
    h = np.sinc(fr * fill)[:, None] * np.sinc(fc * fill)[None, :]
    out = sfft.irfft2(sfft.rfft2(padded, workers=2) * h, s=padded.shape, workers=2)
    return out[pad:pad + r, pad:pad + c]


def aperture_taps(half_width: int = 8) -> np.ndarray:
    """Taps of the discrete filter whose response is ``sinc(f)`` (f in cycles/pixel, |f| <= 1/2).

    ``h[n] = 2 * int_0^{1/2} sinc(f) cos(2 pi f n) df`` for ``|n| <= half_width``, normalised to
    unit sum (a flat field stays flat). With 8 taps a side the response is within 0.015 of
    ``sinc(f)`` at every frequency up to Nyquist (the residual sits next to Nyquist, where the
    truncated series meets the jump of the periodic response).
    """
    f = np.linspace(0.0, 0.5, 4001)
    n = np.arange(-half_width, half_width + 1)
    h = np.array([2.0 * np.trapezoid(np.sinc(f) * np.cos(2 * np.pi * f * k), f) for k in n])
    return h / h.sum()


#: Taps a side of the product's aperture filter (:func:`aperture_filter`): it reaches this many pixels.
APERTURE_HALF_WIDTH = 8
_TAPS = aperture_taps(APERTURE_HALF_WIDTH)


def aperture_filter_in_place(img: np.ndarray) -> None:
    """:func:`aperture_filter` of a float32 view, written back into it and clamped at zero (one temporary)."""
    from scipy.ndimage import correlate1d

    taps = _TAPS.astype(np.float32)
    rows_done = correlate1d(img, taps, axis=-1, mode="nearest")
    correlate1d(rows_done, taps, axis=-2, mode="nearest", output=img)
    np.maximum(img, 0.0, out=img)


def aperture_filter(img: np.ndarray) -> np.ndarray:
    """Box-filter a pixel-centre-sampled image over the square del: separable :func:`aperture_taps`, edge-extended.

    Used on the voxel phantom's per-material line integrals (float32 in, float32 out).
    """
    from scipy.ndimage import correlate1d

    out = correlate1d(np.asarray(img, dtype=np.float32), _TAPS.astype(np.float32), axis=-1, mode="nearest")
    return correlate1d(out, _TAPS.astype(np.float32), axis=-2, mode="nearest")
