"""One virtual patient: its draw from the cohort, its breast sub-volume, and its images in every arm.

**Case draw** (:func:`draw_case`): case ``i`` of a trial uses ``numpy.random.SeedSequence([trial seed, i])``;
thickness, glandularity, lesion type (by weight), lesion size, presence (``lesion_present_fraction``) and
the lesion's position are drawn from it. Lesion-absent cases still draw a type, size and position: the
location the observer inspects. A mass's density (its contrast, ``density_g_cm3``) comes from a stream
of its own (``[case seed, 3]``), so the draws above do not depend on it. The draw is identical whatever
worker computes it.

**Phantom** (:func:`case_phantom`): a *sub-volume* of a compressed breast, not a whole breast - a slab
of the case's thickness on the support, just wide enough that every ray reaching the imaged detector
window crosses tissue only (no outline). Parenchyma: a 1/f^beta Gaussian random field (beta 3 by
default; :func:`simulator.imaging.phantoms.breast.power_law_field`) on a coarse grid, trilinearly
resampled, thresholded so the requested volume fraction is glandular; 1.5 mm of skin under the paddle
and over the support. Masses: voxelised ellipsoids of mass tissue (glandular composition at the drawn
density; the default 1.06 g/cm^3 is the material table's own), with thin ellipsoidal spicules if
spiculated. Calcification clusters: exact analytic spheres (hydroxyapatite or calcium oxalate)
displacing the tissue at their centres. Lesion site and the lesion-free *control site* lie at the
same height, mirrored in x about the slab centre.

**Images** (:func:`image_case`): the gantry's own physics without the wire: the exam's planned
exposures (:func:`protocols.exams.expand_exam`) with the technique the host AEC picks
(:func:`firmware_host.aec.choose_technique`) from a scout rendered by the same
:class:`~simulator.imaging.imager.ExposureImager` over the AEC region (20 mm square, 30 mm from the chest
wall), times the arm's ``dose_scale``; manual exams use their own technique. Each exposure becomes an
:class:`~protocols.records.ExposureRecord` (window angles of the plan) and is rendered onto a detector
*window* around the two sites (same native pitch, binning ``pitch_mm / 0.05``). Flat fields: the
noiseless open-field images; log-normalised with :func:`reconstruction.preprocess.line_integrals`.
DBT: FBP (:func:`reconstruction.fbp.fbp`, full ramp with Hann apodisation as ``crescent acquire``) of the
in-focus slice only, at the lesion's height, voxel = detector pitch; 2D: the log image. ROIs of
``roi_mm`` are cut around the lesion site and the control site (for 2D, their projections from the
0-degree focal spot). MGD: Dance's per exposure (:func:`physics.exposure_dose.exposure_mgd_mgy`), scout
included.

**Over the wire** (``gantry_subset``, :mod:`crescent.trial.gantry`): the arm's exam runs on the virtual-time
simulated gantry with the host controller, imaging the same phantom onto the same window; the frames and
the exposure records the host received replace the planned ones above, and the rest is the same. Such an
arm is cross-checked: its frames are rendered again from their records (equal, pixel for pixel) and it
is imaged through the direct path as well (``rois_direct``).

Units: mm, degrees, kV, mAs, mGy.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Height of the lesion and control sites above the chest wall (y), mm.
SITE_Y_MM = 45.0
#: Largest random shift of the lesion site from its nominal position (x and y), mm.
SITE_JITTER_MM = 2.0
#: Skin layer under the paddle and over the support, mm.
SKIN_MM = 1.5
#: Extra detector width on both sides of the reconstructed region (the ramp filter is non-local), mm.
RAMP_MARGIN_MM = 6.0
#: AEC region of the host (firmware_host.aec.aec_roi defaults): square side and depth from the chest wall, mm.
AEC_SIZE_MM, AEC_DEPTH_MM = 20.0, 30.0


@dataclass(frozen=True)
class CaseDraw:
    """What one virtual patient is: breast and lesion (mm; glandularity as a volume fraction)."""

    index: int
    seed: int
    thickness_mm: float
    glandularity: float
    lesion_type: str
    lesion_present: bool
    lesion_diameter_mm: float
    lesion_extent_mm: float
    spiculated: bool
    lesion_x_mm: float
    lesion_y_mm: float
    lesion_z_mm: float
    control_x_mm: float
    #: mass: the drawn density of its tissue (glandular composition), g/cm^3; calcifications: their material's
    lesion_density_g_cm3: float = 1.06

    def as_row(self) -> dict[str, Any]:
        """Flat dict for the results table."""
        return asdict(self)


def case_seed(trial_seed: int, index: int) -> int:
    """The 63-bit seed of case ``index`` (SeedSequence of trial seed and index)."""
    return int(np.random.SeedSequence([int(trial_seed), int(index)]).generate_state(2, np.uint64)[0] >> np.uint64(1))


def _sample(dist: Any, rng: np.random.Generator) -> float:
    if dist.distribution == "uniform":
        return float(rng.uniform(dist.low, dist.high)) if dist.high > dist.low else float(dist.low)
    return float(np.clip(rng.normal(dist.mean, dist.sd), dist.low, dist.high))


def site_offset_mm(roi_mm: float) -> float:
    """|x| of the nominal lesion and control sites: far enough apart that their ROIs never overlap, mm."""
    return 0.5 * roi_mm + SITE_JITTER_MM + 1.0


def draw_case(spec: Any, index: int) -> CaseDraw:
    """Draw case ``index`` of the trial ``spec`` (a :class:`~crescent.trial.model.TrialSpec`)."""
    c = spec.cohort
    seed = case_seed(c.seed, index)
    rng = np.random.default_rng(seed)
    thickness = round(_sample(c.thickness_mm, rng), 2)
    gland = _sample(c.glandularity, rng)
    weights = np.array([les.weight for les in c.lesions], float)
    kind = c.lesions[int(rng.choice(len(c.lesions), p=weights / weights.sum()))]
    present = bool(rng.random() < c.lesion_present_fraction)
    diam = _sample(kind.diameter_mm, rng)
    if kind.type == "mass":
        spic = bool(rng.random() < kind.spiculated_fraction)
        extent = diam + (2 * kind.spicule_length_mm if spic else 0.0)
    else:
        spic = False
        extent = 4.0 * kind.spread_mm + diam
    off = site_offset_mm(spec.imaging.roi_mm)
    x = -off + float(rng.uniform(-SITE_JITTER_MM, SITE_JITTER_MM))
    y = SITE_Y_MM + float(rng.uniform(-SITE_JITTER_MM, SITE_JITTER_MM))
    margin = 0.5 * min(extent, thickness * 0.5) + SKIN_MM + 2.0
    lo, hi = margin, thickness - margin
    z = spec_support_z(spec) + (float(rng.uniform(lo, hi)) if hi > lo else 0.5 * thickness)
    # the contrast from a stream of its own: the draws above (and so every earlier trial's cases) are unchanged
    if kind.type == "mass":
        density = round(_sample(kind.density_g_cm3, np.random.default_rng([seed, 3])), 4)
    else:
        from physics.materials import material

        density = material(kind.material).density_g_cm3
    return CaseDraw(index, seed, thickness, round(gland, 4), kind.type, present, round(diam, 4), round(extent, 4),
                    spic, round(x, 4), round(y, 4), round(z, 4), round(-x, 4), density)


def spec_support_z(spec: Any) -> float:
    """Breast support height of the trial's gantry, mm."""
    return gantry_geometry(spec.gantry).support_height_mm


_CONFIG_CACHE: dict[str, Any] = {}


def _gantry_config(gantry: str) -> Any:
    if gantry not in _CONFIG_CACHE:
        from simulator.gantry import load_config

        _CONFIG_CACHE[gantry] = load_config(gantry)
    return _CONFIG_CACHE[gantry]


def gantry_geometry(gantry: str) -> Any:
    """The :class:`protocols.geometry.AcquisitionGeometry` of a gantry preset or file (cached)."""
    return _gantry_config(gantry).geometry


def gantry_kv_rise_s(gantry: str) -> float:
    """The generator's 10-90 % kV rise time of a gantry preset or file, s (the delivered kV's deficit)."""
    return _gantry_config(gantry).generator.kv_rise_time_ms / 1000.0


# ----------------------------------------------------------------------------------------------- geometry


def _project(src: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Detector-plane (z = 0) intersections (x, y) of rays from ``src`` through ``pts`` (n, 3)."""
    t = src[2] / (src[2] - pts[:, 2])
    return src[:2] + (pts[:, :2] - src[:2]) * t[:, None]


def _backproject(src: np.ndarray, xy: np.ndarray, z: float) -> np.ndarray:
    """Points (x, y) at height ``z`` on the rays from ``src`` to detector points ``xy`` (n, 2)."""
    t = (src[2] - z) / src[2]
    return src[:2] + (xy - src[:2]) * t


def _box(x0: float, x1: float, y0: float, y1: float, z0: float, z1: float) -> np.ndarray:
    return np.array([[x, y, z] for x in (x0, x1) for y in (y0, y1) for z in (z0, z1)], float)


@dataclass(frozen=True)
class Layout:
    """Where one case is imaged: the object region of the ROIs, the detector window and the slab, mm."""

    region: tuple[float, float, float, float]   # x0, x1, y0, y1 of the reconstructed / inspected area
    window: Any                                  # DetectorGeometry of the imaged window
    slab: tuple[float, float, float, float]      # x0, x1, y0, y1 of the phantom sub-volume


def case_layout(spec: Any, geometry: Any, thickness_mm: float, angles_deg: list[float]) -> Layout:
    """The detector window and slab that make every ray of the ROIs cross tissue only (see module doc)."""
    from protocols.geometry import DetectorGeometry

    roi = spec.imaging.roi_mm
    off = site_offset_mm(roi)
    half_x = off + SITE_JITTER_MM + 0.5 * roi + 1.0
    y0, y1 = SITE_Y_MM - SITE_JITTER_MM - 0.5 * roi - 1.0, SITE_Y_MM + SITE_JITTER_MM + 0.5 * roi + 1.0
    zs, zt = geometry.support_height_mm, geometry.support_height_mm + thickness_mm
    corners = _box(-half_x, half_x, y0, y1, zs, zt)
    sources = [np.array(geometry.source_position(a)) for a in sorted(set(angles_deg) | {0.0})]
    xy = np.concatenate([_project(s, corners) for s in sources])
    pitch = spec.imaging.pitch_mm
    dx0, dx1 = xy[:, 0].min() - RAMP_MARGIN_MM, xy[:, 0].max() + RAMP_MARGIN_MM
    dy0, dy1 = max(0.0, xy[:, 1].min() - 1.0), xy[:, 1].max() + 1.0
    cols = int(math.ceil((dx1 - dx0) / pitch))
    rows = int(math.ceil((dy1 - dy0) / pitch))
    window = DetectorGeometry(native_pitch_mm=0.05, binning=int(round(pitch / 0.05)), rows=rows, cols=cols,
                              offset_x_mm=round(0.5 * (dx0 + dx1), 6), offset_y_mm=round(dy0, 6))
    # slab: every ray from any source to the window (and to the AEC region at 0 deg) inside tissue
    det = _box(dx0, dx1, dy0, dy1, 0.0, 0.0)[:, :2]
    aec = _box(-0.5 * AEC_SIZE_MM, 0.5 * AEC_SIZE_MM, AEC_DEPTH_MM - 0.5 * AEC_SIZE_MM,
               AEC_DEPTH_MM + 0.5 * AEC_SIZE_MM, 0.0, 0.0)[:, :2]
    pts = [_backproject(s, det, z) for s in sources for z in (zs, zt)]
    src0 = np.array(geometry.source_position(0.0))  # the AEC scout is taken at 0 deg
    pts += [_backproject(src0, aec, z) for z in (zs, zt)]
    allp = np.concatenate(pts)
    slab = (float(allp[:, 0].min() - 1.0), float(allp[:, 0].max() + 1.0),
            float(max(allp[:, 1].min() - 1.0, 0.0)), float(allp[:, 1].max() + 1.0))
    return Layout((-half_x, half_x, y0, y1), window, slab)


# ----------------------------------------------------------------------------------------------- phantom


def case_phantom(spec: Any, draw: CaseDraw, slab: tuple[float, float, float, float], support_mm: float) -> Any:
    """The case's breast sub-volume (a :class:`~simulator.imaging.phantoms.base.Phantom`), lesion inserted if present."""
    from scipy.ndimage import zoom

    from physics.materials import LABEL_OF, MASS
    from simulator.imaging.phantoms.analytic import AnalyticObject, AnalyticPhantom, Ellipsoid, Sphere, rot_y, rot_z
    from simulator.imaging.phantoms.base import Phantom
    from simulator.imaging.phantoms.breast import glandularity_by_weight, power_law_field
    from simulator.imaging.phantoms.voxel import Lesion, VoxelPhantom, voxelise

    rng = np.random.default_rng([draw.seed, 1])  # the texture and lesion shape stream, apart from the draw's
    v = spec.imaging.phantom_voxel_mm
    x0, x1, y0, y1 = slab
    t = draw.thickness_mm
    nz = max(1, int(round(t / v)))
    dz = t / nz
    ny, nx = int(math.ceil((y1 - y0) / v)), int(math.ceil((x1 - x0) / v))
    step = spec.cohort.texture.scale_mm
    fshape = (int(math.ceil(t / step)) + 2, int(math.ceil((y1 - y0) / step)) + 2, int(math.ceil((x1 - x0) / step)) + 2)
    field = power_law_field(fshape, spec.cohort.texture.beta, rng)
    thr = float(np.quantile(field, 1.0 - draw.glandularity))
    fine = zoom(field, (nz / fshape[0], ny / fshape[1], nx / fshape[2]), order=1, grid_mode=True, mode="nearest")
    labels = np.where(fine[:nz, :ny, :nx] > thr, LABEL_OF["glandular"], LABEL_OF["adipose"]).astype(np.uint8)
    del fine
    n_skin = max(1, int(round(SKIN_MM / dz)))
    labels[:n_skin] = LABEL_OF["skin"]
    labels[-n_skin:] = LABEL_OF["skin"]
    vox = VoxelPhantom(np.ascontiguousarray(labels), (dz, v, v), (x0, y0, support_mm))
    lesions: list[Any] = []
    calcs: list[Any] = []
    densities: dict[int, float] = {}
    centre = (draw.lesion_x_mm, draw.lesion_y_mm, draw.lesion_z_mm)
    kind = next(les for les in spec.cohort.lesions if les.type == draw.lesion_type)
    if draw.lesion_present and draw.lesion_type == "mass":
        r = 0.5 * draw.lesion_diameter_mm
        axes = (r * rng.uniform(0.85, 1.15), r * rng.uniform(0.85, 1.15), r * rng.uniform(0.85, 1.0))
        objs = [AnalyticObject(Ellipsoid(centre, axes, rot_z(float(rng.uniform(0, 180)))), LABEL_OF["mass"])]
        if draw.spiculated:
            for _ in range(kind.spicules):
                phi, theta = float(rng.uniform(0, 360)), float(np.degrees(np.arccos(rng.uniform(-0.5, 0.5))))
                rot = rot_z(phi) @ rot_y(theta - 90.0)
                u = rot @ np.array([1.0, 0.0, 0.0])
                half = 0.5 * (kind.spicule_length_mm + r)
                c = tuple(float(p) for p in np.asarray(centre) + u * half)
                objs.append(AnalyticObject(Ellipsoid(c, (half, 0.25, 0.25), rot), LABEL_OF["mass"]))
        voxelise(vox, objs)
        lesions.append(Lesion("mass", centre, draw.lesion_diameter_mm, LABEL_OF["mass"]))
        if draw.lesion_density_g_cm3 != MASS.density_g_cm3:  # the default mass tissue is the table's own
            densities[LABEL_OF["mass"]] = draw.lesion_density_g_cm3
    elif draw.lesion_present:
        label = LABEL_OF[kind.material]
        for _ in range(kind.count):
            o = rng.normal(0.0, kind.spread_mm, 3)
            o[2] = float(np.clip(o[2] * 0.3, -1.0, 1.0))
            c = tuple(float(p) for p in np.asarray(centre) + o)
            d = _sample(kind.diameter_mm, rng)
            host = _label_at(vox, c) or LABEL_OF["adipose"]
            calcs.append(AnalyticObject(Sphere(c, 0.5 * d), label, replaces=host))
            lesions.append(Lesion("calcification", c, d, label))
    return Phantom("trial-breast", t, support_mm, vox, AnalyticPhantom(calcs), lesions,
                   glandularity=glandularity_by_weight(draw.glandularity), densities_g_cm3=densities)


def _label_at(vox: Any, p: tuple[float, float, float]) -> int:
    dz, dy, dx = vox.voxel_mm
    i = int((p[0] - vox.origin_mm[0]) / dx)
    j = int((p[1] - vox.origin_mm[1]) / dy)
    k = int((p[2] - vox.origin_mm[2]) / dz)
    nz, ny, nx = vox.shape
    return int(vox.labels[k, j, i]) if 0 <= i < nx and 0 <= j < ny and 0 <= k < nz else 0


# ----------------------------------------------------------------------------------------------- imaging


def _records(planned: list[Any], first_frame: int = 1, kv_rise_s: float = 0.0) -> list[Any]:
    """Exposure records of planned exposures as the simulated gantry delivers them on average.

    Frames are numbered from ``first_frame``; each record's kV is the set kV times the generator's mean
    rise deficit over the window (:func:`simulator.gantry.generator.mean_rise_factor`, ``kv_rise_s`` the
    10-90 % rise time, s): what the gantry measures and renders, less its ripple noise (0.1 % of the kV
    per exposure by default).
    """
    from protocols.records import ExposureRecord
    from simulator.gantry.generator import mean_rise_factor

    out, t = [], 0.0
    for i, p in enumerate(planned):
        w = p.window_ms / 1e3
        kvp = p.kvp * mean_rise_factor(w, kv_rise_s)
        out.append(ExposureRecord(index=p.index, frame_id=first_frame + i, planned_angle_deg=p.planned_angle_deg,
                                  angle_start_deg=p.window_start_angle_deg, angle_end_deg=p.window_end_angle_deg,
                                  kvp=kvp, mas=p.mas, anode_filter=p.anode_filter, focal_spot_mm=p.focal_spot_mm,
                                  window_start_s=t, window_end_s=t + w, is_scout=p.role == "aec_scout"))
        t += w + 0.1
    return out


def technique_for(exam: Any, phantom: Any, geometry: Any, seed: int, dose_scale: float,
                  noise: bool = True, kv_rise_s: float = 0.0, limits: Any = None,
                  scatter: bool = False) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """(projection records, scout records, AEC notes) of one exam on one phantom: the host's AEC on a rendered scout.

    The scout is the host's (:func:`firmware_host.exam_plan.host_scout_exposure`: stretched to the host's
    minimum window), static exposures take their tube current from the gantry's ``limits``
    (:class:`protocols.limits.DeviceLimits`, default the standard limits), frames are numbered as a freshly
    booted gantry numbers them (the scout 1, then the projections), and every record carries the kV the
    generator delivers on average (``kv_rise_s``, see :func:`_records`). ``scatter``: the scout is rendered
    with the detector's scatter model or without, as the case's projections are (``imaging.scatter``).
    """
    from protocols.limits import DeviceLimits

    limits = limits if limits is not None else DeviceLimits()
    from firmware_host.aec import choose_technique
    from firmware_host.exam_plan import ExamOptions, host_scout_exposure
    from protocols.exams import AecTechnique, ProjectionTechnique, expand_exam
    from protocols.exams.plan import exam_technique
    from protocols.geometry import DetectorGeometry
    from simulator.imaging.imager import ExposureImager

    tech = exam.technique
    notes: dict[str, Any] = {}
    scouts: list[Any] = []
    if isinstance(tech, AecTechnique):
        scout_plan = host_scout_exposure(exam, limits, ExamOptions().scout_min_window_ms)
        scouts = _records([scout_plan], first_frame=1, kv_rise_s=kv_rise_s)
        n = int(round(AEC_SIZE_MM / 0.4))
        det = DetectorGeometry(native_pitch_mm=0.05, binning=8, rows=n, cols=n, offset_x_mm=0.0,
                               offset_y_mm=AEC_DEPTH_MM - 0.5 * AEC_SIZE_MM)
        g = geometry.model_copy(update={"detector": det})
        im = ExposureImager(phantom, g, seed=seed, noise=noise, focal_spot=False, motion_substeps=1,
                            scatter=scatter)
        img = im.image(scouts[0])
        signal = max(float(img.mean()) - im.detector.offset_adu, 0.0) / 65535.0
        decision = choose_technique(tech, phantom.thickness_mm, signal)
        chosen = exam_technique(exam, decision.technique)
        notes = {"scout_signal": round(signal, 6), "aec_clamped": decision.clamped}
    else:
        chosen = exam_technique(exam)
    if dose_scale != 1.0:
        chosen = ProjectionTechnique(chosen.anode_filter, chosen.kvp, round(chosen.mas * dose_scale, 4),
                                     chosen.focal_spot_mm, chosen.tube_current_ma)
    return _records(expand_exam(exam, chosen, limits), first_frame=1 + len(scouts), kv_rise_s=kv_rise_s), scouts, notes


def _roi(image: np.ndarray, r: float, c: float, n: int) -> np.ndarray:
    """``n x n`` ROI whose centre is nearest pixel (r, c); raises if it leaves the image."""
    r0, c0 = int(round(r - 0.5 * (n - 1))), int(round(c - 0.5 * (n - 1)))
    if r0 < 0 or c0 < 0 or r0 + n > image.shape[0] or c0 + n > image.shape[1]:
        raise RuntimeError(f"ROI at ({r:.1f}, {c:.1f}) px of {n} px leaves the image {image.shape}")
    return np.ascontiguousarray(image[r0 : r0 + n, c0 : c0 + n], dtype=np.float32)


@dataclass
class ArmImages:
    """One arm's images of one case, handed to :func:`image_case`'s ``on_images`` before they are dropped.

    raw: ``(n, rows, cols)`` uint16 ADU on the detector window ``geometry.detector``; exposures: the ``n``
    projections' records, scouts: the AEC scout records (no image kept); mgd_mgy / scout_mgd_mgy /
    air_kerma_mgy: per exposure (mGy); slice_mu / grid: the in-focus FBP slice (1/mm, ``(ny, nx)``)
    and its :class:`~reconstruction.geometry.VolumeGrid` for DBT, None for 2D.
    """

    arm: str
    mode: str
    raw: np.ndarray
    exposures: list[Any]
    scouts: list[Any]
    geometry: Any
    thickness_mm: float
    glandularity: float
    mgd_mgy: list[float]
    air_kerma_mgy: list[float]
    scout_mgd_mgy: list[float]
    scout_air_kerma_mgy: list[float]
    slice_mu: np.ndarray | None
    grid: Any


def direct_imager(spec: Any, phantom: Any, geometry: Any, seed: int) -> Any:
    """The direct path's :class:`~simulator.imaging.imager.ExposureImager` of a case on ``geometry``."""
    from simulator.imaging.imager import ExposureImager

    return ExposureImager(phantom, geometry, seed=seed, scatter=spec.imaging.scatter,
                          motion_substeps=spec.imaging.motion_substeps)


def image_case(spec: Any, draw: CaseDraw, exams: dict[str, Any], arms: list[str],
               on_images: Any = None, wire_arms: list[str] | None = None,
               work: Any = None) -> dict[str, dict[str, Any]]:
    """Image one case in the given arms; returns per arm {"rois": (2, n, n) [lesion site, control site], "row": {...}}.

    ``on_images(ArmImages)``, if given, is called once per arm with that arm's full images (e.g. to write
    them as DICOM) before the next arm is imaged: only one arm's images are ever held.

    ``wire_arms``: arms imaged through the virtual-time gantry over the wire instead
    (:mod:`crescent.trial.gantry`, temporary files under ``work``); each is cross-checked (its frames
    rendered again from their records, which must be equal) and imaged through the direct path too: its
    entry also holds ``"rois_direct"``, and its row the direct path's technique and the comparison.
    """
    from protocols.exams import planned_angles_deg

    wire_arms = list(wire_arms or [])
    geometry = gantry_geometry(spec.gantry)
    by_name = {a.name: a for a in spec.arms}
    angles = sorted({a for name in arms for a in planned_angles_deg(exams[name])})
    layout = case_layout(spec, geometry, draw.thickness_mm, angles)
    phantom = case_phantom(spec, draw, layout.slab, geometry.support_height_mm)
    g = geometry.model_copy(update={"detector": layout.window})
    out: dict[str, dict[str, Any]] = {}
    for name in arms:
        arm = by_name[name]
        exam = exams[name]
        if name in wire_arms:
            from crescent.trial.gantry import rerender_check, run_wire_exam

            wire = run_wire_exam(spec, draw, exam, phantom, layout.window, work, arm.dose_scale)
            check = rerender_check(wire, direct_imager(spec, phantom, wire.geometry, draw.seed))
            res = _arm_result(spec, draw, layout, geometry, wire.geometry, phantom, name, wire.exposures,
                              wire.scouts, wire.notes, wire.raw, on_images)
            del wire.raw
        exposures, scouts, notes = technique_for(exam, phantom, geometry, draw.seed, arm.dose_scale,
                                                 kv_rise_s=gantry_kv_rise_s(spec.gantry),
                                                 limits=_gantry_config(spec.gantry).limits,
                                                 scatter=spec.imaging.scatter)
        imager = direct_imager(spec, phantom, g, draw.seed)
        raw16 = np.stack([imager.image(e) for e in exposures])
        if name not in wire_arms:
            res = _arm_result(spec, draw, layout, geometry, g, phantom, name, exposures, scouts, notes, raw16,
                              on_images)
            res["row"]["imaging_path"] = "direct"
            out[name] = res
            continue
        direct = _arm_result(spec, draw, layout, geometry, g, phantom, name, exposures, scouts, notes, raw16, None)
        d = direct["row"]
        rw, rd = res["rois"], direct["rois"]
        corr = [float(np.corrcoef(rw[k].ravel(), rd[k].ravel())[0, 1]) for k in (0, 1)]
        res["row"].update({
            "imaging_path": "gantry", **wire.evidence, **check,
            "direct_kvp": d["kvp"], "direct_mas_per_exposure": d["mas_per_exposure"], "direct_mgd_mgy": d["mgd_mgy"],
            **({"direct_scout_signal": d["scout_signal"]} if "scout_signal" in d else {}),
            "xcheck_roi_corr_lesion": round(corr[0], 5), "xcheck_roi_corr_control": round(corr[1], 5),
        })
        res["row"]["mas_per_exposure"] = round(res["row"]["mas_per_exposure"], 6)  # delivered: nAs on the wire
        res["rois_direct"] = rd
        out[name] = res
    return out


def _arm_result(spec: Any, draw: CaseDraw, layout: Layout, geometry: Any, g: Any, phantom: Any, name: str,
                exposures: list[Any], scouts: list[Any], notes: dict[str, Any], raw16: np.ndarray,
                on_images: Any) -> dict[str, Any]:
    """ROIs and row of one arm from its raw frames ``raw16`` on the detector of ``g`` (see :func:`image_case`)."""
    from physics.exposure_dose import exposure_mgd_mgy, incident_air_kerma_mgy
    from reconstruction.fbp import fbp
    from reconstruction.filters import FilterSpec
    from reconstruction.geometry import VolumeGrid, projection_geometry
    from reconstruction.preprocess import line_integrals
    from simulator.imaging.detector import DetectorModel
    from simulator.imaging.imager import ExposureImager, make_phantom

    pitch = spec.imaging.pitch_mm
    n = int(round(spec.imaging.roi_mm / pitch))
    raw = raw16.astype(np.float32)
    flat_imager = ExposureImager(make_phantom("uniform", draw.thickness_mm, g, seed=0), g, seed=0, noise=False,
                                 focal_spot=False, motion_substeps=1)
    flat = np.stack([flat_imager.image(e) for e in exposures]).astype(np.float32)
    lines = line_integrals(raw, flat=flat, dark=float(DetectorModel().offset_adu), clip_negative=True)
    sites = ((draw.lesion_x_mm, draw.lesion_y_mm), (draw.control_x_mm, draw.lesion_y_mm))
    sl, grid = None, None
    if len({round(e.mean_angle_deg, 3) for e in exposures}) >= 3:
        x0, x1, y0, y1 = layout.region
        grid = VolumeGrid(voxel_mm=pitch, x_min_mm=x0, x_max_mm=x1, y_min_mm=y0, y_max_mm=y1,
                          z_mm=(draw.lesion_z_mm,))
        pg = projection_geometry(g, exposures, draw.thickness_mm)
        sl = fbp(lines, pg, grid, FilterSpec(ramp_fraction=1.0, apodisation="hann", cutoff=1.0), workers=1)[0]
        xs = x0 + (np.arange(sl.shape[1]) + 0.5) * pitch
        ys = y0 + (np.arange(sl.shape[0]) + 0.5) * pitch
        rois = [_roi(sl, (y - ys[0]) / pitch, (x - xs[0]) / pitch, n) for x, y in sites]
        mode = "dbt"
    else:
        img = lines.mean(axis=0)
        src = np.array(g.source_position(exposures[0].mean_angle_deg))
        det = g.detector
        rois = []
        for x, y in sites:
            px, py = _project(src, np.array([[x, y, draw.lesion_z_mm]]))[0]
            c = (px - det.offset_x_mm) / det.pitch_mm + 0.5 * (det.cols - 1)
            r = (py - det.offset_y_mm) / det.pitch_mm - 0.5
            rois.append(_roi(img, r, c, n))
        mode = "2d"
    t, gl = phantom.thickness_mm, phantom.glandularity
    mgd_each = [exposure_mgd_mgy(geometry, e, thickness_mm=t, glandularity=gl) for e in exposures]
    mgd_scouts = [exposure_mgd_mgy(geometry, e, thickness_mm=t, glandularity=gl) for e in scouts]
    mgd_proj, mgd_scout = sum(mgd_each), sum(mgd_scouts)
    if on_images is not None:
        top = geometry.support_height_mm + t
        on_images(ArmImages(name, mode, raw16, exposures, scouts, g, t, gl, mgd_each,
                            [incident_air_kerma_mgy(geometry, e, top) for e in exposures], mgd_scouts,
                            [incident_air_kerma_mgy(geometry, e, top) for e in scouts], sl, grid))
    e0 = exposures[0]
    row = {"arm": name, "mode": mode, "n_exposures": len(exposures), "anode_filter": e0.anode_filter,
           "kvp": e0.kvp, "mas_per_exposure": e0.mas, "mas_total": round(sum(e.mas for e in exposures), 4),
           "mgd_mgy": round(mgd_proj + mgd_scout, 5), "mgd_scout_mgy": round(mgd_scout, 5),
           "window_rows": g.detector.rows, "window_cols": g.detector.cols, "roi_px": n, **notes}
    return {"rois": np.stack(rois), "row": row}
