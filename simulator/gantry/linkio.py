"""Bind a sans-IO :class:`protocols.wire.link.Link` to a simulated serial endpoint in SimPy time.

Bytes are fed to the link at their arrival time (the endpoint's ``on_receive`` callback), the
link's timers are served by a SimPy timeout re-armed at :meth:`Link.next_deadline` after every
call, and whatever the link wants sent is written to the line. No polling process: an idle link
costs one event per deadline (heartbeat, retransmission, peer watchdog).

Real time: bytes read from a real port carry the device time at which the I/O thread read them
(``_on_bytes(data, at_s)``), and ``before_tick`` (set by :mod:`simulator.gantry.realtime`) feeds
every byte that arrived up to now before a timer runs, so the peer watchdog is judged on when
frames arrived, never on when a late control loop got round to them.
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

from protocols.wire.link import Link
from simulator.gantry.uart import SerialEndpoint


class SimLinkDriver:
    """Runs ``link`` on ``endpoint``; calls ``on_events()`` after each feed or tick to drain ``link.events()``."""

    def __init__(self, env: simpy.Environment, endpoint: SerialEndpoint, link: Link,
                 on_events: Callable[[], None]) -> None:
        self.env = env
        self.endpoint = endpoint
        self.link = link
        self.on_events = on_events
        self.muted = False  # True: nothing is written any more (a dead host)
        self._timer_at: float | None = None
        self.before_tick: Callable[[], None] | None = None  # real time: feed bytes that arrived up to now
        endpoint.on_receive(self._on_bytes)

    def replace_link(self, link: Link) -> None:
        """Swap in a fresh link (device reset); stale timers only tick the new one harmlessly."""
        self.link = link
        self._timer_at = None
        self.flush()

    def flush(self) -> None:
        """Write what the link wants sent and arm a timer for its next deadline."""
        data = self.link.data_to_send()
        if data and not self.muted:
            self.endpoint.write(data)
        deadline = self.link.next_deadline()
        if deadline is not None and (self._timer_at is None or deadline < self._timer_at):
            self._timer_at = deadline
            ev = self.env.timeout(max(0.0, deadline - self.env.now))
            ev.callbacks.append(self._on_timer)

    def _on_timer(self, _ev: simpy.Event) -> None:
        if self.before_tick is not None:
            self.before_tick()
        if self._timer_at is not None and self.env.now >= self._timer_at:
            self._timer_at = None
        self.link.tick(self.env.now)
        self.on_events()
        self.flush()

    def _on_bytes(self, data: bytes, at_s: float | None = None) -> None:
        """Feed ``data`` that arrived at device time ``at_s`` (default: now; never later than now)."""
        now = self.env.now
        self.link.receive(data, now if at_s is None else min(at_s, now))
        self.on_events()
        self.flush()
