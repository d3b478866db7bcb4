"""Arc axis kinematics against independent formulas and numerical differentiation."""

from __future__ import annotations

import math

import numpy as np
import pytest

from protocols.exams.motion import move_time_s, runup_deg
from protocols.limits import DeviceLimits
from simulator.gantry.arc import ArcAxis, plan_profile
from simulator.gantry.config import AxisConfig


def _derivatives(profile, n: int = 40001):
    t = np.linspace(-0.05, profile.duration_s + 0.05, n)
    x = np.array([profile.position(ti) for ti in t])
    v = np.gradient(x, t)
    a = np.gradient(v, t)
    j = np.gradient(a, t)
    return t, x, v, a, j


@pytest.mark.parametrize("distance", [56.0, 10.0, 1.0, 0.2])
def test_s_curve_respects_limits_and_matches_the_planner_timing(distance: float) -> None:
    p = plan_profile(-distance / 2, distance / 2, 10.0, 20.0, 200.0)
    t, x, v, a, j = _derivatives(p)
    assert x[0] == pytest.approx(-distance / 2) and x[-1] == pytest.approx(distance / 2, abs=1e-9)
    assert v.max() <= 10.0 * (1 + 1e-6) and np.abs(a).max() <= 20.0 * 1.001
    assert np.abs(j).max() <= 200.0 * 1.01
    # the host's estimate (protocols.exams.motion) is exact for moves that reach full speed
    if distance >= 2 * runup_deg(10.0, 20.0, 200.0):
        assert p.duration_s == pytest.approx(move_time_s(distance, 10.0, 20.0, 200.0), rel=1e-9)
    else:  # short moves: the smoothed triangle is a little slower than the optimal profile, never faster
        assert p.duration_s >= move_time_s(distance, 10.0, 20.0, 200.0) - 1e-9


def test_trapezoid_profile_by_hand() -> None:
    p = plan_profile(0.0, 10.0, 5.0, 10.0, 200.0, s_curve=False)
    # accelerate 0.5 s (1.25 deg), cruise 1.5 s (7.5 deg), decelerate 0.5 s (1.25 deg)
    assert p.duration_s == pytest.approx(2.5)
    assert p.position(0.5) == pytest.approx(1.25)
    assert p.position(2.0) == pytest.approx(8.75)
    assert p.velocity(1.0) == pytest.approx(5.0)


def test_encoder_quantises_and_lags_the_command() -> None:
    axis = ArcAxis(AxisConfig(encoder_resolution_deg=0.01, servo_lag_ms=4.0, initially_homed=True), DeviceLimits())
    end = axis.start_move(0.0, 20.0, 8.0)
    t = 1.5  # cruising at 8 deg/s
    assert axis.following_error(t) == pytest.approx(8.0 * 0.004, rel=1e-6)
    enc = axis.encoder(t)
    assert abs(enc - axis.position(t)) <= 0.005 + 1e-12
    assert round(enc * 100) == pytest.approx(enc * 100, abs=1e-9)
    tc = axis.crossing_time(0.0, 10.0)
    assert tc is not None and axis.position(tc) == pytest.approx(10.0, abs=1e-9)
    assert axis.crossing_time(0.0, 25.0) is None
    assert end == pytest.approx(plan_profile(0, 20, 8, 20, 200).duration_s + 0.004)


def test_quick_stop_brakes_at_the_configured_deceleration() -> None:
    axis = ArcAxis(AxisConfig(estop_decel_deg_s2=200.0, initially_homed=True), DeviceLimits())
    axis.start_move(0.0, 25.0, 10.0)
    t = 1.5
    p, v = axis.position(t), axis.velocity(t)
    assert v == pytest.approx(10.0)
    stop_t = axis.quick_stop(t)
    assert stop_t - t == pytest.approx(10.0 / 200.0)
    assert axis.position(stop_t + 1.0) == pytest.approx(p + v * v / (2 * 200.0))
    assert not axis.moving(stop_t + 1e-9)


def test_stall_freezes_the_load_and_grows_following_error() -> None:
    axis = ArcAxis(AxisConfig(initially_homed=True), DeviceLimits())
    axis.start_move(0.0, 20.0, 10.0)
    axis.stall(1.0)
    frozen = axis.position(1.0)
    assert axis.position(1.5) == frozen and axis.following_error(1.5) > 4.0
    assert math.isclose(axis.following_error(1.5), axis.commanded(1.5) - frozen)
