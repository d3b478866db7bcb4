"""Seeded patient motion (crescent per-exam QC): a moved phantom's beads land where cone-beam geometry puts the
moved beads (the magnification of each bead's height included), and a still exposure is untouched."""

import numpy as np
import pytest

from protocols.geometry import AcquisitionGeometry, DetectorGeometry, project_point
from protocols.records import ExposureRecord
from simulator.gantry.config import PhantomConfig
from simulator.imaging.imager import ExposureImager, make_phantom

#: x, y shift of the phantom, mm: whole pixels of the 0.2 mm grid below (the imager renders whole pixels).
SHIFT = (2.0, 1.2)


def _exp(angle: float) -> ExposureRecord:
    return ExposureRecord(index=0, frame_id=0, planned_angle_deg=angle, angle_start_deg=angle, angle_end_deg=angle,
                          kvp=29.0, mas=20.0, anode_filter="W/Rh", window_start_s=0.0, window_end_s=0.1)


def _centroids(s1: np.ndarray, det: DetectorGeometry, points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    xs, ys = det.col_centres_mm(), det.row_centres_mm()
    out = []
    for px, py in points:
        c, r = int(np.argmin(np.abs(xs - px))), int(np.argmin(np.abs(ys - py)))
        win = s1[r - 10:r + 11, c - 10:c + 11]
        dip = win.max() - win
        out.append(((dip.sum(axis=0) * xs[c - 10:c + 11]).sum() / dip.sum(),
                    (dip.sum(axis=1) * ys[r - 10:r + 11]).sum() / dip.sum()))
    return out


@pytest.mark.parametrize("angle,moved", [(10.0, True), (-10.0, False)])
def test_moved_beads_project_where_the_geometry_puts_them(angle: float, moved: bool) -> None:
    det = DetectorGeometry(native_pitch_mm=0.05, binning=4, rows=500, cols=800, offset_x_mm=0.0)
    g = AcquisitionGeometry(detector=det)
    ph = make_phantom("beads", 50.0, g, seed=0)
    imager = ExposureImager(ph, g, seed=0, noise=False, focal_spot=False, patient_motion=(*SHIFT, 0.0))
    assert imager.phantom_shift_pixels(_exp(angle)) == ((10, 6) if moved else (0, 0))
    s1, _ = imager.expected_signal(_exp(angle))
    src = g.source_position(angle)
    xs, ys = det.col_centres_mm(), det.row_centres_mm()
    t = np.array([*SHIFT, 0.0]) if moved else np.zeros(3)
    beads = [b for b in ph.lesions]
    want = [project_point(src, tuple(np.asarray(b.centre_mm) + t)) for b in beads]
    inside = [(w, b) for w, b in zip(want, beads) if xs[12] < w[0] < xs[-13] and ys[12] < w[1] < ys[-13]]
    assert len(inside) >= 6
    got = _centroids(s1, det, [w for w, _ in inside])
    for (px, py), (cx, cy) in zip([w for w, _ in inside], got):
        assert abs(cx - px) < 0.06 and abs(cy - py) < 0.06  # mm (0.3 pixel)
    if moved:  # and not where the still beads would be: the shift is seen, with each height's magnification
        still = [project_point(src, tuple(b.centre_mm)) for _, b in inside]
        assert min(np.hypot(cx - sx, cy - sy) for (cx, cy), (sx, sy) in zip(got, still)) > 2.0


def test_phantom_config_motion_is_validated_and_still_by_default() -> None:
    assert PhantomConfig().motion_mm == (0.0, 0.0)
    with pytest.raises(ValueError, match="motion_mm"):
        PhantomConfig(motion_mm=(80.0, 0.0))
