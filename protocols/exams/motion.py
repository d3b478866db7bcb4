"""Arc kinematics estimates for planning and static validation (pure functions).

A jerk-limited ("S-curve") profile with symmetric acceleration and
deceleration, starting and ending at rest. With peak speed ``v``, maximum
acceleration ``a`` and jerk ``j``:

* if ``v >= a**2 / j`` the acceleration reaches ``a``; accelerating from rest
  to ``v`` takes ``T = v / a + a / j``;
* otherwise the acceleration peaks at ``sqrt(v * j)`` and ``T = 2 sqrt(v / j)``.

By symmetry the mean speed while accelerating is ``v / 2``, so the distance
covered is ``v * T / 2``. These are the estimates the validator uses; the
simulated gantry's axis model is the reference for actual timing.

Units: degrees of arc, seconds.

Example
-------
>>> round(acceleration_time_s(4.0, 20.0, 200.0), 3)   # 4/20 + 20/200
0.3
>>> round(runup_deg(4.0, 20.0, 200.0), 3)
0.6
"""

from __future__ import annotations

import math


def acceleration_time_s(speed_deg_s: float, accel_deg_s2: float, jerk_deg_s3: float) -> float:
    """Time to go from rest to ``speed_deg_s`` under the acceleration and jerk limits, s."""
    if speed_deg_s <= 0.0:
        return 0.0
    if speed_deg_s >= accel_deg_s2**2 / jerk_deg_s3:
        return speed_deg_s / accel_deg_s2 + accel_deg_s2 / jerk_deg_s3
    return 2.0 * math.sqrt(speed_deg_s / jerk_deg_s3)


def runup_deg(speed_deg_s: float, accel_deg_s2: float, jerk_deg_s3: float) -> float:
    """Arc travelled while accelerating from rest to ``speed_deg_s`` (also the braking distance), deg."""
    return 0.5 * speed_deg_s * acceleration_time_s(speed_deg_s, accel_deg_s2, jerk_deg_s3)


def move_time_s(distance_deg: float, max_speed_deg_s: float, accel_deg_s2: float, jerk_deg_s3: float) -> float:
    """Rest-to-rest time of a point-to-point move of ``|distance_deg|``, s.

    If the move is long enough to reach ``max_speed_deg_s`` it cruises in the
    middle; otherwise the peak speed is the one whose run-up and braking
    together cover the distance (found by bisection; the run-up distance grows
    monotonically with speed).
    """
    d = abs(distance_deg)
    if d == 0.0:
        return 0.0
    full = 2.0 * runup_deg(max_speed_deg_s, accel_deg_s2, jerk_deg_s3)
    if d >= full:
        return 2.0 * acceleration_time_s(max_speed_deg_s, accel_deg_s2, jerk_deg_s3) + (d - full) / max_speed_deg_s
    lo, hi = 0.0, max_speed_deg_s
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        if 2.0 * runup_deg(mid, accel_deg_s2, jerk_deg_s3) < d:
            lo = mid
        else:
            hi = mid
    return 2.0 * acceleration_time_s(hi, accel_deg_s2, jerk_deg_s3)
