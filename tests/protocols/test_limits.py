"""DeviceLimits: defaults from the regulations and reference systems, and its consistency checks."""

import pytest
from pydantic import ValidationError

from protocols.limits import MQSA_INITIAL_DRIVE_MAX_N, MQSA_INITIAL_DRIVE_MIN_N, DeviceLimits


def test_defaults_are_the_documented_figures():
    lim = DeviceLimits()
    assert (lim.arc_min_deg, lim.arc_max_deg) == (-30.0, 30.0)
    assert lim.compression_force_max_n == 200.0  # IEC 60601-2-45
    assert MQSA_INITIAL_DRIVE_MIN_N <= lim.compression_initial_drive_max_n <= MQSA_INITIAL_DRIVE_MAX_N
    assert (lim.kvp_min_kv, lim.kvp_max_kv) == (22.0, 49.0)
    assert lim.max_projections == 49
    assert lim.exposure_max_ms <= lim.backup_timer_ms


def test_default_limits_cover_the_reference_systems():
    lim = DeviceLimits()
    # Siemens Mammomat Inspiration: +-25 deg must fit inside the travel.
    assert lim.arc_min_deg < -25.0 and lim.arc_max_deg > 25.0
    # Hologic Dimensions: 15 deg in 3.7 s with 15 frames.
    assert 15.0 / 3.7 <= lim.arc_max_speed_deg_s
    assert lim.detector_min_frame_interval_ms <= 1000.0 * 3.7 / 14


@pytest.mark.parametrize("kvp, expected", [(25.0, 200.0), (40.0, 150.0), (49.0, 6000.0 / 49.0)])
def test_max_tube_current_is_current_or_power_limited(kvp, expected):
    assert DeviceLimits().max_tube_current_ma(kvp) == pytest.approx(expected)


@pytest.mark.parametrize(
    "changes, words",
    [
        ({"arc_min_deg": 0.0, "arc_max_deg": 0.0}, "arc_min_deg"),
        ({"kvp_min_kv": 40.0, "kvp_max_kv": 30.0}, "kvp_min_kv"),
        ({"exposure_max_ms": 6000.0, "backup_timer_ms": 5000.0}, "backup_timer_ms"),
        ({"compression_initial_drive_max_n": 100.0}, "compression_initial_drive_max_n"),  # below MQSA 111 N
        ({"compression_force_max_n": 250.0}, "compression_force_max_n"),  # above IEC 200 N
        ({"compression_force_max_n": 150.0, "compression_initial_drive_max_n": 180.0}, "must not exceed"),
        ({"anode_filters": ("W/Cu",)}, "anode_filters"),
        ({"arc_travel_deg": 30.0}, "arc_travel_deg"),  # unknown key
    ],
)
def test_inconsistent_limits_are_rejected(changes, words):
    with pytest.raises(ValidationError) as err:
        DeviceLimits(**changes)
    assert words in str(err.value)
