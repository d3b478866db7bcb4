"""Detector: quantum-noise scaling, presampled MTF of the del aperture, determinism, motion blur."""

import numpy as np
import pytest

from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from protocols.records import ExposureRecord
from simulator.imaging.detector import DetectorModel
from simulator.imaging.imager import ExposureImager, make_phantom


def _exposure(frame: int, mas: float, a0: float = 0.0, a1: float = 0.0, spot: float = 0.3) -> ExposureRecord:
    return ExposureRecord(index=0, frame_id=frame, planned_angle_deg=0.5 * (a0 + a1), angle_start_deg=a0,
                          angle_end_deg=a1, kvp=29.0, mas=mas, anode_filter="W/Rh", focal_spot_mm=spot,
                          window_start_s=0.0, window_end_s=0.1)


@pytest.mark.parametrize("binning", [1, 2])
def test_flat_field_variance_scales_as_quantum_noise(binning: int) -> None:
    det = DetectorGeometry(native_pitch_mm=0.05, binning=binning, rows=128, cols=128, offset_y_mm=100.0)
    g = AcquisitionGeometry(detector=det)
    model = DetectorModel(gain_adu_per_kev=0.05, electronic_noise_adu=3.0, offset_adu=100.0)
    imager = ExposureImager(make_phantom("uniform", 0.0, g, seed=0), g, model, seed=11)
    spec = imager.spectrum(_exposure(0, 1.0))
    w1, w2 = model.energy_weights(spec.energies_kev, spec.fluence_per_mas, 1.0)
    e_eff = w2.sum() / w1.sum()  # keV: energy-weighted mean absorbed energy (Swank)
    scale = model.gain_adu_per_kev / binning**2
    means, variances = [], []
    for mas in (0.5, 1.0, 2.0, 4.0, 8.0):
        a = imager.image(_exposure(2 * int(mas * 10), mas)).astype(np.float64)
        b = imager.image(_exposure(2 * int(mas * 10) + 1, mas)).astype(np.float64)
        means.append(0.5 * (a.mean() + b.mean()) - model.offset_adu)
        variances.append(np.var(a - b) / 2.0)
    slope, intercept = np.polyfit(means, variances, 1)
    assert slope == pytest.approx(scale * e_eff, rel=0.04)
    # no X-rays: electronic noise per del, averaged over binning^2 dels, plus rounding (1/12 ADU^2)
    a0 = imager.image(_exposure(900, 0.0)).astype(np.float64)
    b0 = imager.image(_exposure(901, 0.0)).astype(np.float64)
    assert np.var(a0 - b0) / 2.0 == pytest.approx((model.electronic_noise_adu / binning) ** 2 + 1 / 12, rel=0.1)
    for m, v in zip(means, variances):
        assert v == pytest.approx(scale * e_eff * m + (model.electronic_noise_adu / binning) ** 2, rel=0.06)


def _presampled_mtf(img: np.ndarray, pitch: float, over: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Slanted-edge presampled MTF (IEC 62220-1 style): edge fit per row, oversampled ESF, LSF, FFT."""
    img = img.astype(np.float64)
    rows, cols = img.shape
    # edge position per row from the centroid of the row derivative
    d = np.abs(np.diff(img, axis=1))
    xc = (d * (np.arange(cols - 1) + 0.5)).sum(axis=1) / d.sum(axis=1)
    p = np.polyfit(np.arange(rows), xc, 1)
    dist = (np.arange(cols)[None, :] - np.polyval(p, np.arange(rows))[:, None]) / np.sqrt(1 + p[0] ** 2)
    bins = np.round(dist * over).astype(int)
    sel = np.abs(bins) < 40 * over
    b = bins[sel] - bins[sel].min()
    esf = np.bincount(b, weights=img[sel]) / np.maximum(np.bincount(b), 1)
    lsf = np.gradient(esf)
    lsf *= np.hanning(lsf.size)
    mtf = np.abs(np.fft.rfft(lsf))
    mtf /= mtf[0]
    f = np.fft.rfftfreq(lsf.size, d=pitch / over)
    return f, mtf


def test_presampled_mtf_follows_pixel_aperture_sinc() -> None:
    pitch = 0.05
    det = DetectorGeometry(native_pitch_mm=pitch, binning=1, rows=200, cols=160, offset_y_mm=10.0)
    g = AcquisitionGeometry(detector=det)
    model = DetectorModel(aperture_oversample=5)
    phantom = make_phantom("edge", 1.0, g, seed=0, extent_mm=40.0)
    imager = ExposureImager(phantom, g, model, seed=1, focal_spot=False, noise=False)
    s1, _ = imager.expected_signal(_exposure(0, 50.0, spot=0.05))
    f, mtf = _presampled_mtf(s1, pitch)
    sel = f <= 10.0
    expected = np.abs(np.sinc(f[sel] * pitch))
    assert np.max(np.abs(mtf[sel] - expected)) < 0.03
    assert mtf[np.argmin(np.abs(f - 10.0))] == pytest.approx(2 / np.pi, abs=0.03)


def test_same_seed_bit_identical_and_order_independent() -> None:
    det = DetectorGeometry(native_pitch_mm=0.05, binning=4, rows=60, cols=80)
    g = AcquisitionGeometry(detector=det)
    ph = make_phantom("breast", 40.0, g, seed=5, voxel_mm=0.5, width_mm=60.0, depth_mm=40.0)
    e1, e2 = _exposure(1, 2.0, -5.0, -4.8), _exposure(2, 2.0, 5.0, 5.2)
    a = ExposureImager(ph, g, seed=9)
    b = ExposureImager(ph, g, seed=9)
    first = a.image(e1), a.image(e2)
    second = b.image(e2), b.image(e1)
    assert np.array_equal(first[0], second[1]) and np.array_equal(first[1], second[0])
    c = ExposureImager(ph, g, seed=10)
    assert not np.array_equal(c.image(e1), first[0])


def test_continuous_motion_blurs_along_the_arc_only() -> None:
    """A bead high above the support smears along x (arc direction) when the tube moves during the window."""
    from physics.materials import LABEL_OF
    from simulator.imaging.phantoms.analytic import AnalyticObject, AnalyticPhantom, Sphere
    from simulator.imaging.phantoms.base import Phantom

    det = DetectorGeometry(native_pitch_mm=0.05, binning=2, rows=80, cols=80, offset_y_mm=30.0)
    g = AcquisitionGeometry(detector=det)
    bead = AnalyticObject(Sphere((0.0, 30.0, 80.0), 0.5), LABEL_OF["steel"])
    ph = Phantom("bead", 61.0, g.support_height_mm, analytic=AnalyticPhantom([bead]))
    still = ExposureImager(ph, g, seed=1, noise=False, focal_spot=False)
    moving = ExposureImager(ph, g, seed=1, noise=False, focal_spot=False, motion_substeps=9)
    s0, _ = still.expected_signal(_exposure(0, 10.0, 0.0, 0.0))
    s1, _ = moving.expected_signal(_exposure(0, 10.0, -0.5, 0.5))
    assert len(moving.source_samples(_exposure(0, 10.0, -0.5, 0.5))) > 1

    def spreads(img: np.ndarray) -> tuple[float, float]:
        dip = np.clip(np.median(img) - img, 0.0, None)
        px, py = dip.sum(axis=0), dip.sum(axis=1)
        ix, iy = np.arange(px.size), np.arange(py.size)
        sx = np.sqrt((px * (ix - (px * ix).sum() / px.sum()) ** 2).sum() / px.sum())
        sy = np.sqrt((py * (iy - (py * iy).sum() / py.sum()) ** 2).sum() / py.sum())
        return float(sx), float(sy)

    sx0, sy0 = spreads(s0)
    sx1, sy1 = spreads(s1)
    # travel 620 mm x 1 deg = 10.8 mm; at 80 mm height it shifts the shadow by 10.8 * 80/580 = 1.5 mm = 15 px;
    # a uniform smear of 15 px has an rms of 15/sqrt(12) = 4.3 px
    assert sx1 == pytest.approx(np.hypot(sx0, 15.0 / np.sqrt(12)), rel=0.15)
    assert sy1 == pytest.approx(sy0, rel=0.05)


def test_read_out_is_the_compound_poisson_formula_with_the_same_draws() -> None:
    """The one-pass kernels give exactly the NumPy expression of the model (same generator draws)."""
    rng = np.random.default_rng(3)
    s1 = rng.random((40, 50)) * 3e5
    s1[:3] = 0.0  # no signal
    s1[3:5] = 5e9  # saturates
    s2 = s1 * rng.uniform(15.0, 25.0, s1.shape)
    model = DetectorModel(electronic_noise_adu=3.0)
    for binning in (1, 4):
        got = model.read_out(s1, s2, binning, np.random.default_rng(9))
        g = np.random.default_rng(9)
        n_eff = np.where(s1 > 0, s1**2 / np.maximum(s2, 1e-30), 0.0)
        e_eff = np.where(s1 > 0, s2 / np.maximum(s1, 1e-30), 0.0)
        counts = g.poisson(n_eff)
        adu = model.offset_adu + model.gain_adu_per_kev / binning**2 * counts * e_eff
        adu = adu + g.normal(0.0, model.electronic_noise_adu / binning, size=s1.shape)
        want = np.clip(np.rint(adu), 0, model.max_adu).astype(np.uint16)
        assert got.dtype == np.uint16 and np.array_equal(got, want)
        assert got[3:5].min() == model.max_adu
