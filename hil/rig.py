"""Rig descriptions: which gantry is on the other end of the wire, and how to talk to it.

A rig file (YAML) says where the gantry is (any pyserial URL: ``/dev/ttyUSB0``,
``/dev/pts/N``, ``socket://host:port``, ``rfc2217://...``, or ``sim`` for the
in-process simulated gantry in virtual time), the line speed, the machine's
geometry (:class:`protocols.geometry.AcquisitionGeometry`, gantry frame) and
limits (:class:`protocols.limits.DeviceLimits`), which interlocks are wired
to real switches and which are simulated (the conformance suite may only
drive simulated ones, through SIM_SET_INPUT), and the timeouts tests use.

Example
-------
>>> rig = load_rig(EXAMPLE_RIG_PATH)
>>> rig.interlocks["DOOR_CLOSED"].value, rig.baud
('simulated', 921600)
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from protocols.geometry import AcquisitionGeometry
from protocols.limits import DeviceLimits
from protocols.wire.catalogue import Interlock
from protocols.yamlsafe import YamlInputError, describe_validation_error, load_yaml_file

#: The example rig shipped with the package: the simulated gantry behind a pty.
EXAMPLE_RIG_PATH = Path(__file__).with_name("rigs") / "sim-pty.yaml"


class InterlockSource(StrEnum):
    """Whether an interlock is a real switch on the rig or simulated (settable with SIM_SET_INPUT)."""

    REAL = "real"
    SIMULATED = "simulated"
    ABSENT = "absent"


class RigTimeouts(BaseModel):
    """Timeouts for talking to a rig; ``_s`` seconds, ``_ms`` milliseconds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    connect_s: float = Field(5.0, gt=0.0, le=120.0, description="time allowed for the HELLO handshake, s")
    ack_timeout_ms: float = Field(100.0, gt=0.0, le=10000.0, description="link retransmission timeout, ms")
    heartbeat_period_ms: int = Field(100, ge=10, le=5000, description="host heartbeat period, ms")
    watchdog_timeout_ms: int = Field(500, ge=50, le=10000, description="device watchdog timeout requested in HELLO, ms")
    watchdog_margin_ms: float = Field(100.0, ge=0.0, le=5000.0, description="allowed lateness of SAFE_HOLD after the watchdog, ms")
    abort_latency_max_ms: float = Field(100.0, gt=0.0, le=10000.0, description="ABORT to state IDLE, ms")
    motion_timeout_s: float = Field(30.0, gt=0.0, le=600.0, description="longest motion a test waits for, s")


class Rig(BaseModel):
    """One HIL rig (or the simulated gantry) as a test target."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(..., min_length=1, description="rig name for reports")
    port: str = Field(..., min_length=1, description="pyserial URL, device path, or 'sim' (in-process, virtual time)")
    baud: int = Field(921600, ge=1200, le=12_000_000, description="UART speed, bit/s")
    real_hardware: bool = Field(False, description="True for a real gantry: rig-only tests run, X-rays may be real")
    geometry: AcquisitionGeometry = Field(default_factory=AcquisitionGeometry)
    limits: DeviceLimits = Field(default_factory=DeviceLimits)
    interlocks: dict[str, InterlockSource] = Field(
        default_factory=lambda: {name: InterlockSource.SIMULATED for name in Interlock.__members__},
        description="interlock name (catalogue interlock_bits) -> real / simulated / absent",
    )
    timeouts: RigTimeouts = Field(default_factory=RigTimeouts)
    gantry_config: str | None = Field(None, description="simulated gantry config file (port 'sim' or a local pty)")
    link_key_file: Path | None = Field(
        None, description="file holding the rig's link key (64 hex digits, mode 600): the link is signed "
        "(SPEC 2.6). The key itself never goes in the rig file; CRESCENT_LINK_KEY overrides nothing here.")

    @field_validator("interlocks")
    @classmethod
    def _known_interlocks(cls, v: dict[str, InterlockSource]) -> dict[str, InterlockSource]:
        unknown = sorted(set(v) - set(Interlock.__members__))
        if unknown:
            raise ValueError(f"unknown interlock(s) {unknown}; known: {sorted(Interlock.__members__)}")
        return {name: v.get(name, InterlockSource.ABSENT) for name in Interlock.__members__}

    def simulated_interlocks(self) -> list[str]:
        """Interlocks a test may open and close through SIM_SET_INPUT."""
        return [k for k, v in self.interlocks.items() if v is InterlockSource.SIMULATED]


class RigFileError(ValueError):
    """A rig file could not be read or does not match :class:`Rig` (message names file and field)."""


def load_rig(path: str | Path) -> Rig:
    """Read and validate a rig YAML file."""
    p = Path(path)
    try:
        data = load_yaml_file(p, what="rig file")  # size-capped, UTF-8, no aliases or duplicate keys
    except YamlInputError as exc:
        raise RigFileError(str(exc)) from None
    try:
        return Rig.model_validate(data)
    except ValidationError as exc:
        raise RigFileError(f"{p}: {describe_validation_error(exc)}") from None


def sim_rig(port: str = "sim", name: str = "simulated gantry") -> Rig:
    """The rig description of the simulated gantry at ``port`` (all interlocks simulated)."""
    return Rig(name=name, port=port)
