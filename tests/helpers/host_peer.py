"""A scripted device for unit tests of the sans-IO host core: the real Link on the device side.

The test gives a ``handler(message) -> response | None``; the peer answers
requests with it (None: never answered) and can push events. ``drive`` moves
bytes both ways in fixed virtual-time steps until the plan ends.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from firmware_host.controller import Controller
from protocols.wire.link import Link, LinkConfig, Received
from protocols.wire.messages import Ack, Message


class ScriptedDevice:
    def __init__(self, handler: Callable[[Message], Message | None]) -> None:
        self.link = Link(config=LinkConfig(send_heartbeats=True, peer_timeout_s=5.0))
        self.handler = handler
        self.received: list[Message] = []
        self.answers: list[Any] = []
        self.drop_to_device = 0  # drop this many host->device chunks

    def step(self, now: float) -> None:
        self.link.tick(now)
        for ev in self.link.events():
            if isinstance(ev, Received) and ev.needs_answer:
                self.received.append(ev.message)
                resp = self.handler(ev.message)
                if resp is not None:
                    self.link.answer(ev.seq, resp, now)
            else:
                self.answers.append(ev)

    def push(self, event: Message, now: float) -> None:
        self.link.send(event, now)


def ack(msg: Message) -> Message:
    return Ack(acked_msg_id=msg.ID, detail=0)


def drive(ctl: Controller, dev: ScriptedDevice, plan: Any, t0: float = 0.0, t_max: float = 60.0, dt: float = 0.005,
          at: dict[float, Callable[[float], None]] | None = None, linger_s: float = 0.05) -> Any:
    """Run ``plan`` on ``ctl`` against ``dev``; ``at`` maps times to actions (e.g. pushing events)."""
    t = t0
    runner = ctl.start(plan, t)
    pending = sorted((at or {}).items())
    end = t_max
    while t < end:
        if runner.finished and end == t_max:
            end = t + linger_s  # let the last answers reach the device
        while pending and pending[0][0] <= t:
            pending.pop(0)[1](t)
        out = ctl.data_to_send()
        if out:
            if dev.drop_to_device > 0:
                dev.drop_to_device -= 1
            else:
                dev.link.receive(out, t)
        dev.step(t)
        back = dev.link.data_to_send()
        if back:
            ctl.receive(back, t)
        t += dt
        ctl.tick(t)
    return runner
