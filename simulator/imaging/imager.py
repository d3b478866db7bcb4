"""The integration API: one :class:`ExposureImager` per exam turns exposure records into raw images.

The gantry compresses the breast, reads the thickness, builds the phantom
with :func:`make_phantom` at that thickness, creates an
:class:`ExposureImager`, and then for every exposure (scout included) calls
:meth:`ExposureImager.image` with the *actual* :class:`protocols.records.ExposureRecord`
(angles at window start/end, kV, mAs, anode/filter, focal spot). Dose
bookkeeping uses :meth:`ExposureImager.air_kerma_mgy` and
:meth:`ExposureImager.mgd_mgy`.

Determinism: the noise generator of an exposure is seeded from
``(seed, exposure.frame_id)``, so the same seed gives bit-identical images in
any call order.

Speed: the voxel projector integrates label runs (cost ~ slices x breast
rows x runs per voxel row, air is free) and the energy sum costs ~ attenuated
pixels x energy bins, both per source sample (focal-spot travel and spot
size; usually 1-2 for DBT pulses). For the default ``crescent acquire`` we
recommend a breast at 0.25 mm voxels onto a 4 x 4 binned panel (200 um,
1200 x 1500): about 0.9 CPU-seconds per exposure on the 2-core machine,
noise, aperture filter and dose included (``benchmarks/bench_projector.py
--exam-only`` measures it).

Example
-------
>>> from protocols.geometry import AcquisitionGeometry, DetectorGeometry
>>> from protocols.records import ExposureRecord
>>> g = AcquisitionGeometry(detector=DetectorGeometry(native_pitch_mm=0.05, binning=8, rows=64, cols=80))
>>> imager = ExposureImager(make_phantom("pmma", 45.0, g, seed=1), g, seed=7)
>>> e = ExposureRecord(index=0, frame_id=1, planned_angle_deg=0, angle_start_deg=0, angle_end_deg=0,
...                    kvp=29, mas=20, anode_filter="W/Rh", window_start_s=0, window_end_s=0.1)
>>> img = imager.image(e); img.dtype, img.shape
(dtype('uint16'), (64, 80))
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np

from protocols.geometry import AcquisitionGeometry
from protocols.records import ExposureRecord
from physics import materials
from physics.exposure_dose import exposure_mgd_mgy, incident_air_kerma_mgy
from simulator.imaging.detector import DetectorModel, add_scatter, aperture_fourier
from simulator.imaging.phantoms.base import Phantom
from simulator.imaging.phantoms.breast import breast_phantom
from simulator.imaging.phantoms.qa import (bead_phantom, contrast_detail_phantom, edge_phantom, pmma_phantom,
                                          uniform_phantom)
from simulator.imaging.projector import (accumulate_polyenergetic, analytic_line_integrals, bin_sum, pixel_grid,
                                         voxel_line_integrals)
from physics.spectra import Spectrum, beam_spectrum

PHANTOM_NAMES = ("breast", "uniform", "pmma", "edge", "beads", "contrast-detail")


def make_phantom(name: str, thickness_mm: float, geometry: AcquisitionGeometry, seed: int,
                 voxel_mm: float = 0.25, **options: float) -> Phantom:
    """Build a named phantom of the given (measured, compressed) thickness on the support of ``geometry``.

    Names: ``breast`` (seeded voxel breast; options passed to
    :func:`~simulator.imaging.phantoms.breast.breast_phantom`, e.g.
    ``glandular_fraction``), ``uniform`` (open field), ``pmma`` (slab),
    ``edge`` (tilted W plate on the detector), ``beads`` (calibration beads up
    to ``thickness_mm``), ``contrast-detail``. ``phantom.lesions`` is the truth.
    """
    sh = geometry.support_height_mm
    if name == "breast":
        return breast_phantom(thickness_mm, sh, seed, voxel_mm=voxel_mm, **options)  # type: ignore[arg-type]
    if name == "uniform":
        return uniform_phantom(sh)
    if name == "pmma":
        return pmma_phantom(thickness_mm, sh, **options)  # type: ignore[arg-type]
    if name == "edge":
        return edge_phantom(**options)  # type: ignore[arg-type]
    if name == "beads":
        top = max(thickness_mm - 2.0, 3.0)
        return bead_phantom(sh, heights_mm=(2.0, 0.5 * (2.0 + top), top))
    if name == "contrast-detail":
        return contrast_detail_phantom(sh, slab_mm=thickness_mm)
    raise ValueError(f"unknown phantom {name!r}; choose one of {PHANTOM_NAMES}")


class ExposureImager:
    """Renders the raw detector image of each exposure of one exam.

    Parameters
    ----------
    phantom: what lies on the support (from :func:`make_phantom`).
    geometry: the gantry geometry (SID, pivot, support, detector layout and binning).
    detector: a-Se model (gain, noise, aperture); default :class:`DetectorModel`.
    seed: exam seed; exposure noise uses ``(seed, frame_id)``.
    scatter: add the scatter-to-primary model (:func:`~simulator.imaging.detector.add_scatter`).
    motion_substeps: most source positions used to integrate the focal-spot travel
        between ``angle_start_deg`` and ``angle_end_deg``; the imager uses fewer when
        the travel projects to less than a pixel at the phantom top.
    focal_spot: model the finite focal spot (uniform square of ``focal_spot_mm``);
        ``False`` gives an ideal point focus.
    noise: ``False`` returns the expected (noiseless) image.
    cache_bytes: most bytes of per-material line integrals kept for reuse (LRU by source position;
        a repeated position, e.g. the AEC scout and the 0-degree view, is projected once). A 50 um
        panel's line integrals (~0.6 GB) are larger than the default and are not kept.
    """

    def __init__(self, phantom: Phantom, geometry: AcquisitionGeometry, detector: DetectorModel | None = None, *,
                 seed: int, scatter: bool = False, motion_substeps: int = 5, focal_spot: bool = True,
                 noise: bool = True, cache_bytes: int = 256 * 2**20) -> None:
        self.phantom = phantom
        self.geometry = geometry
        self.detector = detector or DetectorModel()
        self.seed = int(seed)
        self.scatter = scatter
        self.motion_substeps = max(1, int(motion_substeps))
        self.focal_spot = focal_spot
        self.noise = noise
        self.labels = phantom.material_labels()
        self._cache: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._cache_bytes = int(cache_bytes)

    # ----------------------------------------------------------------- geometry
    def source_samples(self, exposure: ExposureRecord) -> np.ndarray:
        """Focal-spot sample positions (n, 3) mm covering the window's travel and the spot area."""
        g = self.geometry
        det = g.detector
        pitch = det.pitch_mm / self.detector.aperture_oversample
        zt = min(self.phantom.top_z_mm, g.sid_mm * 0.5)
        s0 = g.source_position(exposure.mean_angle_deg)
        lever = zt / max(s0[2] - zt, 1e-6)  # source displacement -> shift of the phantom top on the detector
        travel = g.arm_radius_mm * abs(math.radians(exposure.angle_end_deg - exposure.angle_start_deg))
        spot = exposure.focal_spot_mm if self.focal_spot else 0.0
        n_m = int(np.clip(math.ceil(travel * lever / pitch), 1, self.motion_substeps))
        n_sx = int(np.clip(math.ceil(spot * lever / pitch), 1, 3))
        n_sy = n_sx
        out = []
        for i in range(n_m):
            a = exposure.angle_start_deg + (i + 0.5) / n_m * (exposure.angle_end_deg - exposure.angle_start_deg)
            if n_m == 1:
                a = exposure.mean_angle_deg
            p = np.array(g.source_position(a))
            tangent = np.array([math.cos(math.radians(a)), 0.0, -math.sin(math.radians(a))])
            for u in range(n_sx):
                for v in range(n_sy):
                    du = ((u + 0.5) / n_sx - 0.5) * spot if n_sx > 1 else 0.0
                    dv = ((v + 0.5) / n_sy - 0.5) * spot if n_sy > 1 else 0.0
                    out.append(p + du * tangent + np.array([0.0, dv, 0.0]))
        return np.array(out)

    # ------------------------------------------------------------------ physics
    def spectrum(self, exposure: ExposureRecord) -> Spectrum:
        """Tube spectrum (per mAs, at 650 mm) of the exposure's anode/filter and kV."""
        return beam_spectrum(exposure.anode_filter, exposure.kvp)

    def line_integrals(self, source: np.ndarray) -> np.ndarray:
        """Per-material line integrals (mm) for one source position, cached (LRU) by position."""
        key = tuple(np.round(source, 6))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        det = self.geometry.detector
        q = self.detector.aperture_oversample
        if self.phantom.voxels is not None:
            L = voxel_line_integrals(self.phantom.voxels, tuple(source), det, self.labels, oversample=q)
        else:
            xs, ys = pixel_grid(det, q)
            L = np.zeros((len(self.labels), ys.size, xs.size), dtype=np.float32)
        if self.phantom.analytic.objects:
            analytic_line_integrals(self.phantom.analytic, tuple(source), det, self.labels, oversample=q, out=L)
        if L.nbytes <= self._cache_bytes:  # a full-resolution panel's line integrals may not fit: not kept
            self._cache[key] = L
            while sum(v.nbytes for v in self._cache.values()) > self._cache_bytes:
                self._cache.popitem(last=False)
        return L

    def expected_signal(self, exposure: ExposureRecord) -> tuple[np.ndarray, np.ndarray]:
        """Noiseless absorbed energy per pixel (keV) and its second moment (keV^2), scatter included if enabled."""
        det = self.geometry.detector
        q = self.detector.aperture_oversample
        spec = self.spectrum(exposure)
        e = spec.energies_kev
        area = (det.pitch_mm / q) ** 2
        w1, w2 = self.detector.energy_weights(e, spec.fluence_per_mas * exposure.mas, area)
        mu = materials.attenuation_table(self.labels, e)
        xs, ys = pixel_grid(det, q)
        sources = self.source_samples(exposure)
        s1 = np.zeros((ys.size, xs.size))
        s2 = np.zeros_like(s1)
        for src in sources:
            # energy sums x inverse square from the spectrum's 650 mm x obliquity of incidence on the panel
            accumulate_polyenergetic(self.line_integrals(src), mu, w1, w2, tuple(src), xs, ys, spec.distance_mm, s1, s2)
        s1 /= len(sources)
        s2 /= len(sources)
        if q > 1:
            s1, s2 = bin_sum(s1, q), bin_sum(s2, q)
        e_eff = np.where(s1 > 0, s2 / np.maximum(s1, 1e-30), 0.0)
        if q == 1:
            s1 = np.maximum(aperture_fourier(s1), 0.0)
        if self.scatter:
            s1 = add_scatter(s1, max(self.phantom.thickness_mm, 1.0), det.pitch_mm)
        return s1, s1 * e_eff

    def image(self, exposure: ExposureRecord) -> np.ndarray:
        """Raw image, uint16 ``[rows, cols]`` ADU, of one exposure (noise seeded by (seed, frame_id))."""
        s1, s2 = self.expected_signal(exposure)
        rng = np.random.default_rng([self.seed, int(exposure.frame_id)]) if self.noise else None
        return self.detector.read_out(s1, s2, self.geometry.detector.binning, rng)

    # --------------------------------------------------------------------- dose
    def air_kerma_mgy(self, exposure: ExposureRecord) -> float:
        """Incident air kerma (no backscatter) at the breast's top-surface reference point, mGy.

        See :func:`physics.exposure_dose.incident_air_kerma_mgy` (reference point and distance).
        """
        return incident_air_kerma_mgy(self.geometry, exposure, self.phantom.top_z_mm)

    def mgd_mgy(self, exposure: ExposureRecord, thickness_mm: float | None = None,
                glandularity: float | None = None) -> float:
        """Mean glandular dose of one exposure (Dance: K g c s t), mGy.

        Defaults: the phantom's thickness and glandularity (by weight). See
        :func:`physics.exposure_dose.exposure_mgd_mgy`.
        """
        t = self.phantom.thickness_mm if thickness_mm is None else thickness_mm
        gl = self.phantom.glandularity if glandularity is None else glandularity
        return exposure_mgd_mgy(self.geometry, exposure, thickness_mm=t, glandularity=gl)
