"""Plan expansion and motion estimates, checked against hand calculations."""

import math

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from protocols.exams import (
    DbtExam,
    PlanError,
    aec_scout_exposure,
    arc_travel_deg,
    exam_from_data,
    expand_exam,
    load_standard_exam,
    planned_angles_deg,
    scan_time_s,
    validate_exam,
)
from protocols.exams.motion import acceleration_time_s, move_time_s, runup_deg
from protocols.limits import DeviceLimits
from protocols.records import Technique

COMPRESSION = {"target_force_n": 100.0}
MANUAL = {"mode": "manual", "anode_filter": "W/Rh", "kvp": 29.0, "mas_per_projection": 2.0}


def dbt(arc, motion, technique=MANUAL):
    return exam_from_data(
        {"kind": "dbt", "name": "t", "view": "CC", "arc": arc, "motion": motion, "technique": technique,
         "compression": COMPRESSION}
    )


# --------------------------------------------------------------------------- kinematics


def integrate_s_curve(speed, accel, jerk, n=20000):
    """Numerically integrate a jerk-limited run-up from rest to ``speed``: (time, distance, final speed).

    Phases (jerk +j, 0, -j) are built from the peak acceleration; each is
    stepped with ``n`` explicit steps (error ~1/n), independent of motion.py's
    closed forms.
    """
    a_peak = min(accel, math.sqrt(speed * jerk))
    t_j = a_peak / jerk
    t_a = max(0.0, speed / a_peak - t_j)
    t, v, a, x = 0.0, 0.0, 0.0, 0.0
    for j, duration in ((jerk, t_j), (0.0, t_a), (-jerk, t_j)):
        dt = duration / n
        for _ in range(n):
            x += v * dt
            v += a * dt
            a += j * dt
        t += duration
    return t, x, v


@pytest.mark.parametrize("speed", [0.5, 2.0, 4.0, 10.0])
def test_runup_matches_numeric_integration(speed):
    t, x, v = integrate_s_curve(speed, 20.0, 200.0)
    assert v == pytest.approx(speed, rel=1e-3)
    assert acceleration_time_s(speed, 20.0, 200.0) == pytest.approx(t, rel=1e-9)
    assert runup_deg(speed, 20.0, 200.0) == pytest.approx(x, rel=1e-3)


def test_move_time_long_move_cruises():
    # T_acc = 10/20 + 20/200 = 0.6 s, run-up 3 deg each end, 14 deg at 10 deg/s.
    assert move_time_s(20.0, 10.0, 20.0, 200.0) == pytest.approx(1.2 + 1.4)


def test_move_time_short_move_is_pure_jerk():
    # Never reaches a_max: four jerk phases, d = 2 j (t/4)^3  =>  t = (32 d / j)^(1/3).
    d = 0.1
    assert move_time_s(d, 10.0, 20.0, 200.0) == pytest.approx((32 * d / 200.0) ** (1 / 3), rel=1e-6)
    assert move_time_s(-d, 10.0, 20.0, 200.0) == move_time_s(d, 10.0, 20.0, 200.0)
    assert move_time_s(0.0, 10.0, 20.0, 200.0) == 0.0


# --------------------------------------------------------------------------- expansion


def test_range_form_spaces_angles_evenly_in_sweep_order():
    angles = planned_angles_deg(load_standard_exam("dbt-step"))
    assert angles == pytest.approx([-12.5 + 3.125 * i for i in range(9)])
    reverse = dbt({"start_deg": 10.0, "stop_deg": -10.0, "count": 5}, {"mode": "step_and_shoot"})
    assert [e.planned_angle_deg for e in expand_exam(reverse)] == [10.0, 5.0, 0.0, -5.0, -10.0]


def test_explicit_angles_keep_their_order():
    exam = dbt({"angles_deg": [6.0, 1.0, -2.0, -9.0]}, {"mode": "step_and_shoot"})
    plan = expand_exam(exam)
    assert [e.planned_angle_deg for e in plan] == [6.0, 1.0, -2.0, -9.0]
    assert [e.index for e in plan] == [0, 1, 2, 3]


def test_continuous_sweep_current_speed_and_windows():
    plan = expand_exam(load_standard_exam("dbt-wide"))  # 60 mAs over 25, 50 deg in 25 s, 60 ms pulses
    assert len(plan) == 25
    e = plan[3]
    assert e.mas == pytest.approx(2.4)
    assert e.tube_current_ma == pytest.approx(2.4 / 0.060)
    assert e.speed_deg_s == pytest.approx(2.0)
    assert e.window_start_angle_deg == pytest.approx(e.planned_angle_deg - 0.06)
    assert e.window_end_angle_deg == pytest.approx(e.planned_angle_deg + 0.06)
    assert {p.motion for p in plan} == {"continuous"}


def test_static_exposure_uses_the_power_limited_current():
    exam = exam_from_data({"kind": "ffdm", "name": "f", "view": "CC", "compression": COMPRESSION,
                           "technique": {**MANUAL, "kvp": 40.0, "mas_per_projection": 120.0}})
    (e,) = expand_exam(exam)
    assert e.tube_current_ma == pytest.approx(150.0)  # 6000 W / 40 kV < 200 mA
    assert e.window_ms == pytest.approx(800.0)
    assert e.energy_j == pytest.approx(40.0 * 120.0)


def test_stereo_pair_with_zero_view():
    plan = expand_exam(load_standard_exam("stereo-biopsy"))
    assert [(e.planned_angle_deg, e.role) for e in plan] == [
        (0.0, "zero_view"), (-15.0, "projection"), (15.0, "projection")]


def test_aec_needs_a_choice_within_its_bounds():
    exam = load_standard_exam("dbt-standard")  # W/Rh or W/Ag, 25-36 kV, <= 9.9 mAs
    with pytest.raises(PlanError, match="uses AEC"):
        expand_exam(exam)
    plan = expand_exam(exam, Technique(anode_filter="W/Ag", kvp=31.0, mas=3.0))
    assert {(e.anode_filter, e.kvp, e.mas) for e in plan} == {("W/Ag", 31.0, 3.0)}
    with pytest.raises(PlanError, match="kvp 45.0 outside"):
        expand_exam(exam, Technique(anode_filter="W/Rh", kvp=45.0, mas=3.0))
    with pytest.raises(PlanError, match="not in"):
        expand_exam(exam, Technique(anode_filter="Mo/Mo", kvp=30.0, mas=3.0))
    with pytest.raises(PlanError, match="manual technique"):
        expand_exam(load_standard_exam("dbt-wide"), Technique())


def test_aec_scout_exposure():
    scout = aec_scout_exposure(load_standard_exam("dbt-standard"))
    assert (scout.planned_angle_deg, scout.kvp, scout.mas, scout.anode_filter, scout.role) == (
        0.0, 28.0, 1.0, "W/Rh", "aec_scout")
    assert aec_scout_exposure(load_standard_exam("dbt-wide")) is None


def test_continuous_travel_includes_runup_and_half_pulse():
    exam = load_standard_exam("dbt-wide")  # 2 deg/s: T_acc = 0.1 + 0.1 s, run-up 0.2 deg; half pulse 0.06 deg
    assert arc_travel_deg(exam) == pytest.approx((-25.26, 25.26))


def test_step_scan_time_is_detector_bound_when_frames_are_slow():
    lim = DeviceLimits(detector_min_frame_interval_ms=5000.0)
    exam = load_standard_exam("dbt-step")
    plan = expand_exam(exam, limits=lim)
    assert scan_time_s(exam, plan, lim) == pytest.approx(8 * 5.0 + plan[-1].window_ms / 1000)


# --------------------------------------------------------------------------- properties


@st.composite
def dbt_exams(draw):
    lim = DeviceLimits()
    if draw(st.booleans()):
        start = draw(st.floats(lim.arc_min_deg, lim.arc_max_deg))
        stop = draw(st.floats(lim.arc_min_deg, lim.arc_max_deg).filter(lambda s: abs(s - start) > 0.5))
        arc = {"start_deg": start, "stop_deg": stop, "count": draw(st.integers(2, lim.max_projections))}
    else:
        angles = draw(st.lists(st.floats(lim.arc_min_deg, lim.arc_max_deg), min_size=2, max_size=30, unique=True))
        angles = sorted(angles, reverse=draw(st.booleans()))
        assume(all(abs(b - a) > 1e-6 for a, b in zip(angles, angles[1:])))
        arc = {"angles_deg": angles}
    if draw(st.booleans()):
        motion = {"mode": "step_and_shoot", "settle_ms": draw(st.floats(100.0, 500.0))}
    else:
        motion = {"mode": "continuous", "speed_deg_s": draw(st.floats(0.05, 10.0)),
                  "pulse_ms": draw(st.floats(10.0, 100.0))}
    technique = {**MANUAL, "kvp": draw(st.floats(22.0, 49.0)), "mas_per_projection": draw(st.floats(0.5, 3.0))}
    return dbt(arc, motion, technique)


@settings(max_examples=300, deadline=None)
@given(dbt_exams())
def test_valid_dbt_exam_expands_to_count_monotonic_angles_inside_travel(exam: DbtExam):
    lim = DeviceLimits()
    assume(validate_exam(exam, lim) == [])
    plan = expand_exam(exam, limits=lim)
    count = exam.arc.count if exam.arc.count is not None else len(exam.arc.angles_deg)
    assert len(plan) == count
    assert [e.index for e in plan] == list(range(count))
    angles = [e.planned_angle_deg for e in plan]
    steps = [b - a for a, b in zip(angles, angles[1:])]
    assert all(s > 0 for s in steps) or all(s < 0 for s in steps)
    lo, hi = arc_travel_deg(exam, lim)
    assert lim.arc_min_deg <= lo and hi <= lim.arc_max_deg
    for e in plan:
        assert lo - 1e-9 <= min(e.window_start_angle_deg, e.window_end_angle_deg)
        assert max(e.window_start_angle_deg, e.window_end_angle_deg) <= hi + 1e-9
    if exam.arc.is_range:
        assert (angles[0], angles[-1]) == (exam.arc.start_deg, exam.arc.stop_deg)
