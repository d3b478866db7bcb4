"""Scatter in the product's projection images (simulator.imaging.scatter) and the anti-scatter grid.

The product path: the simulated gantry builds its imager with :func:`simulator.gantry.detector.build_imager`
from the gantry config, whose default has scatter on and no grid.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from protocols.records import ExposureRecord
from simulator.gantry.config import DetectorConfig, GantryConfig, PhantomConfig
from simulator.gantry.detector import build_imager
from simulator.imaging import scatter as scatter_mod
from simulator.imaging.imager import ExposureImager, make_phantom
from simulator.imaging.projector import pixel_grid
from simulator.imaging.scatter import AntiScatterGrid

#: 0.4 mm pixels over the default panel's area: the product's physics at a test's cost.
GEOMETRY = AcquisitionGeometry(detector=DetectorGeometry(native_pitch_mm=0.05, binning=8, rows=300, cols=375))

BOONE_A, BOONE_B, BOONE_C = -2.35452817439093, 22.3960980055927, 8.85064260299289


def exposure(angle: float = 0.0, frame: int = 1) -> ExposureRecord:
    return ExposureRecord(index=0, frame_id=frame, planned_angle_deg=angle, angle_start_deg=angle,
                          angle_end_deg=angle, kvp=29, mas=20, anode_filter="W/Rh", window_start_s=0,
                          window_end_s=0.1)


def product_imager(thickness_mm: float = 50.0, *, noise: bool = False, **detector: object) -> ExposureImager:
    """The imager the simulated gantry builds from its default config (optionally changed), 1 mm voxels."""
    cfg = GantryConfig().with_overrides(detector={"noise": noise, **detector})
    return build_imager(GEOMETRY, PhantomConfig(name="breast", seed=1, voxel_mm=1.0), cfg.detector, seed=7,
                        thickness_mm=thickness_mm)


def components(imager: ExposureImager, e: ExposureRecord) -> tuple[np.ndarray, np.ndarray]:
    """(primary, scatter) of the product imager, keV per pixel: the same imager with scatter off gives the primary."""
    off = ExposureImager(imager.phantom, imager.geometry, seed=imager.seed, noise=False, scatter=False,
                         beam_path=imager.beam_path)
    p, _ = off.expected_signal(e)
    total, _ = imager.expected_signal(e)
    return p, total - p


def spr_at_breast_centroid(imager: ExposureImager, e: ExposureRecord, window_mm: float = 20.0) -> float:
    """Scatter / primary summed over a square window at the breast's centre of mass (averages the texture)."""
    p, s = components(imager, e)
    xs, ys = pixel_grid(GEOMETRY.detector, 1)
    # the breast phantom: half-ellipse 160 mm wide along the chest wall (x), 90 mm deep (y)
    r = int(np.argmin(np.abs(ys - 4.0 * 90.0 / (3.0 * math.pi))))
    c = int(np.argmin(np.abs(xs)))
    h = int(round(0.5 * window_mm / GEOMETRY.detector.pitch_mm))
    win = (slice(r - h, r + h + 1), slice(c - h, c + h + 1))
    return float(s[win].sum() / p[win].sum())


def test_the_product_default_has_scatter_on_and_no_grid() -> None:
    assert DetectorConfig().scatter is True and DetectorConfig().grid is False
    im = product_imager()
    assert im.scatter is True and im.grid is None


def boone_deviation(imager: ExposureImager) -> float:
    # Boone et al., Med. Phys. 27 (2000) 2408, fitted SPR of a semicircular breast (see
    # tests/physics/test_physics_scatter_mc.py); the phantom's half-ellipse of 80 x 90 mm semi-axes has the
    # area of a semicircle of diameter 2 sqrt(80 x 90) = 170 mm. Breast centroid, 50 mm, no grid.
    d_cm, t_cm = 2.0 * math.sqrt(80.0 * 90.0) / 10.0, imager.phantom.thickness_mm / 10.0
    boone = 1.0 / (BOONE_A + BOONE_B * d_cm**-1.5 + BOONE_C * t_cm**-0.5)
    return spr_at_breast_centroid(imager, exposure()) / boone - 1.0


def test_product_image_spr_at_the_breast_centre_matches_boone_2000() -> None:
    dev = boone_deviation(product_imager(50.0))
    print(f"product image SPR vs Boone 2000 at 50 mm: {dev:+.3f}")
    assert abs(dev) <= 0.10


def test_the_boone_image_check_fails_with_scatter_off() -> None:
    assert abs(boone_deviation(product_imager(50.0, scatter=False))) > 0.10


def _direct_sum(src: np.ndarray, kern: np.ndarray, r: int, c: int, block: int) -> float:
    """Brute-force scatter at pixel (r, c): every source pixel times the kernel cell of its displacement."""
    h = kern.shape[0] // 2
    rr, cc = np.nonzero(src)
    dr = np.rint((r - rr) / block).astype(int)
    dc = np.rint((c - cc) / block).astype(int)
    ok = (np.abs(dr) <= h) & (np.abs(dc) <= h)
    return float((src[rr[ok], cc[ok]] * kern[dr[ok] + h, dc[ok] + h]).sum()) / block**2


def test_scatter_image_equals_a_direct_sum_over_the_breast() -> None:
    # the level-by-level FFT on 2 mm cells + bilinear interpolation against a brute-force sum
    rng = np.random.default_rng(4)
    rows, cols, pitch = 150, 180, 0.4
    yy, xx = np.mgrid[0:rows, 0:cols]
    r_mm = np.hypot((xx - cols / 2) * pitch, yy * pitch)
    inside = r_mm < 55.0
    primary = np.where(inside, 100.0 + 20.0 * rng.random((rows, cols)), 900.0)
    from physics import spectra

    sp = spectra.beam_spectrum("W/Rh", 29.0)
    nodes = scatter_mod.thickness_nodes(40.0)
    block = 5
    kernels = [scatter_mod.scatter_kernel(sp.energies_kev, sp.fluence_per_mas, float(t), 0.0, 0.5, 20.0,
                                          pitch * block) for t in nodes]
    # a slab of 40 mm with a 12-mm-wide edge rolling down to 0
    local = np.where(inside, np.clip((55.0 - r_mm) / 12.0, 0.0, 1.0) * 40.0, 0.0)
    got = scatter_mod.scatter_image(primary, local, nodes, kernels, block)
    levels = np.concatenate([[0.0], nodes])
    for r, c in ((40, 90), (75, 60), (10, 130), (120, 90)):
        direct = 0.0
        for lv, kern in enumerate(kernels, start=1):
            w = np.interp(local, levels, np.eye(levels.size)[lv])  # hat weight of this level
            direct += _direct_sum(primary * w, kern, r, c, block)
        assert got[r, c] == pytest.approx(direct, rel=0.05), (r, c)
    assert got.sum() > 0 and got.min() >= 0


def test_open_field_gets_no_scatter_and_scatter_energy_is_bounded() -> None:
    e = exposure()
    ph = make_phantom("uniform", 50.0, GEOMETRY, seed=0)
    a, _ = ExposureImager(ph, GEOMETRY, seed=1, noise=False, scatter=True).expected_signal(e)
    b, _ = ExposureImager(ph, GEOMETRY, seed=1, noise=False, scatter=False).expected_signal(e)
    assert np.array_equal(a, b)  # no scatterer, no scatter
    im = product_imager(50.0)
    p, s = components(im, e)
    assert s.min() >= 0.0
    # the scatter absorbed cannot exceed the energy the breast took out of the beam (open field - primary)
    open_field = p.max()
    removed = (open_field - p)[p < 0.999 * open_field].sum()
    assert 0.2 * removed > s.sum() > 0.0


def test_spr_in_the_image_rises_with_projection_angle() -> None:
    im = product_imager(50.0)
    spr = []
    for a in (0.0, 12.5, 25.0):
        e = exposure(a)
        p, s = components(im, e)
        path = im.projection(im.source_samples(e)[0])[0].sum(axis=0)
        inside = path * math.cos(math.radians(a)) > 45.0  # the flat part of the breast (50 mm)
        spr.append(float(s[inside].sum() / p[inside].sum()))
    print("SPR over the breast at 0, 12.5, 25 deg:", np.round(spr, 3))
    assert spr[0] < spr[1] < spr[2] < 1.15 * spr[0], spr


def test_grid_passes_its_transmissions_of_primary_and_scatter() -> None:
    e = exposure()
    im = product_imager(50.0)
    p, s = components(im, e)
    gridded = product_imager(50.0, grid=True)
    assert gridded.grid == AntiScatterGrid(5.0, 0.73, 0.13)
    g, _ = gridded.expected_signal(e)
    np.testing.assert_allclose(g, 0.73 * p + 0.13 * s, rtol=1e-9, atol=1e-9)
    inside = p < 0.5 * p.max()
    spr_grid = (0.13 * s[inside]).sum() / (0.73 * p[inside]).sum()
    assert spr_grid == pytest.approx(0.13 / 0.73 * s[inside].sum() / p[inside].sum())


def test_scatter_images_are_deterministic_for_a_seed() -> None:
    a = product_imager(45.0, noise=True).image(exposure(10.0, frame=3))
    b = product_imager(45.0, noise=True).image(exposure(10.0, frame=3))
    assert np.array_equal(a, b)


def test_grid_and_config_reject_bad_values() -> None:
    with pytest.raises(ValueError, match="primary_transmission"):
        AntiScatterGrid(primary_transmission=0.3)
    with pytest.raises(ValueError, match="scatter_transmission"):
        AntiScatterGrid(primary_transmission=0.7, scatter_transmission=0.8)
    with pytest.raises(ValueError, match="ratio"):
        AntiScatterGrid(ratio=40.0)
    with pytest.raises(ValueError, match="grid_scatter_transmission"):
        DetectorConfig(grid=True, grid_primary_transmission=0.6, grid_scatter_transmission=0.7)
    with pytest.raises(ValueError, match="grid_primary_transmission"):
        DetectorConfig(grid_primary_transmission=1.2)
