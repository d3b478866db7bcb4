"""Projector: exact analytic chords by hand, and the voxel path against the analytic path."""

import math

import numpy as np
import pytest

from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from simulator.imaging.phantoms.analytic import (AnalyticObject, AnalyticPhantom, Box, Cylinder, Ellipsoid,
                                                 HalfSpaceSlab, Sphere, chord_lengths, rot_y, rot_z)
from simulator.imaging.phantoms.voxel import empty_grid, voxelise
from simulator.imaging.projector import analytic_line_integrals, polyenergetic, voxel_line_integrals

SRC = np.array([0.0, 0.0, 660.0])


def test_sphere_chord_by_hand() -> None:
    s = Sphere((10.0, 20.0, 40.0), 5.0)
    # ray through the centre: the diameter
    d = SRC + (np.array([10.0, 20.0, 40.0]) - SRC) * 660.0 / 620.0
    assert chord_lengths(s, SRC, d[None])[0] == pytest.approx(10.0, rel=1e-9)
    # vertical ray at lateral offset 3 from a sphere under the source: 2 sqrt(r^2 - 3^2) = 8
    s2 = Sphere((0.0, 0.0, 40.0), 5.0)
    src = np.array([3.0, 0.0, 660.0])
    assert chord_lengths(s2, src, np.array([[3.0, 0.0, 0.0]]))[0] == pytest.approx(8.0, rel=1e-9)
    assert chord_lengths(s2, src, np.array([[30.0, 0.0, 0.0]]))[0] == 0.0


def test_box_cylinder_and_edge_chords_by_hand() -> None:
    # oblique ray through a slab 10 mm thick: 10 / cos(angle)
    box = Box((0.0, 0.0, 30.0), (500.0, 500.0, 5.0))
    p = np.array([[200.0, 0.0, 0.0]])
    cos_g = 660.0 / math.hypot(200.0, 660.0)
    assert chord_lengths(box, SRC, p)[0] == pytest.approx(10.0 / cos_g, rel=1e-9)
    # cylinder along z, radius 4, height 6, vertical ray through the axis: 6 mm
    cyl = Cylinder((5.0, 5.0, 30.0), 4.0, 3.0)
    assert chord_lengths(cyl, np.array([5.0, 5.0, 660.0]), np.array([[5.0, 5.0, 0.0]]))[0] == pytest.approx(6.0)
    # same cylinder lying along x (rotated 90 deg about y), vertical ray at axis: the diameter 8
    cyl2 = Cylinder((5.0, 5.0, 30.0), 4.0, 3.0, rot_y(90.0))
    assert chord_lengths(cyl2, np.array([5.0, 5.0, 660.0]), np.array([[5.0, 5.0, 0.0]]))[0] == pytest.approx(8.0)
    # edge: 1 mm plate at the detector covering x >= 0; vertical rays
    edge = HalfSpaceSlab((-1.0, 0.0, 0.0), 0.0, 0.0, 1.0)
    src = np.array([[2.0, 0.0, 660.0], [-2.0, 0.0, 660.0]])
    pts = np.array([[2.0, 0.0, 0.0], [-2.0, 0.0, 0.0]])
    got = [chord_lengths(edge, src[i], pts[i][None])[0] for i in range(2)]
    assert got == pytest.approx([1.0, 0.0])


def test_ellipsoid_contains_agrees_with_interval() -> None:
    e = Ellipsoid((1.0, 2.0, 30.0), (6.0, 3.0, 2.0), rot_z(35.0) @ rot_y(10.0))
    rng = np.random.default_rng(0)
    pts = rng.uniform([-6, -4, 24], [8, 8, 36], size=(2000, 3))
    # a point is inside iff a ray ending there from above has t1 >= 1 >= t0 ... use tiny segment test
    s = pts + np.array([0.0, 0.0, 1e-9])
    t0, t1 = e.interval(s, pts - s)
    inside_interval = (t0 <= 0.0) & (t1 >= 0.0)
    assert np.array_equal(inside_interval, e.contains(pts))


@pytest.mark.parametrize("obj", [
    AnalyticObject(Sphere((0.0, 25.0, 42.0), 10.0), 2),
    AnalyticObject(Ellipsoid((2.0, 25.0, 44.0), (12.0, 9.0, 8.0), rot_z(30.0) @ rot_y(20.0)), 4),
], ids=["sphere", "ellipsoid"])
def test_voxel_projection_matches_analytic_within_1_percent(obj: AnalyticObject) -> None:
    """Voxelised object at 0.1 mm; interior = rays whose exact chord is >= 70 % of the longest."""
    g = AcquisitionGeometry(sid_mm=660.0, pivot_height_mm=40.0)
    det = DetectorGeometry(native_pitch_mm=0.1, rows=450, cols=600)
    vp = voxelise(empty_grid((-16.0, 9.0, 29.0), (18.0, 41.0, 56.0), 0.1), [obj])
    ph = AnalyticPhantom([obj])
    for angle in (-25.0, -12.5, 0.0, 12.5, 25.0):
        src = g.source_position(angle)
        la = analytic_line_integrals(ph, src, det, [obj.label])[0]
        lv = voxel_line_integrals(vp, src, det, [obj.label])[0]
        interior = la >= 0.7 * la.max()
        assert interior.sum() > 1000
        rel = np.abs(lv[interior] - la[interior]) / la[interior]
        assert rel.max() < 0.01, (angle, rel.max())
        assert rel.mean() < 0.004


def test_per_material_split_and_displacement() -> None:
    """A mass inside a glandular sphere: the sphere's line integral loses exactly the mass chord."""
    det = DetectorGeometry(native_pitch_mm=0.5, rows=40, cols=40)
    outer = AnalyticObject(Sphere((0.0, 10.0, 40.0), 8.0), 2)
    inner = AnalyticObject(Sphere((0.0, 10.0, 40.0), 3.0), 4, replaces=2)
    L = analytic_line_integrals(AnalyticPhantom([outer, inner]), (0.0, 10.0, 660.0), det, [2, 4])
    only = analytic_line_integrals(AnalyticPhantom([outer]), (0.0, 10.0, 660.0), det, [2, 4])
    assert np.allclose(L.sum(axis=0), only.sum(axis=0), atol=1e-5)
    assert 5.9 < L[1].max() <= 6.0 + 1e-5


def test_polyenergetic_reduces_to_beer_lambert() -> None:
    L = np.zeros((2, 3, 4), np.float32)
    L[0] = 10.0
    L[1, 1] = 2.0
    mu = np.array([[0.05, 0.03], [0.5, 0.2]])
    w1 = np.array([100.0, 0.0])
    w2 = np.array([2000.0, 0.0])
    s1, s2 = polyenergetic(L, mu, w1, w2)
    assert s1[0, 0] == pytest.approx(100.0 * math.exp(-0.5), rel=1e-6)
    assert s1[1, 0] == pytest.approx(100.0 * math.exp(-0.5 - 1.0), rel=1e-6)
    assert np.allclose(s2 / s1, 20.0)


# ----------------------------------------------------------------------------- run-length integration
from simulator.imaging.phantoms.breast import breast_phantom  # noqa: E402
from simulator.imaging.phantoms.runs import decode, row_runs  # noqa: E402
from simulator.imaging.projector import voxel_line_integrals_dense  # noqa: E402


def test_row_runs_round_trip_and_structure() -> None:
    rng = np.random.default_rng(5)
    lab = (rng.random((3, 7, 40)) < 0.3).astype(np.uint8) * rng.integers(1, 4, (3, 7, 40)).astype(np.uint8)
    lab[1, 2] = 0  # an all-air row is one run
    rr = row_runs(lab)
    assert np.array_equal(decode(rr), lab)
    q = 1 * 7 + 2
    assert rr.offsets[q + 1] - rr.offsets[q] == 1
    # adjacent runs differ; every row starts at column 0
    assert np.all(rr.starts[rr.offsets[:-1]] == 0)
    for q in range(21):
        labs_q = rr.labels[rr.offsets[q]:rr.offsets[q + 1]]
        assert np.all(labs_q[1:] != labs_q[:-1])


@pytest.mark.parametrize("pitch, angle, offset_x, q", [(0.2, 0.0, 0.0, 1), (0.1, -25.0, 3.3, 1), (0.05, 25.0, -40.0, 1),
                                                       (0.6, 12.5, 0.0, 1), (0.2, 7.0, 0.7, 3)])
def test_run_kernel_equals_sample_by_sample_definition(pitch: float, angle: float, offset_x: float, q: int) -> None:
    """The run-integrated projector is the bilinear slice-by-slice definition, to float rounding.

    Covers oblique views, a detector narrower than the phantom shadow (offset
    40 mm: the breast runs off the panel edge), coarse pixels (b > 1 voxel per
    column), sub-pixel oversampling and a label missing from the material list.
    """
    g = AcquisitionGeometry(sid_mm=660.0, pivot_height_mm=40.0)
    ph = breast_phantom(30.0, g.support_height_mm, seed=4, voxel_mm=0.5, width_mm=90.0, depth_mm=50.0)
    det = DetectorGeometry(native_pitch_mm=pitch, rows=int(60 / pitch), cols=int(70 / pitch), offset_x_mm=offset_x)
    labs = ph.material_labels()
    for materials in (labs, labs[1:]):
        src = g.source_position(angle)
        fast = voxel_line_integrals(ph.voxels, src, det, materials, oversample=q)
        ref = voxel_line_integrals_dense(ph.voxels, src, det, materials, oversample=q)
        assert ref.max() > 10.0  # the breast is in view
        assert np.abs(fast - ref).max() < 1e-3  # mm, float32 rounding of ~40 mm sums


def test_run_cache_follows_label_edits() -> None:
    det = DetectorGeometry(native_pitch_mm=0.5, rows=40, cols=40)
    vp = empty_grid((-5.0, 0.0, 20.0), (5.0, 10.0, 30.0), 0.5)
    src = (0.0, 5.0, 660.0)
    assert voxel_line_integrals(vp, src, det, [2]).max() == 0.0
    voxelise(vp, [AnalyticObject(Sphere((0.0, 5.0, 25.0), 3.0), 2)])  # in place: must drop the cached runs
    assert voxel_line_integrals(vp, src, det, [2]).max() == pytest.approx(6.0, abs=0.5)
    vp.labels[:] = 0
    vp.labels_changed()
    assert voxel_line_integrals(vp, src, det, [2]).max() == 0.0
    vp.labels = np.full(vp.shape, 2, np.uint8)  # a new array is detected without a call
    assert voxel_line_integrals(vp, src, det, [2]).max() == pytest.approx(10.0, rel=0.01)


def test_accumulate_polyenergetic_is_energy_sum_times_inverse_square_and_obliquity() -> None:
    from simulator.imaging.projector import accumulate_polyenergetic

    rng = np.random.default_rng(2)
    L = (rng.random((3, 20, 30)) * 20.0).astype(np.float32)
    L[:, :5] = 0.0  # open field rows take the shortcut
    mu = rng.random((3, 7)) * 0.2
    e = np.linspace(12.0, 30.0, 7)
    w1 = rng.random(7) * 100.0
    w2 = w1 * e
    xs, ys = np.linspace(-50.0, 60.0, 30), np.linspace(5.0, 90.0, 20)
    src = (40.0, -3.0, 610.0)
    acc1, acc2 = np.full((20, 30), 1.0), np.zeros((20, 30))
    accumulate_polyenergetic(L, mu, w1, w2, src, xs, ys, 650.0, acc1, acc2)
    t = np.exp(-np.einsum("me,mrc->rce", mu, L.astype(np.float64)))
    r2 = (xs[None, :] - src[0]) ** 2 + (ys[:, None] - src[1]) ** 2 + src[2] ** 2
    geo = 650.0**2 / r2 * src[2] / np.sqrt(r2)
    assert np.allclose(acc1, 1.0 + (t @ w1) * geo, rtol=1e-6)
    assert np.allclose(acc2, (t @ w2) * geo, rtol=1e-6)


def test_single_row_and_single_column_detectors() -> None:
    """Degenerate panels (one row / one column) take the same path as the reference."""
    g = AcquisitionGeometry(sid_mm=660.0, pivot_height_mm=40.0)
    ph = breast_phantom(30.0, g.support_height_mm, seed=1, voxel_mm=1.0, width_mm=60.0, depth_mm=40.0)
    labs = ph.material_labels()
    for rows, cols in ((1, 50), (50, 1), (1, 1)):
        det = DetectorGeometry(native_pitch_mm=0.5, rows=rows, cols=cols, offset_y_mm=10.0)
        src = g.source_position(10.0)
        fast = voxel_line_integrals(ph.voxels, src, det, labs)
        ref = voxel_line_integrals_dense(ph.voxels, src, det, labs)
        assert np.abs(fast - ref).max() < 1e-3
        assert ref.sum() > 0.0
