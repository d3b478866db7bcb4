"""The AEC's factory calibration (firmware_host/data/aec_calibration.json) against the physics it was made
from, and against an independent attenuation estimate."""

from __future__ import annotations

import json
import math

import pytest

from crescent.qc.aec_calibration import signal_per_mas
from firmware_host.aec import CALIBRATION_PATH

pytestmark = pytest.mark.slow


def _entry(pair: str, kvp: float, t: float) -> float:
    data = json.loads(CALIBRATION_PATH.read_text())
    return math.exp(data["ln_signal_per_mas"][pair][data["thickness_mm"].index(t)][data["kvp"].index(kvp)])


@pytest.mark.parametrize("pair,kvp,t", [("W/Rh", 28.0, 40.0), ("W/Ag", 35.0, 70.0), ("W/Al", 30.0, 20.0)])
def test_shipped_table_matches_a_fresh_measurement(pair: str, kvp: float, t: float) -> None:
    assert signal_per_mas(pair, kvp, t) == pytest.approx(_entry(pair, kvp, t), rel=2e-3)


def test_signal_falls_through_pmma_as_its_attenuation_predicts() -> None:
    """ln S(30 mm) - ln S(40 mm) against 10 mm x mu of PMMA (xraydb via physics.materials) averaged over the
    spectrum reaching the detector through 35 mm: within 3 % (beam hardening inside the 10 mm)."""
    import numpy as np

    from physics import materials
    from physics.beam_path import DEFAULT_BEAM_PATH
    from simulator.imaging.detector import DetectorModel

    spec = DEFAULT_BEAM_PATH.incident_spectrum("W/Rh", 28.0).filtered("pmma", 35.0)
    e = spec.energies_kev
    w, _ = DetectorModel().energy_weights(e, spec.fluence_per_mas, 1.0)  # energy the a-Se layer absorbs
    mu = float(np.sum(w * materials.linear_attenuation("pmma", e)) / np.sum(w))
    measured = math.log(_entry("W/Rh", 28.0, 30.0) / _entry("W/Rh", 28.0, 40.0))
    assert measured == pytest.approx(10.0 * mu, rel=0.03)  # measured 0.632 against 0.634 (2026-12-01)
