"""Materials in the X-ray beam (tissues, phantoms, filters, paddle) and their linear attenuation coefficients.

Every coefficient comes from the NIST-based Elam/Ravel/Sieber tables shipped
with ``xraydb`` (W. T. Elam, B. D. Ravel and J. R. Sieber, Radiat. Phys. Chem.
63 (2002) 121-128), summed over the elements by mass fraction (the mixture
rule). Nothing is hand-typed except compositions and densities, which are
cited below.

Units: energies in keV, linear attenuation ``mu`` in 1/mm, densities in
g/cm^3, mass fractions dimensionless (they sum to 1).

Label numbers (:data:`LABELS`) are the values stored in voxel phantoms; label
0 is air (treated as vacuum by the projector: 65 cm of air attenuates a
mammography beam by a few per cent and is already part of the spectrum's
filtration, see :mod:`physics.spectra`).

Example
-------
>>> mu = linear_attenuation("glandular", [20.0, 30.0])   # 1/mm
>>> bool(mu[0] > mu[1] > 0)
True
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import xraydb

ELECTRON_REST_KEV = 510.99895


@dataclass(frozen=True)
class Material:
    """A material: name, density (g/cm^3), element -> mass fraction, citation."""

    name: str
    density_g_cm3: float
    mass_fractions: tuple[tuple[str, float], ...]
    source: str

    def normalised(self) -> dict[str, float]:
        """Mass fractions renormalised to sum exactly to 1."""
        total = sum(f for _, f in self.mass_fractions)
        return {el: f / total for el, f in self.mass_fractions}


def _formula_fractions(formula: dict[str, float]) -> tuple[tuple[str, float], ...]:
    """Mass fractions of a stoichiometric formula {element: atoms}, from xraydb atomic masses."""
    masses = {el: n * xraydb.atomic_mass(el) for el, n in formula.items()}
    total = sum(masses.values())
    return tuple((el, m / total) for el, m in masses.items())


# --- compositions -----------------------------------------------------------
# Breast tissues: G. R. Hammerstein, D. W. Miller, D. R. White, M. E. Masterson,
# H. Q. Woodard and J. S. Laughlin, "Absorbed radiation dose in mammography",
# Radiology 130 (1979) 485-491, Table I (percent by mass). The "ash" remainder
# (0.1 % adipose, 0.5 % glandular) is assigned to phosphorus, as is usual in
# Monte Carlo breast models (e.g. Boone 1999, Radiology 213:23).
ADIPOSE = Material(
    "adipose", 0.93,
    (("H", 0.112), ("C", 0.619), ("N", 0.017), ("O", 0.251), ("P", 0.001)),
    "Hammerstein et al. 1979, Radiology 130:485 (adipose, 0.93 g/cm3)",
)
GLANDULAR = Material(
    "glandular", 1.04,
    (("H", 0.102), ("C", 0.184), ("N", 0.032), ("O", 0.677), ("P", 0.005)),
    "Hammerstein et al. 1979, Radiology 130:485 (glandular, 1.04 g/cm3)",
)
# Skin: ICRU Report 46 (1992) adult skin, 1.09 g/cm3.
SKIN = Material(
    "skin", 1.09,
    (("H", 0.100), ("C", 0.204), ("N", 0.042), ("O", 0.645), ("Na", 0.002), ("P", 0.001),
     ("S", 0.002), ("Cl", 0.003), ("K", 0.001)),
    "ICRU Report 46 (1992), adult skin",
)
# Mass (invasive ductal carcinoma) attenuates like glandular tissue to within a
# few per cent (P. C. Johns and M. J. Yaffe, Phys. Med. Biol. 32 (1987) 675);
# we use the glandular composition with a slightly higher density, 1.06 g/cm3.
MASS = Material("mass", 1.06, GLANDULAR.mass_fractions,
                "glandular composition (Hammerstein 1979) at 1.06 g/cm3; cf. Johns & Yaffe 1987")
# Calcifications: hydroxyapatite Ca10(PO4)6(OH)2, 3.06 g/cm3 (type II calcs;
# the density used in VICTRE/Badano et al. 2018 and Warren et al. 2013) and
# calcium oxalate monohydrate CaC2O4.H2O (whewellite, type I), 2.23 g/cm3.
HYDROXYAPATITE = Material("hydroxyapatite", 3.06,
                          _formula_fractions({"Ca": 10, "P": 6, "O": 26, "H": 2}),
                          "Ca10(PO4)6(OH)2 stoichiometry, 3.06 g/cm3")
CALCIUM_OXALATE = Material("calcium_oxalate", 2.23,
                           _formula_fractions({"Ca": 1, "C": 2, "O": 5, "H": 2}),
                           "CaC2O4.H2O stoichiometry (whewellite), 2.23 g/cm3")
PMMA = Material("pmma", 1.19, _formula_fractions({"C": 5, "H": 8, "O": 2}),
                "C5H8O2 stoichiometry, 1.19 g/cm3 (NIST ESTAR PMMA density)")
ALUMINIUM = Material("aluminium", 2.699, (("Al", 1.0),), "NIST, 2.699 g/cm3")
# Dry air near sea level: NIST composition (mass fractions), 1.205e-3 g/cm3.
AIR = Material("air", 1.205e-3,
               (("C", 0.000124), ("N", 0.755268), ("O", 0.231781), ("Ar", 0.012827)),
               "NIST dry air (near sea level), 1.205e-3 g/cm3")
TUNGSTEN = Material("tungsten", 19.3, (("W", 1.0),), "NIST, 19.3 g/cm3")
STEEL = Material("steel", 7.87, (("Fe", 0.98), ("C", 0.02)), "carbon steel approximated as Fe-2%C, 7.87 g/cm3")
# Amorphous selenium photoconductor, 4.28 g/cm3 (Rowlands & Yorkston, Handbook of
# Medical Imaging vol. 1, SPIE 2000, ch. 4).
SELENIUM = Material("a-Se", 4.28, (("Se", 1.0),), "amorphous Se, 4.28 g/cm3")

# Beam-path materials of the gantry (compression paddle, breast support, detector cover).
# Polycarbonate (bisphenol-A, C16H14O3), 1.20 g/cm3 (NIST/ESTAR "polycarbonate" density).
POLYCARBONATE = Material("polycarbonate", 1.20, _formula_fractions({"C": 16, "H": 14, "O": 3}),
                         "C16H14O3 stoichiometry, 1.20 g/cm3 (NIST ESTAR polycarbonate)")
# Carbon-fibre composite of supports and detector covers: approximated as carbon at 1.6 g/cm3
# (cured carbon/epoxy laminates are 1.5-1.6 g/cm3; the epoxy's H and O are neglected).
CARBON_FIBRE = Material("carbon_fibre", 1.6, (("C", 1.0),), "carbon at 1.6 g/cm3 (carbon/epoxy laminate density)")

#: Voxel label -> material. Label 0 is air/vacuum. Stable: phantoms store these numbers.
LABELS: dict[int, Material] = {
    0: AIR,
    1: ADIPOSE,
    2: GLANDULAR,
    3: SKIN,
    4: MASS,
    5: HYDROXYAPATITE,
    6: CALCIUM_OXALATE,
    7: PMMA,
    8: ALUMINIUM,
    9: TUNGSTEN,
    10: STEEL,
}
BY_NAME: dict[str, Material] = {m.name: m for m in list(LABELS.values()) + [SELENIUM, POLYCARBONATE, CARBON_FIBRE]}
LABEL_OF: dict[str, int] = {m.name: k for k, m in LABELS.items()}
N_LABELS = max(LABELS) + 1


def material(name_or_label: str | int) -> Material:
    """Look a material up by name (``"glandular"``) or voxel label (``2``)."""
    if isinstance(name_or_label, (int, np.integer)):
        return LABELS[int(name_or_label)]
    try:
        return BY_NAME[name_or_label]
    except KeyError:
        raise KeyError(f"unknown material {name_or_label!r}; known: {sorted(BY_NAME)}") from None


@lru_cache(maxsize=512)
def _mass_coeff_cached(name: str, energies: tuple[float, ...], kind: str) -> np.ndarray:
    mat = material(name)
    e_ev = np.asarray(energies, dtype=np.float64) * 1000.0
    out = np.zeros(e_ev.size)
    for el, frac in mat.normalised().items():
        out += frac * np.asarray(xraydb.mu_elam(el, e_ev, kind=kind), dtype=np.float64)
    out.setflags(write=False)
    return out


def mass_attenuation(name: str, energies_kev: np.ndarray | list[float], kind: str = "total") -> np.ndarray:
    """Mass attenuation coefficient mu/rho in cm^2/g (mixture rule over elements).

    ``kind`` is ``"total"``, ``"photo"``, ``"coh"`` or ``"incoh"`` (xraydb's kinds).
    Results are cached per (material, energy grid).
    """
    e = tuple(float(v) for v in np.atleast_1d(energies_kev))
    return _mass_coeff_cached(name, e, kind).copy()


def linear_attenuation(name: str | int, energies_kev: np.ndarray | list[float]) -> np.ndarray:
    """Linear attenuation coefficient mu in 1/mm at the given energies (keV)."""
    mat = material(name)
    return mass_attenuation(mat.name, energies_kev) * mat.density_g_cm3 / 10.0


def klein_nishina_transfer_fraction(energies_kev: np.ndarray) -> np.ndarray:
    """Mean fraction of photon energy given to the electron in Compton scattering.

    Ratio sigma_tr / sigma of the Klein-Nishina cross sections (F. H. Attix,
    *Introduction to Radiological Physics and Radiation Dosimetry*, Wiley 1986,
    eqs. 7.13 and 7.20). About 0.036 at 20 keV and 0.081 at 50 keV.
    """
    a = np.asarray(energies_kev, dtype=np.float64) / ELECTRON_REST_KEV
    l2 = np.log1p(2 * a)
    sigma = (1 + a) / a**2 * (2 * (1 + a) / (1 + 2 * a) - l2 / a) + l2 / (2 * a) - (1 + 3 * a) / (1 + 2 * a) ** 2
    sigma_tr = (
        2 * (1 + a) ** 2 / (a**2 * (1 + 2 * a))
        - (1 + 3 * a) / (1 + 2 * a) ** 2
        - (1 + a) * (2 * a**2 - 2 * a - 1) / (a**2 * (1 + 2 * a) ** 2)
        - 4 * a**2 / (3 * (1 + 2 * a) ** 3)
        - ((1 + a) / a**3 - 1 / (2 * a) + 1 / (2 * a**3)) * l2
    )
    return sigma_tr / sigma


def mass_energy_absorption(name: str, energies_kev: np.ndarray | list[float]) -> np.ndarray:
    """Mass energy-absorption coefficient mu_en/rho in cm^2/g for low-Z materials.

    Built as photoelectric + incoherent x (Klein-Nishina energy-transfer
    fraction); coherent scattering deposits nothing. Fluorescence escape and
    radiative losses are neglected, which is accurate to about 1 % for air and
    tissue below 50 keV (compare Hubbell & Seltzer, NIST IR 5632). Not meant for
    high-Z absorbers (use :func:`linear_attenuation` and a photoelectric
    absorption model there).
    """
    e = np.atleast_1d(np.asarray(energies_kev, dtype=np.float64))
    return mass_attenuation(name, e, "photo") + mass_attenuation(name, e, "incoh") * klein_nishina_transfer_fraction(e)


def breast_mixture_density_g_cm3(glandularity: float) -> float:
    """Density of an adipose/glandular mixture with ``glandularity`` by weight (volumes add), g/cm^3."""
    w = glandularity
    return 1.0 / (w / GLANDULAR.density_g_cm3 + (1 - w) / ADIPOSE.density_g_cm3)


def breast_mixture_mass_attenuation(glandularity: float, energies_kev: np.ndarray | list[float],
                                    kind: str = "total") -> np.ndarray:
    """mu/rho (cm^2/g) of an adipose/glandular mixture by weight (``kind`` as in :func:`mass_attenuation`)."""
    w = glandularity
    return w * mass_attenuation("glandular", energies_kev, kind) + (1 - w) * mass_attenuation("adipose", energies_kev, kind)


def attenuation_table(labels: np.ndarray | list[int], energies_kev: np.ndarray,
                      densities_g_cm3: dict[int, float] | None = None) -> np.ndarray:
    """mu in 1/mm, shape ``(len(labels), len(energies))``, for voxel labels.

    ``densities_g_cm3``: label -> density (g/cm^3) replacing the material's own for these labels (same
    composition: mu = (mu/rho)(E) x rho, so the ratio to the table's mu is rho / rho_table at every energy).
    """
    if not len(labels):
        return np.zeros((0, len(energies_kev)))
    dens = densities_g_cm3 or {}
    rows = []
    for k in labels:
        k = int(k)
        if k in dens:
            rows.append(mass_attenuation(material(k).name, energies_kev) * float(dens[k]) / 10.0)
        else:
            rows.append(linear_attenuation(k, energies_kev))
    return np.stack(rows)
