"""Model observers against analytic detectability: known signal in white and in power-law Gaussian noise.

Independent reference: with a known signal ``s`` and noise covariance ``K`` (computed exactly from the
noise generator's filter, not from samples), NPW ``d'^2 = (s^T s)^2 / (s^T K s)`` and CHO
``d'^2 = (T s)^T (T K T^T)^-1 (T s)``. The observers only see noisy samples.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from reconstruction.analysis import observers as ob

ROI = 24          # ROI side, pixels
FIELD = 64        # noise generated on a larger periodic field, cropped: stationary, exact covariance
N = 3000          # ROIs per class
TARGET_D = 2.5


def _filter(beta: float) -> np.ndarray:
    """Amplitude filter |H(f)| of the noise: 1 (white) or |f|^(-beta/2) with the f=0 term set to that of f_min."""
    if beta == 0:
        return np.ones((FIELD, FIELD))
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(FIELD), np.fft.fftfreq(FIELD), indexing="ij"))
    f[0, 0] = 1.0 / FIELD
    return f ** (-beta / 2.0)


def _covariance(h: np.ndarray) -> np.ndarray:
    """Exact covariance of the cropped ROI pixels: circulant autocorrelation r = IFFT(|H|^2)."""
    r = np.real(np.fft.ifft2(h**2))
    idx = np.arange(ROI)
    dy = (idx[:, None, None, None] - idx[None, None, :, None]) % FIELD
    dx = (idx[None, :, None, None] - idx[None, None, None, :]) % FIELD
    return r[dy, dx].reshape(ROI * ROI, ROI * ROI)


def _noise(h: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    w = rng.standard_normal((n, FIELD, FIELD))
    g = np.real(np.fft.ifft2(np.fft.fft2(w) * h))
    return g[:, :ROI, :ROI]


def _signal() -> np.ndarray:
    y, x = np.mgrid[0:ROI, 0:ROI]
    c = (ROI - 1) / 2
    return np.exp(-((x - c) ** 2 + (y - c) ** 2) / (2 * 2.0**2))


@pytest.fixture(scope="module", params=[0.0, 3.0], ids=["white", "power-law-beta3"])
def case(request):
    beta = request.param
    h = _filter(beta)
    k = _covariance(h)
    s = _signal()
    rng = np.random.default_rng(17 + int(beta))
    absent = _noise(h, N, rng)
    noise2 = _noise(h, N, rng)  # the present class: noise2 + (signal scaled per test)
    return beta, k, s, noise2, absent


def test_covariance_matches_samples(case):
    """The analytic covariance is that of the generator (guards the reference itself)."""
    _, k, _, _, absent = case
    emp = np.cov(absent.reshape(N, -1)[:, :40], rowvar=False)
    assert np.allclose(emp, k[:40, :40], atol=0.08 * k[0, 0])


def test_npw_matches_analytic(case):
    _, k, s, noise2, absent = case
    s = s * TARGET_D / ob.npw_dprime_analytic(s, k)  # d' is linear in the amplitude
    r = ob.evaluate(noise2 + s, absent, "npw", signal=s, n_boot=200, seed=3)
    expected = ob.npw_dprime_analytic(s, k)
    assert r.dprime == pytest.approx(expected, rel=0.05)
    assert r.dprime_ci[0] < expected < r.dprime_ci[1]


@pytest.mark.parametrize("kind", ["cho-lg", "cho-gabor"])
def test_cho_matches_analytic(case, kind):
    _, k, s, noise2, absent = case
    chans = (ob.laguerre_gauss_channels((ROI, ROI), 6.0, 8) if kind == "cho-lg"
             else ob.gabor_channels((ROI, ROI), 1.0, (1 / 32, 1 / 16, 1 / 8, 1 / 4), orientations=4))
    s = s * TARGET_D / ob.cho_dprime_analytic(s, k, chans)
    r = ob.evaluate(noise2 + s, absent, kind, channels=chans, n_boot=200, seed=3)
    expected = ob.cho_dprime_analytic(s, k, chans)
    assert r.dprime == pytest.approx(expected, rel=0.05)
    # AUC of Gaussian ratings with equal variance: Phi(d'/sqrt2)
    assert r.auc == pytest.approx(ob.auc_from_dprime(expected), abs=0.01)
    assert r.auc_ci[0] < ob.auc_from_dprime(expected) < r.auc_ci[1]


def test_correlated_noise_separates_the_observers(case):
    """In power-law noise the prewhitening CHO beats NPW by a wide margin; in white noise they agree."""
    beta, k, s, _, _ = case
    chans = ob.laguerre_gauss_channels((ROI, ROI), 6.0, 8)
    ratio = ob.cho_dprime_analytic(s, k, chans) / ob.npw_dprime_analytic(s, k)
    assert (ratio > 1.5) if beta else (0.9 < ratio <= 1.0 + 1e-9)


@pytest.mark.parametrize("kind", ["npw", "cho-lg"])
def test_no_signal_gives_chance(case, kind):
    _, _, _, _, absent = case
    half = N // 2
    chans = ob.laguerre_gauss_channels((ROI, ROI), 6.0, 8) if kind != "npw" else None
    r = ob.evaluate(absent[:half], absent[half:], kind, channels=chans, n_boot=300, seed=5)
    assert r.auc_ci[0] < 0.5 < r.auc_ci[1]
    assert abs(r.dprime) < 0.15  # 1500 per class: sd of d' about 0.037


def test_auc_mann_whitney_exact_small_case():
    # pairs: 3>1, 3>2, 2>1 count 1; ties 2=2 and 1=1 count half; 1<2 counts 0 -> 4/6
    assert ob.auc_mann_whitney(np.array([3.0, 2.0, 1.0]), np.array([1.0, 2.0])) == pytest.approx(4.0 / 6)
    assert ob.auc_from_dprime(0.0) == 0.5
    assert ob.auc_from_dprime(math.sqrt(2) * 1.0) == pytest.approx(0.8413447, abs=1e-6)


def test_bootstrap_is_seeded():
    rng = np.random.default_rng(0)
    t1, t0 = rng.normal(1, 1, 50), rng.normal(0, 1, 50)
    assert ob.bootstrap_ci(t1, t0, 100, seed=4) == ob.bootstrap_ci(t1, t0, 100, seed=4)
    assert ob.bootstrap_ci(t1, t0, 100, seed=4) != ob.bootstrap_ci(t1, t0, 100, seed=5)


def test_bad_input_named():
    with pytest.raises(ValueError, match="width"):
        ob.laguerre_gauss_channels((8, 8), 0.0)
    with pytest.raises(ValueError, match="unknown observer 'foo'"):
        ob.evaluate(np.zeros((4, 8, 8)), np.zeros((4, 8, 8)), "foo")
