"""Geometry from exposure records, volume grids, preprocessing, filters and the slice projector."""

from __future__ import annotations

import numpy as np
import pytest
from _analytic import Slab, make_header, project, source_of, sphere
from pydantic import ValidationError

from reconstruction import VolumeGrid, fbp, forward_project, from_header, iter_fbp, line_integrals, slice_heights
from reconstruction.filters import FilterSpec, filter_response_x, ramlak_response
from reconstruction.projector import detector_windows


def test_focal_spots_come_from_actual_window_mean_angles():
    hdr = make_header(np.array([-10.0, 0.0, 10.0]), 0.1, 10, 10, 40.0, jitter_deg=np.array([0.4, -0.25, 0.1]))
    pg = from_header(hdr)
    for k, pr in enumerate(hdr.projections):
        np.testing.assert_allclose(pg.sources_mm[k], source_of(hdr.geometry, pr.exposure), atol=1e-9)
    # and not from the plan: 0.4 deg at R = 620 mm is 4.3 mm of focal-spot x
    r = hdr.geometry.sid_mm - hdr.geometry.pivot_height_mm
    assert abs(pg.sources_mm[0, 0] - r * np.sin(np.radians(-10.0))) > 4.0


def test_scout_exposures_are_left_out():
    hdr = make_header(np.array([0.0, -5.0, 5.0]), 0.1, 10, 10, 40.0)
    hdr.projections[0].exposure.is_scout = True
    assert from_header(hdr).n == 2


def test_volume_grid_validation_and_any_slice_spacing():
    with pytest.raises(ValidationError, match="strictly increasing"):
        VolumeGrid(voxel_mm=0.1, x_min_mm=0, x_max_mm=1, y_min_mm=0, y_max_mm=1, z_mm=(30.0, 25.0))
    with pytest.raises(ValidationError, match="smaller than one voxel"):
        VolumeGrid(voxel_mm=1.0, x_min_mm=0, x_max_mm=0.5, y_min_mm=0, y_max_mm=1, z_mm=(30.0,))
    g = VolumeGrid(voxel_mm=0.1, x_min_mm=0, x_max_mm=1, y_min_mm=0, y_max_mm=2, z_mm=(21.0, 22.0, 25.0)).to_grid()
    assert g.shape == (3, 20, 10)
    np.testing.assert_allclose(g.slab_mm, [1.0, 2.0, 3.0])  # half-way between neighbours
    assert slice_heights(20.0, 70.0, 1.0) == tuple(20.5 + k for k in range(50))


def test_preprocessing_flat_dark_region_and_guards():
    rng = np.random.default_rng(0)
    gain = rng.uniform(0.8, 1.2, (8, 8))
    dark = 50.0
    li_true = rng.uniform(0.0, 3.0, (2, 8, 8))
    raw = 1e4 * gain * np.exp(-li_true) + dark
    flat = 1e4 * gain + dark
    np.testing.assert_allclose(line_integrals(raw, flat=flat, dark=dark), li_true, atol=1e-5)
    raw2 = raw.copy()
    raw2[:, :2, :2] = 1e4 * gain[:2, :2] * 0 + 1e4 + dark  # an unattenuated corner with unit gain
    out = line_integrals(raw2, dark=dark, i0_region=(slice(0, 2), slice(0, 2)))
    assert np.allclose(out[:, :2, :2], 0.0, atol=1e-6)
    dead = np.full((4, 4), 1000.0)
    dead[0, 0] = 0.0
    g = line_integrals(dead, i0=1000.0, min_counts=1.0, max_line_integral=5.0)
    assert np.isfinite(g).all() and g[0, 0] == pytest.approx(5.0)
    assert line_integrals(dead * 1.01, i0=1000.0, clip_negative=True).min() == 0.0
    with pytest.raises(ValueError, match="flat field"):
        line_integrals(dead)


def test_ramp_filter_response():
    h = ramlak_response(512, 0.1)
    f = np.fft.rfftfreq(512, d=0.1)
    sel = (f > 0.5) & (f < 4.5)
    np.testing.assert_allclose(h[sel], f[sel], rtol=0.01)  # |f| in cycles/mm
    hx = filter_response_x(512, 0.1, FilterSpec(ramp_fraction=0.0, apodisation="none"), 25.0)
    np.testing.assert_allclose(hx, 0.5 * 5.0)  # all-pass at the ramp's mean gain f_N / 2
    hs = filter_response_x(512, 0.1, FilterSpec(apodisation="none", slice_thickness_mm=1.0), 25.0)
    fc = 1.0 / (2.0 * np.tan(np.radians(12.5)))
    assert np.all(hs[f >= fc] == 0.0) and hs[(f > 0.2) & (f < fc)].min() > 0.0


@pytest.mark.parametrize("angle", [-25.0, 0.0, 25.0])
def test_forward_projection_matches_analytic_line_integrals(angle):
    """Joseph slice projector of a voxelised sphere (3^3 sub-voxel occupancy) vs the exact chord, +/-25 deg."""
    hdr = make_header(np.array([angle]), 0.1, 160, 400, 30.0, offset_y_mm=20.0, offset_x_mm=-5.0 * np.sign(angle))
    centre, diam, mu = (0.0, 35.0, 35.0), 8.0, 0.05
    grid = VolumeGrid(voxel_mm=0.1, x_min_mm=-5, x_max_mm=5, y_min_mm=30, y_max_mm=40,
                      z_mm=slice_heights(30.0, 40.0, 0.1)).to_grid()
    sub = (np.arange(3) - 1) / 3.0 * 0.1
    occ = np.zeros(grid.shape, np.float32)
    for dz in sub:
        for dy in sub:
            for dx in sub:
                z = grid.z_mm[:, None, None] + dz - centre[2]
                y = grid.y_mm[None, :, None] + dy - centre[1]
                x = grid.x_mm[None, None, :] + dx - centre[0]
                occ += (x * x + y * y + z * z <= (diam / 2) ** 2) / 27.0
    pg = from_header(hdr)
    p = forward_project(mu * occ, pg, grid, 0)
    exact = project(hdr, [sphere(centre, diam, mu)])[0]
    w = p.window
    ex = exact[w.row0 : w.row1, w.col0 : w.col1]
    inner = ex > 0.5 * ex.max()  # the object's interior
    rel = np.abs(p.data[inner] - ex[inner]) / ex[inner]
    assert rel.max() < 0.01


def test_forward_projection_of_uniform_slab_is_mu_t_over_cos():
    hdr = make_header(np.array([20.0]), 0.2, 60, 200, 30.0, offset_y_mm=25.0)
    grid = VolumeGrid(voxel_mm=0.2, x_min_mm=-30, x_max_mm=30, y_min_mm=20, y_max_mm=45,
                      z_mm=slice_heights(20.0, 50.0, 1.0)).to_grid()
    pg = from_header(hdr)
    p = forward_project(np.full(grid.shape, 0.05, np.float32), pg, grid, 0)
    exact = project(hdr, [Slab(20.0, 50.0, 0.05)])[0]
    w = p.window
    ex = exact[w.row0 : w.row1, w.col0 : w.col1]
    core = p.data > 0.99 * ex  # rays that stay inside the ROI over the whole height
    assert core.sum() > 1000
    np.testing.assert_allclose(p.data[core], ex[core], rtol=1e-4)


def test_streamed_slices_into_memmap_equal_whole_volume(tmp_path):
    hdr = make_header(np.linspace(-10, 10, 5), 0.2, 60, 200, 30.0, offset_y_mm=25.0)
    li = project(hdr, [sphere((1.0, 32.0, 35.0), 2.0, 0.2)])
    grid = VolumeGrid(voxel_mm=0.2, x_min_mm=-4, x_max_mm=4, y_min_mm=28, y_max_mm=36, z_mm=(25.0, 30.0, 35.0, 38.0))
    whole = fbp(li, hdr, grid)
    mm = np.lib.format.open_memmap(tmp_path / "vol.npy", mode="w+", dtype=np.float32, shape=whole.shape)
    fbp(li, hdr, grid, out=mm)
    mm.flush()
    np.testing.assert_array_equal(np.load(tmp_path / "vol.npy"), whole)
    zs = [z for _, z, _ in iter_fbp(li, hdr, grid)]
    assert zs == [25.0, 30.0, 35.0, 38.0]
    assert int(np.argmax(whole[:, 20, 25])) == 2  # the sphere at z = 35 mm, x = 1 mm, y = 32 mm


def test_wrong_shapes_are_clear_errors():
    hdr = make_header(np.linspace(-10, 10, 5), 0.2, 60, 200, 30.0)
    grid = VolumeGrid(voxel_mm=0.2, x_min_mm=-4, x_max_mm=4, y_min_mm=8, y_max_mm=10, z_mm=(25.0,))
    with pytest.raises(ValueError, match="do not match the geometry"):
        fbp(np.zeros((4, 60, 200), np.float32), hdr, grid)
    far = VolumeGrid(voxel_mm=0.2, x_min_mm=400, x_max_mm=404, y_min_mm=8, y_max_mm=10, z_mm=(25.0,))
    with pytest.raises(ValueError, match="does not project onto the detector"):
        detector_windows(from_header(hdr), far.to_grid())
