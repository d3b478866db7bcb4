"""Monte Carlo photon transport for breast dosimetry in the Dance breast model.

Used to compute the glandularity (c) and DBT obliquity (t) factors of the
Dance method (see :mod:`physics.dose`) and, as the check that the
transport is right, to reproduce Dance's published g factors for the 50 %
glandular breast (tests: within 5 %).

Breast model (D. R. Dance, Phys. Med. Biol. 35 (1990) 1211; Dance et al.,
Phys. Med. Biol. 45 (2000) 3225): a semi-cylinder of radius ``radius_mm``
(80 mm) standing on the breast support with its flat face at the chest wall
(plane y = 0); a central region of homogeneous adipose/glandular mixture
(glandularity by weight) inside a 5 mm adipose shell on the top, the bottom
and the curved edge. Nothing else scatters: no paddle, support, detector or
body (the chest-wall plane absorbs what crosses it).

Frame of reference: the gantry frame of :mod:`protocols.geometry` (mm; x
along the chest wall, y into the breast, z up from the detector surface).

Physics, 1-50 keV: photoelectric absorption (energy deposited on the spot;
fluorescence from C, N, O is below 1 keV and ignored), incoherent scattering
sampled from the Klein-Nishina cross section (Kahn's rejection method; the
recoil electron's energy is deposited on the spot), coherent scattering
sampled from the Thomson distribution times the squared atomic form factor
of the mixture (independent-atom model, xraydb's Waasmaier-Kirfel f0).
Interaction coefficients are xraydb's (Elam) per element, combined by mass
fraction. Transport is Woodcock (delta) tracking against the larger of the
two regions' attenuation coefficients, so no boundary distances are needed;
the breast is convex, so a photon that leaves it never returns.

Glandular dose: at each interaction inside the central region the energy
imparted is weighted by w (mu_en/rho)_gland / (mu_en/rho)_mixture at the
photon's energy, as Dance did; the sum is divided by the glandular mass.

Normalisation: the incident air kerma K (no backscatter) at a reference
point on the breast's top surface, from a point source with inverse-square
fall-off and no heel effect. Photons are started towards points drawn
uniformly on the plane of the breast's bottom over a rectangle that covers
the breast's shadow; each carries the weight (r_ref / r)^2 cos(theta), the
fluence crossing the plane there relative to the reference point.

Every run takes a seed; the transport loop is single-threaded, so a seed
gives the same answer on every machine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numba
import numpy as np

from physics import materials
from physics.spectra import Spectrum

#: h c in keV Angstrom (CODATA 2018): q = sin(theta/2) E / hc in 1/Angstrom.
HC_KEV_ANGSTROM = 12.398419843320026
ELECTRON_REST_KEV = materials.ELECTRON_REST_KEV
#: Energy grid of the interaction tables, keV (photons below E_MIN deposit on the spot).
E_MIN_KEV = 1.0
E_STEP_KEV = 0.05
#: Momentum-transfer grid of the form-factor tables, 1/Angstrom.
Q_MAX = 6.0
Q_STEP = 0.01


@dataclass(frozen=True)
class BreastModel:
    """The Dance semi-cylindrical breast: sizes in mm, glandularity by weight (0-1)."""

    thickness_mm: float
    glandularity: float = 0.5
    radius_mm: float = 80.0
    shell_mm: float = 5.0
    bottom_z_mm: float = 20.0

    def __post_init__(self) -> None:
        if not 2 * self.shell_mm < self.thickness_mm <= 200.0:
            raise ValueError(f"thickness_mm={self.thickness_mm} must exceed twice the {self.shell_mm} mm shell")
        if not 0.0 < self.glandularity <= 1.0:
            raise ValueError(f"glandularity={self.glandularity} must lie in (0, 1] (fraction by weight; "
                             "no glandular tissue means no glandular dose)")
        if not self.radius_mm > self.shell_mm:
            raise ValueError(f"radius_mm={self.radius_mm} must exceed the shell ({self.shell_mm} mm)")

    @property
    def top_z_mm(self) -> float:
        return self.bottom_z_mm + self.thickness_mm

    @property
    def mixture_density_g_cm3(self) -> float:
        return materials.breast_mixture_density_g_cm3(self.glandularity)

    @property
    def glandular_mass_g(self) -> float:
        """Mass of glandular tissue in the central region, g."""
        ri = self.radius_mm - self.shell_mm
        volume_cm3 = 0.5 * math.pi * ri**2 * (self.thickness_mm - 2 * self.shell_mm) / 1000.0
        return self.glandularity * self.mixture_density_g_cm3 * volume_cm3


@dataclass(frozen=True)
class DoseResult:
    """Glandular dose per unit incident air kerma (mGy/mGy) with its Monte Carlo standard error."""

    dose_per_kerma: float
    std_error: float
    histories: int


# ----------------------------------------------------------------------------------- tables
def _energy_grid(e_max_kev: float) -> np.ndarray:
    return np.arange(E_MIN_KEV, e_max_kev + 2 * E_STEP_KEV, E_STEP_KEV)


@lru_cache(maxsize=64)
def _form_factor_squared(glandularity: float) -> np.ndarray:
    """F^2(q) / F^2(0) of a material by the independent-atom model, on the Q grid (shell row 0, mixture row 1)."""
    import xraydb

    q = np.arange(0.0, Q_MAX + Q_STEP, Q_STEP)

    def f2(fractions: dict[str, float]) -> np.ndarray:
        tot = np.zeros_like(q)
        for el, frac in fractions.items():
            f = np.asarray(xraydb.f0(el, q), dtype=np.float64)
            tot += frac / xraydb.atomic_mass(el) * f * f
        return tot / tot[0]

    gl, ad = materials.GLANDULAR.normalised(), materials.ADIPOSE.normalised()
    mix = {el: glandularity * gl.get(el, 0.0) + (1 - glandularity) * ad.get(el, 0.0) for el in set(gl) | set(ad)}
    return np.stack([f2(ad), f2(mix)])


def interaction_tables(glandularity: float, e_max_kev: float) -> tuple[np.ndarray, ...]:
    """Tables on the energy grid: energies (keV); per region mu (1/mm), P(photo), P(incoherent);
    the glandular weight w (mu_en/rho)_g / (mu_en/rho)_mix and the mixture's mu_en / mu.

    Region 0 is the adipose shell, region 1 the mixture.
    """
    e = _energy_grid(e_max_kev)
    rho = materials.breast_mixture_density_g_cm3(glandularity)
    mu = np.empty((2, e.size))
    p_photo = np.empty_like(mu)
    p_incoh = np.empty_like(mu)
    for r, (coeff, density) in enumerate((
        (lambda kind: materials.mass_attenuation("adipose", e, kind), materials.ADIPOSE.density_g_cm3),
        (lambda kind: materials.breast_mixture_mass_attenuation(glandularity, e, kind), rho),
    )):
        photo, incoh, coh = coeff("photo"), coeff("incoh"), coeff("coh")
        total = photo + incoh + coh
        mu[r] = total * density / 10.0
        p_photo[r] = photo / total
        p_incoh[r] = incoh / total
    muen_g = materials.mass_energy_absorption("glandular", e)
    muen_mix = glandularity * muen_g + (1 - glandularity) * materials.mass_energy_absorption("adipose", e)
    gland_weight = glandularity * muen_g / muen_mix
    transfer = muen_mix / (mu[1] * 10.0 / rho)
    return e, mu, p_photo, p_incoh, gland_weight, transfer


# ----------------------------------------------------------------------------------- kernel
@numba.njit(cache=True)
def _sample_klein_nishina(e_kev: float) -> tuple[float, float]:
    """(scattered energy keV, cos theta) from the Klein-Nishina distribution (Kahn's method)."""
    alpha = e_kev / ELECTRON_REST_KEV
    beta = 1.0 + 2.0 * alpha
    t = beta / (beta + 8.0)
    while True:
        if np.random.random() < t:
            x = 1.0 + 2.0 * alpha * np.random.random()
            if np.random.random() < 4.0 * (1.0 / x - 1.0 / (x * x)):
                break
        else:
            x = beta / (1.0 + 2.0 * alpha * np.random.random())
            mu = 1.0 + (1.0 - x) / alpha
            if np.random.random() < 0.5 * (mu * mu + 1.0 / x):
                break
    return e_kev / x, 1.0 + (1.0 - x) / alpha


@numba.njit(cache=True)
def _sample_coherent(e_kev: float, f2_row: np.ndarray) -> float:
    """cos theta from (1 + cos^2) F^2(q) (Thomson times squared form factor), by rejection.

    F^2 is interpolated linearly on the Q grid; q = sin(theta/2) E / hc is
    xraydb's sin(theta_Bragg) / lambda.
    """
    n = f2_row.size
    while True:
        c = 2.0 * np.random.random() - 1.0
        if np.random.random() * 2.0 > 1.0 + c * c:
            continue
        q = math.sqrt(0.5 * (1.0 - c)) * e_kev / HC_KEV_ANGSTROM
        u = q / Q_STEP
        k = int(u)
        f2 = f2_row[k] + (u - k) * (f2_row[k + 1] - f2_row[k]) if k + 1 < n else 0.0
        if np.random.random() < f2:
            return c


@numba.njit(cache=True)
def _rotate(ux: float, uy: float, uz: float, cos_t: float) -> tuple[float, float, float]:
    """New unit direction at polar angle acos(cos_t) from (ux, uy, uz), azimuth uniform."""
    phi = 2.0 * math.pi * np.random.random()
    sin_t = math.sqrt(max(0.0, 1.0 - cos_t * cos_t))
    cp, sp = math.cos(phi), math.sin(phi)
    if abs(uz) > 0.99999:
        return sin_t * cp, sin_t * sp, cos_t * (1.0 if uz > 0 else -1.0)
    tmp = math.sqrt(1.0 - uz * uz)
    nx = sin_t * (ux * uz * cp - uy * sp) / tmp + ux * cos_t
    ny = sin_t * (uy * uz * cp + ux * sp) / tmp + uy * cos_t
    nz = -sin_t * cp * tmp + uz * cos_t
    norm = math.sqrt(nx * nx + ny * ny + nz * nz)
    return nx / norm, ny / norm, nz / norm


@numba.njit(cache=True)
def _entry_distance(sx: float, sy: float, sz: float, ux: float, uy: float, uz: float,
                    radius: float, zb: float, zt: float) -> float:
    """Distance along the ray to where it enters the semi-cylinder, or -1 if it misses."""
    t_in, t_out = -1e300, 1e300
    if uz != 0.0:
        a, b = (zb - sz) / uz, (zt - sz) / uz
        t_in, t_out = max(t_in, min(a, b)), min(t_out, max(a, b))
    elif not zb <= sz <= zt:
        return -1.0
    if uy > 0.0:
        t_in = max(t_in, -sy / uy)
    elif uy < 0.0:
        t_out = min(t_out, -sy / uy)
    elif sy < 0.0:
        return -1.0
    a = ux * ux + uy * uy
    c = sx * sx + sy * sy - radius * radius
    if a > 0.0:
        b = 2.0 * (sx * ux + sy * uy)
        disc = b * b - 4.0 * a * c
        if disc <= 0.0:
            return -1.0
        sq = math.sqrt(disc)
        t_in, t_out = max(t_in, (-b - sq) / (2 * a)), min(t_out, (-b + sq) / (2 * a))
    elif c > 0.0:
        return -1.0
    if t_in >= t_out or t_out <= 0.0:
        return -1.0
    return max(t_in, 0.0)


@numba.njit(cache=True)
def _transport(n_histories: int, seed: int, energies: np.ndarray, cdf: np.ndarray, source: np.ndarray,
               rect: np.ndarray, ref_distance: float, radius: float, shell: float, zb: float, zt: float,
               mu: np.ndarray, p_photo: np.ndarray, p_incoh: np.ndarray, mu_max: np.ndarray,
               gland_weight: np.ndarray, transfer: np.ndarray, f2: np.ndarray,
               scatter: bool) -> tuple[float, float]:
    """Sum and sum of squares over histories of (weight x glandular energy imparted, keV)."""
    np.random.seed(seed)
    n_e = mu_max.size
    ri2 = (radius - shell) ** 2
    r2 = radius * radius
    zbi, zti = zb + shell, zt - shell
    total = 0.0
    total_sq = 0.0
    for _ in range(n_histories):
        px = rect[0] + (rect[1] - rect[0]) * np.random.random()
        py = rect[2] + (rect[3] - rect[2]) * np.random.random()
        dx, dy, dz = px - source[0], py - source[1], zb - source[2]
        r = math.sqrt(dx * dx + dy * dy + dz * dz)
        ux, uy, uz = dx / r, dy / r, dz / r
        weight = (ref_distance / r) ** 2 * abs(uz)
        # energy drawn before the geometry test so that the random stream does not depend on hits
        e = energies[np.searchsorted(cdf, np.random.random())]
        t0 = _entry_distance(source[0], source[1], source[2], ux, uy, uz, radius, zb, zt)
        if t0 < 0.0:
            continue
        x, y, z = source[0] + ux * t0, source[1] + uy * t0, source[2] + uz * t0
        deposit = 0.0
        while True:
            i = int((e - E_MIN_KEV) / E_STEP_KEV + 0.5)  # nearest grid energy
            if i < 0:
                break  # below the grid: absorbed where it is (only outside the tally in practice)
            if i >= n_e:
                i = n_e - 1
            step = -math.log(1.0 - np.random.random()) / mu_max[i]
            x += ux * step
            y += uy * step
            z += uz * step
            if z < zb or z > zt or y < 0.0 or x * x + y * y > r2:
                break
            inner = zbi <= z <= zti and x * x + y * y <= ri2
            reg = 1 if inner else 0
            if np.random.random() * mu_max[i] >= mu[reg, i]:
                continue  # virtual collision
            if not scatter:  # first-collision kerma: the mean energy transferred, then stop
                if inner:
                    deposit += e * transfer[i] * gland_weight[i]
                break
            xi = np.random.random()
            if xi < p_photo[reg, i]:
                if inner:
                    deposit += e * gland_weight[i]
                break
            if xi < p_photo[reg, i] + p_incoh[reg, i]:
                e_out, cos_t = _sample_klein_nishina(e)
                if inner:
                    deposit += (e - e_out) * gland_weight[i]
                e = e_out
            else:
                cos_t = _sample_coherent(e, f2[reg])
            ux, uy, uz = _rotate(ux, uy, uz, cos_t)
            if e < E_MIN_KEV:
                if inner:
                    deposit += e * gland_weight[0]
                break
        total += weight * deposit
        total_sq += (weight * deposit) ** 2
    return total, total_sq


@numba.njit(cache=True)
def _draw_scatter(e_kev: float, n: int, seed: int, coherent: bool, f2_row: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    np.random.seed(seed)
    energies = np.empty(n)
    cosines = np.empty(n)
    for k in range(n):
        if coherent:
            energies[k], cosines[k] = e_kev, _sample_coherent(e_kev, f2_row)
        else:
            energies[k], cosines[k] = _sample_klein_nishina(e_kev)
    return energies, cosines


def sample_scattering(e_kev: float, n: int, *, coherent: bool = False, glandularity: float = 0.5,
                      seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """``n`` draws of (scattered energy keV, cos theta) from the transport's samplers (for checks and plots).

    Incoherent: Klein-Nishina; coherent: Thomson x F^2 of the breast mixture.
    """
    f2 = _form_factor_squared(round(glandularity, 6))[1]
    return _draw_scatter(float(e_kev), int(n), int(seed), bool(coherent), f2)


# ----------------------------------------------------------------------------------- driver
def _shadow_rectangle(source: np.ndarray, breast: BreastModel) -> np.ndarray:
    """(x0, x1, y0, y1) on the plane z = bottom covering the breast's shadow from ``source`` (mm)."""
    zb, zt, r = breast.bottom_z_mm, breast.top_z_mm, breast.radius_mm
    pts = []
    for x in (-r, r):
        for y in (0.0, r):
            for z in (zb, zt):
                s = (source[2] - zb) / (source[2] - z)
                pts.append((source[0] + (x - source[0]) * s, source[1] + (y - source[1]) * s))
    p = np.array(pts)
    return np.array([p[:, 0].min(), p[:, 0].max(), p[:, 1].min(), p[:, 1].max()])


def glandular_dose_per_kerma(spectrum: Spectrum, breast: BreastModel, source_mm: tuple[float, float, float], *,
                             reference_mm: tuple[float, float, float] | None = None, histories: int = 200_000,
                             seed: int = 1, scatter: bool = True) -> DoseResult:
    """Mean glandular dose per unit incident air kerma (mGy/mGy) by Monte Carlo.

    ``spectrum`` is the beam incident on the breast (its shape only is used);
    ``source_mm`` the focal spot; ``reference_mm`` the point where K is taken
    (default: top surface, x = 0, 60 mm from the chest wall). ``scatter=False``
    scores the mean energy transferred at each photon's first interaction
    and stops it (first-collision kerma: the primary dose of the analytic
    model in :func:`physics.dose.primary_glandular_dose_per_kerma`).
    """
    if histories < 1:
        raise ValueError(f"histories={histories} must be at least 1")
    source = np.asarray(source_mm, dtype=np.float64)
    if source[2] <= breast.top_z_mm:
        raise ValueError(f"source z={source[2]} mm must lie above the breast top ({breast.top_z_mm} mm)")
    ref = np.array(reference_mm if reference_mm is not None else (0.0, 60.0, breast.top_z_mm), dtype=np.float64)
    e_spec = np.asarray(spectrum.energies_kev, dtype=np.float64)
    flu = np.asarray(spectrum.fluence_per_mas, dtype=np.float64)
    cdf = np.cumsum(flu) / flu.sum()
    cdf[-1] = 1.0
    e, mu, p_photo, p_incoh, gland_w, transfer = interaction_tables(breast.glandularity, float(e_spec.max()))
    f2 = _form_factor_squared(round(breast.glandularity, 6))
    rect = _shadow_rectangle(source, breast)
    ref_distance = float(np.linalg.norm(ref - source))
    total, total_sq = _transport(int(histories), int(seed), e_spec, cdf, source, rect, ref_distance,
                                 breast.radius_mm, breast.shell_mm, breast.bottom_z_mm, breast.top_z_mm,
                                 mu, p_photo, p_incoh, mu.max(axis=0), gland_w, transfer, f2, bool(scatter))
    area_cm2 = (rect[1] - rect[0]) * (rect[3] - rect[2]) / 100.0
    mean = total / histories
    var = max(total_sq / histories - mean * mean, 0.0)
    # K per unit fluence (1/cm^2): sum_E p(E) E (mu_en/rho)_air, keV/g
    p = flu / flu.sum()
    kerma_per_fluence = float((p * e_spec * materials.mass_energy_absorption("air", e_spec)).sum())
    scale = area_cm2 / breast.glandular_mass_g / kerma_per_fluence
    return DoseResult(mean * scale, math.sqrt(var / histories) * scale, int(histories))
