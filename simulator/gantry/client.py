"""A minimal virtual-time protocol client on :class:`protocols.wire.link.Link`, for tests and demos.

It is *not* the host controller (that lives in ``firmware_host``): it sends commands, answers the
device's events with ACK, keeps what arrived, and can fall silent to simulate a dead host.

Example (inside a SimPy process)::

    client = LinkClient(env, endpoint)
    reply = yield client.request(Hello(protocol_version=1, min_version=1, session_id=1,
                                       heartbeat_period_ms=100, watchdog_timeout_ms=500))
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass

import simpy

from protocols.wire import messages as M
from protocols.wire.link import Answered, Link, LinkConfig, Received, SendFailed
from simulator.gantry.uart import SerialEndpoint


@dataclass(frozen=True)
class Arrival:
    """A device message as the client received it (virtual time, s)."""

    t_s: float
    message: M.Message


class LinkClient:
    """Host-side Link bound to a virtual serial endpoint (see module docstring)."""

    def __init__(self, env: simpy.Environment, endpoint: SerialEndpoint, *, heartbeats: bool = True,
                 initial_seq: int = 0x100, config: LinkConfig | None = None) -> None:
        self.env = env
        self.endpoint = endpoint
        self.link = Link(config or LinkConfig(send_heartbeats=heartbeats), initial_seq=initial_seq)
        self.events: list[Arrival] = []
        self.telemetry: list[Arrival] = []
        self.silent = False
        self._waiters: dict[int, simpy.Event] = {}
        self._watchers: list[tuple[Callable[[M.Message], bool], simpy.Event]] = []
        self._wake = env.event()
        env.process(self._loop())

    def request(self, msg: M.Message) -> simpy.Event:
        """Send a command; the event succeeds with its response message (None if never answered)."""
        ev = self.env.event()
        self._waiters[id(msg)] = ev
        self.link.send(msg, self.env.now)
        self._flush()
        if not self._wake.triggered:
            self._wake.succeed()
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
        self.silent = True

    def _flush(self) -> None:
        data = self.link.data_to_send()
        if data and not self.silent:
            self.endpoint.write(data)

    def _loop(self) -> Generator[simpy.Event, None, None]:
        env = self.env
        rx = self.endpoint.read()
        while True:
            waits = [rx, self._wake]
            deadline = self.link.next_deadline()
            if deadline is not None:
                waits.append(env.timeout(max(0.0, deadline - env.now)))
            yield env.any_of(waits)
            if self._wake.triggered:
                self._wake = env.event()
            if rx.triggered:
                data = rx.value
                rx = self.endpoint.read()
                self.link.receive(data, env.now)
            else:
                self.link.tick(env.now)
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
            self._flush()
