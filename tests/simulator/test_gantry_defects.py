"""QC defect-injection hooks of the simulated gantry: off by default, each does only what it says."""

from __future__ import annotations

import numpy as np
import pytest

from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from simulator.gantry.config import DetectorConfig, GantryConfig
from simulator.gantry.detector import inject_defects


def _geo() -> AcquisitionGeometry:
    return AcquisitionGeometry(detector=DetectorGeometry(native_pitch_mm=0.05, binning=8, rows=10, cols=41))


def test_healthy_config_leaves_the_image_untouched():
    img = np.full((10, 41), 1234, np.uint16)
    assert inject_defects(img, DetectorConfig(), _geo()) is img
    cfg = GantryConfig()
    assert cfg.axis.angle_offset_deg == 0.0 and cfg.generator.focal_spot_scale == 1.0
    assert cfg.detector.readout_delay_ms == 0.0 and cfg.detector.dark_offset_report_error_adu == 0.0


def test_dead_column_reads_the_dark_offset_at_the_nearest_column():
    g = _geo()
    img = np.full((10, 41), 1100, np.uint16)
    out = inject_defects(img, DetectorConfig(dead_columns_x_mm=(-4.0,)), g)
    c = int(np.argmin(np.abs(g.detector.col_centres_mm() + 4.0)))
    assert (out[:, c] == 100).all() and (np.delete(out, c, axis=1) == 1100).all()
    # a column off the panel does nothing
    assert (inject_defects(img, DetectorConfig(dead_columns_x_mm=(500.0,)), g) == 1100).all()


def test_gain_gradient_scales_the_signal_above_the_pedestal_along_x():
    g = _geo()
    img = np.full((10, 41), 1100, np.uint16)  # 1000 ADU above the 100 ADU pedestal
    out = inject_defects(img, DetectorConfig(gain_gradient_percent_per_100mm=50.0), g).astype(float)
    x = g.detector.col_centres_mm()
    assert out[0] == pytest.approx(100 + 1000 * (1 + 0.5 * x / 100.0), abs=0.6)


def test_true_record_shifts_the_angle_and_scales_the_spot():
    from types import SimpleNamespace

    from protocols.records import ExposureRecord
    from simulator.gantry.firmware import Gantry as GantryFirmware

    rec = ExposureRecord(index=0, frame_id=1, planned_angle_deg=0, angle_start_deg=1.0, angle_end_deg=2.0, kvp=28,
                         mas=2, anode_filter="W/Rh", window_start_s=0, window_end_s=0.05, focal_spot_mm=0.3)
    cfg = GantryConfig().with_overrides(axis={"angle_offset_deg": 0.5}, generator={"focal_spot_scale": 4.0})
    true = GantryFirmware._true_record(SimpleNamespace(cfg=cfg), rec)
    assert (true.angle_start_deg, true.angle_end_deg, true.focal_spot_mm) == (1.5, 2.5, pytest.approx(1.2))
    assert true.frame_id == rec.frame_id
    assert GantryFirmware._true_record(SimpleNamespace(cfg=GantryConfig()), rec) is rec
