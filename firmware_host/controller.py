"""The host controller core, sans-IO: link + device mirror + plan runner + audit log.

Feed it what the line delivered (:meth:`Controller.receive`) and the clock
(:meth:`Controller.tick`); write out :meth:`Controller.data_to_send`; call
``tick`` again at :meth:`Controller.next_deadline`. It never reads a clock,
sleeps or touches a port: the adapters (:mod:`firmware_host.serial_adapter`
for pyserial in wall-clock time, :mod:`firmware_host.simpy_adapter` for
SimPy virtual time) do, so the same controller runs a rig, a pseudo-terminal
and a virtual gantry.

What it does on its own, whatever plan runs:

* answers every device event with ACK (delivery is guaranteed by the link);
* keeps the :class:`~firmware_host.mirror.DeviceMirror` current;
* writes every command, response, event and link incident to the audit sink;
* re-requests telemetry when it goes stale (policy: TELEMETRY_STOP is retried);
* evaluates the suspenders (:meth:`Controller.trouble`) for the running plan.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from firmware_host.audit import AuditSink, MemoryAudit, message_dict
from firmware_host.errors import HostError, Interrupted
from firmware_host.mirror import DeviceMirror, fault_name
from firmware_host.plans import Phase, Plan
from firmware_host.policy import Action, fault_action
from firmware_host.runner import PlanRunner
from protocols.wire.catalogue import DeviceState, FaultCode, Interlock
from protocols.wire.link import (
    Answered,
    DuplicateAnswered,
    FrameDropped,
    Link,
    LinkConfig,
    PeerAlive,
    PeerLost,
    Received,
    Rejected,
    SendFailed,
    StaleResponse,
)
from protocols.wire.messages import Ack, Message, SetTelemetry
from protocols.wire.signing import Signer

#: Progress callback: (phase name, index, total) - index/total count projections within a phase (0, 0 otherwise).
ProgressCallback = Callable[[str, int, int], None]

#: Interlocks whose opening ends an exam at once (door, emergency stop). The others (hand switch,
#: detector and generator ready) drop during normal operation; the device terminates an exposure itself.
HARD_INTERLOCKS = int(Interlock.DOOR_CLOSED) | int(Interlock.ESTOP_RELEASED)  # type: ignore[attr-defined]

#: Host link defaults: a peer timeout above the device's telemetry and heartbeat gaps on a busy pty.
HOST_LINK_CONFIG = LinkConfig(peer_timeout_s=1.0)

#: Telemetry older than this (s) while the device is heard counts as stopped.
TELEMETRY_STALE_S = 0.5


TrafficTap = Callable[[int, bytes, float], None]


class Controller:
    """Sans-IO host controller (see module docstring). One plan runs at a time."""

    def __init__(
        self,
        audit: AuditSink | None = None,
        link_config: LinkConfig = HOST_LINK_CONFIG,
        seed: int | None = None,
        progress: ProgressCallback | None = None,
        telemetry_period_ms: int = 20,
        signer: Signer | None = None,
    ) -> None:
        self.rng = random.Random(seed)
        #: ``signer``: sign every frame and accept only verified ones (SPEC 2.6); None: an unsigned link.
        self.link = Link(config=link_config, initial_seq=self.rng.randrange(1, 0xFFFF), signer=signer)
        self.mirror = DeviceMirror()
        self.audit: AuditSink = audit if audit is not None else MemoryAudit()
        self.progress = progress
        self.telemetry_period_ms = telemetry_period_ms
        self.runner: PlanRunner | None = None
        self.now = 0.0
        self.phase = "idle"
        self._fault_trouble: Interrupted | None = None
        #: device time (us) of the FAULT event behind ``_fault_trouble``: a RESET_FAULT that this host sends
        #: later (``mirror.fault_floor_us``) clears it, so it no longer ends the exam
        self._fault_trouble_us = 0
        self._telemetry_requested_s: float | None = None
        self._aux: set[int] = set()  # ids of out-of-band commands in flight
        #: Optional traffic tap ``tap(direction, data, t_s)`` (direction 0 host->device, 1 device->host),
        #: e.g. :meth:`hil.capture.Tap.record`; it sees every byte both adapters move.
        self.tap: TrafficTap | None = None

    # -- adapter API ---------------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> None:
        """Bytes from the line at host time ``now`` (s)."""
        self.now = now
        if data:
            if self.tap is not None:
                self.tap(1, data, now)
            self.link.receive(data, now)
        self._process(now)

    def tick(self, now: float) -> None:
        """Advance timers to ``now`` (s)."""
        self.now = now
        self.link.tick(now)
        self._process(now)
        self._check_telemetry(now)
        if self.runner is not None:
            self.runner.on_tick(now)
            self._process(now)

    def data_to_send(self) -> bytes:
        """Bytes to write to the line now (recorded by the tap at the controller's current time)."""
        out = self.link.data_to_send()
        if out and self.tap is not None:
            self.tap(0, out, self.now)
        return out

    def next_deadline(self) -> float | None:
        times = [t for t in (self.link.next_deadline(), self.runner.deadline() if self.runner else None) if t is not None]
        if self.mirror.last_telemetry_host_s is not None and self.mirror.peer_alive:
            due = self.mirror.last_telemetry_host_s
            if self._telemetry_requested_s is not None:
                due = max(due, self._telemetry_requested_s)
            times.append(due + TELEMETRY_STALE_S)
        return min(times) if times else None

    # -- plans ---------------------------------------------------------------------------------
    def start(self, plan: Plan, now: float, name: str = "plan") -> PlanRunner:
        """Start ``plan``; only one plan runs at a time."""
        if self.runner is not None and not self.runner.finished:
            raise HostError(f"plan {self.runner.name!r} is still running; cannot start {name!r}")
        self.now = now
        self._fault_trouble, self._fault_trouble_us = None, 0
        self.runner = PlanRunner(plan, self, name)
        self.log("plan_start", plan=name)
        self.runner.start(now)
        return self.runner

    @property
    def busy(self) -> bool:
        return self.runner is not None and not self.runner.finished

    def request_abort(self, reason: str = "operator abort", now: float | None = None) -> bool:
        """Operator abort: interrupt the running plan (its handler sends ABORT and releases as configured)."""
        now = self.now if now is None else now
        if not self.busy:
            return False
        assert self.runner is not None
        return self.runner.interrupt(Interrupted(reason, "OPERATOR"), now)

    def send_aux(self, message: Message, now: float | None = None) -> None:
        """Send a command outside any plan (e.g. SIM_INJECT_FAULT from a test); its answer is only logged."""
        self._aux.add(id(message))
        self.send_command(message, self.now if now is None else now, log_note="out of band")

    # -- used by the runner ----------------------------------------------------------------------
    def send_command(self, message: Message, now: float, new_session: bool = False, log_note: str = "") -> None:
        if new_session:
            self.link.new_session(self.rng.randrange(1, 0xFFFF))
        entry: dict[str, Any] = {"name": message.NAME, "fields": message_dict(message)}
        if log_note:
            entry["note"] = log_note
        self.log("command", **entry)
        self.link.send(message, now)

    def on_phase(self, phase: Phase, now: float) -> None:
        self.phase = phase.name
        self.log("phase", phase=phase.name, index=phase.index, total=phase.total)
        if self.progress is not None:
            self.progress(phase.name, phase.index, phase.total)

    def log(self, kind: str, **fields: Any) -> None:
        self.audit.write({"t": round(self.now, 6), "kind": kind, **fields})

    def trouble(self) -> Interrupted | None:
        """The condition that must end the running exam now, if any (the suspenders).

        Link lost; the device in SAFE_HOLD, FAULT or BOOT; the door or the
        emergency stop open; a fault the policy ends the exam on, reported at or after this host's
        RESET_FAULT (``mirror.fault_floor_us``: an earlier one was cleared by that reset).
        """
        m = self.mirror
        if not m.peer_alive:
            return Interrupted("link lost: the device stopped answering (its watchdog makes it safe)", "TIMEOUT",
                               "WATCHDOG")
        self._drop_cleared_fault_trouble()
        if self._fault_trouble is not None:
            return self._fault_trouble
        if m.state in (int(DeviceState.SAFE_HOLD), int(DeviceState.FAULT), int(DeviceState.BOOT)):
            fault = fault_name(m.fault_code) if m.fault_code else None
            why = f" ({fault})" if fault else ""
            name = "DEVICE_RESET" if m.state == int(DeviceState.BOOT) else fault
            return Interrupted(f"device entered {m.state_name}{why}", "FAULT", name)
        if m.interlocks & HARD_INTERLOCKS != HARD_INTERLOCKS:
            opened = [n for n in m.open_interlocks if n in ("DOOR_CLOSED", "ESTOP_RELEASED")]
            fault = "DOOR_OPEN" if "DOOR_CLOSED" in opened else "ESTOP"
            return Interrupted(f"interlock open: {', '.join(opened)}", "INTERLOCK", fault)
        return None

    # -- internals -----------------------------------------------------------------------------
    def _process(self, now: float) -> None:
        changed = False
        for ev in self.link.events():
            if isinstance(ev, Received):
                msg = ev.message
                if ev.needs_answer:
                    self.link.answer(ev.seq, Ack(acked_msg_id=msg.ID, detail=0), now)
                self.mirror.apply(msg, now)
                if msg.NAME == "TELEMETRY":
                    self.log("telemetry", fields=message_dict(msg))
                    self._telemetry_requested_s = None
                elif msg.NAME != "HEARTBEAT":
                    self.log("event", name=msg.NAME, fields=message_dict(msg))
                    if msg.NAME == "FAULT":
                        self._on_fault(msg)
                changed = True
            elif isinstance(ev, Answered):
                self.log("response", name=ev.response.NAME, to=ev.request.NAME, fields=message_dict(ev.response),
                         attempts=ev.attempts, rtt_s=round(ev.round_trip_s, 6))
                if ev.response.NAME in ("STATUS", "HELLO_REPLY"):
                    self.mirror.apply(ev.response, now)
                    changed = True
                if id(ev.request) in self._aux:
                    self._aux.discard(id(ev.request))
                elif self.runner is not None:
                    self.runner.on_answered(ev, now)
            elif isinstance(ev, SendFailed):
                self.log("send_failed", name=ev.request.NAME, attempts=ev.attempts, reason=ev.reason)
                if id(ev.request) in self._aux:
                    self._aux.discard(id(ev.request))
                elif self.runner is not None:
                    self.runner.on_send_failed(ev, now)
            elif isinstance(ev, PeerLost):
                self.mirror.peer_alive = False
                self.mirror.peer_lost_count += 1
                self.log("peer_lost", silent_s=round(ev.silent_s, 6))
                changed = True
            elif isinstance(ev, PeerAlive):
                self.mirror.peer_alive = True
                self.log("peer_alive")
                changed = True
            elif isinstance(ev, FrameDropped):
                self.log("frame_dropped", error=str(ev.error))
            elif isinstance(ev, Rejected):
                self.log("rejected", seq=ev.seq, msg_id=ev.msg_id, error_code=ev.error_code, reason=ev.reason)
            elif isinstance(ev, (StaleResponse, DuplicateAnswered)):
                self.log("link", note=type(ev).__name__, seq=ev.seq, msg_id=ev.msg_id)
        if changed and self.runner is not None:
            self.runner.on_change(now)

    def _on_fault(self, msg: Message) -> None:
        if int(msg.device_time_us) < self.mirror.fault_floor_us:
            self.log("decision", fault=fault_name(msg.fault_code), latched=bool(msg.latched), action="continue",
                     note="FAULT from before this host's RESET_FAULT, delivered late: already cleared")
            return
        action = fault_action(msg.fault_code, bool(msg.latched))
        self.log("decision", fault=fault_name(msg.fault_code), latched=bool(msg.latched), action=action.value)
        self._drop_cleared_fault_trouble()  # a later fault replaces one the reset cleared
        if action is Action.END and self._fault_trouble is None:
            self._fault_trouble = Interrupted(
                f"device fault {fault_name(msg.fault_code)}: {msg.text or 'no detail'}", "FAULT",
                fault_name(msg.fault_code),
            )
            self._fault_trouble_us = int(msg.device_time_us)
        elif int(msg.fault_code) == int(FaultCode.TELEMETRY_STOP):
            self._request_telemetry(self.now)

    def _drop_cleared_fault_trouble(self) -> None:
        """Forget the fault that was to end the exam if it was reported before this host's RESET_FAULT (the previous
        session's, delivered late): the reset cleared it (``mirror.fault_floor_us``)."""
        if self._fault_trouble is not None and self._fault_trouble_us < self.mirror.fault_floor_us:
            self.log("decision", fault=self._fault_trouble.fault, action="continue",
                     note="FAULT from before this host's RESET_FAULT: cleared by it, the exam goes on")
            self._fault_trouble = None

    def _check_telemetry(self, now: float) -> None:
        last = self.mirror.last_telemetry_host_s
        if last is None or not self.mirror.peer_alive or now < last + TELEMETRY_STALE_S:
            return
        if self._telemetry_requested_s is not None and now < self._telemetry_requested_s + TELEMETRY_STALE_S:
            return
        self.log("decision", note="telemetry stale; re-sending SET_TELEMETRY", action=Action.RETRY.value,
                 silent_s=round(now - last, 6))
        self._request_telemetry(now)

    def _request_telemetry(self, now: float) -> None:
        self._telemetry_requested_s = now
        if self.mirror.state != int(DeviceState.BOOT):
            self.send_aux(SetTelemetry(period_ms=self.telemetry_period_ms), now)
