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
1200 x 1500): about 0.75 CPU-seconds per exposure on the 2-core machine
(0.46-0.49 s wall with numba and the image-formation threads on both cores),
noise, scatter, aperture filter and dose included (``benchmarks/bench_projector.py
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
from physics.beam_path import DEFAULT_BEAM_PATH, BeamPath
from physics.exposure_dose import exposure_mgd_mgy, incident_air_kerma_mgy
from simulator.imaging import detector as _detector
from simulator.imaging.detector import DetectorModel, aperture_filter_in_place
from simulator.imaging.threads import image_threads
from simulator.imaging.scatter import (SCATTER_PITCH_MM, AntiScatterGrid, projection_angle_deg, scatter_image,
                                       scatter_kernel, thickness_nodes)
from simulator.imaging.phantoms.base import Phantom
from simulator.imaging.phantoms.breast import breast_phantom
from simulator.imaging.phantoms.qa import (bead_phantom, chest_wall_ruler_phantom, contrast_detail_phantom,
                                          edge_phantom, ghost_phantom, pmma_phantom, uniform_phantom)
from simulator.imaging.projector import (accumulate_polyenergetic, analytic_footprints, analytic_line_integrals,
                                         analytic_line_integrals_at, bin_sum, pixel_grid, polyenergetic,
                                         voxel_line_integrals)
from physics.spectra import Spectrum

#: An analytic object whose shadow spans at most this many pixels (either axis) is supersampled whole.
SMALL_OBJECT_PX = 8
#: Second difference of an analytic line integral (mm) above which a pixel is taken to hold a boundary.
EDGE_TOLERANCE_MM = 1e-3

#: Material path (mm) above which a ray counts as crossing the phantom (the scatter source region).
INSIDE_MM = 1.0

PHANTOM_NAMES = ("breast", "uniform", "pmma", "edge", "beads", "contrast-detail", "chest-wall-ruler", "ghost")


def make_phantom(name: str, thickness_mm: float, geometry: AcquisitionGeometry, seed: int,
                 voxel_mm: float = 0.25, **options: float) -> Phantom:
    """Build a named phantom of the given (measured, compressed) thickness on the support of ``geometry``.

    Names: ``breast`` (seeded voxel breast; options passed to
    :func:`~simulator.imaging.phantoms.breast.breast_phantom`, e.g.
    ``glandular_fraction``), ``uniform`` (open field), ``pmma`` (slab),
    ``edge`` (tilted W plate on the detector), ``beads`` (calibration beads up
    to ``thickness_mm``), ``contrast-detail``, ``chest-wall-ruler`` (tungsten ruler against the support's
    chest-wall edge; option ``support_edge_y_mm``), ``ghost`` (half-field 45 mm PMMA with 0.1 mm Al, the
    EUREF ghost-image set-up). ``phantom.lesions`` is the truth.
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
    if name == "chest-wall-ruler":
        return chest_wall_ruler_phantom(sh, **options)
    if name == "ghost":
        return ghost_phantom(sh, slab_mm=thickness_mm, **options)
    raise ValueError(f"unknown phantom {name!r}; choose one of {PHANTOM_NAMES}")


#: Pixels the aperture filter reaches on each side (:func:`~simulator.imaging.detector.aperture_taps`' half width)
#: plus one: outside a material's box padded by this much its filtered line integrals stay zero.
_FILTER_REACH = _detector.APERTURE_HALF_WIDTH + 1


def _material_boxes(L: np.ndarray, reach: int) -> list[np.ndarray]:
    """Views of each material's plane of ``L`` (n_mat, rows, cols) over the rows and columns where it is nonzero,
    padded by ``reach`` pixels a side and clipped to the panel; materials absent from the panel get no box.

    A breast's calcification and mass materials cover a few thousand pixels, its tissues one box around the
    shadow: filtering only these boxes gives the same values as filtering whole planes (zeros filter to zeros,
    and a box that meets the panel's edge is extended there as the whole plane would be).
    """
    out: list[np.ndarray] = []
    n_rows, n_cols = L.shape[1:]
    for m in range(L.shape[0]):
        rows_hit = np.flatnonzero(L[m].any(axis=1))
        if rows_hit.size == 0:
            continue
        r0, r1 = max(int(rows_hit[0]) - reach, 0), min(int(rows_hit[-1]) + reach + 1, n_rows)
        cols_hit = np.flatnonzero(L[m, r0:r1].any(axis=0))
        c0, c1 = max(int(cols_hit[0]) - reach, 0), min(int(cols_hit[-1]) + reach + 1, n_cols)
        out.append(L[m, r0:r1, c0:c1])
    return out


def _shift_edge(a: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """``a`` moved by ``(rows, cols)`` pixels (out[i, j] = a[i - rows, j - cols]); the uncovered strip repeats
    the nearest line of ``a``."""
    r = np.clip(np.arange(a.shape[0]) - rows, 0, a.shape[0] - 1)
    c = np.clip(np.arange(a.shape[1]) - cols, 0, a.shape[1] - 1)
    return a[np.ix_(r, c)]


class ExposureImager:
    """Renders the raw detector image of each exposure of one exam.

    Parameters
    ----------
    phantom: what lies on the support (from :func:`make_phantom`).
    geometry: the gantry geometry (SID, pivot, support, detector layout and binning).
    detector: a-Se model (gain, noise, aperture); default :class:`DetectorModel`.
    seed: exam seed; exposure noise uses ``(seed, frame_id)``.
    scatter: add scatter from the Monte Carlo kernels (:mod:`simulator.imaging.scatter`,
        :mod:`physics.scatter_mc`); the gantry's product default is on
        (``DetectorConfig.scatter``), this library default off.
    grid: anti-scatter grid in front of the panel (:class:`~simulator.imaging.scatter.AntiScatterGrid`),
        or ``None`` (no grid, as DBT systems usually run). It scales the primary even with ``scatter`` off.
    motion_substeps: most source positions used to integrate the focal-spot travel
        between ``angle_start_deg`` and ``angle_end_deg``; the imager uses fewer when
        the travel projects to less than a pixel at the phantom top.
    focal_spot: model the finite focal spot (uniform square of ``focal_spot_mm``);
        ``False`` gives an ideal point focus.
    noise: ``False`` returns the expected (noiseless) image.
    cache_bytes: most bytes of per-material line integrals kept for reuse (LRU by source position;
        a repeated position, e.g. the AEC scout and the 0-degree view, is projected once). A 50 um
        panel's line integrals (~0.6 GB) are larger than the default and are not kept.
    beam_path: tube, compression paddle, breast support and detector cover
        (:class:`physics.beam_path.BeamPath`, from the gantry configuration); the paddle
        filters the beam incident on the breast (images and dose), the support and cover
        what reaches the detector.
    patient_motion: ``(dx_mm, dy_mm, after_deg)``: the phantom is shifted rigidly by ``(dx, dy)`` mm
        (x along the arc, y chest wall -> nipple) for exposures whose window-mean arc angle exceeds
        ``after_deg`` (seeded patient motion; see :meth:`phantom_shift_mm`). ``None``: still.
    field_mm: the X-ray field at the detector plane, ``(y_chest, y_nipple, x_min, x_max)`` mm in the gantry
        frame (the collimator tracks the panel over the arc); a pixel receives the fraction of its area inside
        it. ``None``: the field covers the whole panel.
    """

    def __init__(self, phantom: Phantom, geometry: AcquisitionGeometry, detector: DetectorModel | None = None, *,
                 seed: int, scatter: bool = False, motion_substeps: int = 5, focal_spot: bool = True,
                 noise: bool = True, cache_bytes: int = 256 * 2**20, beam_path: BeamPath | None = None,
                 grid: AntiScatterGrid | None = None,
                 patient_motion: tuple[float, float, float] | None = None,
                 field_mm: tuple[float, float, float, float] | None = None) -> None:
        self.phantom = phantom
        self.geometry = geometry
        self.detector = detector or DetectorModel()
        self.seed = int(seed)
        self.scatter = scatter
        self.grid = grid
        self.motion_substeps = max(1, int(motion_substeps))
        self.focal_spot = focal_spot
        self.noise = noise
        self.beam_path = beam_path or DEFAULT_BEAM_PATH
        self.patient_motion = patient_motion
        self.field_mm = field_mm
        self.labels = phantom.material_labels()
        self._cache: OrderedDict[tuple, tuple[np.ndarray, tuple | None]] = OrderedDict()
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

    def phantom_shift_pixels(self, exposure: ExposureRecord) -> tuple[int, int]:
        """Seeded patient motion of ``exposure`` as whole image pixels ``(columns, rows)`` (0, 0 = still).

        The shift ``(dx, dy)`` mm of ``patient_motion`` applies when the exposure's window-mean angle exceeds
        ``after_deg``; it is rounded to the nearest image pixel, so the rendering is exact (see
        :meth:`expected_signal`).
        """
        if self.patient_motion is None:
            return 0, 0
        dx, dy, after = self.patient_motion
        if exposure.mean_angle_deg <= after:
            return 0, 0
        pitch = self.geometry.detector.pitch_mm
        return int(round(dx / pitch)), int(round(dy / pitch))

    # ------------------------------------------------------------------ physics
    def spectrum(self, exposure: ExposureRecord) -> Spectrum:
        """Spectrum incident on the breast (per mAs, at 650 mm): the tube's, through the compression paddle."""
        return self.beam_path.incident_spectrum(exposure.anode_filter, exposure.kvp)

    def line_integrals(self, source: np.ndarray) -> np.ndarray:
        """Per-material line integrals (mm) at the (sub-)pixel centres for one source position.

        With ``aperture_oversample == 1`` the voxel part is box-filtered over the pixel
        (:func:`~simulator.imaging.detector.aperture_filter`); see :meth:`projection`.
        """
        return self.projection(source)[0]

    def projection(self, source: np.ndarray) -> tuple[np.ndarray, tuple | None]:
        """Line integrals for one source position and the supersampled boundary pixels, cached (LRU).

        Returns ``(L, edges)``: ``L`` (n_mat, rows*q, cols*q) mm; ``edges`` is ``None`` or
        ``(rows, cols, L_sub)`` for the product path (q = 1): the pixels where an analytic
        object's projection is not smooth and their line integrals at ``edge_subsamples^2``
        sub-samples over the pixel area, ``L_sub`` (n_mat, n_pixels, n_sub) mm.
        """
        key = tuple(np.round(source, 6))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        det = self.geometry.detector
        q = self.detector.aperture_oversample
        xs, ys = pixel_grid(det, q)
        if self.phantom.voxels is not None:
            L = voxel_line_integrals(self.phantom.voxels, tuple(source), det, self.labels, oversample=q)
            if q == 1:  # box-filter over the pixel, only where a material is (+ the filter's reach)
                boxes = _material_boxes(L, _FILTER_REACH)
                if boxes:
                    pool = image_threads()
                    if pool is None or len(boxes) < 2:
                        for box in boxes:
                            aperture_filter_in_place(box)
                    else:  # the materials in parallel (scipy's filter releases the GIL), each into its own plane
                        list(pool.map(aperture_filter_in_place, boxes))
        else:
            L = np.zeros((len(self.labels), ys.size, xs.size), dtype=np.float32)
        edges = None
        if self.phantom.analytic.objects:
            # the voxel background under each analytic object's shadow (not the whole panel: a stereo exam's
            # full-resolution frame, 4800 x 6000 pixels, holds some 580 MB of per-material line integrals)
            backgrounds = self._shadow_boxes(source, L, xs, ys) if q == 1 else []
            analytic_line_integrals(self.phantom.analytic, tuple(source), det, self.labels, oversample=q, out=L)
            if q == 1:
                edges = self._edge_pixels(L, backgrounds, xs, ys, source)
        if L.nbytes <= self._cache_bytes:  # a full-resolution panel's line integrals may not fit: not kept
            self._cache[key] = (L, edges)
            while sum(v[0].nbytes for v in self._cache.values()) > self._cache_bytes:
                self._cache.popitem(last=False)
        return L, edges

    def _shadow_boxes(self, source: np.ndarray, L: np.ndarray, xs: np.ndarray, ys: np.ndarray
                      ) -> list[tuple[tuple[int, int, int, int], np.ndarray | None]]:
        """Each analytic object's shadow box ``(r0, r1, c0, c1)`` (one pixel of margin, clipped to the panel) with
        a copy of the per-material line integrals ``L`` holds there before the objects are added (None: a phantom
        without voxels, whose background is zero)."""
        rows, cols = L.shape[1:]
        out: list[tuple[tuple[int, int, int, int], np.ndarray | None]] = []
        for r0, r1, c0, c1 in analytic_footprints(self.phantom.analytic, tuple(source), xs, ys):
            r0, c0, r1, c1 = max(r0 - 1, 0), max(c0 - 1, 0), min(r1 + 1, rows), min(c1 + 1, cols)
            if r1 > r0 and c1 > c0:
                bg = L[:, r0:r1, c0:c1].copy() if self.phantom.voxels is not None else None
                out.append(((r0, r1, c0, c1), bg))
        return out

    def _edge_pixels(self, L: np.ndarray, backgrounds: list[tuple[tuple[int, int, int, int], np.ndarray | None]],
                     xs: np.ndarray, ys: np.ndarray, source: np.ndarray) -> tuple | None:
        """Pixels whose area an analytic boundary crosses, and their sub-sampled line integrals.

        ``backgrounds``: :meth:`_shadow_boxes` (the voxel line integrals under each object's shadow)."""
        rows, cols = L.shape[1:]
        mask = np.zeros((rows, cols), dtype=bool)
        for (r0, r1, c0, c1), background in backgrounds:
            if r1 - r0 <= SMALL_OBJECT_PX + 6 or c1 - c0 <= SMALL_OBJECT_PX + 6:
                mask[r0:r1, c0:c1] = True  # small object: supersample its whole shadow
                continue
            d = L[:, r0:r1, c0:c1] if background is None else L[:, r0:r1, c0:c1] - background  # the analytic part
            sub = mask[r0:r1, c0:c1]
            d2c = np.abs(d[:, :, :-2] - 2.0 * d[:, :, 1:-1] + d[:, :, 2:]).max(axis=0) > EDGE_TOLERANCE_MM
            d2r = np.abs(d[:, :-2, :] - 2.0 * d[:, 1:-1, :] + d[:, 2:, :]).max(axis=0) > EDGE_TOLERANCE_MM
            sub[:, 1:-1] |= d2c
            sub[1:-1, :] |= d2r
        if not backgrounds:
            return None
        # every marked pixel lies in some shadow box: look for them in the boxes' union only (the same pixels, in
        # the same row-major order, as over the whole panel, without scanning 1.8 Mpx per focal-spot sample)
        r_lo, r_hi = min(b[0][0] for b in backgrounds), max(b[0][1] for b in backgrounds)
        c_lo, c_hi = min(b[0][2] for b in backgrounds), max(b[0][3] for b in backgrounds)
        rr, cc = np.nonzero(mask[r_lo:r_hi, c_lo:c_hi])
        if rr.size == 0:
            return None
        rr, cc = rr + r_lo, cc + c_lo
        n = self.detector.edge_subsamples
        pitch = self.geometry.detector.pitch_mm
        off = ((np.arange(n) + 0.5) / n - 0.5) * pitch
        ox, oy = np.meshgrid(off, off, indexing="xy")
        x = xs[cc][:, None] + ox.ravel()[None, :]
        y = ys[rr][:, None] + oy.ravel()[None, :]
        la = analytic_line_integrals_at(self.phantom.analytic, tuple(source), x, y, self.labels)
        under = np.zeros((len(self.labels), rr.size), dtype=L.dtype)  # the voxel background at each pixel
        for (r0, r1, c0, c1), background in backgrounds:  # every masked pixel lies in some box; boxes agree
            if background is not None:
                inb = (rr >= r0) & (rr < r1) & (cc >= c0) & (cc < c1)
                under[:, inb] = background[:, rr[inb] - r0, cc[inb] - c0]
        l_sub = np.maximum(la.reshape(len(self.labels), rr.size, n * n) + under[:, :, None], 0.0)
        return rr, cc, l_sub.astype(np.float32)

    def expected_signal(self, exposure: ExposureRecord) -> tuple[np.ndarray, np.ndarray]:
        """Noiseless absorbed energy per pixel (keV) and its second moment (keV^2), scatter included if enabled.

        A phantom moved by ``t`` (seeded patient motion, :meth:`phantom_shift_pixels`) is rendered by moving the
        whole scene by ``-t``: the source by ``-t`` over the still phantom, then the image by ``+t`` on the
        panel (``t`` a whole number of pixels, so exact; the strip uncovered at the edge repeats the edge line).
        """
        sc, sr = self.phantom_shift_pixels(exposure)
        if sc or sr:
            pitch = self.geometry.detector.pitch_mm
            s1, s2 = self._expected_signal(exposure, np.array([sc * pitch, sr * pitch, 0.0]))
            s1, s2 = _shift_edge(s1, sr, sc), _shift_edge(s2, sr, sc)
        else:
            s1, s2 = self._expected_signal(exposure, None)
        cover = self.field_coverage()
        if cover is not None:  # in place: s1 and s2 are this call's own arrays
            s1 *= cover
            s2 *= cover
        return s1, s2

    def field_coverage(self) -> np.ndarray | None:
        """Fraction of each pixel's area inside the X-ray field ``field_mm`` (None: all covered)."""
        if self.field_mm is None:
            return None
        det = self.geometry.detector
        p = det.pitch_mm
        y0, y1, x0, x1 = self.field_mm

        def overlap(c: np.ndarray, lo: float, hi: float) -> np.ndarray:
            return np.clip((np.minimum(c + 0.5 * p, hi) - np.maximum(c - 0.5 * p, lo)) / p, 0.0, 1.0)

        cy, cx = overlap(det.row_centres_mm(), y0, y1), overlap(det.col_centres_mm(), x0, x1)
        if cy.min() >= 1.0 - 1e-9 and cx.min() >= 1.0 - 1e-9:  # the whole panel inside the field
            return None
        return cy[:, None] * cx[None, :]

    def _expected_signal(self, exposure: ExposureRecord, source_offset_mm: np.ndarray | None
                         ) -> tuple[np.ndarray, np.ndarray]:
        det = self.geometry.detector
        q = self.detector.aperture_oversample
        spec = self.spectrum(exposure)
        e = spec.energies_kev
        area = (det.pitch_mm / q) ** 2
        # what leaves the breast crosses the breast support and the detector cover
        w1, w2 = self.detector.energy_weights(e, spec.fluence_per_mas * exposure.mas * self.beam_path.exit_transmission(e),
                                              area)
        mu = materials.attenuation_table(self.labels, e, self.phantom.densities_g_cm3)
        xs, ys = pixel_grid(det, q)
        sources = self.source_samples(exposure)
        if source_offset_mm is not None:
            sources = sources - source_offset_mm[None, :]
        s1 = np.zeros((ys.size, xs.size))
        s2 = np.zeros_like(s1)
        inside = None
        scatters = False  # whether any ray crosses more than INSIDE_MM of phantom
        kernels = None  # the scatter kernels, computed on an image-formation thread while the samples are summed
        for src in sources:
            L, edges = self.projection(src)
            if self.scatter and inside is None:  # material path of each ray (mm): where, and how much, scatters
                inside = L.sum(axis=0)
                scatters = bool((inside > INSIDE_MM).any())
                pool = image_threads() if q == 1 else None  # (q > 1: the kernels follow the binned path, below)
                if pool is not None and scatters:
                    kernels = pool.submit(self.scatter_kernels, inside, exposure, sources.mean(axis=0))
            # energy sums x inverse square from the spectrum's 650 mm x obliquity of incidence on the panel
            accumulate_polyenergetic(L, mu, w1, w2, tuple(src), xs, ys, spec.distance_mm, s1, s2)
            if edges is not None:  # pixels an analytic boundary crosses: mean over the sub-samples of the area
                rr, cc, l_sub = edges
                c1, c2 = polyenergetic(np.ascontiguousarray(L[:, rr, cc][:, :, None]), mu, w1, w2)
                m1, m2 = polyenergetic(l_sub, mu, w1, w2)
                dx, dy = xs[cc] - src[0], ys[rr] - src[1]
                r2 = dx * dx + dy * dy + src[2] ** 2
                geo = spec.distance_mm**2 / r2 * src[2] / np.sqrt(r2)
                np.add.at(s1, (rr, cc), geo * (m1.mean(axis=1) - c1[:, 0]))
                np.add.at(s2, (rr, cc), geo * (m2.mean(axis=1) - c2[:, 0]))
            del L, edges  # before the next focal-spot sample's: one panel's line integrals alive at a time
        s1 /= len(sources)
        s2 /= len(sources)
        if q > 1:
            s1, s2 = bin_sum(s1, q), bin_sum(s2, q)
        # energy per quantum s2 / s1 (0 where s1 <= 0), in place of s2 and a band of rows at a time: a
        # full-resolution panel is 230 MB a copy
        e_eff = s2
        step = max(1, _detector.BAND_PIXELS // max(1, s1.shape[1]))
        for r0 in range(0, s1.shape[0], step):
            b1, be = s1[r0:r0 + step], e_eff[r0:r0 + step]
            np.divide(be, np.maximum(b1, 1e-30), out=be)
            be[b1 <= 0] = 0.0
        del s2
        scat = None
        if scatters:
            if q > 1:
                inside = inside.reshape(ys.size // q, q, xs.size // q, q).mean(axis=(1, 3))
            scat = self.scatter_signal(s1, inside, exposure, sources.mean(axis=0),
                                       kernels.result() if kernels is not None else None)
        if self.grid is not None:
            s1 *= self.grid.primary_transmission
            if scat is not None:
                scat *= self.grid.scatter_transmission
        if scat is not None:
            s1 += scat  # scatter taken at the primary's mean energy per quantum (Swank moment)
            del scat
        return s1, np.multiply(s1, e_eff, out=e_eff)

    def scatter_signal(self, primary: np.ndarray, path_mm: np.ndarray, exposure: ExposureRecord,
                       source: np.ndarray, kernels: tuple[list[np.ndarray], np.ndarray, float] | None = None
                       ) -> np.ndarray:
        """Scatter absorbed per pixel (keV) for this exposure's primary (keV per pixel).

        ``path_mm``: material path of each pixel's ray through the phantom (mm); rays through more than
        :data:`INSIDE_MM` scatter, each with the kernel of the slab it crossed (path x cos of the
        projection angle, at most the compressed thickness). ``kernels``: what :meth:`scatter_kernels` gives for
        the same ``path_mm``, ``exposure`` and ``source``, if already computed.
        """
        kernel_list, nodes, angle = kernels if kernels is not None else self.scatter_kernels(path_mm, exposure, source)
        block = max(1, int(round(SCATTER_PITCH_MM / self.geometry.detector.pitch_mm)))
        local = np.where(path_mm > INSIDE_MM, path_mm * math.cos(math.radians(angle)), 0.0)
        return scatter_image(primary, local, nodes, kernel_list, block)

    def scatter_kernels(self, path_mm: np.ndarray, exposure: ExposureRecord, source: np.ndarray
                        ) -> tuple[list[np.ndarray], np.ndarray, float]:
        """The scatter kernels of this exposure, their local-thickness levels (mm) and the projection angle (degrees).

        Kernels from :func:`simulator.imaging.scatter.scatter_kernel`: the spectrum on the breast (through the
        support and cover, which filter primary and scatter alike), the phantom's glandularity by weight, the
        support height as the air gap, and the angle of the ray from ``source`` to the centre of the shadow
        (the rays of ``path_mm`` over :data:`INSIDE_MM`), one per level of
        :func:`~simulator.imaging.scatter.thickness_nodes`.
        """
        det = self.geometry.detector
        xs, ys = pixel_grid(det, 1)
        spec = self.spectrum(exposure)
        e = spec.energies_kev
        angle, direction = projection_angle_deg(source, path_mm > INSIDE_MM, xs, ys)
        block = max(1, int(round(SCATTER_PITCH_MM / det.pitch_mm)))
        fluence = spec.fluence_per_mas * self.beam_path.exit_transmission(e)
        nodes = thickness_nodes(max(self.phantom.thickness_mm, 1.0))
        kernel_list = [scatter_kernel(e, fluence, float(t), angle, self.phantom.glandularity,
                                      self.geometry.support_height_mm, det.pitch_mm * block, direction) for t in nodes]
        return kernel_list, nodes, angle

    def prepare_scatter(self, exposure: ExposureRecord) -> None:
        """Load the scatter table and render this exposure's kernels at 0 deg now (a no-op with scatter off).

        The gantry's render worker calls it before the exam so the first frame does not pay the loading.
        """
        if not self.scatter:
            return
        det = self.geometry.detector
        spec = self.spectrum(exposure)
        e = spec.energies_kev
        block = max(1, int(round(SCATTER_PITCH_MM / det.pitch_mm)))
        fluence = spec.fluence_per_mas * self.beam_path.exit_transmission(e)
        for t in thickness_nodes(max(self.phantom.thickness_mm, 1.0)):
            scatter_kernel(e, fluence, float(t), 0.0, self.phantom.glandularity, self.geometry.support_height_mm,
                           det.pitch_mm * block)

    def image(self, exposure: ExposureRecord, gain: np.ndarray | None = None) -> np.ndarray:
        """Raw image, uint16 ``[rows, cols]`` ADU, of one exposure (noise seeded by (seed, frame_id)).

        ``gain``: relative sensitivity per pixel (e.g. a ghost left by earlier exposures), applied to the
        collected charge before read-out (signal and its quantum noise scale together).
        """
        s1, s2 = self.expected_signal(exposure)
        if gain is not None:
            s1, s2 = s1 * gain, s2 * gain * gain
        rng = np.random.default_rng([self.seed, int(exposure.frame_id)]) if self.noise else None
        return self.detector.read_out(s1, s2, self.geometry.detector.binning, rng)

    # --------------------------------------------------------------------- dose
    def air_kerma_mgy(self, exposure: ExposureRecord) -> float:
        """Incident air kerma (no backscatter) at the breast's top-surface reference point, mGy.

        See :func:`physics.exposure_dose.incident_air_kerma_mgy` (reference point and distance).
        """
        return incident_air_kerma_mgy(self.geometry, exposure, self.phantom.top_z_mm, beam_path=self.beam_path)

    def mgd_mgy(self, exposure: ExposureRecord, thickness_mm: float | None = None,
                glandularity: float | None = None) -> float:
        """Mean glandular dose of one exposure (Dance: K g c s t), mGy.

        Defaults: the phantom's thickness and glandularity (by weight). See
        :func:`physics.exposure_dose.exposure_mgd_mgy`.
        """
        t = self.phantom.thickness_mm if thickness_mm is None else thickness_mm
        gl = self.phantom.glandularity if glandularity is None else glandularity
        return exposure_mgd_mgy(self.geometry, exposure, thickness_mm=t, glandularity=gl, beam_path=self.beam_path)
