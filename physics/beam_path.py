"""What the beam crosses between the focal spot and the detector, besides the breast.

Above the breast: the tube (anode take-off angle, beryllium window), the anode/filter
(:data:`physics.spectra.FILTERS`), the air path and the **compression paddle**. Below the breast:
the **breast support** and the **detector cover**. The paddle is part of the beam that reaches the
breast, so it enters both the incident air kerma K at the breast's upper surface and the HVL: the
HVL of Dance's tables is the one measured *with the compression paddle in place* (Dance 1990;
Dance et al. 2000, Phys. Med. Biol. 45:3225; the European protocol measures it the same way), and
the g and c factors are looked up with it. The support and cover only attenuate what leaves the
breast on its way to the detector (imaging, not dose).

Calibration against published clinical HVLs (all with the paddle in place): the EUREF typical HVL
table (European guidelines for quality assurance in breast cancer screening and diagnosis, 4th ed.,
2006, physico-technical protocol, beam quality; the table is reproduced in the Konica Minolta CS-3
mammography QC manual, section 3.4.5, https://www.easymanua.ls/konica-minolta/cs-3/manual/791744?p=75):

========  ============  ============  ============  ============
kV        Mo/Mo         Mo/Rh         Rh/Rh         W/Rh
========  ============  ============  ============  ============
25        0.33 +- 0.02  0.40 +- 0.02  0.38 +- 0.02  0.52 +- 0.03
28        0.36 +- 0.02  0.42 +- 0.02  0.43 +- 0.02  0.54 +- 0.03
31        0.39 +- 0.02  0.44 +- 0.02  0.48 +- 0.02  0.56 +- 0.03
========  ============  ============  ============  ============

SpekPy's own defaults are a 12 deg anode take-off angle and no window; the project used 16 deg and
1 mm Be. Bare beams (no paddle) fall 0.05-0.09 mm Al below the table. With a 3 mm PMMA paddle (the
upper end of the 2-3 mm of commercial paddles) the Mo/Mo points agree at any take-off angle, but the
W/Rh and Mo/Rh 25 kV points stay 0.022-0.035 mm Al low at 12-16 deg. The take-off angle is the one
free parameter of the tube we have no vendor figure for; **6 deg** (a steep effective angle, as on
tubes whose target is tilted towards the chest wall) brings all 12 points within 0.017 mm Al. This
is a two-parameter calibration (paddle 3.0 mm, take-off 6 deg) of 12 points, stated as such; the
per-point figures are in physics/README.md and tests/physics/test_physics_beam_path.py.

Support and cover: carbon-fibre composite, 1.0 mm and 0.5 mm (typical of breast supports and
detector covers; no vendor figure): about 2 % of a 20 keV beam.

Units: mm, keV, degrees.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from physics import materials
from physics.spectra import Spectrum, beam_spectrum, half_value_layer_mm_al


@dataclass(frozen=True)
class BeamPath:
    """Tube, paddle, support and cover of a gantry (materials by name of :mod:`physics.materials`)."""

    anode_angle_deg: float = 6.0
    be_window_mm: float = 1.0
    paddle_material: str = "pmma"
    paddle_mm: float = 3.0
    support_material: str = "carbon_fibre"
    support_mm: float = 1.0
    cover_material: str = "carbon_fibre"
    cover_mm: float = 0.5

    def __post_init__(self) -> None:
        for field_name in ("paddle", "support", "cover"):
            name = getattr(self, f"{field_name}_material")
            if name not in materials.BY_NAME:
                raise ValueError(f"{field_name}_material={name!r} is not a known material "
                                 f"({sorted(materials.BY_NAME)})")
            t = getattr(self, f"{field_name}_mm")
            if not 0.0 <= t <= 20.0:
                raise ValueError(f"{field_name}_mm={t} outside 0-20 mm")
        if not 0.0 <= self.be_window_mm <= 5.0:
            raise ValueError(f"be_window_mm={self.be_window_mm} outside 0-5 mm")
        if not 1.0 <= self.anode_angle_deg <= 30.0:
            raise ValueError(f"anode_angle_deg={self.anode_angle_deg} outside 1-30 deg")

    def tube_spectrum(self, anode_filter: str, kvp: float, *, bin_kev: float = 1.0) -> Spectrum:
        """Spectrum leaving the tube's filter, through the air to 650 mm (no paddle), photons/mm^2/mAs."""
        return beam_spectrum(anode_filter, kvp, bin_kev=bin_kev, anode_angle_deg=self.anode_angle_deg,
                             be_window_mm=self.be_window_mm)

    def incident_spectrum(self, anode_filter: str, kvp: float, *, bin_kev: float = 1.0) -> Spectrum:
        """Spectrum incident on the breast: the tube's, through the compression paddle."""
        s = self.tube_spectrum(anode_filter, kvp, bin_kev=bin_kev)
        return s.filtered(self.paddle_material, self.paddle_mm) if self.paddle_mm > 0 else s

    def exit_transmission(self, energies_kev: np.ndarray) -> np.ndarray:
        """Fraction transmitted by the breast support and the detector cover (normal incidence)."""
        mu = (materials.linear_attenuation(self.support_material, energies_kev) * self.support_mm
              + materials.linear_attenuation(self.cover_material, energies_kev) * self.cover_mm)
        return np.exp(-mu)

    def hvl_mm_al(self, anode_filter: str, kvp: float) -> float:
        """First HVL (mm Al) of the beam incident on the breast, paddle in place (Dance's convention)."""
        return _hvl(self, anode_filter, round(float(kvp), 1))


@lru_cache(maxsize=512)
def _hvl(path: BeamPath, anode_filter: str, kvp: float) -> float:
    return half_value_layer_mm_al(path.incident_spectrum(anode_filter, kvp))


#: The beam path used when a gantry does not state its own (the simulated gantry's default).
DEFAULT_BEAM_PATH = BeamPath()
