"""Beam quality against published HVLs of standard mammography radiation qualities.

Check points: IEC 61267:2005 (Medical diagnostic X-ray equipment - Radiation
conditions for use in the determination of characteristics), Table of
mammography qualities: RQR-M1..M4 (Mo anode, 0.032 mm Mo, 25/28/30/35 kV,
first HVL 0.28/0.31/0.33/0.36 mm Al) and RQA-M1..M4 (the same plus 2 mm Al,
HVL 0.56/0.60/0.62/0.68 mm Al). Tolerance 0.02 mm Al (issue 5). Our beam:
SpekPy Mo target, 16 deg anode, 1 mm Be, the stated filter, 650 mm air; HVL
by our own bisection on air kerma.

The IEC values above are the standard's nominal HVLs as we know them; no
copy of the standard's table was at hand to check them against, so a second,
independently published set is checked too: the W/Al mammography qualities
(W anode + 0.5 mm Al, 25/28/30/35 kV) measured at the Vinca Institute SSDL
by ionisation chamber at 1 m, HVL 0.326/0.367/0.395/0.456 mm Al (conference
abstract, record at katalog.lib.cas.cz, edsair doi dedup 52bf266c...; the
values agree with the IAEA SSDL's within 5 %). The abstract does not give
the tube's window or anode angle; we assume a general-purpose tube with
1 mm Be and a 12 deg anode. Tolerance 0.02 mm Al again. A third set compares
our W/Rh beams with an independent spectrum model (Boone et al. 1997, values
quoted in FDA's VICTRE examples): HVL within 0.02 mm Al, mean energy within 2 %.
"""

import numpy as np
import pytest

from physics import spectra

RQR_M = [(25.0, 0.28), (28.0, 0.31), (30.0, 0.33), (35.0, 0.36)]
RQA_M = [(25.0, 0.56), (28.0, 0.60), (30.0, 0.62), (35.0, 0.68)]


W_AL_SSDL = [(25.0, 0.326), (28.0, 0.367), (30.0, 0.395), (35.0, 0.456)]

# W/Rh (50 um Rh, 1 mm Be) beams from an independent spectrum model: the headers of the example
# spectra shipped with FDA's VICTRE MC-GPU (DIDSR/VICTRE_MCGPU, example_simulations/spectrum/*.spc),
# generated with Siemens' spectrum tool on the Boone, Fewell & Jennings 1997 model (Med. Phys. 24,
# 1863). (kV, added Al mm, first HVL mm Al, mean energy keV.)
W_RH_BOONE = [(30.0, 0.0, 0.503, 19.3), (28.0, 2.0, 0.754, 20.955)]


@pytest.mark.parametrize("kvp, added_al_mm, hvl, mean_kev", W_RH_BOONE)
def test_w_rh_beams_agree_with_an_independent_spectrum_model(kvp: float, added_al_mm: float, hvl: float,
                                                              mean_kev: float) -> None:
    s = spectra.spectrum_from_spec(spectra.BeamSpec("W", "Rh", 0.050, kvp, extra_al_mm=added_al_mm), bin_kev=0.5)
    assert spectra.half_value_layer_mm_al(s) == pytest.approx(hvl, abs=0.02)
    assert spectra.mean_energy_kev(s) == pytest.approx(mean_kev, rel=0.02)


@pytest.mark.parametrize("kvp, hvl", W_AL_SSDL)
def test_w_al_ssdl_qualities_hvl(kvp: float, hvl: float) -> None:
    spec = spectra.BeamSpec("W", "Al", 0.5, kvp, anode_angle_deg=12.0, distance_mm=1000.0)
    s = spectra.spectrum_from_spec(spec, bin_kev=0.5)
    assert spectra.half_value_layer_mm_al(s) == pytest.approx(hvl, abs=0.02)


@pytest.mark.parametrize("kvp, hvl", RQR_M)
def test_rqr_m_hvl(kvp: float, hvl: float) -> None:
    s = spectra.spectrum_from_spec(spectra.BeamSpec("Mo", "Mo", 0.032, kvp), bin_kev=0.5)
    assert spectra.half_value_layer_mm_al(s) == pytest.approx(hvl, abs=0.02)


@pytest.mark.parametrize("kvp, hvl", RQA_M)
def test_rqa_m_hvl(kvp: float, hvl: float) -> None:
    s = spectra.spectrum_from_spec(spectra.BeamSpec("Mo", "Mo", 0.032, kvp, extra_al_mm=2.0), bin_kev=0.5)
    assert spectra.half_value_layer_mm_al(s) == pytest.approx(hvl, abs=0.02)


def test_hvl_halves_the_kerma() -> None:
    s = spectra.beam_spectrum("W/Rh", 29.0)
    h = spectra.half_value_layer_mm_al(s)
    assert spectra.air_kerma_mgy_per_mas(s.filtered("aluminium", h)) == pytest.approx(0.5 * spectra.air_kerma_mgy_per_mas(s), rel=1e-4)


def test_kerma_agrees_with_spekpy_own_kerma() -> None:
    import spekpy

    sp = spekpy.Spek(kvp=28, th=16, targ="Mo", dk=0.25, z=65.0)
    sp.filter("Be", 1.0); sp.filter("Mo", 0.030); sp.filter("Air", 650.0)
    ours = spectra.air_kerma_mgy_per_mas(spectra.beam_spectrum("Mo/Mo", 28.0))
    assert ours == pytest.approx(sp.get_kerma() / 1000.0, rel=0.05)  # spekpy: uGy/mAs


@pytest.mark.parametrize("af", ["W/Rh", "W/Ag", "W/Al", "Mo/Mo", "Mo/Rh", "Rh/Rh"])
def test_all_anode_filters_harden_with_kv(af: str) -> None:
    lo, hi = spectra.beam_spectrum(af, 26.0), spectra.beam_spectrum(af, 34.0)
    assert spectra.half_value_layer_mm_al(hi) > spectra.half_value_layer_mm_al(lo)
    assert spectra.mean_energy_kev(hi) > spectra.mean_energy_kev(lo)
    assert spectra.air_kerma_mgy_per_mas(hi) > spectra.air_kerma_mgy_per_mas(lo)
    assert lo.energies_kev.max() <= 26.0


def test_inverse_square_and_rejects_bad_input() -> None:
    s = spectra.beam_spectrum("W/Rh", 28.0)
    assert spectra.air_kerma_mgy_per_mas(s, 325.0) == pytest.approx(4 * spectra.air_kerma_mgy_per_mas(s))
    with pytest.raises(ValueError):
        spectra.beam_spectrum("Cu/Cu", 28.0)
    with pytest.raises(ValueError):
        spectra.beam_spectrum("W/Rh", 80.0)
    assert np.isclose(s.fluence_per_mas.sum(), s.at_distance(1300.0).fluence_per_mas.sum() * 4)


@pytest.mark.slow
@pytest.mark.parametrize("af", ["W/Rh", "Mo/Mo", "Rh/Rh"])
def test_signal_through_breast_rises_smoothly_with_kv(af: str) -> None:
    """Energy fluence behind 40 mm of 30 % glandular breast, 26-28 kV in 0.1 kV steps (the DBT and 2D kVs of
    a mid-size breast): it rises at every step, and the relative rise changes by under 0.4 percentage points
    from one step to the next. Analytically it is a smooth function of the kVp; spekpy's model tabulates the
    characteristic lines by whole kV, which leaves kinks of 0.2-0.3 points there (Rh/Rh 28.0 kV). With
    spekpy's grid at 0.25 keV (``spectra.SPEKPY_DK_KEV`` before), the sample beside a filter's K edge moved
    with the kVp: the rise jumped by 3-7 points and the signal fell at some steps (W/Rh 28.5 -> 28.6 kV:
    -2.4 %), which an AEC scaling mAs from a scout at one kV to projections at another reads as signal."""
    from physics import materials

    def behind_breast(kv: float) -> float:
        s = spectra.beam_spectrum(af, kv)
        e = s.energies_kev
        mu = 0.3 * np.asarray(materials.linear_attenuation("glandular", e)) + 0.7 * np.asarray(
            materials.linear_attenuation("adipose", e))
        return float(np.sum(s.fluence_per_mas * e * np.exp(-mu * 40.0)))

    kvs = np.round(np.arange(26.0, 28.05, 0.1), 1)
    signal = np.array([behind_breast(float(kv)) for kv in kvs])
    step = np.diff(signal) / signal[:-1]
    assert step.min() > 0.0, f"{af}: falls at {kvs[int(step.argmin())]} kV ({100 * step.min():.2f} %)"
    wobble = np.abs(np.diff(step))
    assert wobble.max() < 0.004, f"{af}: rise per 0.1 kV jumps by {100 * wobble.max():.2f} points at {kvs[int(wobble.argmax()) + 1]} kV"


def test_spectra_are_cached_on_disk_and_a_damaged_entry_is_computed_again(tmp_path, monkeypatch) -> None:
    """A spectrum computed once is read back from CRESCENT_CACHE_DIR equal to the bit without spekpy; a damaged
    file is computed again and rewritten; CRESCENT_CACHE_DIR=off writes nothing."""
    monkeypatch.setenv("CRESCENT_CACHE_DIR", str(tmp_path))
    spectra._spekpy_spectrum.cache_clear()
    first = spectra.beam_spectrum("W/Rh", 27.3)
    files = list((tmp_path / "spectra").glob("*.npz"))
    assert len(files) == 1

    def no_spekpy(*_a, **_k):
        raise AssertionError("spekpy called although the spectrum is cached")

    spectra._spekpy_spectrum.cache_clear()
    with monkeypatch.context() as m:
        m.setattr(spectra, "_spekpy_compute", no_spekpy)
        again = spectra.beam_spectrum("W/Rh", 27.3)
    assert np.array_equal(first.energies_kev, again.energies_kev)
    assert np.array_equal(first.fluence_per_mas, again.fluence_per_mas)

    good = files[0].read_bytes()
    for damage in (b"not a numpy file", b"", good[: len(good) // 2]):  # garbage, empty, a cut zip
        files[0].write_bytes(damage)
        spectra._spekpy_spectrum.cache_clear()
        rebuilt = spectra.beam_spectrum("W/Rh", 27.3)
        assert np.array_equal(first.fluence_per_mas, rebuilt.fluence_per_mas)
        assert spectra._read_cached(files[0]) is not None  # rewritten whole

    monkeypatch.setenv("CRESCENT_CACHE_DIR", "off")
    spectra._spekpy_spectrum.cache_clear()
    spectra.beam_spectrum("W/Rh", 27.4)
    assert len(list((tmp_path / "spectra").glob("*.npz"))) == 1
    spectra._spekpy_spectrum.cache_clear()
