"""X-ray generator and tube: kV waveform, tube current, mAs timer, independent backup timer, anode heat.

Units: kV, mA, mAs, s, J, W.

An exposure is a SimPy process (:meth:`Generator.expose`). X-rays are on from the moment the
high voltage is switched on; the kV rises with a first-order response (10-90 % in
``kv_rise_time_ms``) and carries ripple. The *primary* timer is the mAs integrator: the window
ends when the delivered mAs reaches the planned value. The *backup timer* is a separate process
started with the window; if the window is still open when it expires
(``min(limits.backup_timer_ms, backup_factor * planned pulse)``) it terminates the exposure
(status BACKUP_TIMER). Other parts terminate it with :meth:`Generator.terminate` (interlock,
abort, watchdog, tube arc). A kV drop (fault) lowers kV and emission mid-window, so the mAs
integrator needs longer.

Anode heat: the energy of an exposure is ``kV * mAs`` J (constant-potential generator). The
anode cools in proportion to its heat (Newton): ``dH/dt = -(P_cool / C) H`` with ``C`` the
capacity and ``P_cool`` the cooling power at full load (DeviceLimits). A plan is refused when
the present heat plus the plan's energy would exceed ``C``.
"""

from __future__ import annotations

import math
from collections.abc import Generator as Gen
from dataclasses import dataclass

import numpy as np
import simpy

from protocols.limits import DeviceLimits
from protocols.wire.catalogue import ExposureStatus
from simulator.gantry.config import GeneratorConfig


class Anode:
    """Anode heat store with Newtonian cooling (see module docstring)."""

    def __init__(self, capacity_j: float, cooling_w: float, heat_j: float = 0.0, t_s: float = 0.0) -> None:
        self.capacity_j = capacity_j
        self.k_per_s = cooling_w / capacity_j
        self._heat_j = heat_j
        self._t_s = t_s

    def heat_j(self, t_s: float) -> float:
        """Stored heat at time ``t_s``, J."""
        return self._heat_j * math.exp(-self.k_per_s * max(0.0, t_s - self._t_s))

    def add(self, t_s: float, joules: float) -> None:
        """Deposit ``joules`` at ``t_s``."""
        self._heat_j = self.heat_j(t_s) + joules
        self._t_s = t_s

    def would_exceed(self, t_s: float, joules: float) -> bool:
        """True if depositing ``joules`` now would pass the capacity."""
        return self.heat_j(t_s) + joules > self.capacity_j

    def permille(self, t_s: float) -> int:
        """Heat as a fraction of capacity, 0..1000."""
        return min(1000, int(round(1000.0 * self.heat_j(t_s) / self.capacity_j)))


def plan_energy_j(kv_and_mas: list[tuple[float, float]]) -> float:
    """Heat a plan deposits: sum of kV * mAs, J."""
    return float(sum(kv * mas for kv, mas in kv_and_mas))


def mean_rise_factor(window_s: float, rise_10_90_s: float) -> float:
    """Mean of ``1 - exp(-t/tau)`` over a window (tau = rise / ln 9): the kV deficit of the rise."""
    if rise_10_90_s <= 0.0 or window_s <= 0.0:
        return 1.0
    tau = rise_10_90_s / math.log(9.0)
    return 1.0 - tau * (1.0 - math.exp(-window_s / tau)) / window_s


@dataclass(frozen=True)
class ExposureResult:
    """What one X-ray window delivered (device clock, s)."""

    t_on_s: float
    t_off_s: float
    kv_mean: float
    mas: float
    status: int  # ExposureStatus


class Generator:
    """Generator state and the exposure process."""

    def __init__(self, env: simpy.Environment, cfg: GeneratorConfig, limits: DeviceLimits, rng: np.random.Generator) -> None:
        self.env = env
        self.cfg = cfg
        self.limits = limits
        self.rng = rng
        self.anode = Anode(limits.anode_heat_capacity_j, limits.anode_cooling_w, cfg.initial_heat_j)
        self.tube_current_ma = cfg.tube_current_ma
        self.kv_set = 0.0
        self.emission = 1.0  # fraction of the set current the tube delivers (kV drop < 1)
        self.kv_factor = 1.0  # fraction of the set kV on the tube
        self.on = False
        self.faulted = False
        self._proc: simpy.Process | None = None
        self._segments: list[tuple[float, float]] = []

    # -- readings -----------------------------------------------------------------------
    def measured_kv(self) -> float:
        """Tube voltage now, kV (0 when off)."""
        return self.kv_set * self.kv_factor if self.on else 0.0

    def measured_ma(self) -> float:
        """Tube current now, mA (0 when off)."""
        return self.tube_current_ma * self.emission if self.on else 0.0

    def ready(self, t_s: float) -> bool:
        """Generator ready: no tube fault latched and the anode below capacity."""
        return not self.faulted and self.anode.heat_j(t_s) < self.anode.capacity_j

    # -- exposure ----------------------------------------------------------------------------
    def expose(self, kv: float, mas: float, pulse_s: float) -> simpy.Process:
        """Start an exposure now; the process's value is an :class:`ExposureResult`."""
        self._proc = self.env.process(self._exposure(kv, mas, pulse_s))
        return self._proc

    def terminate(self, status: int) -> None:
        """End the exposure in progress (if any) now with ``status``."""
        if self._proc is not None and self._proc.is_alive and self.on:
            self._proc.interrupt(("end", status))

    def change_emission(self, kv_factor: float, emission: float) -> None:
        """A kV drop or its recovery: new kV and current fractions from now on."""
        self.kv_factor = kv_factor
        self.emission = emission
        if self._proc is not None and self._proc.is_alive and self.on:
            self._proc.interrupt(("rate", 0))

    def _backup(self, exposure: simpy.Process, backup_s: float) -> Gen[simpy.Event, None, None]:
        try:
            yield self.env.timeout(backup_s)
        except simpy.Interrupt:
            return  # the exposure ended first
        if exposure.is_alive and self.on:
            exposure.interrupt(("end", int(ExposureStatus.BACKUP_TIMER)))

    def _exposure(self, kv: float, mas: float, pulse_s: float) -> Gen[simpy.Event, None, ExposureResult]:
        env = self.env
        me = self._proc
        assert me is not None
        self.kv_set = kv
        self.tube_current_ma = mas / pulse_s
        self.on = True
        t_on = env.now
        backup_s = min(self.limits.backup_timer_ms / 1000.0, self.cfg.backup_factor * pulse_s)
        backup = env.process(self._backup(me, backup_s))
        delivered = 0.0
        kv_time = 0.0  # integral of kV dt
        status = int(ExposureStatus.OK)
        while True:
            rate_mas_s = self.tube_current_ma * self.emission
            seg_start = env.now
            seg_kv = kv * self.kv_factor
            try:
                yield env.timeout(max(0.0, (mas - delivered) / rate_mas_s))
                kv_time += seg_kv * (env.now - seg_start)
                delivered = mas
                break
            except simpy.Interrupt as intr:
                dt = env.now - seg_start
                kv_time += seg_kv * dt
                delivered += rate_mas_s * dt
                kind, code = intr.cause
                if kind == "end":
                    status = code
                    break
        self.on = False
        t_off = env.now
        if backup.is_alive:
            backup.interrupt()
        window = t_off - t_on
        cfg = self.cfg
        kv_mean = (kv_time / window if window > 0 else kv * self.kv_factor) * mean_rise_factor(
            window, cfg.kv_rise_time_ms / 1000.0
        )
        kv_mean += self.rng.normal(0.0, 0.1 * cfg.kv_ripple_percent / 100.0 * kv)
        mas_meas = max(0.0, delivered * (1.0 + self.rng.normal(0.0, cfg.mas_noise_percent / 100.0)))
        if status == int(ExposureStatus.OK) and abs(kv_mean - kv) > cfg.kv_tolerance_percent / 100.0 * kv:
            status = int(ExposureStatus.KV_FAULT)
        self.anode.add(t_off, kv_mean * mas_meas)
        return ExposureResult(t_on, t_off, kv_mean, mas_meas, status)
