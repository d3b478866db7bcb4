"""Dance-method MGD against the published g table (held-out entries) and physical behaviour of c and t."""

import numpy as np
import pytest

from physics import dose
from physics.spectra import beam_spectrum

# Entries of Dance et al. 2000 Table 1 that are NOT used as interpolation nodes below:
# (thickness mm, HVL mm Al, published g). We rebuild g from the neighbouring rows/columns only.
HELD_OUT = [(45.0, 0.40, 0.232), (45.0, 0.55, 0.311), (30.0, 0.35, 0.309), (60.0, 0.45, 0.192),
            (80.0, 0.35, 0.112), (50.0, 0.45, 0.232), (70.0, 0.55, 0.202)]


@pytest.mark.parametrize("t_mm, hvl, published", HELD_OUT)
def test_g_interpolation_reproduces_held_out_table_entries(t_mm: float, hvl: float, published: float,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    i = int(np.argmin(np.abs(dose.G_HVL_MM - hvl)))
    j = int(np.argmin(np.abs(dose.G_THICKNESS_CM - t_mm / 10.0)))
    if 0 < j < dose.G_THICKNESS_CM.size - 1:  # drop the thickness column
        keep = np.ones(dose.G_THICKNESS_CM.size, bool); keep[j] = False
        monkeypatch.setattr(dose, "G_THICKNESS_CM", dose.G_THICKNESS_CM[keep])
        monkeypatch.setattr(dose, "G_TABLE", dose.G_TABLE[:, keep])
    else:  # drop the HVL row
        keep = np.ones(dose.G_HVL_MM.size, bool); keep[i] = False
        monkeypatch.setattr(dose, "G_HVL_MM", dose.G_HVL_MM[keep])
        monkeypatch.setattr(dose, "G_TABLE", dose.G_TABLE[keep])
    assert dose.g_factor(t_mm, hvl) == pytest.approx(published, rel=0.05)


@pytest.mark.parametrize("t_mm, hvl, g_pub, af, s_pub", [(20.0, 0.30, 0.390, "Mo/Mo", 1.000), (50.0, 0.40, 0.209, "W/Rh", 1.042),
                                                          (60.0, 0.50, 0.214, "Rh/Rh", 1.061), (40.0, 0.60, 0.374, "Mo/Rh", 1.017)])
def test_mgd_standard_breast_equals_k_g_s(t_mm: float, hvl: float, g_pub: float, af: str, s_pub: float) -> None:
    # 50 % glandular ("standard") breast: c = 1, 0 deg: t = 1; MGD = K g s with the published g and s
    assert dose.mean_glandular_dose_mgy(2.0, t_mm, hvl, af) == pytest.approx(2.0 * g_pub * s_pub, rel=1e-9)


def test_half_value_between_rows_interpolates_monotonically() -> None:
    g = [dose.g_factor(50.0, h) for h in np.linspace(0.30, 0.60, 13)]
    assert np.all(np.diff(g) > 0)
    assert [dose.g_factor(t, 0.45) for t in (30.0, 50.0, 70.0)] == sorted([dose.g_factor(t, 0.45) for t in (30.0, 50.0, 70.0)], reverse=True)
    with pytest.raises(ValueError):
        dose.g_factor(150.0, 0.4)


def test_primary_model_is_below_g_by_the_scatter_share() -> None:
    # the primary-only model leaves out scattered-photon dose, so it sits below g, but not far below
    s = beam_spectrum("W/Rh", 29.0)
    gp = dose.primary_glandular_dose_per_kerma(s, 50.0, 0.5)
    assert 0.6 * dose.g_factor(50.0, 0.5) < gp < 1.05 * dose.g_factor(50.0, 0.5)


def test_primary_model_matches_closed_form_for_a_monoenergetic_beam() -> None:
    """One energy bin: D/K = (mu_en,g/mu_en,air) e^{-mu_s 5 sec} (1 - e^{-mu_m h sec}) / (mu_m h sec), by hand."""
    from physics import materials
    from physics.spectra import Spectrum

    base = beam_spectrum("W/Rh", 29.0)
    e = np.array([20.0])
    mono = Spectrum(e, np.array([1.0e6]), base.distance_mm, base.spec)
    w, t_mm, angle = 0.3, 60.0, 20.0
    rho = 1.0 / (w / materials.GLANDULAR.density_g_cm3 + (1 - w) / materials.ADIPOSE.density_g_cm3)
    mu_m = float((w * materials.mass_attenuation("glandular", e) + (1 - w) * materials.mass_attenuation("adipose", e))[0]) * rho / 10.0
    mu_s = float(materials.linear_attenuation("adipose", e)[0])
    ratio = float((materials.mass_energy_absorption("glandular", e) / materials.mass_energy_absorption("air", e))[0])
    sec = 1.0 / np.cos(np.radians(angle))
    h = t_mm - 2 * dose.ADIPOSE_SHELL_MM
    expected = ratio * np.exp(-mu_s * dose.ADIPOSE_SHELL_MM * sec) * (1 - np.exp(-mu_m * h * sec)) / (mu_m * h * sec)
    got = dose.primary_glandular_dose_per_kerma(mono, t_mm, w, angle, n_depth=2000)
    assert got == pytest.approx(expected, rel=1e-4)
