"""The QC tests: each names its exam, the phantom it expects, the analysis and its limits (crescent.qc.limits).

A test is a function ``run(site) -> QcResult``; :data:`TESTS` lists them in run order with the suites
they belong to. The analysis reuses :mod:`reconstruction.analysis` (slanted-edge MTF) and :mod:`physics`
(spectra, air kerma, mean glandular dose). Pixel values are raw ADU with the panel's dark offset removed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crescent.qc import exams, limits
from crescent.qc.limits import Limit
from crescent.qc.site import Acquisition, PhantomSpec


@dataclass
class Figure:
    """One measured figure against its limit."""

    name: str
    value: float
    limit: Limit

    @property
    def passed(self) -> bool:
        return self.limit.passes(self.value)


@dataclass
class QcResult:
    """A QC test's figures and verdict (pass when every figure passes)."""

    test: str
    title: str
    exam: str
    phantom: str
    figures: list[Figure]
    series: dict[str, list[float]] = field(default_factory=dict)  # curves for the report (x/y lists)
    notes: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.figures) and all(f.passed for f in self.figures)


@dataclass(frozen=True)
class QcTest:
    name: str
    title: str
    suites: tuple[str, ...]
    run: Callable[[Any, str], QcResult]


def _roi(img: np.ndarray, pitch: float, geometry: Any, x_mm: float, y_mm: float, size_mm: float) -> np.ndarray:
    """Square ROI of ``size_mm`` centred at detector (x, y) mm."""
    det = geometry.detector
    xs, ys = det.col_centres_mm(), det.row_centres_mm()
    c = int(np.argmin(np.abs(xs - x_mm)))
    r = int(np.argmin(np.abs(ys - y_mm)))
    h = max(1, int(round(0.5 * size_mm / pitch)))
    return img[max(r - h, 0):r + h, max(c - h, 0):c + h]


def _detrended_var(roi: np.ndarray) -> float:
    """Variance after removing a fitted plane (EUREF/IEC NNPS detrending, first order)."""
    r, c = np.mgrid[0:roi.shape[0], 0:roi.shape[1]]
    a = np.column_stack([np.ones(roi.size), r.ravel(), c.ravel()])
    coef, *_ = np.linalg.lstsq(a, roi.ravel(), rcond=None)
    return float(np.var(roi.ravel() - a @ coef, ddof=3))


def _detrend_plane(roi: np.ndarray) -> np.ndarray:
    """``roi`` minus its least-squares plane (first-order detrending, IEC 62220-1 / EUREF NNPS)."""
    r, c = np.mgrid[0:roi.shape[0], 0:roi.shape[1]]
    a = np.column_stack([np.ones(roi.size), r.ravel(), c.ravel()])
    coef, *_ = np.linalg.lstsq(a, roi.ravel(), rcond=None)
    return (roi.ravel() - a @ coef).reshape(roi.shape)


def nnps_2d(region: np.ndarray, pitch_mm: float, roi_px: int = 64) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Normalised noise power spectrum (mm^2) of a flat ``region`` (dark removed), IEC 62220-1 / EUREF method.

    Square ROIs of ``roi_px`` pixels overlapping by half tile the region; each is detrended (plane) and
    Fourier transformed; ``NPS = <|FFT|^2> dx dy / (Nx Ny)`` averaged over the ROIs and divided by the
    squared mean pixel value of the region. Returns ``(fx, fy, nnps)`` with frequencies in cycles/mm
    (``np.fft.fftfreq`` order). Parseval: ``sum(nnps) dfx dfy`` = the ROIs' mean detrended variance / mean^2.
    """
    rows, cols = region.shape
    if roi_px < 8 or rows < roi_px or cols < roi_px:
        raise ValueError(f"NNPS region {rows}x{cols} px must hold one ROI of roi_px={roi_px} (>= 8) px")
    mean = float(region.mean())
    if not mean > 0:
        raise ValueError(f"NNPS region mean {mean:g} ADU must be > 0 (dark removed)")
    step = roi_px // 2
    acc = np.zeros((roi_px, roi_px))
    n = 0
    for r0 in range(0, rows - roi_px + 1, step):
        for c0 in range(0, cols - roi_px + 1, step):
            f = np.fft.fft2(_detrend_plane(region[r0:r0 + roi_px, c0:c0 + roi_px]))
            acc += np.abs(f) ** 2
            n += 1
    nps = acc / n * pitch_mm * pitch_mm / (roi_px * roi_px)
    freq = np.fft.fftfreq(roi_px, d=pitch_mm)
    return freq, freq, nps / mean**2


def nnps_radial(fx: np.ndarray, fy: np.ndarray, nnps: np.ndarray, at: tuple[float, ...],
                half_band: float = 0.25) -> list[float]:
    """Mean of the 2-D NNPS over the annulus ``|f - f0| <= half_band`` (cycles/mm) around each ``f0`` of ``at``,
    the axes (fx = 0 or fy = 0, where line structure and detrending residue sit) excluded; mm^2."""
    gx, gy = np.meshgrid(fx, fy, indexing="xy")
    fr = np.hypot(gx, gy)
    off_axis = (gx != 0) & (gy != 0)
    out = []
    for f0 in at:
        band = off_axis & (np.abs(fr - f0) <= half_band)
        out.append(float(nnps[band].mean()) if band.any() else float("nan"))
    return out


# ============================================================================ detector response and noise
RESPONSE_MAS = (5.0, 10.0, 20.0, 40.0)
_SMALL = (200, 200, 4, 0.0, 40.0)  # 40 x 40 mm around the reference point, 200 um pixels (Nyquist 2.5 /mm)
#: Frequencies (cycles/mm) at which the NNPS is reported, and the exposure (mAs) whose image gives it.
NNPS_FREQS = (1.0, 2.0)
NNPS_MAS = 20.0


def detector_response(site: Any, suite: str) -> QcResult:
    """Mean pixel value and variance vs incident air kerma, 45 mm PMMA, 28 kV W/Rh, 4 mAs steps."""
    from physics.exposure_dose import incident_air_kerma_mgy

    phantom = PhantomSpec("pmma", 45.0, detector=_SMALL)
    kerma, mean, var = [], [], []
    nnps_at: list[float] = []
    nnps_curve: tuple[list[float], list[float]] = ([], [])
    for mas in RESPONSE_MAS:
        acq = site.acquire(exams.ffdm_manual(f"qc-response-{mas:g}mas", 28.0, mas), phantom)
        g, e = acq.header.geometry, acq.exposures[0]
        roi = _roi(acq.images[0] - acq.dark_adu, acq.pitch_mm, g, 0.0, 60.0, 10.0)
        if mas == NNPS_MAS:  # the NNPS of the same image: 30 x 30 mm around the reference point
            region = _roi(acq.images[0] - acq.dark_adu, acq.pitch_mm, g, 0.0, 60.0, 30.0)
            fx, fy, nn = nnps_2d(region, acq.pitch_mm)
            nnps_at = nnps_radial(fx, fy, nn, NNPS_FREQS)
            fs = [float(f) for f in np.arange(0.25, 0.5 / acq.pitch_mm - 0.2, 0.25)]
            nnps_curve = (fs, nnps_radial(fx, fy, nn, tuple(fs), half_band=0.125))
        kerma.append(incident_air_kerma_mgy(g, e, g.support_height_mm + acq.record.compressed_thickness_mm))
        mean.append(float(roi.mean()))
        var.append(_detrended_var(roi))
    k, m, v = np.array(kerma), np.array(mean), np.array(var)
    fit = np.polyfit(k, m, 1)
    r2 = 1.0 - float(np.sum((m - np.polyval(fit, k)) ** 2) / np.sum((m - m.mean()) ** 2))
    slope = float(np.polyfit(np.log(np.maximum(m, 1e-9)), np.log(np.maximum(v, 1e-9)), 1)[0])
    return QcResult("detector_response", "Detector response linearity and noise", "qc-response-* (ffdm manual)",
                      phantom.describe(),
                      [Figure("linearity R^2 (PV vs air kerma)", r2, limits.LINEARITY_R2),
                       Figure("noise slope d log(var) / d log(PV)", slope, limits.NOISE_SLOPE),
                       *[Figure(f"NNPS at {f:g} /mm, {NNPS_MAS:g} mAs (1e-6 mm^2)", 1e6 * val, limits.nnps_limit(f))
                         for f, val in zip(NNPS_FREQS, nnps_at)]],
                      {"air_kerma_mgy": list(k), "mean_pv": list(m), "variance": list(v),
                       "nnps_freq_per_mm": nnps_curve[0], "nnps_mm2": nnps_curve[1]})


# ============================================================================ tube output, kV and HVL
def tube_output_hvl(site: Any, suite: str) -> QcResult:
    """kV accuracy, tube output at 1 m and HVL of 28 kV W/Rh from the dosimeter (model or meter readings)."""
    phantom = PhantomSpec("uniform", 45.0, detector=(20, 20, 8, 0.0, 56.0))
    kvp, mas = 28.0, 20.0
    acq = site.acquire(exams.ffdm_manual("qc-tube-output", kvp, mas), phantom)
    e = acq.exposures[0]
    kerma_1m_mgy, hvl = site.dosimeter(e)
    output = 1000.0 * kerma_1m_mgy / e.mas
    return QcResult("tube_output_hvl", "Tube voltage, output and HVL", "qc-tube-output (ffdm manual 28 kV 20 mAs)",
                      phantom.describe() + " + dosimeter",
                      [Figure("kV error (measured - set)", e.kvp - kvp, limits.KV_ACCURACY),
                       Figure("tube output at 1 m", output, limits.TUBE_OUTPUT),
                       Figure("HVL", hvl, limits.hvl_limit(e.kvp, e.anode_filter))])


# ============================================================================ MTF
def mtf(site: Any, suite: str) -> QcResult:
    """Presampled MTF from a W edge 60 mm above the detector (focal spot and detector blur), 0-degree view."""
    from reconstruction.analysis.mtf import mtf_at, slanted_edge_mtf

    phantom = PhantomSpec("edge", 61.0, {"height_mm": 60.0, "tilt_deg": 3.0}, detector=(200, 200, 1, 0.0, 22.0))
    acq = site.acquire(exams.ffdm_manual("qc-mtf", 28.0, 50.0), phantom)
    f, m = slanted_edge_mtf(acq.images[0] - acq.dark_adu, acq.pitch_mm)
    m5 = float(mtf_at(f, m, 5.0))
    keep = f <= 0.5 / acq.pitch_mm
    below = np.nonzero((m < 0.5) & keep)[0]
    mtf50 = float(f[below[0]]) if below.size else 0.5 / acq.pitch_mm  # beyond Nyquist: recorded as Nyquist
    return QcResult("mtf", "In-plane MTF (edge at 60 mm)", "qc-mtf (ffdm manual 28 kV 50 mAs)", phantom.describe(),
                      [Figure("MTF at 5 lp/mm", m5, limits.MTF_5LP),
                       Figure("MTF50 (lp/mm, recorded)", mtf50, Limit(None, None, "lp/mm", "recorded for trends"))],
                      {"freq_lp_mm": list(f[keep]), "mtf": list(m[keep])})


# ============================================================================ homogeneity and artefacts
def homogeneity_artefacts(site: Any, suite: str) -> QcResult:
    """Flat-fielded 45 mm PMMA: ROI-mean homogeneity; raw image: dead or stuck lines."""
    phantom = PhantomSpec("pmma", 45.0)
    acq = site.acquire(exams.ffdm_manual("qc-homogeneity", 28.0, 20.0), phantom)
    g = acq.header.geometry
    img = acq.images[0] - acq.dark_adu
    flat = site.flat_field(acq)
    corr = img / np.maximum(flat, 1e-6) if flat is not None else img
    # ROIs of 10 mm on a 20 mm grid over the central 160 x 120 mm under the slab
    means = [float(_roi(corr, acq.pitch_mm, g, x, y, 10.0).mean())
             for x in np.arange(-80.0, 80.1, 20.0) for y in np.arange(20.0, 140.1, 20.0)]
    mu = float(np.mean(means))
    dev = 100.0 * max(abs(v - mu) for v in means) / mu
    # defective lines: a column (or row) whose mean over the slab differs by > 20 % from both neighbours
    ys = g.detector.row_centres_mm()
    under = img[(ys > 10.0) & (ys < 170.0)]
    from crescent.acquire.acquisition_qc import defective_lines

    lines = defective_lines(under)
    return QcResult("homogeneity_artefacts", "Homogeneity and detector artefacts",
                      "qc-homogeneity (ffdm manual 28 kV 20 mAs)", phantom.describe(),
                      [Figure("max ROI deviation from mean", dev, limits.HOMOGENEITY),
                       Figure("defective lines", float(lines), limits.DEFECT_LINES)],
                      {"roi_means": means})


# ============================================================================ AEC thickness tracking
AEC_THICKNESSES = {"acceptance": (20, 30, 40, 45, 50, 60, 70), "constancy": (20, 45, 70)}


def aec_tracking(site: Any, suite: str) -> QcResult:
    """The clinical DBT exam's AEC on PMMA 20-70 mm with 0.2 mm Al: signal tracking, SDNR and MGD per thickness."""
    from physics.exposure_dose import exposure_mgd_mgy

    figs, sig, sdnrs, mgds = [], [], [], []
    ts = AEC_THICKNESSES.get(suite, AEC_THICKNESSES["acceptance"])
    for t in ts:
        phantom = PhantomSpec("pmma", float(t), {"contrast_al_mm": 0.2}, detector=(250, 250, 8, 0.0, 0.0))
        acq = site.acquire(exams.dbt_aec(f"qc-aec-{t}mm", count=9), phantom)
        g = acq.header.geometry
        i0 = int(np.argmin([abs(e.mean_angle_deg) for e in acq.exposures]))
        img = acq.images[i0] - acq.dark_adu
        bg = _roi(img, acq.pitch_mm, g, 20.0, 60.0, 8.0)
        al = _roi(img, acq.pitch_mm, g, 0.0, 60.0 * g.sid_mm / (g.sid_mm - t - g.support_height_mm), 6.0)
        sdnr = float((bg.mean() - al.mean()) / math.sqrt(_detrended_var(bg)))
        acceptable, achievable, breast_mm, gland = limits.EUREF_MGD[t]
        mgd = float(sum(exposure_mgd_mgy(g, e, thickness_mm=breast_mm, glandularity=gland)
                        for e in acq.record.exposures))
        sig.append(float(_roi(img, acq.pitch_mm, g, 0.0, 30.0, 10.0).mean()))
        sdnrs.append(sdnr)
        mgds.append(mgd)
        figs.append(Figure(f"MGD {t} mm PMMA (mGy)", mgd, Limit(None, acceptable, "mGy",
                                                               f"{limits.MGD_SOURCE}; achievable {achievable} mGy")))
        figs.append(Figure(f"SDNR {t} mm PMMA", sdnr, limits.SDNR_MIN))
    mean_sig = float(np.mean(sig))
    track = 100.0 * max(abs(s - mean_sig) for s in sig) / mean_sig
    figs.insert(0, Figure("AEC signal spread over thicknesses", track, limits.AEC_SIGNAL_TRACKING))
    return QcResult("aec_tracking", "AEC thickness tracking (PMMA 20-70 mm)", "qc-aec-* (dbt AEC, 9 projections)",
                      "pmma " + "/".join(map(str, ts)) + " mm + 0.2 mm Al",
                      figs, {"thickness_mm": [float(t) for t in ts], "signal_pv": sig, "sdnr": sdnrs, "mgd_mgy": mgds})


# ============================================================================ geometry: arc angle from beads
def _bead_centroids(img: np.ndarray, dark_level: float) -> list[tuple[float, float]]:
    from scipy import ndimage

    open_level = float(np.median(img))
    mask = img < dark_level + 0.7 * (open_level - dark_level)
    lab, n = ndimage.label(mask)
    if n == 0:
        return []
    weights = np.maximum(open_level - img, 0.0)
    return [tuple(map(float, c)) for c in ndimage.center_of_mass(weights, lab, range(1, n + 1))]


def _fit_angle(geometry: Any, beads: list[tuple[float, float, float]], meas_xy: np.ndarray, guess_deg: float,
               ) -> tuple[float, float]:
    """Source angle (deg) whose bead projections best match ``meas_xy`` (n, 2) mm; and the rms residual, mm."""
    from scipy.optimize import minimize_scalar

    P = np.array(beads)

    def proj(theta: float) -> np.ndarray:
        s = np.array(geometry.source_position(theta))
        k = s[2] / (s[2] - P[:, 2])
        return np.column_stack([s[0] + (P[:, 0] - s[0]) * k, s[1] + (P[:, 1] - s[1]) * k])

    def cost(theta: float) -> float:
        return float(np.sum((proj(theta) - meas_xy) ** 2))

    res = minimize_scalar(cost, bounds=(guess_deg - 3.0, guess_deg + 3.0), method="bounded",
                          options={"xatol": 1e-5})
    return float(res.x), math.sqrt(cost(res.x) / len(P))


def geometry_arc(site: Any, suite: str) -> QcResult:
    """Bead phantom, the DBT sweep: each projection's source angle from the bead shadows vs the encoder's."""
    from simulator.imaging.imager import make_phantom

    phantom = PhantomSpec("beads", 45.0, detector=(250, 300, 8, 0.0, 0.0))
    acq = site.acquire(exams.dbt_manual("qc-geometry", 28.0, 2.0, count=9), phantom)
    g = acq.header.geometry
    truth = make_phantom("beads", acq.record.compressed_thickness_mm, g, seed=0).lesions
    beads = [tuple(b.centre_mm) for b in truth]
    xs, ys = g.detector.col_centres_mm(), g.detector.row_centres_mm()
    errors, residuals, fitted = [], [], []
    for img, e in zip(acq.images, acq.exposures):
        cents = _bead_centroids(img, acq.dark_adu)
        meas = np.array([(np.interp(c, np.arange(xs.size), xs), np.interp(r, np.arange(ys.size), ys))
                         for r, c in cents])
        enc = e.mean_angle_deg
        # match each bead to the nearest shadow predicted at the encoder angle
        s = np.array(g.source_position(enc))
        P = np.array(beads)
        k = s[2] / (s[2] - P[:, 2])
        pred = np.column_stack([s[0] + (P[:, 0] - s[0]) * k, s[1] + (P[:, 1] - s[1]) * k])
        if meas.size == 0:
            errors.append(float("nan"))
            continue
        d = np.linalg.norm(pred[:, None, :] - meas[None, :, :], axis=2)
        matched = meas[np.argmin(d, axis=1)]
        theta, rms = _fit_angle(g, beads, matched, enc)
        errors.append(theta - enc)
        residuals.append(rms)
        fitted.append(theta)
    err = np.array(errors)
    planned = [e.planned_angle_deg for e in acq.exposures]
    range_err = (fitted[-1] - fitted[0]) - (planned[-1] - planned[0]) if len(fitted) == len(planned) else float("nan")
    return QcResult("geometry_arc", "Geometric accuracy: arc angles from a bead phantom",
                      "qc-geometry (dbt manual, 9 projections)", phantom.describe(),
                      [Figure("mean angle error (beads - encoder)", float(np.mean(err)), limits.ARC_ANGLE_ERROR),
                       Figure("scan angle error", float(range_err), limits.ARC_RANGE_ERROR),
                       Figure("bead fit rms residual (mm, recorded)", float(np.mean(residuals)) if residuals else
                              float("nan"), Limit(None, None, "mm", "recorded for trends"))],
                      {"encoder_deg": [e.mean_angle_deg for e in acq.exposures], "angle_error_deg": list(err)})


# ============================================================================ z-resolution (ASF)
def z_resolution(site: Any, suite: str) -> QcResult:
    """Bead phantom, the DBT sweep, reconstructed (FBP): artifact spread function FWHM of the mid-height beads."""
    from crescent.acquire.analysis import open_field_signal, reconstruct
    from reconstruction.analysis.depth import artifact_spread, fwhm
    from simulator.imaging.imager import make_phantom

    phantom = PhantomSpec("beads", 45.0, detector=(250, 300, 8, 0.0, 0.0))
    acq = site.acquire(exams.dbt_manual("qc-zres", 28.0, 2.0, count=15), phantom)
    g = acq.header.geometry
    flat = site.flat_fields(acq)
    i0 = open_field_signal(acq.images, acq.dark_adu) if flat is None else None
    rec = reconstruct(acq.images, acq.header, flat=flat, dark=acq.dark_adu, voxel_mm=acq.pitch_mm, slice_mm=1.0,
                      i0=i0)
    grid = rec.grid
    xs = grid.x_min_mm + (np.arange(rec.volume.shape[2]) + 0.5) * grid.voxel_mm
    ys = grid.y_min_mm + (np.arange(rec.volume.shape[1]) + 0.5) * grid.voxel_mm
    z = np.asarray(grid.z_mm)
    truth = make_phantom("beads", acq.record.compressed_thickness_mm, g, seed=0).lesions
    top = max(b.centre_mm[2] for b in truth)
    widths = []
    for b in truth:
        bx, by, bz = b.centre_mm
        if not (z[0] + 8.0 <= bz <= z[-1] - 8.0) or bz == top:  # the ASF needs slices on both sides
            continue
        r = np.hypot(xs[None, :] - bx, ys[:, None] - by)
        feature = r <= 0.5 * b.diameter_mm + 0.5 * grid.voxel_mm
        ring = (r >= 4.0) & (r <= 6.0)
        if feature.sum() == 0 or ring.sum() == 0:
            continue
        asf = artifact_spread(rec.volume, feature, ring, int(np.argmin(np.abs(z - bz))))
        widths.append(fwhm(z, asf, baseline=0.0))
    w = float(np.median(widths)) if widths else float("nan")
    return QcResult("z_resolution", "Z-resolution: ASF FWHM of 1 mm beads", "qc-zres (dbt manual, 15 projections)",
                    phantom.describe(), [Figure("ASF FWHM (median of the mid-height beads)", w, limits.ASF_FWHM)],
                    {"bead": list(range(len(widths))), "asf_fwhm_mm": widths})


# ============================================================================ missed tissue, field alignment
def _edges_from_profile(v: np.ndarray, y_start: float, pitch: float) -> tuple[float, float] | None:
    """The dark -> open and open -> dark edges (mm) of a normalised profile (0 under the ruler, 1 open) that starts
    at ``y_start`` mm, each by the area method (exact for a pixel-aperture-blurred step), or None."""
    open_rows = np.flatnonzero(v > 0.5)
    if open_rows.size == 0:
        return None
    a = int(open_rows[0])
    after = np.flatnonzero(v[a:] <= 0.5)
    if after.size == 0:
        return None
    b = a + int(after[0])  # first dark row after the open gap
    mid = (a + b) // 2
    stop = min(b + 3, v.size)
    vc = np.clip(v, 0.0, 1.0)
    e1 = y_start + pitch * float(np.sum(1.0 - vc[:mid]))
    e2 = y_start + pitch * (mid + float(np.sum(vc[mid:stop])))
    return e1, e2


def _unexposed_mm(v: np.ndarray, pitch: float) -> float:
    """Width (mm) of the strip at the start of profile ``v`` (from an image edge inward) that reads below half the
    level 10-30 mm inside (local, so a smooth gain or heel gradient across the panel is not taken for a field edge)."""
    inner = v[int(10.0 / pitch):max(int(30.0 / pitch), int(10.0 / pitch) + 1)]
    level = float(np.median(inner)) if inner.size else float(np.max(v))
    exposed = np.flatnonzero(v >= 0.5 * level)
    return float((exposed[0] if exposed.size else v.size) * pitch)


def field_chest_wall(site: Any, suite: str) -> QcResult:
    """Whole panel, a tungsten ruler against the support's chest-wall edge: missed tissue from the ruler's two
    edges; X-ray field against the active area from the image (unexposed strips) and the field film."""
    from simulator.imaging.phantoms.qa import RULER_EDGES_MM

    phantom = PhantomSpec("chest-wall-ruler", 20.0)
    acq = site.acquire(exams.ffdm_manual("qc-field", 28.0, 10.0), phantom)
    g = acq.header.geometry
    p = acq.pitch_mm
    img = acq.images[0] - acq.dark_adu
    xs, ys = g.detector.col_centres_mm(), g.detector.row_centres_mm()
    y_edge = float(ys[0] - 0.5 * p)  # the chest-wall edge of the image
    beside = (np.abs(xs) > 40.0) & (np.abs(xs) < 80.0)  # open field beside the 40 mm wide ruler
    open_level = float(np.median(img[(ys > 20.0) & (ys < 60.0)][:, beside]))
    prof = img[:, np.abs(xs) < 15.0].mean(axis=1) / open_level
    edges = _edges_from_profile(prof, y_edge, p)
    e0, e1 = RULER_EDGES_MM
    if edges is None:
        missed, scale = float("nan"), float("nan")
    else:
        scale = (e1 - e0) / (edges[1] - edges[0])  # ruler mm per detector mm (magnification from the ruler itself)
        missed = e0 - (edges[0] - y_edge) * scale
    # unexposed strips at the four edges of the image, away from the ruler
    norm = img / open_level
    band_y = (ys > 40.0) & (ys < 160.0)
    strips = {"chest wall": _unexposed_mm(norm[:, beside].mean(axis=1), p),
              "nipple side": _unexposed_mm(norm[::-1, beside].mean(axis=1), p),
              "-x": _unexposed_mm(norm[band_y].mean(axis=0), p),
              "+x": _unexposed_mm(norm[band_y][:, ::-1].mean(axis=0), p)}
    film = site.field_film(acq)
    figs = [Figure("missed tissue at the chest wall", missed, limits.MISSED_TISSUE),
            Figure("X-ray field beyond the detector, chest wall (film)", film[0], limits.FIELD_CHEST_WALL)]
    figs += [Figure(f"X-ray field beyond the detector, {side} (film)", m, limits.FIELD_OTHER_SIDES)
             for side, m in zip(("nipple side", "-x", "+x"), film[1:])]
    figs.append(Figure("widest unexposed strip at the image edges", max(strips.values()), limits.FIELD_COVERS_IMAGE))
    figs.append(Figure("ruler scale (ruler mm per detector mm, recorded)", scale,
                       Limit(None, None, "", "recorded for trends (1/magnification at the support)")))
    return QcResult("field_chest_wall", "Missed tissue at the chest wall and X-ray field alignment",
                    "qc-field (ffdm manual 28 kV 10 mAs)", phantom.describe() + " + field film", figs,
                    {"side": [0.0, 1.0, 2.0, 3.0], "film_margin_mm": list(map(float, film)),
                     "unexposed_strip_mm": list(strips.values())},
                    notes="sides: chest wall, nipple side, -x, +x")


# ============================================================================ ghosting
GHOST_SHIFT_MM = -50.0


def ghosting(site: Any, suite: str) -> QcResult:
    """EUREF ghost-image test between two projections: 45 mm PMMA over half the field (x >= 0) with a 0.1 mm Al
    square outside the field, then (after the first projection) moved by -50 mm to cover the whole read-out area
    with the Al where the slab shielded the panel before. Ghost image factor = (ROI3 - ROI2) / (ROI1 - ROI2) in the
    second image: ROI1 on the Al, ROI2 beside it (both shielded before), ROI3 where the first exposure was open.

    Each ROI of the second image is first divided by the same ROI of a reference exam with the slab in its moved
    place for both projections (no history difference): the panel's own non-uniformity (gain, heel, the slab's
    obliquity) cancels, which a single image cannot tell from a ghost."""
    from simulator.imaging.imager import make_phantom

    # read out x = -40 .. 90 mm: the simulator renders a moved phantom by shifting the image, so the 50 mm it
    # moves must lie inside the read-out area (the ROIs use x = -40 .. 40 mm only)
    layout = (150, 325, 8, 25.0, 30.0)
    phantom = PhantomSpec("ghost", 45.0, detector=layout, motion=(GHOST_SHIFT_MM, 0.0, 0.0), without_scatter=True)
    acq = site.acquire(exams.ghost_pair("qc-ghost", 28.0, 5.0), phantom)
    ref_phantom = PhantomSpec("ghost", 45.0, {"x_edge_mm": GHOST_SHIFT_MM, "al_x_mm": 65.0 + GHOST_SHIFT_MM},
                              detector=layout, without_scatter=True)
    ref = site.acquire(exams.ghost_pair("qc-ghost-reference", 28.0, 5.0), ref_phantom)
    g = acq.header.geometry
    first, second = acq.exposures[0], acq.exposures[1]
    img = acq.images[1] - acq.dark_adu
    ref_img = np.maximum(ref.images[1] - ref.dark_adu, 1e-6)
    truth = make_phantom("ghost", acq.record.compressed_thickness_mm, g, seed=0).lesions[0]
    ax, ay, az = truth.centre_mm
    top = az - 0.1

    def project(angle: float, x: float, y: float, z: float) -> tuple[float, float]:
        s = g.source_position(angle)
        k = s[2] / (s[2] - z)
        return s[0] + (x - s[0]) * k, s[1] + (y - s[1]) * k

    al_x, al_y = project(second.mean_angle_deg, ax + GHOST_SHIFT_MM, ay, az)
    # the slab's edge in the first projection: shielded beyond its shadow at the slab's top and bottom
    edge = max(project(first.mean_angle_deg, 0.0, ay, z)[0] for z in (g.support_height_mm, top))
    size, d = 8.0, 16.0
    sx = g.source_position(second.mean_angle_deg)[0]
    x2, x3, y23 = sx + d, sx - d, al_y + 15.0
    if not (al_x - 0.5 * truth.diameter_mm - 0.5 * size > edge + 1.0 and x2 - 0.5 * size > edge + 1.0
            and x3 + 0.5 * size < edge - 1.0):
        raise RuntimeError(f"ghost set-up: the Al shadow (x={al_x:.1f} mm) and ROI2 (x={x2:.1f} mm) must lie in the "
                           f"shielded half (x > {edge:.1f} mm) and ROI3 (x={x3:.1f} mm) in the open one")

    def mean(im: np.ndarray, x: float, y: float) -> float:
        return float(_roi(im, acq.pitch_mm, g, x, y, size).mean())

    rel2, rel3 = mean(img, x2, y23) / mean(ref_img, x2, y23), mean(img, x3, y23) / mean(ref_img, x3, y23)
    contrast = mean(img, al_x, al_y) / mean(img, al_x, al_y - 16.0) - 1.0  # the Al's, in the second image
    # (ROI3 - ROI2) / (ROI1 - ROI2) with each ROI in units of the reference's signal there
    gif = float((rel3 / rel2 - 1.0) / contrast)
    return QcResult("ghosting", "Ghosting (ghost image factor between projections)",
                    "qc-ghost and qc-ghost-reference (dbt manual -1/+1 deg, 28 kV 5 mAs)",
                    phantom.describe() + "; reference: slab in its moved place throughout",
                    [Figure("ghost image factor", gif, limits.GHOST_FACTOR),
                     Figure("Al contrast (ROI1/ROI2 - 1, recorded)", contrast,
                            Limit(None, None, "", "recorded for trends"))],
                    notes=f"second image / reference: {rel2:.5f} shielded before, {rel3:.5f} open before")


# ============================================================================ timing
def _frame(entry: dict[str, Any]) -> Any:
    return entry.get("frame_id", entry.get("fields", {}).get("frame_id"))


def timing(site: Any, suite: str) -> QcResult:
    """Scan time, per-projection exposure time and image-ready time of the standard sweep (exam record, audit)."""
    phantom = PhantomSpec("pmma", 45.0, detector=(40, 40, 8, 0.0, 50.0))
    exam = exams.dbt_manual("qc-timing", 28.0, 2.0)
    acq = site.acquire(exam, phantom)
    ex = acq.exposures
    expected_scan = exam.motion.sweep_time_s + exam.motion.pulse_ms / 1000.0
    scan = ex[-1].window_end_s - ex[0].window_start_s
    pulses = np.array([e.window_end_s - e.window_start_s for e in ex])
    pulse_err = 100.0 * (pulses - exam.motion.pulse_ms / 1000.0) / (exam.motion.pulse_ms / 1000.0)
    t_exp = {_frame(e): e["t"] for e in acq.audit if e["kind"] == "exposure"}
    t_img = {_frame(e): e["t"] for e in acq.audit if e["kind"] == "image"}
    ready = [t_img[f] - t_exp[f] for f in t_img if f in t_exp]
    return QcResult("timing", "Scan time, exposure time and image-ready time", "qc-timing (dbt manual 28 kV 2 mAs)",
                      phantom.describe(),
                      [Figure("scan time error", 100.0 * (scan - expected_scan) / expected_scan, limits.SCAN_TIME_ERROR),
                       Figure("worst exposure-time error", float(pulse_err[np.argmax(np.abs(pulse_err))]),
                              limits.PULSE_TIME_ERROR),
                       Figure("worst image-ready time", float(max(ready)) if ready else float("nan"),
                              limits.IMAGE_READY_S),
                       Figure("scan time (s, recorded)", float(scan), Limit(None, None, "s", "recorded for trends"))],
                      {"image_ready_s": ready})


TESTS: tuple[QcTest, ...] = (
    QcTest("tube_output_hvl", "Tube voltage, output and HVL", ("acceptance", "constancy"), tube_output_hvl),
    QcTest("detector_response", "Detector response and noise", ("acceptance", "constancy"), detector_response),
    QcTest("mtf", "In-plane MTF", ("acceptance", "constancy"), mtf),
    QcTest("homogeneity_artefacts", "Homogeneity and artefacts", ("acceptance", "constancy"), homogeneity_artefacts),
    QcTest("aec_tracking", "AEC thickness tracking", ("acceptance", "constancy"), aec_tracking),
    QcTest("geometry_arc", "Geometry / arc angle", ("acceptance", "constancy"), geometry_arc),
    QcTest("z_resolution", "Z-resolution (ASF)", ("acceptance", "constancy"), z_resolution),
    QcTest("timing", "Scan and image-ready times", ("acceptance", "constancy"), timing),
    QcTest("field_chest_wall", "Missed tissue and X-ray field", ("acceptance", "constancy"), field_chest_wall),
    QcTest("ghosting", "Ghosting", ("acceptance", "constancy"), ghosting),
)
