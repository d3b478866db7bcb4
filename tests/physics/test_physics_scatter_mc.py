"""Scatter Monte Carlo (physics.scatter_mc) against published scatter-to-primary ratios and physical limits.

Published reference: J. M. Boone, K. K. Lindfors, V. N. Cooper and J. A. Seibert, "Scatter/primary in
mammography: comprehensive results", Med. Phys. 27 (2000) 2408-2416. Their abstract gives the fit of
their Monte Carlo SPR for semicircular breasts (Mo/Mo spectra, 15 mm air gap, no grid), accurate to
about 1 % from 2 to 8 cm thickness and 3 to 30 cm diameter:

    SPR = 1 / (a + b D^-1.5 + c T^-0.5),  D = diameter (cm), T = thickness (cm),
    a = -2.35452817439093, b = 22.3960980055927, c = 8.85064260299289

(coefficients copied from the abstract as stored at zhangqiaokeyan.com/journal-foreign-detail/070406567379.html).

Their conditions, matched here: the convolution method (a normally incident monoenergetic pencil through
a laterally unbounded slab, the kernel weighted by the spectrum and summed over the breast's area), a
homogeneous breast (50 % glandular; they found composition and kV of little effect), 15 mm air gap, no
paddle, support or grid, and an ideal energy-integrating image receptor (every photon absorbed; the
published kernels are scored so, as O. Diaz's thesis, University of Surrey, ch. 6.1, describes when it
reproduces them). The product's own kernels are scored in 0.2 mm of a-Se, which raises the SPR by
1.5-2.5 % (the a-Se absorbs the hardened primary less well than the softer, oblique scatter): the
comparison therefore runs the same transport with the ideal receptor, straight from the Monte Carlo
(no table), with enough histories that the standard error is below 1 %. The abstract does not say at
which point the SPR is taken; we compare at the semicircle's centre of mass (on the midline, 4R/(3 pi)
from the chest wall), Mo/Mo 28 kV.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import pytest

from physics import scatter_mc, spectra

BOONE_A, BOONE_B, BOONE_C = -2.35452817439093, 22.3960980055927, 8.85064260299289
#: Issue 15's tolerance of the SPR comparison.
SPR_TOLERANCE = 0.10
THICKNESSES_MM = (20.0, 40.0, 60.0, 80.0)
DIAMETERS_MM = (120.0, 160.0, 200.0)
#: Histories per thickness for the comparison: the thick slabs need more (few scattered photons get out).
BOONE_HISTORIES = {20.0: 1_000_000, 40.0: 3_000_000, 60.0: 6_000_000, 80.0: 12_000_000}


def boone_spr(thickness_cm: float, diameter_cm: float) -> float:
    """Boone et al. 2000's fitted SPR of a semicircular breast (Mo/Mo, 15 mm air gap)."""
    return 1.0 / (BOONE_A + BOONE_B * diameter_cm**-1.5 + BOONE_C * thickness_cm**-0.5)


@lru_cache(maxsize=None)
def boone_condition_kernels(thickness_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(mean, batches) polar kernels under Boone's conditions: Mo/Mo 28 kV, 50 %, 0 deg, 15 mm, ideal receptor."""
    sp = spectra.beam_spectrum("Mo/Mo", 28.0)
    return scatter_mc.spectrum_kernel_mc(sp.energies_kev, sp.fluence_per_mas, thickness_mm, 0.0, 0.5, 15.0,
                                         receptor="ideal", histories=BOONE_HISTORIES[thickness_mm], batches=6,
                                         seed=2000)


def semicircle_spr_from(polar: np.ndarray, diameter_mm: float, kernel_scale: float = 1.0) -> float:
    """SPR at the centre of mass of a semicircular breast for a polar kernel (the convolution method).

    Scatter at the point p is the sum over the pencils that cross the breast of the kernel at the
    displacement from each pencil's arrival point to p.
    """
    k = scatter_mc.render_kernel(polar, 1.0) * kernel_scale
    h = k.shape[0] // 2
    off = np.arange(-h, h + 1, dtype=float)
    dx, dy = np.meshgrid(off, off, indexing="xy")
    r = 0.5 * diameter_mm
    py = 4.0 * r / (3.0 * math.pi)
    sx, sy = -dx, py - dy  # where the pencil that scatters into p by (dx, dy) arrived
    in_breast = (sy >= 0.0) & (sx * sx + sy * sy <= r * r)
    return float(k[in_breast].sum())


def boone_comparison(kernel_scale: float = 1.0) -> dict[tuple[float, float], tuple[float, float, float]]:
    """(SPR, its Monte Carlo standard error, deviation from Boone's fit) at every (thickness, diameter)."""
    out = {}
    for t in THICKNESSES_MM:
        mean, batches = boone_condition_kernels(t)
        for d in DIAMETERS_MM:
            spr = semicircle_spr_from(mean, d, kernel_scale)
            each = [semicircle_spr_from(b, d, kernel_scale) for b in batches]
            se = float(np.std(each, ddof=1) / math.sqrt(len(each)))
            out[(t, d)] = (spr, se, spr / boone_spr(t / 10.0, d / 10.0) - 1.0)
    return out


@pytest.mark.slow
def test_spr_matches_boone_2000_within_10_percent_at_2_4_6_8_cm() -> None:
    res = boone_comparison()
    for (t, d), (spr, se, dev) in res.items():
        print(f"T {t:.0f} mm D {d:.0f} mm: SPR {spr:.4f} +- {se:.4f} (MC s.e.), Boone {boone_spr(t / 10, d / 10):.4f},"
              f" {dev:+.3f}")
    assert all(se / spr < 0.01 for spr, se, _ in res.values()), res  # the comparison is not noise-limited
    assert max(abs(dev) for _, _, dev in res.values()) <= SPR_TOLERANCE, res


@pytest.mark.slow
def test_the_boone_check_fails_on_a_kernel_scaled_by_15_percent() -> None:
    # the checker is able to fail: a kernel 15 % too strong or too weak is outside the tolerance
    for scale in (0.85, 1.15):
        res = boone_comparison(kernel_scale=scale)
        assert max(abs(dev) for _, _, dev in res.values()) > SPR_TOLERANCE, (scale, res)


def test_the_a_se_receptor_raises_the_spr_a_little_over_the_ideal_receptor() -> None:
    # the product's kernels (0.2 mm a-Se) against the ideal receptor of the published SPRs, same histories
    # (same random numbers: only the scoring differs): a-Se absorbs the hardened primary less well than the
    # softer, oblique scatter, so its SPR is higher, by a few per cent
    for e, t in ((19.0, 40.0), (22.0, 80.0)):
        a, _ = scatter_mc.pencil_kernel(e, t, 0.0, 0.5, histories=50_000, seed=9)
        i, _ = scatter_mc.pencil_kernel(e, t, 0.0, 0.5, histories=50_000, seed=9, receptor="ideal")
        ratio = a.sum(axis=(1, 2))[0] / i.sum(axis=(1, 2))[0]
        assert 1.0 < ratio < 1.06, (e, t, ratio)
    with pytest.raises(ValueError, match="receptor"):
        scatter_mc.pencil_kernel(19.0, 40.0, 0.0, 0.5, histories=10, receptor="film")


def test_spr_rises_modestly_with_projection_angle() -> None:
    # Sechopoulos et al., Med. Phys. 34 (2007) 564: in DBT the SPR grows with the projection angle as the
    # path through the breast lengthens (we found no copy of their numbers; the trend is what is checked).
    # Independent estimate: a normal pencil through a slab as thick as the oblique path, T / cos(theta).
    # The oblique pencil's scatter escapes a little more easily (its scattering points lie nearer the
    # exit face than the path length suggests), so it may exceed that estimate, modestly.
    sp = spectra.beam_spectrum("W/Rh", 29.0)
    t = 50.0
    spr = [scatter_mc.spr_kernel(sp.energies_kev, sp.fluence_per_mas, t, a, 0.5, 20.0).sum()
           for a in (0.0, 10.0, 20.0, 30.0)]
    assert all(b > a for a, b in zip(spr, spr[1:])), spr
    for a, s in zip((10.0, 20.0, 30.0), spr[1:]):
        path = scatter_mc.spr_kernel(sp.energies_kev, sp.fluence_per_mas, t / math.cos(math.radians(a)), 0.0,
                                     0.5, 20.0).sum()
        assert 0.98 * path <= s <= 1.15 * path, (a, s, path)
    assert spr[2] / spr[0] < 1.15  # modest at 20 deg (the path is 6 % longer)


def test_oblique_kernel_is_displaced_toward_the_entry_point_and_mirrors() -> None:
    # the scattering points lie along the oblique path, between the beam's entry (x = 0) and the
    # primary's arrival on the detector (x = (T + gap) tan theta): the kernel, centred on the arrival
    # point, has its centroid between -(T + gap) tan theta and 0
    sp = spectra.beam_spectrum("W/Rh", 29.0)
    polar = scatter_mc.spr_kernel(sp.energies_kev, sp.fluence_per_mas, 50.0, 20.0, 0.5, 20.0)
    k = scatter_mc.render_kernel(polar, 1.0)
    h = k.shape[1] // 2
    x = np.arange(-h, h + 1, dtype=float)
    cx = float((k.sum(axis=0) * x).sum() / k.sum())
    assert -(50.0 + 20.0) * math.tan(math.radians(20.0)) < cx < -2.0, cx
    cy = float((k.sum(axis=1) * x).sum() / k.sum())
    assert abs(cy) < 0.5  # symmetric across the arc's plane
    km = scatter_mc.render_kernel(polar, 1.0, beam_dir_x=-1.0)
    np.testing.assert_allclose(km, k[:, ::-1], rtol=1e-12, atol=1e-15)
    assert k.sum() == pytest.approx(polar.sum(), rel=1e-12)  # resampling keeps the scatter energy


def test_scatter_energy_is_physically_bounded() -> None:
    # per incident photon: detected scatter + detected primary <= the photon's energy, and the scatter
    # cannot exceed the energy the slab removed from the primary (1 - exp(-mu T)) times E
    from physics import materials

    for e, t in ((20.0, 20.0), (28.0, 40.0), (40.0, 80.0)):
        kern, lost = scatter_mc.pencil_kernel(e, t, 0.0, 0.5, histories=20_000, seed=3)
        p = scatter_mc.primary_deposit_kev(np.array([e]), t, 0.0, 0.5)[0]
        s = kern.sum(axis=(1, 2))[-1] * p
        mu = float(materials.breast_mixture_mass_attenuation(0.5, [e])[0]
                   * materials.breast_mixture_density_g_cm3(0.5) / 10.0)
        assert 0.0 < s < e * (1.0 - math.exp(-mu * t))
        assert s + p < e
        assert 0.0 <= lost < 0.05  # scatter beyond the 200 mm tally radius is a small share


def test_thin_slab_has_little_scatter_and_spr_grows_with_thickness() -> None:
    spr = [scatter_mc.pencil_kernel(28.0, t, 0.0, 0.5, histories=20_000, seed=5)[0].sum(axis=(1, 2))[-1]
           for t in (2.0, 20.0, 40.0, 80.0)]
    assert spr[0] < 0.05
    assert all(b > a for a, b in zip(spr, spr[1:])), spr


def test_monte_carlo_is_deterministic_for_a_seed() -> None:
    a, la = scatter_mc.pencil_kernel(28.0, 40.0, 10.0, 0.5, histories=5_000, seed=11)
    b, lb = scatter_mc.pencil_kernel(28.0, 40.0, 10.0, 0.5, histories=5_000, seed=11)
    c, _ = scatter_mc.pencil_kernel(28.0, 40.0, 10.0, 0.5, histories=5_000, seed=12)
    assert np.array_equal(a, b) and la == lb
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("e,t,angle,gl", [(25.0, 40.0, 0.0, 0.5), (31.0, 60.0, 20.0, 0.0), (37.0, 80.0, 30.0, 1.0)])
def test_shipped_table_reproduces_with_another_seed(e: float, t: float, angle: float, gl: float) -> None:
    tab = scatter_mc.load_table()
    i = (int(np.flatnonzero(tab.glandularity == gl)[0]), int(np.flatnonzero(tab.angle_deg == angle)[0]),
         int(np.flatnonzero(tab.thickness_mm == t)[0]), int(np.flatnonzero(tab.energy_kev == e)[0]))
    shipped = tab.spr[i].sum(axis=(1, 2))
    fresh, _ = scatter_mc.pencil_kernel(e, t, angle, gl, histories=scatter_mc.HISTORIES, seed=777)
    np.testing.assert_allclose(fresh.sum(axis=(1, 2)), shipped, rtol=0.03)
    # the radial profile too (inner 30 mm vs beyond), not only the sum
    np.testing.assert_allclose(fresh[:, :12].sum(axis=(1, 2)), tab.spr[i][:, :12].sum(axis=(1, 2)), rtol=0.05)


def test_lookup_rejects_bad_input() -> None:
    sp = spectra.beam_spectrum("W/Rh", 29.0)
    with pytest.raises(ValueError, match="thickness_mm"):
        scatter_mc.spr_kernel(sp.energies_kev, sp.fluence_per_mas, 0.0, 0.0, 0.5, 20.0)
    with pytest.raises(ValueError, match="angle_deg"):
        scatter_mc.pencil_kernel(28.0, 40.0, 70.0, 0.5, histories=10)
    with pytest.raises(ValueError, match="pitch_mm"):
        scatter_mc.render_kernel(np.ones((20, 9)), 0.0)
