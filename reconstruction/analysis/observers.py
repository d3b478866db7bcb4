"""Model observers for task-based image quality: channelized Hotelling (CHO) and non-prewhitening (NPW).

The task is signal-known-exactly detection at a known location: each region of interest (ROI,
``(rows, cols)`` pixels, any linear image unit) either contains the signal or not, and the observer
turns an ROI into one scalar rating ``t``. Figures of merit, from the ratings of signal-present
(``t1``) and signal-absent (``t0``) ROIs:

* ``d' = (mean t1 - mean t0) / sqrt((var t1 + var t0) / 2)`` (detectability index);
* AUC, the empirical area under the ROC curve: the Mann-Whitney statistic
  ``P(t1 > t0) + P(t1 = t0) / 2``; for Gaussian ratings of equal variance ``AUC = Phi(d' / sqrt 2)``;
* bootstrap confidence intervals of both (percentile method, seeded, present and absent
  resampled separately).

Observers
---------
* **NPW**: template ``w = <g | present> - <g | absent>`` (the mean signal), rating ``t = w . g``.
  With a known signal ``s`` and stationary noise of covariance ``K``: ``d'^2 = (s^T s)^2 / (s^T K s)``.
* **CHO**: channels ``T`` (``n_channels x n_pixels``), channel outputs ``v = T g``; template
  ``w = S^-1 dv`` with ``S`` the pooled covariance of the two classes' channel outputs and ``dv`` the mean
  channel difference; rating ``t = w . v``. Known statistics: ``d'^2 = (T s)^T (T K T^T)^-1 (T s)``.
  Channels: rotationally symmetric Laguerre-Gauss (:func:`laguerre_gauss_channels`) or
  Gabor (:func:`gabor_channels`: octave frequency bands x orientations x phases).

Templates estimated from the same ROIs they rate bias d' upward; :func:`evaluate` therefore trains on
one half of the cases and rates the other (two-fold cross-validation, folds given by the caller or
alternating), so every ROI gets a rating from a template that did not see it.

Only numpy and scipy: the application layers call these on any image stack.

Example
-------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> s = np.zeros((16, 16)); s[6:10, 6:10] = 0.5
>>> absent = rng.standard_normal((400, 16, 16)); present = rng.standard_normal((400, 16, 16)) + s
>>> r = evaluate(present, absent, "npw", signal=s, n_boot=200, seed=1)
>>> abs(r.dprime - 2.0) < 0.3   # analytic d' = sqrt(s.s) = 2
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy.special import eval_laguerre, ndtr

ObserverName = Literal["cho-lg", "cho-gabor", "npw"]
OBSERVERS: tuple[str, ...] = ("cho-lg", "cho-gabor", "npw")


# --------------------------------------------------------------------------------------------- channels


def laguerre_gauss_channels(shape: tuple[int, int], width_px: float, n_channels: int = 10,
                            centre: tuple[float, float] | None = None) -> np.ndarray:
    """Laguerre-Gauss channels ``(n_channels, rows*cols)`` centred on the ROI.

    ``u_j(r) = sqrt(2)/a exp(-pi r^2/a^2) L_j(2 pi r^2/a^2)`` with ``a = width_px`` (pixels);
    ``centre`` (row, col) defaults to the ROI centre. Units of ``r`` and ``a``: pixels.
    """
    if width_px <= 0:
        raise ValueError(f"Laguerre-Gauss width {width_px} px must be > 0")
    if not 1 <= n_channels <= 40:
        raise ValueError(f"n_channels {n_channels} outside 1-40")
    rows, cols = shape
    rc, cc = centre if centre is not None else ((rows - 1) / 2.0, (cols - 1) / 2.0)
    y, x = np.mgrid[0:rows, 0:cols]
    g = 2.0 * math.pi * ((y - rc) ** 2 + (x - cc) ** 2) / width_px**2
    out = np.empty((n_channels, rows * cols))
    for j in range(n_channels):
        out[j] = (math.sqrt(2.0) / width_px * np.exp(-0.5 * g) * eval_laguerre(j, g)).ravel()
    return out


def gabor_channels(shape: tuple[int, int], pitch_mm: float = 1.0,
                   centre_frequencies_cyc_mm: tuple[float, ...] | None = None,
                   orientations: int = 4, phases: tuple[float, ...] = (0.0, math.pi / 2),
                   centre: tuple[float, float] | None = None) -> np.ndarray:
    """Gabor channels ``(n, rows*cols)``: Gaussian envelopes times cosines, octave bands x orientations x phases.

    Each band of centre frequency ``f`` (cycles/mm) has an octave bandwidth: envelope width
    ``ws = 4 ln2 / (pi f)`` mm (full width at half maximum), as in Eckstein's channelized observers.
    Default bands: 1/8 ... 1/64 cycles per pixel, halving (four octaves). ``pitch_mm`` is the ROI's
    pixel size, mm.
    """
    rows, cols = shape
    if centre_frequencies_cyc_mm is None:
        centre_frequencies_cyc_mm = tuple((1.0 / 8.0) / 2**k / pitch_mm for k in range(4))
    rc, cc = centre if centre is not None else ((rows - 1) / 2.0, (cols - 1) / 2.0)
    y, x = np.mgrid[0:rows, 0:cols]
    xm, ym = (x - cc) * pitch_mm, (y - rc) * pitch_mm
    out = []
    for f in centre_frequencies_cyc_mm:
        if f <= 0:
            raise ValueError(f"Gabor centre frequency {f} cycles/mm must be > 0")
        ws = 4.0 * math.log(2.0) / (math.pi * f)
        env = np.exp(-4.0 * math.log(2.0) * (xm**2 + ym**2) / ws**2)
        for k in range(orientations):
            th = math.pi * k / orientations
            arg = 2.0 * math.pi * f * (xm * math.cos(th) + ym * math.sin(th))
            for ph in phases:
                c = env * np.cos(arg + ph)
                norm = np.linalg.norm(c)
                if norm > 0:
                    out.append((c / norm).ravel())
    return np.array(out)


def channels_for(observer: str, shape: tuple[int, int], pitch_mm: float, lesion_diameter_mm: float) -> np.ndarray | None:
    """The default channel set of a named observer for ROIs of ``shape`` at ``pitch_mm`` (None for NPW).

    LG: 6 channels of width ``a`` = the lesion diameter (at least 2 px). Gabor: 4 octave bands
    with centre frequencies ``1/(4 d) .. 2/d`` cycles/mm for lesion diameter ``d``, 4 orientations, even
    phase only (the lesions are centred and near-symmetric). Few channels: a trial trains each template on
    tens of ROIs, and a covariance of many channels from so few is noise.
    """
    if observer == "npw":
        return None
    if observer == "cho-lg":
        return laguerre_gauss_channels(shape, max(lesion_diameter_mm / pitch_mm, 2.0), 6)
    if observer == "cho-gabor":
        d = max(lesion_diameter_mm, 2.0 * pitch_mm)
        nyq = 0.5 / pitch_mm
        freqs = tuple(min(f, nyq) for f in (0.25 / d, 0.5 / d, 1.0 / d, 2.0 / d))
        return gabor_channels(shape, pitch_mm, freqs, orientations=4, phases=(0.0,))
    raise ValueError(f"unknown observer {observer!r}; choose one of {OBSERVERS}")


# --------------------------------------------------------------------------------------------- figures of merit


def dprime(t1: np.ndarray, t0: np.ndarray) -> float:
    """Detectability index from ratings: ``(mean t1 - mean t0) / sqrt((var t1 + var t0)/2)`` (ddof 1)."""
    t1, t0 = np.asarray(t1, float), np.asarray(t0, float)
    if t1.size < 2 or t0.size < 2:
        return float("nan")
    pooled = math.sqrt(0.5 * (t1.var(ddof=1) + t0.var(ddof=1)))
    return float((t1.mean() - t0.mean()) / pooled) if pooled > 0 else float("nan")


def auc_mann_whitney(t1: np.ndarray, t0: np.ndarray) -> float:
    """Empirical AUC: ``P(t1 > t0) + P(t1 == t0)/2`` over all present/absent pairs (ranks, O(n log n))."""
    t1, t0 = np.asarray(t1, float), np.asarray(t0, float)
    if t1.size == 0 or t0.size == 0:
        return float("nan")
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([t1, t0]))
    u = ranks[: t1.size].sum() - t1.size * (t1.size + 1) / 2.0
    return float(u / (t1.size * t0.size))


def auc_from_dprime(d: float) -> float:
    """Binormal equal-variance AUC, ``Phi(d'/sqrt 2)``."""
    return float(ndtr(d / math.sqrt(2.0)))


def bootstrap_ci(t1: np.ndarray, t0: np.ndarray, n_boot: int = 1000, seed: int = 0,
                 level: float = 0.95) -> dict[str, tuple[float, float]]:
    """Percentile bootstrap intervals of d' and AUC (present and absent resampled separately, seeded)."""
    t1, t0 = np.asarray(t1, float), np.asarray(t0, float)
    if n_boot < 1 or t1.size < 2 or t0.size < 2:
        nan = (float("nan"), float("nan"))
        return {"dprime": nan, "auc": nan}
    rng = np.random.default_rng(seed)
    d = np.empty(n_boot)
    a = np.empty(n_boot)
    for b in range(n_boot):
        s1 = t1[rng.integers(0, t1.size, t1.size)]
        s0 = t0[rng.integers(0, t0.size, t0.size)]
        d[b] = dprime(s1, s0)
        a[b] = auc_mann_whitney(s1, s0)
    lo, hi = 50.0 * (1 - level), 50.0 * (1 + level)
    return {"dprime": (float(np.nanpercentile(d, lo)), float(np.nanpercentile(d, hi))),
            "auc": (float(np.percentile(a, lo)), float(np.percentile(a, hi)))}


# --------------------------------------------------------------------------------------------- observers


def _flat(stack: np.ndarray) -> np.ndarray:
    a = np.asarray(stack, dtype=np.float64)
    if a.ndim != 3:
        raise ValueError(f"ROI stack must be (n, rows, cols), got shape {a.shape}")
    return a.reshape(a.shape[0], -1)


def npw_template(present: np.ndarray, absent: np.ndarray) -> np.ndarray:
    """NPW template: the mean present ROI minus the mean absent ROI (flattened)."""
    return _flat(present).mean(0) - _flat(absent).mean(0)


def cho_template(present: np.ndarray, absent: np.ndarray, channels: np.ndarray) -> np.ndarray:
    """CHO template in channel space, ``S^-1 dv`` (``S`` the pooled class covariance of channel outputs).

    Pooled by degrees of freedom, ``((n1-1) S1 + (n0-1) S0) / (n1+n0-2)``: with more absent than present
    ROIs (a trial's control sites) the better-sampled class weighs more; equal to the mean for equal counts.
    """
    v1, v0 = _flat(present) @ channels.T, _flat(absent) @ channels.T
    if v1.shape[0] < 2 or v0.shape[0] < 2:
        raise ValueError("CHO needs at least 2 present and 2 absent training ROIs")
    n1, n0 = v1.shape[0], v0.shape[0]
    s = ((n1 - 1) * np.atleast_2d(np.cov(v1, rowvar=False)) + (n0 - 1) * np.atleast_2d(np.cov(v0, rowvar=False))) \
        / (n1 + n0 - 2)
    dv = v1.mean(0) - v0.mean(0)
    return np.linalg.lstsq(np.atleast_2d(s), dv, rcond=None)[0]


def rate(rois: np.ndarray, template: np.ndarray, channels: np.ndarray | None = None) -> np.ndarray:
    """Ratings of ROIs ``(n, rows, cols)``: ``w . g`` (NPW) or ``w . (T g)`` (CHO)."""
    g = _flat(rois)
    if g.shape[0] == 0:
        return np.zeros(0)
    return (g @ channels.T) @ template if channels is not None else g @ template


@dataclass
class ObserverResult:
    """Ratings and figures of merit of one observer on one set of ROIs."""

    observer: str
    n_present: int
    n_absent: int
    dprime: float
    auc: float
    dprime_ci: tuple[float, float]
    auc_ci: tuple[float, float]
    ratings_present: np.ndarray = field(repr=False)
    ratings_absent: np.ndarray = field(repr=False)


def cross_validated_ratings(present: np.ndarray, absent: np.ndarray, observer: str,
                            channels: np.ndarray | None = None, signal: np.ndarray | None = None,
                            folds_present: np.ndarray | None = None,
                            folds_absent: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Ratings of every ROI from a template trained on the other fold (two folds).

    ``signal`` (NPW only): a known signal used as the template (no training). Folds default to
    alternating ROIs (0, 1, 0, 1...); pass case-based folds to keep one patient's ROIs together.
    """
    present, absent = np.asarray(present, np.float64), np.asarray(absent, np.float64)
    if observer not in OBSERVERS:
        raise ValueError(f"unknown observer {observer!r}; choose one of {OBSERVERS}")
    if observer != "npw" and channels is None:
        raise ValueError(f"observer {observer} needs channels")
    if observer == "npw" and signal is not None:
        w = np.asarray(signal, np.float64).ravel()
        return rate(present, w), rate(absent, w)
    fp = np.arange(len(present)) % 2 if folds_present is None else np.asarray(folds_present) % 2
    fa = np.arange(len(absent)) % 2 if folds_absent is None else np.asarray(folds_absent) % 2
    t1 = np.zeros(len(present))
    t0 = np.zeros(len(absent))
    for k, w in enumerate(fold_templates(present, absent, observer, channels, fp, fa)):
        ch = None if observer == "npw" else channels
        t1[fp == k] = rate(present[fp == k], w, ch)
        t0[fa == k] = rate(absent[fa == k], w, ch)
    return t1, t0


def fold_templates(present: np.ndarray, absent: np.ndarray, observer: str, channels: np.ndarray | None,
                   folds_present: np.ndarray, folds_absent: np.ndarray) -> list[np.ndarray]:
    """The two cross-validation templates: entry ``k`` is trained on the ROIs *not* in fold ``k`` and rates fold ``k``.

    Rate other ROIs of a fold-``k`` patient (e.g. the same patient imaged another way) with
    ``rate(rois, templates[k], channels)`` (NPW: ``channels=None``).
    """
    present, absent = np.asarray(present, np.float64), np.asarray(absent, np.float64)
    fp, fa = np.asarray(folds_present) % 2, np.asarray(folds_absent) % 2
    out = []
    for k in (0, 1):
        tr1, tr0 = present[fp != k], absent[fa != k]
        if observer == "npw":
            out.append(npw_template(tr1, tr0))
        else:
            out.append(cho_template(tr1, tr0, channels))  # type: ignore[arg-type]
    return out


def evaluate(present: np.ndarray, absent: np.ndarray, observer: str, *, channels: np.ndarray | None = None,
             signal: np.ndarray | None = None, n_boot: int = 1000, seed: int = 0,
             folds_present: np.ndarray | None = None, folds_absent: np.ndarray | None = None) -> ObserverResult:
    """Cross-validated ratings, d', AUC and their bootstrap intervals (see the module docstring)."""
    t1, t0 = cross_validated_ratings(present, absent, observer, channels, signal, folds_present, folds_absent)
    ci = bootstrap_ci(t1, t0, n_boot, seed)
    return ObserverResult(observer, len(t1), len(t0), dprime(t1, t0), auc_mann_whitney(t1, t0),
                          ci["dprime"], ci["auc"], t1, t0)


# --------------------------------------------------------------------------------------------- analytic


def npw_dprime_analytic(signal: np.ndarray, covariance: np.ndarray) -> float:
    """``d' = (s^T s) / sqrt(s^T K s)`` for a known signal ``s`` (flattened) and noise covariance ``K``."""
    s = np.asarray(signal, float).ravel()
    return float(s @ s / math.sqrt(s @ covariance @ s))


def cho_dprime_analytic(signal: np.ndarray, covariance: np.ndarray, channels: np.ndarray) -> float:
    """``d' = sqrt((T s)^T (T K T^T)^-1 (T s))`` for known signal, covariance and channels."""
    v = channels @ np.asarray(signal, float).ravel()
    return float(math.sqrt(v @ np.linalg.solve(channels @ covariance @ channels.T, v)))
