"""A minimal virtual-time protocol client on :class:`protocols.wire.link.Link`, for tests and demos.

It is *not* the host controller (that lives in ``firmware_host``): it sends commands, answers the
device's events with ACK, keeps what arrived, and can fall silent to simulate a dead host.

Example (inside a SimPy process)::

    client = LinkClient(env, endpoint)
    reply = yield client.request(hello(session_id=1,
                                       heartbeat_period_ms=100, watchdog_timeout_ms=500))
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import simpy

from protocols.wire import messages as M
from protocols.wire.framing import PROTOCOL_VERSION
from protocols.wire.link import Answered, Link, LinkConfig, Received, SendFailed
from protocols.wire.signing import Signer
from simulator.gantry.linkio import SimLinkDriver
from simulator.gantry.uart import SerialEndpoint


@dataclass(frozen=True)
class Arrival:
    """A device message as the client received it (virtual time, s)."""

    t_s: float
    message: M.Message


class LinkClient:
    """Host-side Link bound to a virtual serial endpoint (see module docstring)."""

    def __init__(self, env: simpy.Environment, endpoint: SerialEndpoint, *, heartbeats: bool = True,
                 initial_seq: int = 0x100, config: LinkConfig | None = None, signer: Signer | None = None) -> None:
        self.env = env
        self.endpoint = endpoint
        self.link = Link(config or LinkConfig(send_heartbeats=heartbeats), initial_seq=initial_seq, signer=signer)
        self.events: list[Arrival] = []
        self.telemetry: list[Arrival] = []
        self._waiters: dict[int, simpy.Event] = {}
        self._watchers: list[tuple[Callable[[M.Message], bool], simpy.Event]] = []
        self._driver = SimLinkDriver(env, endpoint, self.link, self._process)

    @property
    def silent(self) -> bool:
        return self._driver.muted

    def request(self, msg: M.Message) -> simpy.Event:
        """Send a command; the event succeeds with its response message (None if never answered)."""
        ev = self.env.event()
        self._waiters[id(msg)] = ev
        self.link.send(msg, self.env.now)
        self._driver.flush()
        return ev

    def wait_event(self, predicate: Callable[[M.Message], bool]) -> simpy.Event:
        """An event that succeeds with the first *future* device event matching ``predicate``."""
        ev = self.env.event()
        self._watchers.append((predicate, ev))
        return ev

    def of(self, name: str) -> list[M.Message]:
        """Device events received so far with catalogue name ``name``."""
        return [a.message for a in self.events if a.message.NAME == name]

    def go_silent(self) -> None:
        """Simulate a dead host: nothing more is written to the line."""
        self._driver.muted = True

    def _process(self) -> None:
        env = self.env
        for ev in self.link.events():
            if isinstance(ev, Received):
                if ev.needs_answer:
                    self.link.answer(ev.seq, M.Ack(acked_msg_id=ev.message.ID, detail=0), env.now)
                    self.events.append(Arrival(env.now, ev.message))
                    for pred, waiter in list(self._watchers):
                        if not waiter.triggered and pred(ev.message):
                            waiter.succeed(ev.message)
                            self._watchers.remove((pred, waiter))
                elif ev.message.NAME == "TELEMETRY":
                    self.telemetry.append(Arrival(env.now, ev.message))
            elif isinstance(ev, Answered):
                w = self._waiters.pop(id(ev.request), None)
                if w is not None:
                    w.succeed(ev.response)
            elif isinstance(ev, SendFailed):
                w = self._waiters.pop(id(ev.request), None)
                if w is not None:
                    w.succeed(None)


def hello(session_id: int = 0x12345678, heartbeat_period_ms: int = 100, watchdog_timeout_ms: int = 500) -> M.Message:
    """A HELLO for this catalogue's protocol version."""
    return M.Hello(protocol_version=PROTOCOL_VERSION, min_version=M.CATALOGUE.min_supported_version, host_capabilities=0, session_id=session_id,
                   heartbeat_period_ms=heartbeat_period_ms, watchdog_timeout_ms=watchdog_timeout_ms)


def make_plan(plan_id: int, angles_deg: list[float], *, kv: float = 29.0, mas: float = 2.0, pulse_ms: float = 60.0,
              speed_deg_s: float = 8.0, continuous: bool = True, anode_filter: int = 0, focal_spot: int = 0,
              final: bool = True) -> M.Message:
    """An ARM_PLAN with its digest filled in (angles deg, kV, mAs, ms, deg/s); ``final``: the exam's last plan."""
    entries = [M.ArmPlan.ENTRY(angle_mdeg=int(round(a * 1000)), kv_ckv=int(round(kv * 100)),
                               mas_nas=int(round(mas * 1e6)), pulse_us=int(round(pulse_ms * 1000)))
               for a in angles_deg]
    plan = M.ArmPlan(plan_id=plan_id, motion=1 if continuous else 0, anode_filter=anode_filter, focal_spot=focal_spot,
                     speed_mdeg_s=int(round(speed_deg_s * 1000)), digest=0, final=int(final), entries=entries)
    plan.digest = M.plan_digest(plan)
    return plan


def open_session(client: LinkClient, *, home: bool = True,
                 watchdog_timeout_ms: int = 500) -> Generator[simpy.Event, None, M.Message]:
    """HELLO (and HOME, waiting for its MOTION_DONE); the value is the HELLO_REPLY."""
    reply = yield client.request(hello(watchdog_timeout_ms=watchdog_timeout_ms))
    if home:
        done = client.wait_event(lambda m: m.NAME == "MOTION_DONE")
        yield client.request(M.Home())
        yield done
    return reply
