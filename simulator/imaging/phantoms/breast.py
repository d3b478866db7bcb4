"""Seeded compressed-breast voxel phantom.

Structure (gantry frame, mm): the breast lies on the support, from
``z0 = support_height_mm`` to ``z0 + thickness_mm``, chest wall at ``y = 0``.

* outline: a half ellipse in xy (half-width ``width/2`` along x, depth along
  y), with a rounded rim of radius ``thickness/2`` where the paddle loses
  contact (the compressed-breast edge);
* skin: the outer ``skin_mm`` (default 1.5 mm) of the surface, including the
  paddle and support contact faces;
* parenchyma: a 3-D Gaussian random field with power spectrum ``1/f^beta``
  (beta = 3, the exponent measured on mammograms and breast CT: Burgess et
  al., Med. Phys. 28 (2001) 419; Metheany et al., Med. Phys. 35 (2008) 4685),
  biased toward the centre and thresholded so that the requested volume
  fraction of the interior is glandular, the rest adipose;
* masses: ellipsoids of "mass" tissue (voxelised), 5-12 mm;
* microcalcification clusters: hydroxyapatite spheres of 0.1-0.5 mm kept as
  *analytic* objects (exact sub-voxel line integrals), each displacing the
  tissue at its centre.

The texture is generated on a coarse grid (``texture_mm``) by FFT and
trilinearly sampled per voxel inside a numba kernel, so a clinical 0.1 mm
phantom (~700 M voxels) builds in seconds without a float copy of the volume.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from physics.materials import GLANDULAR, ADIPOSE, LABEL_OF
from simulator.imaging.phantoms.analytic import AnalyticObject, AnalyticPhantom, Ellipsoid, Sphere, rot_z
from simulator.imaging.phantoms.base import Phantom
from simulator.imaging.phantoms.voxel import Lesion, VoxelPhantom, voxelise

ADIPOSE_L, GLAND_L, SKIN_L, MASS_L, HA_L = (LABEL_OF[n] for n in ("adipose", "glandular", "skin", "mass", "hydroxyapatite"))


#: The texture field is drawn over a z extent rounded up to a multiple of this (mm), so that a small
#: change of the compressed thickness leaves the texture as it was.
TEXTURE_Z_STEP_MM = 10.0


def power_law_field(shape: tuple[int, int, int], beta: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-variance Gaussian random field with power spectrum ~ 1/|f|^beta (float32)."""
    white = rng.standard_normal(shape).astype(np.float32)
    spec = np.fft.rfftn(white)
    fz = np.fft.fftfreq(shape[0])[:, None, None]
    fy = np.fft.fftfreq(shape[1])[None, :, None]
    fx = np.fft.rfftfreq(shape[2])[None, None, :]
    f = np.sqrt(fz**2 + fy**2 + fx**2)
    f[0, 0, 0] = 1.0
    amp = f ** (-beta / 2.0)
    amp[0, 0, 0] = 0.0
    field = np.fft.irfftn(spec * amp, s=shape, axes=(0, 1, 2)).astype(np.float32)
    field -= field.mean()
    field /= field.std() + 1e-12
    return field


@nb.njit(cache=True, parallel=True)
def _fill(labels, field, fstep, x0, y0, z0, d, half_w, depth, thick, skin, bias, thr,
          l_air, l_fat, l_gland, l_skin):  # pragma: no cover - numba
    nz, ny, nx = labels.shape
    fz, fy, fx = field.shape
    rim = 0.5 * thick
    for k in nb.prange(nz):
        z = z0 + (k + 0.5) * d[0]
        h = z - (z0 + 0.5 * thick)  # height above mid-plane
        inset = rim - math.sqrt(max(rim * rim - h * h, 0.0))  # rounded edge
        dz_face = 0.5 * thick - abs(h)  # distance to paddle/support face
        for j in range(ny):
            y = y0 + (j + 0.5) * d[1]
            for i in range(nx):
                x = x0 + (i + 0.5) * d[2]
                if y < 0.0:
                    labels[k, j, i] = l_air
                    continue
                # distance inside the half-ellipse outline, approximated along the radius
                r = math.sqrt((x / half_w) ** 2 + (y / depth) ** 2)
                dist = (1.0 - r) * min(half_w, depth) if r > 0 else min(half_w, depth)
                depth_in = dist - inset
                if depth_in < 0.0:
                    labels[k, j, i] = l_air
                    continue
                if depth_in < skin or dz_face < skin:
                    labels[k, j, i] = l_skin
                    continue
                # trilinear sample of the coarse texture field
                u = (z - z0) / fstep - 0.5
                v = (y - 0.0) / fstep - 0.5
                w = (x + half_w) / fstep - 0.5
                iu = min(max(int(math.floor(u)), 0), fz - 2)
                iv = min(max(int(math.floor(v)), 0), fy - 2)
                iw = min(max(int(math.floor(w)), 0), fx - 2)
                au = min(max(u - iu, 0.0), 1.0)
                av = min(max(v - iv, 0.0), 1.0)
                aw = min(max(w - iw, 0.0), 1.0)
                val = 0.0
                for a in range(2):
                    wa = au if a else 1.0 - au
                    for b in range(2):
                        wb = av if b else 1.0 - av
                        for c in range(2):
                            wc = aw if c else 1.0 - aw
                            val += wa * wb * wc * field[iu + a, iv + b, iw + c]
                val += bias * (1.0 - r)
                labels[k, j, i] = l_gland if val > thr else l_fat


def glandularity_by_weight(volume_fraction: float) -> float:
    """Convert a glandular volume fraction to the weight fraction used by the dose tables."""
    mg = volume_fraction * GLANDULAR.density_g_cm3
    return mg / (mg + (1 - volume_fraction) * ADIPOSE.density_g_cm3)


def breast_phantom(thickness_mm: float, support_height_mm: float, seed: int, *, voxel_mm: float = 0.25,
                   glandular_fraction: float = 0.2, width_mm: float = 160.0, depth_mm: float = 90.0,
                   skin_mm: float = 1.5, texture_mm: float = 0.5, beta: float = 3.0, n_masses: int = 1,
                   n_clusters: int = 1, calcs_per_cluster: int = 8) -> Phantom:
    """Build a seeded compressed breast of ``thickness_mm`` lying on the support.

    ``glandular_fraction`` is the glandular *volume* fraction of the tissue
    inside the skin. Returns a :class:`Phantom` whose ``lesions`` list every
    mass and calcification (centre in the gantry frame, diameter in mm).

    >>> ph = breast_phantom(30.0, 20.0, seed=1, voxel_mm=1.0, width_mm=60, depth_mm=40)
    >>> ph.voxels.labels.shape[0], len(ph.lesions) > 0
    (30, True)
    """
    if not 10.0 <= thickness_mm <= 120.0:
        raise ValueError(f"breast thickness {thickness_mm} mm outside 10-120 mm")
    # Separate seeded streams for the tissue texture and the lesions, and a texture field drawn on a z
    # extent rounded up to TEXTURE_Z_STEP_MM: a breast compressed to 51.00 or 51.04 mm (the paddle's
    # real-time control decides) is the same breast, with the same lesions in the same places.
    rng = np.random.default_rng([seed, 1])
    rng_texture = np.random.default_rng([seed, 0])
    half_w = 0.5 * width_mm
    nz = max(1, int(round(thickness_mm / voxel_mm)))
    dz = thickness_mm / nz
    ny = int(math.ceil(depth_mm / voxel_mm))
    nx = int(math.ceil(width_mm / voxel_mm))
    labels = np.empty((nz, ny, nx), dtype=np.uint8)
    z_extent = TEXTURE_Z_STEP_MM * math.ceil(thickness_mm / TEXTURE_Z_STEP_MM)
    fshape = (max(2, int(math.ceil(z_extent / texture_mm)) + 1), int(math.ceil(depth_mm / texture_mm)) + 1,
              int(math.ceil(width_mm / texture_mm)) + 1)
    field = power_law_field(fshape, beta, rng_texture)
    bias = 0.8  # glandular tissue concentrates centrally (retro-areolar)
    # threshold for the requested volume fraction, measured on the coarse field inside the outline
    zz, yy, xx = np.meshgrid((np.arange(fshape[0]) + 0.5) * texture_mm, (np.arange(fshape[1]) + 0.5) * texture_mm,
                             (np.arange(fshape[2]) + 0.5) * texture_mm - half_w, indexing="ij")
    r = np.sqrt((xx / half_w) ** 2 + (yy / depth_mm) ** 2)
    inside = (r < 1.0) & (zz < thickness_mm)
    thr = float(np.quantile(field[inside] + bias * (1.0 - r[inside]), 1.0 - glandular_fraction))
    _fill(labels, field, texture_mm, -half_w, 0.0, support_height_mm, np.array([dz, voxel_mm, voxel_mm]),
          half_w, depth_mm, thickness_mm, skin_mm, bias, thr, 0, ADIPOSE_L, GLAND_L, SKIN_L)
    vox = VoxelPhantom(labels, (dz, voxel_mm, voxel_mm), (-half_w, 0.0, support_height_mm))

    lesions: list[Lesion] = []
    z_lo, z_hi = support_height_mm + skin_mm + 6.0, support_height_mm + thickness_mm - skin_mm - 6.0
    masses = []
    for _ in range(n_masses):
        diam = float(rng.uniform(5.0, min(12.0, 0.5 * thickness_mm)))
        c = _interior_point(rng, half_w, depth_mm, z_lo, z_hi, margin=diam)
        axes = (0.5 * diam * rng.uniform(0.8, 1.2), 0.5 * diam * rng.uniform(0.8, 1.2), 0.5 * diam * rng.uniform(0.8, 1.0))
        masses.append(AnalyticObject(Ellipsoid(c, axes, rot_z(float(rng.uniform(0, 180)))), MASS_L))
        lesions.append(Lesion("mass", c, diam, MASS_L))
    voxelise(vox, masses)

    calcs = []
    for _ in range(n_clusters):
        cc = _interior_point(rng, half_w, depth_mm, z_lo, z_hi, margin=10.0)
        for _ in range(calcs_per_cluster):
            off = rng.normal(0.0, 2.0, 3)
            off[2] = np.clip(off[2], -2.0, 2.0)
            c = tuple(float(v) for v in np.asarray(cc) + off)
            diam = float(rng.uniform(0.1, 0.5))
            host = int(_label_at(vox, c)) or ADIPOSE_L
            calcs.append(AnalyticObject(Sphere(c, 0.5 * diam), HA_L, replaces=host))
            lesions.append(Lesion("calcification", c, diam, HA_L))
    return Phantom("breast", thickness_mm, support_height_mm, vox, AnalyticPhantom(calcs), lesions,
                   glandularity=glandularity_by_weight(glandular_fraction))


def _interior_point(rng: np.random.Generator, half_w: float, depth: float, z_lo: float, z_hi: float,
                    margin: float) -> tuple[float, float, float]:
    """A random point well inside the outline (radius <= 0.6 of the ellipse) and between z_lo and z_hi."""
    while True:
        x = rng.uniform(-0.6, 0.6) * half_w
        y = rng.uniform(margin, 0.6 * depth)
        if (x / half_w) ** 2 + (y / depth) ** 2 < 0.36:
            z = rng.uniform(z_lo, z_hi) if z_hi > z_lo else 0.5 * (z_lo + z_hi)
            return (float(x), float(y), float(z))


def _label_at(vox: VoxelPhantom, p: tuple[float, float, float]) -> int:
    dz, dy, dx = vox.voxel_mm
    i = int((p[0] - vox.origin_mm[0]) / dx)
    j = int((p[1] - vox.origin_mm[1]) / dy)
    k = int((p[2] - vox.origin_mm[2]) / dz)
    nz, ny, nx = vox.shape
    if 0 <= i < nx and 0 <= j < ny and 0 <= k < nz:
        return int(vox.labels[k, j, i])
    return 0
