"""Compression paddle: motor, force sensor, thickness readout, and the breast that pushes back.

Heights in mm above the breast support, forces in N, times in s.

The breast is a standard linear solid with an exponential spring (soft tissue stiffens steeply
with strain, Fung-type): the equilibrium force is ``F_e(h) = k (exp(B s) - 1)`` with strain
``s = (h0 - h) / h0`` once the paddle touches (``h < h0``); a Maxwell arm adds
``ratio * dF_e`` for every change of ``F_e`` and relaxes with time constant ``tau``, so a held
compression loses force over seconds. The measured force is ``F_e + q``.

The powered drive never exceeds its hard force limit: before every control sub-step the
firmware predicts the force the step would produce and does not take a step that would pass
``min(target, limit)``. While the paddle is held, the Maxwell arm only relaxes toward
``F_e(h) <= F``, so the force cannot creep up past the limit either.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

import simpy

from simulator.gantry.config import BreastConfig, PaddleConfig


@dataclass
class Breast:
    """Visco-elastic breast model (see module docstring)."""

    cfg: BreastConfig
    q_n: float = 0.0  # Maxwell-arm force, N

    def equilibrium_force_n(self, h_mm: float) -> float:
        """Equilibrium (fully relaxed) force at paddle height ``h_mm``, N."""
        h0 = self.cfg.free_thickness_mm
        if h_mm >= h0:
            return 0.0
        strain = (h0 - h_mm) / h0
        return self.cfg.stiffness_n * math.expm1(self.cfg.exponent * strain)

    def force_n(self, h_mm: float) -> float:
        """Force on the paddle at height ``h_mm`` with the present Maxwell-arm state, N."""
        if h_mm >= self.cfg.free_thickness_mm:
            return 0.0
        return max(0.0, self.equilibrium_force_n(h_mm) + self.q_n)

    def force_after_n(self, h_mm: float, dt_s: float) -> float:
        """Force at height ``h_mm`` after holding there for ``dt_s`` s, N (state unchanged)."""
        if h_mm >= self.cfg.free_thickness_mm:
            return 0.0
        q = self.q_n * math.exp(-dt_s / self.cfg.relaxation_time_s)
        return max(0.0, self.equilibrium_force_n(h_mm) + q)

    def predict_n(self, h_mm: float, new_h_mm: float, dt_s: float) -> float:
        """Force after moving from ``h_mm`` to ``new_h_mm`` within ``dt_s``, N (state unchanged)."""
        q = self._q_after(h_mm, new_h_mm, dt_s)
        if new_h_mm >= self.cfg.free_thickness_mm:
            return 0.0
        return max(0.0, self.equilibrium_force_n(new_h_mm) + q)

    def advance(self, h_mm: float, new_h_mm: float, dt_s: float) -> None:
        """Update the Maxwell arm for a move from ``h_mm`` to ``new_h_mm`` taking ``dt_s``."""
        self.q_n = self._q_after(h_mm, new_h_mm, dt_s)
        if new_h_mm >= self.cfg.free_thickness_mm:
            self.q_n = 0.0

    def _q_after(self, h_mm: float, new_h_mm: float, dt_s: float) -> float:
        d_fe = self.equilibrium_force_n(new_h_mm) - self.equilibrium_force_n(h_mm)
        return (self.q_n + self.cfg.relaxation_ratio * d_fe) * math.exp(-dt_s / self.cfg.relaxation_time_s)


class Paddle:
    """Paddle drive state and its control loops (compress / release) as SimPy process bodies."""

    def __init__(self, env: simpy.Environment, cfg: PaddleConfig, breast: BreastConfig, *, force_limit_n: float,
                 thickness_min_mm: float) -> None:
        self.env = env
        self.cfg = cfg
        self.breast = Breast(breast)
        self.force_limit_n = force_limit_n
        self.thickness_min_mm = thickness_min_mm
        self.height_mm = cfg.park_height_mm
        self.present = cfg.paddle_present
        self.max_force_seen_n = 0.0
        self._t_last = 0.0

    # -- readings -------------------------------------------------------------------------
    def force_n(self) -> float:
        """Force sensor reading now, N (relaxation up to now included). Reading changes nothing: the Maxwell
        arm's state is advanced only by the drive's own control loops, so a compression's course (and where it
        stops) does not depend on how often telemetry samples the sensor."""
        dt = max(self.env.now - self._t_last, 0.0)
        if dt <= 0.0:
            return self.breast.force_n(self.height_mm)
        return self.breast.force_after_n(self.height_mm, dt)

    def thickness_mm(self) -> float:
        """Paddle height above the support (the compressed thickness when in contact), mm."""
        return self.height_mm

    def breast_thickness_mm(self) -> float:
        """Thickness of the breast on the support: the paddle height or the free thickness, mm."""
        return min(self.height_mm, self.breast.cfg.free_thickness_mm)

    def in_range(self, thickness_max_mm: float) -> bool:
        """Paddle mounted and between its travel limits."""
        return self.present and self.thickness_min_mm - 1e-9 <= self.height_mm <= thickness_max_mm + 1e-9

    def _relax_to(self, t: float) -> None:
        dt = t - self._t_last
        if dt > 0.0:
            self.breast.advance(self.height_mm, self.height_mm, dt)
            self._t_last = t

    def _step(self, new_h: float, dt: float) -> None:
        self.breast.advance(self.height_mm, new_h, dt)
        self.height_mm = new_h
        self._t_last += dt
        f = self.breast.force_n(new_h)
        if f > self.max_force_seen_n:
            self.max_force_seen_n = f

    # -- control loops ------------------------------------------------------------------------
    def compress(self, target_n: float, min_thickness_mm: float, speed_mm_s: float) -> Generator[simpy.Event, None, bool]:
        """Drive down until the force would pass ``min(target, limit)`` or the thickness floor; True if target reached.

        Interrupt the process to stop the drive (it holds where it is).
        """
        cfg = self.cfg
        breast = self.breast
        h0 = breast.cfg.free_thickness_mm
        ratio = breast.cfg.relaxation_ratio
        stop_n = min(target_n, self.force_limit_n)
        floor = max(min_thickness_mm, self.thickness_min_mm, 0.0)
        speed = min(speed_mm_s if speed_mm_s > 0 else cfg.default_speed_mm_s, cfg.max_speed_mm_s)
        period = cfg.control_period_ms / 1000.0
        dt = period / cfg.substeps
        decay = math.exp(-dt / breast.cfg.relaxation_time_s)
        eq = breast.equilibrium_force_n
        self._relax_to(self.env.now)
        try:
            while True:
                yield self.env.timeout(period)
                if self.height_mm - cfg.approach_speed_mm_s * period > h0 + 2.0:
                    # free travel toward the breast: one step per period
                    if self.height_mm <= floor:
                        return False  # at the thickness floor above the breast: nothing more to drive
                    self._step(max(floor, self.height_mm - cfg.approach_speed_mm_s * period), period)
                    continue
                h, q = self.height_mm, breast.q_n
                fe = eq(h)
                reached: bool | None = None
                for _ in range(cfg.substeps):
                    if (fe + q if h < h0 else 0.0) >= stop_n * 0.995:
                        reached = True
                        break
                    v = cfg.approach_speed_mm_s if h - h0 > 2.0 else speed
                    new_h = max(floor, h - v * dt)
                    if new_h >= h:
                        reached = False  # at the thickness floor before the force
                        break
                    fe_new = eq(new_h)
                    q_new = (q + ratio * (fe_new - fe)) * decay if new_h < h0 else 0.0
                    if new_h < h0 and fe_new + q_new > stop_n:
                        q *= decay  # the next step would pass the target/limit: hold here
                        reached = True
                        break
                    h, fe, q = new_h, fe_new, q_new
                    f = fe + q if h < h0 else 0.0
                    if f > self.max_force_seen_n:
                        self.max_force_seen_n = f
                self.height_mm, breast.q_n = h, q
                self._t_last = self.env.now
                if reached is not None:
                    return reached
        except simpy.Interrupt:
            return False

    def predict_compress(self, target_n: float, min_thickness_mm: float, speed_mm_s: float,
                         max_periods: int = 200_000) -> tuple[bool, float] | None:
        """Where :meth:`compress` with these arguments, started now and left uninterrupted, will stop:
        ``(target reached, breast thickness mm)``, or None if it would run past ``max_periods`` control periods.

        Runs the very same control loop on a copy of the paddle and the breast with a clock that only counts
        periods (the drive's arithmetic does not depend on the wall clock), so the result is exact to the bit.
        The real-time gantry uses it to build the phantom at the thickness the compression will end at while the
        paddle is still moving. State unchanged.
        """
        shadow = Paddle.__new__(Paddle)
        shadow.__dict__.update(self.__dict__)
        shadow.env = _PeriodClock(self.env.now)
        shadow.breast = Breast(self.breast.cfg, self.breast.q_n)
        body = shadow.compress(target_n, min_thickness_mm, speed_mm_s)
        try:
            for _ in range(max_periods):
                next(body)
        except StopIteration as done:
            return bool(done.value), shadow.breast_thickness_mm()
        return None

    def release(self) -> Generator[simpy.Event, None, bool]:
        """Drive up to the park height at the release speed; True when parked."""
        cfg = self.cfg
        period = cfg.control_period_ms / 1000.0
        dt = period / cfg.substeps
        self._relax_to(self.env.now)
        try:
            while self.height_mm < cfg.park_height_mm:
                yield self.env.timeout(period)
                for _ in range(cfg.substeps):
                    new_h = min(cfg.park_height_mm, self.height_mm + cfg.release_speed_mm_s * dt)
                    self._step(new_h, dt)
            return True
        except simpy.Interrupt:
            return False


class _PeriodClock:
    """Stand-in for the SimPy environment in :meth:`Paddle.predict_compress`: ``timeout(dt)`` moves ``now`` on
    by ``dt`` at once (as SimPy's ``now + delay``) and returns nothing to wait for."""

    def __init__(self, now: float) -> None:
        self.now = now

    def timeout(self, delay: float) -> None:
        self.now = self.now + delay
