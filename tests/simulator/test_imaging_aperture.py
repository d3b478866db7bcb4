"""Pixel aperture on the product's default rendering path (``DetectorModel()``, ``aperture_oversample == 1``).

Truth: an ideal square del of width a integrates the intensity over its area before sampling, so
its presampled MTF is ``|sinc(f a)|`` at every frequency, with no mirror at Nyquist (IEC 62220-1
measures exactly this presampled MTF with the slanted edge). Measured with the project's own
slanted-edge analysis (:func:`reconstruction.analysis.mtf.slanted_edge_mtf`), on the W edge phantom,
ideal focus, at the 50 um native pitch and at the 200 um (4 x 4 binned) default of ``crescent
acquire`` -- through :func:`crescent.acquire.simulated.detector_mtf`, which is what the report shows.

Voxel phantoms: the product image is compared with the reference rendering on a 6 x 6 sub-pixel
grid (the definition of the aperture integral, in the limit) on a seeded breast.
"""

import numpy as np
import pytest

from crescent.acquire.simulated import detector_mtf
from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from protocols.records import ExposureRecord
from reconstruction.analysis.mtf import mtf_at, slanted_edge_mtf
from simulator.imaging.detector import DetectorModel, aperture_filter, aperture_taps
from simulator.imaging.imager import ExposureImager, make_phantom


class _Header:
    """The one field of an AcquisitionHeader that ``detector_mtf`` reads."""

    def __init__(self, geometry: AcquisitionGeometry) -> None:
        self.geometry = geometry


def _report_mtf(binning: int) -> tuple[np.ndarray, np.ndarray, float]:
    det = DetectorGeometry(native_pitch_mm=0.05, binning=binning, rows=120, cols=150)
    f, m = detector_mtf(_Header(AcquisitionGeometry(detector=det)), 29.0, "W/Rh")
    return f, m, det.pitch_mm


def test_report_mtf_at_50um_is_the_aperture_sinc() -> None:
    f, m, a = _report_mtf(1)
    for freq in (2.0, 5.0, 8.0, 10.0):
        assert mtf_at(f, m, freq) == pytest.approx(abs(np.sinc(freq * a)), abs=0.03), freq
    assert mtf_at(f, m, 15.0) <= 0.35  # |sinc(0.75)| = 0.30; a response mirrored at Nyquist gives ~0.99


def test_report_mtf_at_the_200um_acquire_default_is_the_aperture_sinc() -> None:
    f, m, a = _report_mtf(4)
    assert a == pytest.approx(0.2)
    for freq in (0.5, 1.25, 2.0, 2.5):
        assert mtf_at(f, m, freq) == pytest.approx(abs(np.sinc(freq * a)), abs=0.03), freq
    assert mtf_at(f, m, 3.75) <= 0.35  # 1.5 x Nyquist: |sinc(0.75)| = 0.30


def test_default_detector_model_is_the_product_path() -> None:
    """The tests above use what the product uses: no oversampling, edge supersampling on."""
    model = DetectorModel()
    assert model.aperture_oversample == 1 and model.edge_subsamples >= 8


def test_edge_mtf_also_holds_for_the_imager_directly_with_noise_free_default() -> None:
    det = DetectorGeometry(native_pitch_mm=0.05, binning=1, rows=160, cols=160, offset_y_mm=5.0)
    g = AcquisitionGeometry(detector=det)
    imager = ExposureImager(make_phantom("edge", 1.0, g, seed=0, tilt_deg=5.0), g, seed=0, noise=False,
                            focal_spot=False)
    e = ExposureRecord(index=0, frame_id=0, planned_angle_deg=0, angle_start_deg=0, angle_end_deg=0, kvp=28.0,
                       mas=50.0, anode_filter="Mo/Mo", window_start_s=0, window_end_s=0.1)
    s1, _ = imager.expected_signal(e)
    f, m = slanted_edge_mtf(s1, 0.05)
    for freq in (2.0, 5.0, 8.0, 10.0, 15.0):
        assert mtf_at(f, m, freq) == pytest.approx(abs(np.sinc(freq * 0.05)), abs=0.03), freq


def test_aperture_filter_response_is_sinc_up_to_nyquist() -> None:
    h = aperture_taps()
    n = np.arange(h.size) - h.size // 2
    f = np.linspace(0.0, 0.45, 46)
    response = (h[None, :] * np.cos(2 * np.pi * f[:, None] * n[None, :])).sum(axis=1)
    assert np.max(np.abs(response - np.sinc(f))) < 0.015
    flat = np.full((20, 30), 7.0, np.float32)
    assert np.allclose(aperture_filter(flat), 7.0, rtol=1e-6)


def test_voxel_breast_matches_the_supersampled_reference() -> None:
    """Product image within 7 % (rms of the fine detail) of the 6 x 6 sub-pixel reference; centre sampling is not."""
    det = DetectorGeometry(native_pitch_mm=0.05, binning=4, rows=120, cols=150, offset_y_mm=20.0)
    g = AcquisitionGeometry(detector=det)
    ph = make_phantom("breast", 40.0, g, seed=5, voxel_mm=0.25, width_mm=60.0, depth_mm=40.0)
    e = ExposureRecord(index=0, frame_id=1, planned_angle_deg=5, angle_start_deg=5, angle_end_deg=5, kvp=29,
                       mas=50, anode_filter="W/Rh", window_start_s=0, window_end_s=0.1)

    def render(model: DetectorModel) -> np.ndarray:
        return ExposureImager(ph, g, model, seed=0, noise=False, focal_spot=False).expected_signal(e)[0]

    ref = render(DetectorModel(aperture_oversample=6))
    prod = render(DetectorModel())
    from scipy.ndimage import uniform_filter

    inside = ref < 0.8 * ref.max()  # under the breast

    def detail_error(img: np.ndarray) -> float:
        d = img - ref
        return float(np.std((d - uniform_filter(d, 5))[inside]) / np.std((ref - uniform_filter(ref, 5))[inside]))

    assert detail_error(prod) < 0.07
    assert np.sqrt(np.mean(((prod - ref) / ref)[inside] ** 2)) < 0.002


def test_bad_aperture_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="aperture_oversample=0"):
        DetectorModel(aperture_oversample=0)
    with pytest.raises(ValueError, match="edge_subsamples=0"):
        DetectorModel(edge_subsamples=0)
