"""X-ray tube spectra of mammography beams, their air kerma, HVL and mean energy.

Spectra come from SpekPy v2 (G. Poludniowski, A. Omar, R. Bujila and
P. Andreo, "SpekPy v2.0 -- a software toolkit for modeling x-ray tube
spectra", Med. Phys. 48 (2021) 3630-3637; model of Poludniowski & Evans 2007
and Poludniowski 2007, Med. Phys. 34). SpekPy's mammography targets (W, Mo,
Rh) are used with the anode angle, Be window, added filter and the air path
to the reference distance given by :class:`BeamSpec`.

What the project computes itself (not SpekPy's helpers): the binning onto the
project's energy grid, air kerma from the fluence with mu_en/rho of air
(:func:`physics.materials.mass_energy_absorption`), the first HVL
by bisection on that air kerma, and the mean energy.

Units: energy keV, fluence photons / mm^2 / mAs per bin at the stated
distance, air kerma mGy / mAs, HVL mm Al, distances mm.

Example
-------
>>> s = beam_spectrum("W/Rh", 29.0)
>>> 0.4 < half_value_layer_mm_al(s) < 0.7
True
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from physics import materials

#: 1 keV in joules.
KEV_J = 1.602176634e-16

#: Typical filtration per anode/filter pair (thickness in mm).
#: Rh 50 um, Ag 50 um, Al 0.7 mm, Mo 30 um, Rh 25 um on Mo/Rh and Rh/Rh:
#: the commercial values listed in e.g. Dance et al. 2000 (Phys. Med. Biol.
#: 45:3225) and Dance, Young & van Engen 2009 (Phys. Med. Biol. 54:4361).
FILTERS: dict[str, tuple[str, float]] = {
    "W/Rh": ("Rh", 0.050),
    "W/Ag": ("Ag", 0.050),
    "W/Al": ("Al", 0.700),
    "Mo/Mo": ("Mo", 0.030),
    "Mo/Rh": ("Rh", 0.025),
    "Rh/Rh": ("Rh", 0.025),
}


@dataclass(frozen=True)
class BeamSpec:
    """How a beam is made: anode, filter, window, anode angle, air path.

    ``distance_mm`` is where the fluence is reported (and the air path length
    included as filtration). Anode angle 16 deg and 1 mm Be are typical of
    mammography tubes.
    """

    anode: str
    filter_material: str
    filter_mm: float
    kvp: float
    be_window_mm: float = 1.0
    anode_angle_deg: float = 16.0
    distance_mm: float = 650.0
    extra_al_mm: float = 0.0
    extra_pmma_mm: float = 0.0


@dataclass(frozen=True)
class Spectrum:
    """A binned spectrum: bin centres (keV), fluence per bin (photons/mm^2/mAs) at ``distance_mm``."""

    energies_kev: np.ndarray
    fluence_per_mas: np.ndarray
    distance_mm: float
    spec: BeamSpec

    def at_distance(self, distance_mm: float) -> "Spectrum":
        """Same beam with the inverse-square law applied (air path unchanged)."""
        scale = (self.distance_mm / distance_mm) ** 2
        return Spectrum(self.energies_kev, self.fluence_per_mas * scale, distance_mm, self.spec)

    def filtered(self, material_name: str, thickness_mm: float) -> "Spectrum":
        """Spectrum after ``thickness_mm`` of a material (narrow beam)."""
        mu = materials.linear_attenuation(material_name, self.energies_kev)
        return Spectrum(self.energies_kev, self.fluence_per_mas * np.exp(-mu * thickness_mm), self.distance_mm, self.spec)


def beam_spec(anode_filter: str, kvp: float, **overrides: float) -> BeamSpec:
    """Standard :class:`BeamSpec` for an anode/filter name such as ``"W/Rh"``."""
    try:
        anode = anode_filter.split("/")[0]
        filt, t = FILTERS[anode_filter]
    except KeyError:
        raise ValueError(f"unknown anode/filter {anode_filter!r}; known: {sorted(FILTERS)}") from None
    if not 20.0 <= kvp <= 50.0:
        raise ValueError(f"kvp={kvp} outside the mammography range 20-50 kV")
    return BeamSpec(anode=anode, filter_material=filt, filter_mm=t, kvp=kvp, **overrides)


#: Energy step of spekpy's own grid, keV. spekpy samples at ``kvp - dk/2, kvp - 3 dk/2, ...``; with the kVp
#: rounded to 0.1 kV (:func:`beam_spectrum`) and dk = 0.1 keV the samples sit at the same energies (x.x5 keV)
#: whatever the kVp, so a filter's K edge (Rh 23.2 keV, Ag 25.5 keV, Mo 20.0 keV) always falls at the same place
#: between two of them. At 0.25 keV the sample next to the edge moved with the kVp, and the signal through
#: 40 mm of breast went up and down by 2-4 % from one 0.1 kV step to the next (W/Rh 28.5 -> 28.6 kV: -2.4 %).
#: 0.1 keV costs no more than 0.25 keV (spekpy's set-up dominates); 0.05 keV cost 1.5 times as much.
SPEKPY_DK_KEV = 0.1

#: Version of the cache files' layout. The key also carries a digest of :func:`_spekpy_compute`'s source, so
#: a change to the binning or the cuts never reads an entry made by the old code.
_DISK_CACHE_FORMAT = 1


def spectrum_cache_dir() -> Path | None:
    """Folder of the on-disk spectrum cache: ``$CRESCENT_CACHE_DIR/spectra``, else
    ``$XDG_CACHE_HOME/crescent/spectra`` (default ``~/.cache/crescent/spectra``); ``CRESCENT_CACHE_DIR=off``
    turns it off (None)."""
    base = os.environ.get("CRESCENT_CACHE_DIR")
    if base is not None:
        return None if base.strip().lower() in ("", "off", "0", "none") else Path(base) / "spectra"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "crescent" / "spectra"


@lru_cache(maxsize=1)
def spekpy_version() -> str:
    """Installed spekpy's version (read from the package metadata, without importing spekpy)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("spekpy")
    except PackageNotFoundError:
        return "unknown"


@lru_cache(maxsize=1)
def _compute_digest() -> str:
    import inspect

    try:
        source = inspect.getsource(_spekpy_compute)
    except (OSError, TypeError):  # no source shipped (a frozen or byte-code-only install): the code's bytes
        source = _spekpy_compute.__code__.co_code.hex()
    return hashlib.sha256(source.encode()).hexdigest()[:16]


def _cache_key(spec: BeamSpec, bin_kev: float) -> str:
    blob = json.dumps({"spec": dataclasses.asdict(spec), "bin_kev": bin_kev, "dk": SPEKPY_DK_KEV,
                       "spekpy": spekpy_version(), "format": _DISK_CACHE_FORMAT, "code": _compute_digest()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _read_cached(path: Path) -> tuple[np.ndarray, np.ndarray] | None:
    try:
        with np.load(path) as z:
            e, f = np.asarray(z["energies_kev"], dtype=np.float64), np.asarray(z["fluence"], dtype=np.float64)
    except Exception:  # missing, unreadable or damaged (EOFError, BadZipFile, ...): computed again
        return None
    if e.ndim != 1 or e.shape != f.shape or not (np.all(np.isfinite(e)) and np.all(np.isfinite(f))):
        return None
    return e, f


def _write_cached(path: Path, e: np.ndarray, f: np.ndarray) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, energies_kev=e, fluence=f)
                fh.flush()
                os.fsync(fh.fileno())  # on disk before it gets its name: a crash leaves no empty entry
            os.replace(tmp, path)  # atomic: a reader sees the whole file or none
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    except OSError:  # a read-only or full disk only costs the cache
        pass


@lru_cache(maxsize=256)
def _spekpy_spectrum(spec: BeamSpec, bin_kev: float) -> tuple[np.ndarray, np.ndarray]:
    """spekpy's spectrum of ``spec`` binned at ``bin_kev``: (bin mean energies keV, photons/mm^2/mAs per bin).

    Kept in memory (LRU) and on disk (:func:`spectrum_cache_dir`, one ``.npz`` per beam, keyed by the beam, the
    grid and spekpy's version): spekpy takes about 0.4 s per spectrum, which the real-time gantry's first image
    at a new kV (the AEC scout) would otherwise wait for on every start.
    """
    folder = spectrum_cache_dir()
    path = folder / f"{_cache_key(spec, bin_kev)}.npz" if folder is not None else None
    if path is not None:
        hit = _read_cached(path)
        if hit is not None:
            return hit
    e, f = _spekpy_compute(spec, bin_kev)
    if path is not None:
        _write_cached(path, e, f)
    return e, f


def _spekpy_compute(spec: BeamSpec, bin_kev: float) -> tuple[np.ndarray, np.ndarray]:
    import spekpy  # slow import; only when a spectrum is first needed

    s = spekpy.Spek(kvp=spec.kvp, th=spec.anode_angle_deg, targ=spec.anode, dk=SPEKPY_DK_KEV,
                    z=spec.distance_mm / 10.0)  # spekpy distances are in cm
    s.filter("Be", spec.be_window_mm)
    s.filter(spec.filter_material, spec.filter_mm)
    if spec.distance_mm > 0:
        s.filter("Air", spec.distance_mm)
    k, phi = s.get_spectrum()  # photons / cm^2 / mAs / keV at z
    phi = np.asarray(phi, dtype=np.float64) * SPEKPY_DK_KEV / 100.0  # x dk keV, per cm^2 -> per mm^2
    k = np.asarray(k, dtype=np.float64)
    edges = np.arange(0.0, spec.kvp + bin_kev, bin_kev)
    idx = np.clip(np.digitize(k, edges) - 1, 0, edges.size - 2)
    flu = np.bincount(idx, weights=phi, minlength=edges.size - 1)
    e_mean = np.bincount(idx, weights=phi * k, minlength=edges.size - 1)
    centres = 0.5 * (edges[:-1] + edges[1:])
    keep = (flu > flu.sum() * 1e-7) & (centres >= 5.0)
    # fluence-weighted bin energy (exact first moment within each bin)
    e_bin = np.where(flu > 0, e_mean / np.where(flu > 0, flu, 1.0), centres)
    return e_bin[keep], flu[keep]


def beam_spectrum(anode_filter: str, kvp: float, *, bin_kev: float = 1.0, **overrides: float) -> Spectrum:
    """Binned spectrum (photons/mm^2/mAs per bin) of a standard beam at 650 mm unless overridden.

    kV is rounded to 0.1 kV for caching (the generator's ripple is larger).
    """
    spec = beam_spec(anode_filter, round(float(kvp), 1), **overrides)
    return spectrum_from_spec(spec, bin_kev=bin_kev)


def spectrum_from_spec(spec: BeamSpec, *, bin_kev: float = 1.0) -> Spectrum:
    """Binned spectrum of an arbitrary :class:`BeamSpec` (filters after the tube included)."""
    e, f = _spekpy_spectrum(spec, bin_kev)
    out = Spectrum(e.copy(), f.copy(), spec.distance_mm, spec)
    if spec.extra_al_mm:
        out = out.filtered("aluminium", spec.extra_al_mm)
    if spec.extra_pmma_mm:
        out = out.filtered("pmma", spec.extra_pmma_mm)
    return out


def kerma_weights(spectrum: Spectrum) -> np.ndarray:
    """Air kerma contributed by each bin, mGy / mAs (K = sum phi E mu_en/rho)."""
    muen = materials.mass_energy_absorption("air", spectrum.energies_kev)  # cm^2/g
    # phi [1/mm^2] * E [keV] * mu_en/rho [cm^2/g]: convert mm^-2 -> cm^-2 (x100), keV -> J,
    # g -> kg (x1000), Gy -> mGy (x1000)
    return spectrum.fluence_per_mas * 100.0 * spectrum.energies_kev * KEV_J * muen * 1000.0 * 1000.0


def air_kerma_mgy_per_mas(spectrum: Spectrum, distance_mm: float | None = None) -> float:
    """Air kerma free-in-air per mAs at ``distance_mm`` (default: the spectrum's distance), mGy/mAs."""
    k = float(kerma_weights(spectrum).sum())
    if distance_mm is not None:
        k *= (spectrum.distance_mm / distance_mm) ** 2
    return k


def half_value_layer_mm_al(spectrum: Spectrum, *, tol_mm: float = 1e-6) -> float:
    """First HVL in mm Al, by bisection on the narrow-beam air kerma."""
    w = kerma_weights(spectrum)
    mu_al = materials.linear_attenuation("aluminium", spectrum.energies_kev)
    half = 0.5 * w.sum()
    lo, hi = 0.0, 1.0
    while (w * np.exp(-mu_al * hi)).sum() > half:
        hi *= 2.0
    while hi - lo > tol_mm:
        mid = 0.5 * (lo + hi)
        if (w * np.exp(-mu_al * mid)).sum() > half:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def mean_energy_kev(spectrum: Spectrum) -> float:
    """Fluence-weighted mean photon energy, keV."""
    f = spectrum.fluence_per_mas
    return float((f * spectrum.energies_kev).sum() / f.sum())


def photons_per_mm2_per_mgy(spectrum: Spectrum) -> float:
    """Fluence per unit air kerma, photons / mm^2 / mGy (a beam-quality constant)."""
    return float(spectrum.fluence_per_mas.sum() / air_kerma_mgy_per_mas(spectrum))


