"""Fault injection: scheduled (YAML) or random with a seed, and SIM_INJECT_FAULT over the wire.

Fault file (YAML)::

    faults:                      # scheduled faults, any number
      - {at_s: 12.5, fault: ESTOP, duration_ms: 3000}          # virtual seconds after start
      - {at_exposure: 7, offset_ms: 10, fault: DOOR_OPEN}      # 10 ms into the 8th exposure's window
      - {phase: COMPRESS, delay_s: 1.0, fault: MOTOR_STALL}    # 1 s after a COMPRESS starts
    random:                      # Poisson arrivals (seeded)
      rate_per_s: 0.05
      faults: [ENCODER_GLITCH, KV_DROP]
      start_s: 0.0
      end_s: 600.0
    line: {bit_error_rate: 1.0e-6, drop_rate: 0.0}   # both directions of the serial line

``fault`` is a :class:`protocols.wire.catalogue.FaultCode` name among :data:`INJECTABLE`;
``param`` is fault-specific (KV_DROP: percent drop, default 20; ENCODER_GLITCH: jump in mdeg,
default 2000; LINE_FAULT: dead-line ms, default 500, or with ``noise_bytes`` a noise burst);
``duration_ms`` ends input faults (door re-closed, e-stop released, hand switch pressed again),
a kV drop, a telemetry stop. ``phase`` triggers fire at most once each (``repeat: true`` to fire
every time). A fault in phase ``SWEEP`` is armed when FIRE is accepted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from protocols.wire.catalogue import FaultCode
from protocols.yamlsafe import describe_validation_error, load_yaml_file

#: Faults the simulator can inject.
INJECTABLE: tuple[str, ...] = (
    "MOTOR_STALL", "ENCODER_GLITCH", "KV_DROP", "TUBE_ARC", "DETECTOR_TIMEOUT", "DEVICE_RESET", "ESTOP",
    "DOOR_OPEN", "TELEMETRY_STOP", "LINE_FAULT",
)
#: Faults a host may inject over the wire (SIM_INJECT_FAULT) but that no fault schedule or campaign draws:
#: REALTIME_OVERRUN stalls the real-time gantry's control loop for ``param`` ms (default 1000) while its
#: reader thread keeps stamping what arrives, so a host (the conformance suite's "stall honesty" case)
#: can check that a device which falls behind says so (REALTIME_OVERRUN) and does not declare the host
#: lost. In virtual time there is no loop to stall: it is logged and has no effect.
WIRE_INJECTABLE: tuple[str, ...] = INJECTABLE + ("REALTIME_OVERRUN",)

Phase = Literal["HOME", "MOVE_ARC", "COMPRESS", "RELEASE", "SWEEP"]


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_fault(name: str) -> str:
    if name not in INJECTABLE:
        raise ValueError(f"fault {name!r} is not injectable; choose one of {', '.join(INJECTABLE)}")
    return name


class ScheduledFault(_M):
    """One scheduled fault; exactly one trigger (``at_s``, ``at_exposure`` or ``phase``)."""

    fault: str
    param: int = 0
    duration_ms: float | None = Field(None, ge=0.0)
    noise_bytes: int = Field(0, ge=0, le=4096)
    at_s: float | None = Field(None, ge=0.0)
    at_exposure: int | None = Field(None, ge=0)
    offset_ms: float = Field(0.0, ge=0.0)
    phase: Phase | None = None
    delay_s: float = Field(0.0, ge=0.0)
    repeat: bool = False

    @field_validator("fault")
    @classmethod
    def _name(cls, v: str) -> str:
        return _check_fault(v)

    @model_validator(mode="after")
    def _one_trigger(self) -> "ScheduledFault":
        n = sum(x is not None for x in (self.at_s, self.at_exposure, self.phase))
        if n != 1:
            raise ValueError(f"fault {self.fault}: give exactly one of at_s, at_exposure, phase (got {n})")
        return self

    @property
    def code(self) -> int:
        return int(FaultCode[self.fault])


class RandomFaults(_M):
    """Poisson-distributed faults."""

    rate_per_s: float = Field(0.0, ge=0.0)
    faults: tuple[str, ...] = ()
    start_s: float = Field(0.0, ge=0.0)
    end_s: float = Field(600.0, ge=0.0)

    @field_validator("faults")
    @classmethod
    def _names(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(_check_fault(x) for x in v)


class LineFaultConfig(_M):
    """Continuous line fault sources (both directions)."""

    bit_error_rate: float = Field(0.0, ge=0.0, le=0.1)
    drop_rate: float = Field(0.0, ge=0.0, le=0.5)


class FaultPlan(_M):
    """A whole fault file."""

    faults: tuple[ScheduledFault, ...] = ()
    random: RandomFaults = Field(default_factory=RandomFaults)
    line: LineFaultConfig = Field(default_factory=LineFaultConfig)


def load_faults(source: str | Path | dict | None) -> FaultPlan:
    """Load a fault file (path), a dict, or None (no faults)."""
    if source is None:
        return FaultPlan()
    if isinstance(source, dict):
        return FaultPlan.model_validate(source)
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"fault file {path} not found")
    # size-capped, UTF-8, no aliases or duplicate keys: YamlInputError (a ValueError) naming the file
    data = load_yaml_file(path, what="fault file") or {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: a fault file is a YAML mapping, got {type(data).__name__}")
    try:
        return FaultPlan.model_validate(data)
    except ValidationError as exc:
        raise ValueError(f"{path}: {describe_validation_error(exc)}") from None


def random_fault_times(plan: RandomFaults, seed: int) -> list[tuple[float, str]]:
    """The random faults' (time s, fault name) list, drawn from ``seed`` (Poisson process)."""
    if plan.rate_per_s <= 0.0 or not plan.faults:
        return []
    rng = np.random.default_rng([seed, 303])
    out: list[tuple[float, str]] = []
    t = plan.start_s
    while True:
        t += float(rng.exponential(1.0 / plan.rate_per_s))
        if t >= plan.end_s:
            return out
        out.append((t, plan.faults[int(rng.integers(len(plan.faults)))]))
