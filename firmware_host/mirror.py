"""A live mirror of the device: state, interlocks, arc, force, faults, and every event received.

The mirror is updated from TELEMETRY (50 Hz stream), STATUS snapshots and
the device's events; plans read it through :class:`~firmware_host.plans.WaitFor`
predicates. Events are kept in :attr:`DeviceMirror.events` in arrival order
(index = position), so a plan can wait for "an EXPOSURE_DONE after index k"
without losing events that arrived while it was busy. Units: angles deg,
forces N, thicknesses mm, device times s (device clock), host times s
(adapter clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from protocols.wire.catalogue import ALL_INTERLOCKS, DeviceState, FaultCode, Interlock
from protocols.wire.messages import Message


@dataclass
class DeviceEvent:
    """One event from the device, with the host time it arrived (s)."""

    index: int
    host_time_s: float
    message: Message

    @property
    def name(self) -> str:
        return self.message.NAME


@dataclass
class DeviceMirror:
    """What the host knows of the device right now (see module docstring)."""

    state: int = int(DeviceState.BOOT)
    interlocks: int = 0
    homed: bool = False
    arc_deg: float = 0.0
    arc_speed_deg_s: float = 0.0
    force_n: float = 0.0
    thickness_mm: float = 0.0
    kvp: float = 0.0
    ma: float = 0.0
    anode_heat_fraction: float = 0.0
    detector_state: int = 0
    fault_code: int = 0
    armed_plan_id: int = 0
    exposures_done: int = 0
    device_time_s: float = 0.0
    latest_device_time_us: int = 0  # the latest device time (us) any frame carried (device_time_s can go back)
    #: FAULT events with an earlier device time (us) were cleared by this host's RESET_FAULT before its exam
    #: started; the device may still deliver them late (its events are reliable across sessions)
    fault_floor_us: int = 0
    peer_alive: bool = True
    peer_lost_count: int = 0  # times the link declared the device lost (its watchdog then holds it safe)
    last_telemetry_host_s: float | None = None
    telemetry_count: int = 0
    events: list[DeviceEvent] = field(default_factory=list)
    faults: list[DeviceEvent] = field(default_factory=list)

    # -- updates -------------------------------------------------------------------------------
    def apply(self, message: Message, host_time_s: float) -> DeviceEvent | None:
        """Update from one received message; returns the stored event for event-kind messages."""
        name = message.NAME
        m = message
        if name == "TELEMETRY":
            self.device_time_s = m.device_time_us * 1e-6
            self.latest_device_time_us = max(self.latest_device_time_us, int(m.device_time_us))
            self.arc_deg = m.arc_mdeg * 1e-3
            self.arc_speed_deg_s = m.arc_speed_mdeg_s * 1e-3
            self.force_n = m.force_dn * 0.1
            self.thickness_mm = m.thickness_um * 1e-3
            self.kvp = m.kv_ckv * 0.01
            self.ma = m.ma_dma * 0.1
            self.anode_heat_fraction = m.anode_heat_permille * 1e-3
            self.state = m.state
            self.interlocks = m.interlocks
            self.detector_state = m.detector_state
            self.last_telemetry_host_s = host_time_s
            self.telemetry_count += 1
            return None
        if name in ("STATUS",):
            self.apply_status(m)
            return None
        if name == "HELLO_REPLY":
            self.state = m.state
            return None
        if m.DEF.kind != "event":
            return None
        if hasattr(m, "device_time_us"):
            self.device_time_s = m.device_time_us * 1e-6
            self.latest_device_time_us = max(self.latest_device_time_us, int(m.device_time_us))
        # an event from before this host's RESET_FAULT, delivered late (the device retries its events across
        # sessions), is kept in the log but no longer describes the device: its state and fault were cleared
        stale = int(getattr(m, "device_time_us", self.fault_floor_us)) < self.fault_floor_us
        if name == "STATE_CHANGED":
            if not stale:
                self.state = m.new_state
                if m.fault_code:
                    self.fault_code = m.fault_code
        elif name == "INTERLOCK_CHANGED":
            self.interlocks = m.interlocks
        elif name == "FAULT":
            if m.latched and not stale:
                self.fault_code = m.fault_code
        elif name == "MOTION_DONE":
            self.arc_deg = m.arc_mdeg * 1e-3
            self.force_n = m.force_dn * 0.1
            self.thickness_mm = m.thickness_um * 1e-3
            if m.cause_msg_id == 0x10 and m.ok:  # HOME
                self.homed = True
        elif name == "EXPOSURE_DONE":
            self.exposures_done = m.index + 1
        ev = DeviceEvent(len(self.events), host_time_s, m)
        self.events.append(ev)
        if name == "FAULT":
            self.faults.append(ev)
        return ev

    def mark_reset(self) -> None:
        """This host's RESET_FAULT was answered: every FAULT or STATE_CHANGED received so far, and any later copy
        of one (the device retries its events), is from before the reset, which cleared it. Its device time is at
        most the latest this host has seen; the device's own faults after the reset carry a later one."""
        self.fault_floor_us = self.latest_device_time_us + 1

    def apply_status(self, m: Message) -> None:
        """Take a STATUS snapshot as the truth."""
        self.state = m.state
        self.fault_code = m.fault_code
        self.interlocks = m.interlocks
        self.homed = bool(m.homed)
        self.arc_deg = m.arc_mdeg * 1e-3
        self.force_n = m.force_dn * 0.1
        self.thickness_mm = m.thickness_um * 1e-3
        self.anode_heat_fraction = m.anode_heat_permille * 1e-3
        self.armed_plan_id = m.armed_plan_id
        self.exposures_done = m.exposures_done
        self.detector_state = m.detector_state

    # -- queries -------------------------------------------------------------------------------
    @property
    def state_name(self) -> str:
        try:
            return DeviceState(self.state).name
        except ValueError:
            return f"state {self.state}"

    @property
    def open_interlocks(self) -> list[str]:
        """Names of interlock bits that are not safe."""
        return [i.name for i in Interlock if not self.interlocks & i]  # type: ignore[attr-defined]

    @property
    def interlocks_safe(self) -> bool:
        return self.interlocks & ALL_INTERLOCKS == ALL_INTERLOCKS

    def events_since(self, index: int, *names: str) -> list[DeviceEvent]:
        """Events at position >= ``index`` (optionally only those named)."""
        return [e for e in self.events[index:] if not names or e.name in names]

    def first_since(self, index: int, *names: str) -> DeviceEvent | None:
        """The first event at position >= ``index`` with one of ``names``."""
        for e in self.events[index:]:
            if e.name in names:
                return e
        return None

    @property
    def mark(self) -> int:
        """Index the next event will get (use as ``since`` for later waits)."""
        return len(self.events)


def fault_name(code: int) -> str:
    """Catalogue name of a fault code (``'MOTOR_STALL'``), or ``'FAULT <n>'``."""
    try:
        return FaultCode(code).name
    except ValueError:
        return f"FAULT {code}"
