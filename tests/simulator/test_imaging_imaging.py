"""The integration API: phantom factory, truth, lesion positions in projections, dose bookkeeping."""

import numpy as np
import pytest

from protocols.geometry import AcquisitionGeometry, DetectorGeometry, project_point
from protocols.records import ExposureRecord
from simulator.imaging.detector import DetectorModel
from simulator.imaging.imager import PHANTOM_NAMES, ExposureImager, make_phantom
from physics.materials import LABEL_OF


def _exp(angle: float, mas: float = 20.0, frame: int = 0) -> ExposureRecord:
    return ExposureRecord(index=0, frame_id=frame, planned_angle_deg=angle, angle_start_deg=angle, angle_end_deg=angle,
                          kvp=29.0, mas=mas, anode_filter="W/Rh", window_start_s=0.0, window_end_s=0.1)


@pytest.mark.parametrize("name", PHANTOM_NAMES)
def test_every_named_phantom_images(name: str) -> None:
    g = AcquisitionGeometry(detector=DetectorGeometry(native_pitch_mm=0.05, binning=8, rows=60, cols=80))
    ph = make_phantom(name, 40.0, g, seed=2, voxel_mm=1.0)
    img = ExposureImager(ph, g, seed=1).image(_exp(10.0))
    assert img.dtype == np.uint16 and img.shape == (60, 80)
    with pytest.raises(ValueError):
        make_phantom("teapot", 40.0, g, seed=1)


def test_breast_phantom_structure_and_truth() -> None:
    g = AcquisitionGeometry()
    ph = make_phantom("breast", 45.0, g, seed=4, voxel_mm=0.5, glandular_fraction=0.3, width_mm=100.0, depth_mm=60.0)
    v = ph.voxels
    n = np.bincount(v.labels.ravel(), minlength=16)
    assert n[LABEL_OF["glandular"]] / (n[LABEL_OF["glandular"]] + n[LABEL_OF["adipose"]]) == pytest.approx(0.3, abs=0.06)
    # skin on the paddle and support faces, at the support height
    assert v.origin_mm[2] == g.support_height_mm and v.shape[0] * v.voxel_mm[0] == pytest.approx(45.0)
    mid = v.labels[:, v.shape[1] // 3, v.shape[2] // 2]
    assert mid[0] == LABEL_OF["skin"] and mid[-1] == LABEL_OF["skin"] and mid[v.shape[0] // 2] != LABEL_OF["skin"]
    kinds = {l.kind for l in ph.lesions}
    assert kinds == {"mass", "calcification"}
    for les in ph.lesions:
        assert g.support_height_mm < les.centre_mm[2] < g.support_height_mm + 45.0
        if les.kind == "calcification":
            assert 0.1 <= les.diameter_mm <= 0.5


@pytest.mark.parametrize("angle", [-25.0, 0.0, 25.0])
def test_bead_shadows_fall_where_cone_beam_geometry_puts_them(angle: float) -> None:
    det = DetectorGeometry(native_pitch_mm=0.05, binning=2, rows=1100, cols=1600, offset_x_mm=0.0)
    g = AcquisitionGeometry(detector=det)
    ph = make_phantom("beads", 50.0, g, seed=0)
    s1, _ = ExposureImager(ph, g, seed=0, noise=False, focal_spot=False).expected_signal(_exp(angle))
    src = g.source_position(angle)
    xs, ys = det.col_centres_mm(), det.row_centres_mm()
    checked = 0
    for bead in ph.lesions:
        px, py = project_point(src, bead.centre_mm)
        if not (xs[12] < px < xs[-13] and ys[12] < py < ys[-13]):
            continue
        c, r = int(np.argmin(np.abs(xs - px))), int(np.argmin(np.abs(ys - py)))
        win = s1[r - 10:r + 11, c - 10:c + 11]
        dip = win.max() - win
        cy = (dip.sum(axis=1) * ys[r - 10:r + 11]).sum() / dip.sum()
        cx = (dip.sum(axis=0) * xs[c - 10:c + 11]).sum() / dip.sum()
        assert abs(cx - px) < 0.03 and abs(cy - py) < 0.03  # mm (0.3 pixel)
        checked += 1
    assert checked >= 6


def test_dose_bookkeeping() -> None:
    g = AcquisitionGeometry()
    ph = make_phantom("pmma", 45.0, g, seed=0)
    imager = ExposureImager(ph, g, seed=0)
    k0 = imager.air_kerma_mgy(_exp(0.0, mas=50.0))
    assert imager.air_kerma_mgy(_exp(0.0, mas=100.0)) == pytest.approx(2 * k0)
    # 0.05-0.2 mGy/mAs at ~600 mm is the range of W/Rh 29 kV tubes
    assert 0.03 < k0 / 50.0 < 0.2
    mgd0 = imager.mgd_mgy(_exp(0.0, mas=50.0), thickness_mm=45.0, glandularity=0.5)
    # Dance 2000 Table 1 at 4.5 cm: g = 0.311 (HVL 0.55) .. 0.339 (0.60); s(W/Rh) = 1.042; c(50 %) ~ 1.
    # The HVL is that of the beam through the paddle (Dance's convention), 0.55-0.56 mm Al at 29 kV.
    hvl = imager.beam_path.hvl_mm_al("W/Rh", 29.0)
    assert 0.55 <= hvl <= 0.57
    g = np.interp(hvl, [0.55, 0.60], [0.311, 0.339])
    assert mgd0 / k0 == pytest.approx(g * 1.042, rel=0.05)
    assert imager.mgd_mgy(_exp(25.0, mas=50.0), 45.0, 0.5) < mgd0


def test_projection_holds_one_panel_of_line_integrals_not_two() -> None:
    """The edge supersampling keeps the voxel background only under each analytic object's shadow: a full-panel
    copy of every material's line integrals was some 580 MB in a stereo exam's full-resolution frame. The
    default gantry's phantom (voxel breast with analytic lesions); memory traced while one projection is formed.
    """
    import tracemalloc

    from protocols.records import ExposureRecord
    from simulator.gantry import load_config
    from simulator.gantry.detector import build_imager

    cfg = load_config(None)
    im = build_imager(cfg.geometry, cfg.phantom, cfg.detector, 1, 45.0)
    assert im.phantom.analytic.objects and im.phantom.voxels is not None
    rec = ExposureRecord(index=0, frame_id=1, planned_angle_deg=0.0, angle_start_deg=0.0, angle_end_deg=0.0, kvp=29.0,
                         mas=1.0, anode_filter="W/Rh", window_start_s=0.0, window_end_s=0.1)
    source = im.source_samples(rec)[0]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        L, edges = im.projection(source)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert edges is not None  # the lesions' boundaries were supersampled
    assert peak < 1.5 * L.nbytes, (peak, L.nbytes)


def _default_gantry_frame(monkeypatch: pytest.MonkeyPatch | None = None, band_pixels: int | None = None) -> np.ndarray:
    """One frame of the default gantry (scatter on, X-ray field, noise), optionally with another band size."""
    import simulator.imaging.detector as detector
    from simulator.gantry import load_config
    from simulator.gantry.detector import build_imager, render_image

    if band_pixels is not None and monkeypatch is not None:
        monkeypatch.setattr(detector, "BAND_PIXELS", band_pixels)
    cfg = load_config(None)
    im = build_imager(cfg.geometry, cfg.phantom, cfg.detector, 3, 45.0)
    rec = ExposureRecord(index=0, frame_id=5, planned_angle_deg=7.5, angle_start_deg=7.2, angle_end_deg=7.8, kvp=29.0,
                         mas=4.0, anode_filter="W/Rh", window_start_s=0.0, window_end_s=0.1)
    return render_image(im, rec, cfg.detector)


def test_a_default_gantry_frame_does_not_depend_on_the_image_formation_threads(monkeypatch: pytest.MonkeyPatch
                                                                              ) -> None:
    """With numba on two or more threads a frame uses the image-formation threads three ways: the per-material
    aperture filter, the scatter kernels (computed while the focal-spot samples are summed) and the read-out's noise
    bands. A default-gantry frame (scatter on, two noise bands) is bit-identical with every step in the caller."""
    import numba

    import simulator.imaging.detector as detector
    import simulator.imaging.imager as imager

    if numba.get_num_threads() < 2:
        pytest.skip("numba runs one thread here: there is no pool to compare with")
    threaded = _default_gantry_frame()
    monkeypatch.setattr(imager, "image_threads", lambda: None)
    monkeypatch.setattr(detector, "image_threads", lambda: None)
    alone = _default_gantry_frame()
    assert np.array_equal(threaded, alone)
    assert threaded.std() > 0


def test_band_size_does_not_change_a_default_gantry_frame(monkeypatch: pytest.MonkeyPatch) -> None:
    """The energy per quantum and the scatter's cell sums run in bands of rows (BAND_PIXELS) to bound a
    full-resolution frame's memory: a default-gantry frame is bit-identical with one band over the whole panel and
    with bands of 997 pixels (hundreds of bands, the last one partial). (The read-out's noise bands,
    NOISE_BAND_PIXELS, are part of the imaging model: see the read-out tests.)"""
    whole = _default_gantry_frame(monkeypatch, 1 << 30)
    banded = _default_gantry_frame(monkeypatch, 997)
    assert whole.shape == (1200, 1500)
    assert np.array_equal(whole, banded)
    assert whole.std() > 0  # a real image (not an empty one equal to another)


def _read_out_formula(s1: np.ndarray, s2: np.ndarray, binning: int, streams: list, band_rows: int) -> np.ndarray:
    """The read-out as :meth:`DetectorModel.read_out` documents it, written out here: in bands of
    ``band_rows`` rows, band k draws all its Poisson quanta and then all its electronic noise from ``streams[k]``."""
    model = DetectorModel()
    scale = model.gain_adu_per_kev / binning**2
    out = np.empty(s1.shape)
    for k, r0 in enumerate(range(0, s1.shape[0], band_rows)):
        a1, a2 = s1[r0:r0 + band_rows], s2[r0:r0 + band_rows]
        n_eff = np.where(a1 > 0, a1**2 / np.maximum(a2, 1e-30), 0.0)
        e_eff = np.where(a1 > 0, a2 / np.maximum(a1, 1e-30), 0.0)
        counts = streams[k].poisson(n_eff)
        electronic = streams[k].normal(0.0, model.electronic_noise_adu / binning, size=a1.shape)
        out[r0:r0 + band_rows] = model.offset_adu + scale * counts * e_eff + electronic
    return np.clip(np.rint(out), 0, model.max_adu).astype(np.uint16)


def _moments(shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    gen = np.random.default_rng(5)
    s1 = gen.uniform(0.0, 4.0e5, shape)
    s1[3, :7] = 0.0  # no signal: no quanta
    return s1, s1 * gen.uniform(15.0, 25.0, s1.shape)


@pytest.mark.parametrize("noise", [True, False], ids=["noisy", "noiseless"])
def test_a_one_band_read_out_equals_the_whole_panel_formula(noise: bool) -> None:
    """A panel of at most NOISE_BAND_PIXELS (the shipped trial example's windows, 0.13-0.21 Mpx; QC at its default
    binning) draws from the frame's generator alone: all Poisson counts, then all the electronic noise, over the
    whole panel, bit for bit (as before the noise was banded)."""
    model = DetectorModel()
    s1, s2 = _moments((37, 53))
    if noise:
        expected = _read_out_formula(s1, s2, 2, [np.random.default_rng([1, 2])], 37)
    else:
        expected = np.clip(np.rint(model.offset_adu + model.gain_adu_per_kev / 4 * s1), 0, model.max_adu)
    got = model.read_out(s1, s2, 2, np.random.default_rng([1, 2]) if noise else None)
    assert got.dtype == np.uint16
    assert np.array_equal(got, expected.astype(np.uint16))


def test_a_banded_read_out_draws_each_band_from_its_own_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    """A panel larger than NOISE_BAND_PIXELS is cut into the fewest bands of equal rows: band 0 draws from the
    frame's generator, band k from its (k-1)-th spawned child. 37 x 53 with bands of at most 7 x 53 pixels: six
    bands of 7 rows (the last one 2 rows), equal bit for bit to the formula; one shared stream would fail."""
    import simulator.imaging.detector as detector

    s1, s2 = _moments((37, 53))
    rng = np.random.default_rng([1, 2])
    expected = _read_out_formula(s1, s2, 2, [rng, *rng.spawn(5)], 7)
    monkeypatch.setattr(detector, "NOISE_BAND_PIXELS", 7 * 53)
    got = DetectorModel().read_out(s1, s2, 2, np.random.default_rng([1, 2]))
    assert np.array_equal(got, expected)
    shared = np.random.default_rng([1, 2])
    assert not np.array_equal(got, _read_out_formula(s1, s2, 2, [shared] * 6, 7))


def test_a_banded_read_out_does_not_depend_on_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """The bands run on the image-formation threads when numba may use more than one: the same image bit for bit
    with the pool and with every band in the caller (no pool), in a band count that leaves threads racing."""
    import numba

    import simulator.imaging.detector as detector

    if numba.get_num_threads() < 2:
        pytest.skip("numba runs one thread here: there is no pool to compare with")
    s1, s2 = _moments((301, 97))
    monkeypatch.setattr(detector, "NOISE_BAND_PIXELS", 5 * 97)
    threaded = DetectorModel().read_out(s1, s2, 2, np.random.default_rng([3, 4]))
    monkeypatch.setattr(detector, "image_threads", lambda: None)
    alone = DetectorModel().read_out(s1, s2, 2, np.random.default_rng([3, 4]))
    assert np.array_equal(threaded, alone)
    assert threaded.std() > 0


@pytest.mark.parametrize("band_rows", [1, 3, 1000])
def test_scatter_image_does_not_depend_on_its_band(monkeypatch: pytest.MonkeyPatch, band_rows: int) -> None:
    """The scatter's cell sums (cells of 4 pixels; 103 rows, not a multiple of 4), in bands of 1 and 3 cell rows
    against one band over the whole image: equal bit for bit."""
    import simulator.imaging.detector as detector
    from simulator.imaging.scatter import scatter_image

    gen = np.random.default_rng(9)
    primary = gen.uniform(1.0e3, 2.0e3, (103, 90))
    thickness = np.zeros_like(primary)
    thickness[10:95, 5:80] = gen.uniform(5.0, 45.0, (85, 75))
    nodes = np.array([20.0, 40.0, 60.0])
    kernels = [np.outer(np.hanning(9), np.hanning(9)) * k / 40.0 for k in (1.0, 2.0, 3.0)]
    monkeypatch.setattr(detector, "BAND_PIXELS", 1 << 30)
    whole = scatter_image(primary, thickness, nodes, kernels, 4)
    monkeypatch.setattr(detector, "BAND_PIXELS", band_rows * 4 * 90)
    assert np.array_equal(scatter_image(primary, thickness, nodes, kernels, 4), whole)
    assert whole.shape == primary.shape and whole.sum() > 0


@pytest.mark.parametrize("shape", [(103, 90, 4), (1200, 1500, 10), (7, 5, 3), (1, 1, 2)])
def test_scatter_upsampling_is_the_bilinear_formula_and_keeps_its_sum(shape: tuple[int, int, int]) -> None:
    """The scatter's bilinear upsampling (a numba kernel) against the numpy formula it replaced, written out here: the
    same values bit for bit, and the same total (the array is column-major like numpy's gather ``rows[:, j0]``, so
    its sum adds in the same order: the scatter image is scaled by that total)."""
    from simulator.imaging.scatter import _upsample_linear

    r, c, b = shape
    s = np.random.default_rng(4).uniform(0.0, 100.0, (-(-r // b), -(-c // b)))

    def axis(n_fine: int, n_coarse: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        u = (np.arange(n_fine) + 0.5) / b - 0.5
        i0 = np.clip(np.floor(u).astype(np.int64), 0, n_coarse - 1)
        return i0, np.minimum(i0 + 1, n_coarse - 1), np.clip(u - i0, 0.0, 1.0)

    i0, i1, f = axis(r, s.shape[0])
    rows = s[i0] * (1.0 - f)[:, None] + s[i1] * f[:, None]
    j0, j1, g = axis(c, s.shape[1])
    expected = rows[:, j0] * (1.0 - g)[None, :]
    expected += rows[:, j1] * g[None, :]
    got = _upsample_linear(s, b, r, c)
    assert np.array_equal(got, expected)
    assert got.sum() == expected.sum()


def test_a_noiseless_read_out_does_not_depend_on_its_band(monkeypatch: pytest.MonkeyPatch) -> None:
    """The noiseless read-out runs in bands of BAND_PIXELS (memory only): bands of 7 rows on a 37 x 53 panel give the
    one-band image bit for bit."""
    import simulator.imaging.detector as detector

    s1, s2 = _moments((37, 53))
    whole = DetectorModel().read_out(s1, s2, 2, None)
    monkeypatch.setattr(detector, "BAND_PIXELS", 7 * 53)
    assert np.array_equal(DetectorModel().read_out(s1, s2, 2, None), whole)
    assert whole.std() > 0


def test_aperture_filter_in_place_is_the_filter_clamped_at_zero() -> None:
    """The projection's in-place filter (one temporary per material, planes filtered in parallel threads) equals
    the allocating filter clamped at zero, on a view of a bigger array."""
    from simulator.imaging.detector import aperture_filter, aperture_filter_in_place

    gen = np.random.default_rng(2)
    L = gen.normal(1.0, 2.0, (3, 40, 50)).astype(np.float32)
    view = L[1, 5:35, 7:41]
    expected = np.maximum(aperture_filter(view.copy()), 0.0)
    outside = L[1, :5].copy()
    aperture_filter_in_place(view)
    assert np.array_equal(view, expected)
    assert np.array_equal(L[1, :5], outside)  # nothing written outside the view


def test_image_holds_under_five_float_panels_at_full_resolution_proportions(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forming one default-gantry image (scatter on) holds under five float64 panels beyond the cached line
    integrals: at most the signal and its second moment (or energy per quantum), each ray's material path and the
    scatter's local thickness (float32), and the scatter image. The read-out's quanta, counts and noise and the
    scatter's cell sums are done in bands of rows (the read-out's bands one per image-formation thread at a time);
    here the bands are set to 1/20 of the panel, the proportion of the 1 Mpx bands in a 28.8 Mpx full-resolution
    frame. It held over six (the read-out alone held four panels of
    quanta, energy per quantum, counts and noise beside its inputs: some 1.4 GB at full resolution)."""
    import tracemalloc

    import simulator.imaging.detector as detector
    from simulator.gantry import load_config
    from simulator.gantry.detector import build_imager

    cfg = load_config(None)
    pixels = cfg.geometry.detector.rows * cfg.geometry.detector.cols
    monkeypatch.setattr(detector, "BAND_PIXELS", pixels // 20)
    monkeypatch.setattr(detector, "NOISE_BAND_PIXELS", pixels // 20)  # the read-out's, as many in flight as threads
    im = build_imager(cfg.geometry, cfg.phantom, cfg.detector, 1, 45.0)
    assert im.scatter
    rec = _exp(0.0, mas=4.0, frame=2)
    im.image(rec)  # the line integrals are cached after this (the default panel's fit in the cache)
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        im.image(rec)
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < 5.0 * 8 * pixels, peak / (8 * pixels)


def test_image_threads_work_in_a_forked_child() -> None:
    """A process forked after the image-formation threads (aperture filter, read-out noise) ran gets a pool of its
    own: the inherited one has no threads, and a map on it would wait for ever (a multiprocessing fork pool of
    renderers)."""
    import os
    import signal

    from simulator.imaging.threads import image_threads

    pool = image_threads()
    if pool is None:
        pytest.skip("numba runs one thread here: the filter runs in the caller, no pool")
    assert list(pool.map(abs, [-1, -2])) == [1, 2]
    pid = os.fork()
    if pid == 0:  # child: a bounded wait, then a code the parent reads
        signal.alarm(20)
        try:
            ok = image_threads() is not pool and list(image_threads().map(abs, [-3])) == [3]
        finally:
            os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status


def test_filtering_each_materials_box_equals_filtering_whole_planes() -> None:
    """The projection filters each material only over its own box (where it is nonzero, padded by the filter's reach
    plus one): bit for bit what filtering the whole planes gives, for a material spread wide, one that meets the
    panel's edge, a speck of a few pixels and one absent. A box padded by one pixel less than the filter's reach
    misses the filter's tails (checked here, so the comparison can fail); one padded by the reach itself holds."""
    from simulator.imaging.detector import aperture_filter, aperture_filter_in_place
    from simulator.imaging.imager import _FILTER_REACH, _material_boxes

    gen = np.random.default_rng(4)
    L = np.zeros((4, 90, 120), dtype=np.float32)
    L[0, 20:70, 30:100] = gen.uniform(1.0, 40.0, (50, 70))
    L[1, 0:25, 95:120] = gen.uniform(0.5, 3.0, (25, 25))  # meets two edges of the panel
    L[2, 44:46, 60:63] = 2.5  # a calcification's few pixels
    whole = np.maximum(np.stack([aperture_filter(L[m]) for m in range(L.shape[0])]), 0.0)

    def boxed(reach: int) -> np.ndarray:
        out = L.copy()
        boxes = _material_boxes(out, reach)
        assert len(boxes) == 3  # the absent material gets no box
        for box in boxes:
            aperture_filter_in_place(box)
        return out

    assert np.array_equal(boxed(_FILTER_REACH), whole)
    assert np.array_equal(boxed(_FILTER_REACH - 1), whole)  # the filter's reach itself is the least that holds
    assert not np.array_equal(boxed(_FILTER_REACH - 2), whole)
