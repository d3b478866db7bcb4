"""Arc axis: the tube arm's angle under an S-curve or trapezoidal move profile.

Angles in degrees (gantry frame, :mod:`protocols.geometry`), times in seconds of virtual time.

Profiles. A trapezoidal profile (acceleration ``a`` up to speed ``v``, cruise, deceleration) is
smoothed into a jerk-limited S-curve by a moving average of width ``Tj = a / j``: the
acceleration then ramps at exactly ``j`` and the rest-to-rest time grows by ``Tj``. Accelerating
from rest to ``v`` takes ``v/a + a/j`` and covers ``v/2`` times that — the same run-up as
:func:`protocols.exams.motion.runup_deg`, so the host's plans and this axis agree. Positions are
evaluated in closed form (the moving average of a piecewise-quadratic is a difference of its
piecewise-cubic integral), so the axis costs nothing between events.

Servo and encoder. The load follows the command with a position-loop lag (following error =
speed x lag); the encoder reports the load angle quantised to its resolution, plus any injected
glitch. :meth:`ArcAxis.crossing_time` solves for the moment the load crosses a planned angle —
the position trigger of a continuous sweep.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from protocols.limits import DeviceLimits
from simulator.gantry.config import AxisConfig


@dataclass(frozen=True)
class Profile:
    """A rest-to-rest move of ``distance_deg`` (>= 0) along ``sign``, smoothed over ``tj_s``."""

    start_deg: float
    sign: float
    distance_deg: float
    speed_deg_s: float
    accel_deg_s2: float
    ta_s: float
    tc_s: float
    tj_s: float

    @property
    def duration_s(self) -> float:
        """Rest-to-rest time, s."""
        if self.distance_deg == 0.0:
            return 0.0
        return 2.0 * self.ta_s + self.tc_s + self.tj_s

    @property
    def end_deg(self) -> float:
        return self.start_deg + self.sign * self.distance_deg

    def _x(self, t: float) -> float:
        """Trapezoidal distance travelled at ``t``."""
        a, v, ta, tc, d = self.accel_deg_s2, self.speed_deg_s, self.ta_s, self.tc_s, self.distance_deg
        T = 2 * ta + tc
        if t <= 0.0:
            return 0.0
        if t <= ta:
            return 0.5 * a * t * t
        if t <= ta + tc:
            return 0.5 * a * ta * ta + v * (t - ta)
        if t <= T:
            return d - 0.5 * a * (T - t) ** 2
        return d

    def _v(self, t: float) -> float:
        a, v, ta, tc = self.accel_deg_s2, self.speed_deg_s, self.ta_s, self.tc_s
        T = 2 * ta + tc
        if t <= 0.0 or t >= T:
            return 0.0
        if t <= ta:
            return a * t
        if t <= ta + tc:
            return v
        return a * (T - t)

    def _X(self, t: float) -> float:
        """Integral of :meth:`_x` from 0 to ``t`` (deg s)."""
        a, v, ta, tc, d = self.accel_deg_s2, self.speed_deg_s, self.ta_s, self.tc_s, self.distance_deg
        t2 = ta + tc
        T = 2 * ta + tc
        if t <= 0.0:
            return 0.0
        if t <= ta:
            return a * t**3 / 6.0
        x_ta = a * ta**3 / 6.0
        if t <= t2:
            u = t - ta
            return x_ta + 0.5 * a * ta * ta * u + 0.5 * v * u * u
        x_t2 = x_ta + 0.5 * a * ta * ta * tc + 0.5 * v * tc * tc
        if t <= T:
            return x_t2 + d * (t - t2) + (a / 6.0) * ((T - t) ** 3 - (T - t2) ** 3)
        x_T = x_t2 + d * (T - t2) - (a / 6.0) * (T - t2) ** 3
        return x_T + d * (t - T)

    def position(self, t: float) -> float:
        """Commanded angle ``t`` seconds after the move started, deg."""
        if self.tj_s > 0.0:
            x = (self._X(t) - self._X(t - self.tj_s)) / self.tj_s
        else:
            x = self._x(t)
        return self.start_deg + self.sign * x

    def velocity(self, t: float) -> float:
        """Commanded angular velocity, deg/s (signed)."""
        if self.tj_s > 0.0:
            x = (self._x(t) - self._x(t - self.tj_s)) / self.tj_s
        else:
            x = self._v(t)
        return self.sign * x


def plan_profile(start_deg: float, target_deg: float, speed_deg_s: float, accel_deg_s2: float,
                 jerk_deg_s3: float, s_curve: bool = True) -> Profile:
    """Rest-to-rest profile from ``start_deg`` to ``target_deg`` under the speed/acceleration/jerk limits."""
    d = abs(target_deg - start_deg)
    sign = 1.0 if target_deg >= start_deg else -1.0
    a = accel_deg_s2
    v = speed_deg_s
    if d == 0.0:
        return Profile(start_deg, sign, 0.0, v, a, 0.0, 0.0, 0.0)
    tj = a / jerk_deg_s3 if s_curve else 0.0

    def trapezoid(acc: float) -> tuple[float, float, float]:
        vv, t_a = v, v / acc
        if d < vv * t_a:  # triangular: never reaches v
            vv = math.sqrt(d * acc)
            t_a = vv / acc
        return vv, t_a, max((d - vv * t_a) / vv, 0.0)

    v_peak, ta, tc = trapezoid(a)
    if tc < tj:
        # The end of the acceleration and the start of the deceleration are closer than the smoothing
        # width: their smoothed ramps add up (up to 2a/Tj). Halving the acceleration keeps the jerk <= j.
        a = 0.5 * a
        v_peak, ta, tc = trapezoid(a)
    return Profile(start_deg, sign, d, v_peak, a, ta, tc, tj)


@dataclass(frozen=True)
class Brake:
    """Quick stop: constant deceleration from ``speed_deg_s`` (signed) at ``start_deg``."""

    start_deg: float
    speed_deg_s: float
    decel_deg_s2: float

    @property
    def duration_s(self) -> float:
        return abs(self.speed_deg_s) / self.decel_deg_s2

    def position(self, t: float) -> float:
        t = min(max(t, 0.0), self.duration_s)
        s = 1.0 if self.speed_deg_s >= 0 else -1.0
        return self.start_deg + self.speed_deg_s * t - 0.5 * s * self.decel_deg_s2 * t * t

    def velocity(self, t: float) -> float:
        if t <= 0.0 or t >= self.duration_s:
            return 0.0 if t >= self.duration_s else self.speed_deg_s
        s = 1.0 if self.speed_deg_s >= 0 else -1.0
        return self.speed_deg_s - s * self.decel_deg_s2 * t


Segment = Profile | Brake


class ArcAxis:
    """The tube arm: commanded trajectory, lagging load, quantised encoder, limits."""

    def __init__(self, cfg: AxisConfig, limits: DeviceLimits) -> None:
        self.cfg = cfg
        self.limits = limits
        self.homed = cfg.initially_homed
        self._rest_deg = cfg.initial_angle_deg
        self._seg: Segment | None = None
        self._t0 = 0.0
        self._lag = cfg.servo_lag_ms / 1000.0
        self._frozen: float | None = None  # load angle of a stalled motor
        self.glitch_offset_deg = 0.0

    # -- readings ------------------------------------------------------------
    def commanded(self, t: float) -> float:
        """Commanded angle at time ``t``, deg."""
        if self._seg is None:
            return self._rest_deg
        return self._seg.position(t - self._t0)

    def position(self, t: float) -> float:
        """Load (true tube-arm) angle at ``t``: the command delayed by the servo lag, deg."""
        if self._frozen is not None:
            return self._frozen
        if self._seg is None:
            return self._rest_deg
        return self._seg.position(t - self._t0 - self._lag)

    def velocity(self, t: float) -> float:
        """Load angular velocity, deg/s."""
        if self._frozen is not None or self._seg is None:
            return 0.0
        return self._seg.velocity(t - self._t0 - self._lag)

    def encoder(self, t: float) -> float:
        """Encoder reading at ``t``: load angle quantised to the resolution, plus any glitch, deg."""
        q = self.cfg.encoder_resolution_deg
        counts = round(self.position(t) / q)
        inv = round(1.0 / q)
        value = counts / inv if abs(inv * q - 1.0) < 1e-12 else counts * q  # exact mdeg when q = 1/n
        return value + self.glitch_offset_deg

    def following_error(self, t: float) -> float:
        """Commanded minus load angle, deg."""
        return self.commanded(t) - self.position(t)

    def end_time(self) -> float:
        """Time at which the current segment (plus servo lag) ends."""
        if self._seg is None:
            return self._t0
        return self._t0 + self._seg.duration_s + self._lag

    def moving(self, t: float) -> bool:
        return self._seg is not None and self._frozen is None and t < self.end_time()

    def braking(self, t: float) -> bool:
        """True while a quick stop is still decelerating the load at ``t``."""
        return isinstance(self._seg, Brake) and self.moving(t)

    # -- commands ---------------------------------------------------------------
    def within_soft_limits(self, angle_deg: float) -> bool:
        return self.limits.arc_min_deg - 1e-9 <= angle_deg <= self.limits.arc_max_deg + 1e-9

    def hard_limits(self) -> tuple[float, float]:
        m = self.cfg.hard_limit_margin_deg
        return self.limits.arc_min_deg - m, self.limits.arc_max_deg + m

    def start_move(self, t: float, target_deg: float, speed_deg_s: float) -> float:
        """Start a move from rest (settling first if still moving) to ``target_deg``; returns its end time."""
        here = self.position(t)
        self._settle(t)
        lim = self.limits
        speed = min(speed_deg_s if speed_deg_s > 0 else lim.arc_max_speed_deg_s, lim.arc_max_speed_deg_s)
        self._seg = plan_profile(here, target_deg, speed, lim.arc_acceleration_deg_s2, lim.arc_jerk_deg_s3,
                                 s_curve=self.cfg.profile == "s_curve")
        self._t0 = t
        return self.end_time()

    def quick_stop(self, t: float) -> float:
        """Brake at the quick-stop deceleration from the present state; returns the standstill time."""
        if self._frozen is not None:
            self._rest_deg = self._frozen
            self._seg = None
            self._t0 = t
            return t
        p, v = self.position(t), self.velocity(t)
        # the brake acts on the load itself: shift t0 so that position(t') = brake(t' - t)
        self._seg = Brake(p, v, self.cfg.estop_decel_deg_s2)
        self._t0 = t - self._lag
        return t + self._seg.duration_s

    def stall(self, t: float) -> None:
        """Motor stall: the load stops where it is while the command runs on."""
        self._frozen = self.position(t)

    def clear_stall(self, t: float) -> None:
        """Motor free again; the axis rests where the load stopped."""
        if self._frozen is not None:
            self._rest_deg = self._frozen
            self._frozen = None
            self._seg = None
            self._t0 = t

    @property
    def stalled(self) -> bool:
        return self._frozen is not None

    def _settle(self, t: float) -> None:
        self._rest_deg = self.position(t)
        self._seg = None
        self._t0 = t

    def settle(self, t: float) -> None:
        """Declare the axis at rest at its present load angle (end of a move)."""
        if self._frozen is None:
            self._settle(t)

    def crossing_time(self, t_from: float, angle_deg: float) -> float | None:
        """First time >= ``t_from`` at which the load crosses ``angle_deg`` during the current move."""
        if self._seg is None or self._frozen is not None:
            return None
        t_end = self.end_time()
        p0 = self.position(t_from)
        p1 = self.position(t_end)
        if (p0 - angle_deg) * (p1 - angle_deg) > 0.0:
            return None
        if p0 == angle_deg:
            return t_from
        lo, hi = t_from, t_end
        for _ in range(60):
            mid = 0.5 * (lo + hi)
            if (self.position(mid) - angle_deg) * (p0 - angle_deg) > 0.0:
                lo = mid
            else:
                hi = mid
        return hi
