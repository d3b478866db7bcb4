"""The link demo of ``crescent demo``: the reliable link across a real pseudo-terminal pair, step by step.

The host end opens the pty's slave with pyserial, exactly as it would open a
USB-serial adapter; a minimal responder runs on the master end. The demo shows
framed commands and their acknowledgements, a retransmission after an injected
loss (answered from the receiver's cache, not executed twice) and a corrupt
frame that the receiver rejects. Both ends are the sans-IO
:class:`protocols.wire.link.Link`; this module is only the I/O around them.
"""

from __future__ import annotations

import argparse
import os
import select
import time
from collections.abc import Callable

import serial

from protocols.wire.framing import PROTOCOL_VERSION, FrameDecoder
from protocols.wire.link import Answered, DuplicateAnswered, FrameDropped, Link, LinkConfig, Received
from protocols.wire.messages import Ack, GetStatus, Hello, HelloReply, Message, MoveArc, Status


class _Responder:
    """Device end of the demo: executes each command once and counts executions."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.link = Link(LinkConfig(send_heartbeats=False))
        self.executed: list[str] = []
        self.drop_next_answer = False
        self.notes: list[str] = []

    def poll(self, now: float) -> None:
        if select.select([self.fd], [], [], 0)[0]:
            self.link.receive(os.read(self.fd, 4096), now)
        for ev in self.link.events():
            if isinstance(ev, Received) and ev.needs_answer:
                self.executed.append(ev.message.NAME)
                self.link.answer(ev.seq, self._answer(ev.message), now)
            elif isinstance(ev, DuplicateAnswered):
                self.notes.append(f"device: seq {ev.seq} is a retransmission -> answered from cache, not executed")
            elif isinstance(ev, FrameDropped):
                self.notes.append(f"device: frame rejected ({ev.error}) -> dropped, nothing sent")
        out = self.link.data_to_send()
        if out and self.drop_next_answer:
            self.drop_next_answer = False
            self.notes.append(f"line: {len(out)} bytes of the device's answer lost (injected)")
            return
        if out:
            os.write(self.fd, out)

    @staticmethod
    def _answer(msg: Message) -> Message:
        if msg.NAME == "HELLO":
            return HelloReply(protocol_version=PROTOCOL_VERSION, session_id=msg.session_id, max_payload=640, state=1,  # type: ignore[attr-defined]
                              watchdog_timeout_ms=500, serial_number=1, firmware_version=0x000100)
        if msg.NAME == "GET_STATUS":
            return Status(state=1, interlocks=0x3F, homed=1)
        return Ack(acked_msg_id=msg.ID)


def _exchange(host: Link, port: serial.Serial, dev: _Responder, msg: Message, say: Callable[[str], None]) -> Answered:
    clock = time.monotonic
    host.send(msg, clock())
    deadline = clock() + 2.0
    while clock() < deadline:
        now = clock()
        data = host.data_to_send()
        if data:
            port.write(data)
            say(f"host -> {msg.NAME:<10} {len(data):3d} bytes on the wire: {FrameDecoder().feed(data)[0].seq=:#06x}")
        dev.poll(now)
        for note in dev.notes:
            say(note)
        dev.notes.clear()
        waiting = port.in_waiting
        if waiting:
            host.receive(port.read(waiting), clock())
        host.tick(clock())
        for ev in host.events():
            if isinstance(ev, Answered):
                say(f"host <- {ev.response.NAME:<10} after {ev.attempts} attempt(s), {ev.round_trip_s * 1000:.1f} ms")
                return ev
        time.sleep(0.001)
    raise TimeoutError(f"no answer to {msg.NAME}")


def run_demo(say: Callable[[str], None] = print) -> dict[str, int]:
    """Run the demonstration; return counters (for tests)."""
    master, slave = os.openpty()
    path = os.ttyname(slave)
    say(f"pseudo-terminal pair: device end fd {master}, host end {path} (opened with pyserial)")
    port = serial.Serial(path, baudrate=921600, timeout=0)
    dev = _Responder(master)
    host = Link(LinkConfig(send_heartbeats=False, ack_timeout_s=0.05), initial_seq=0x0100)
    try:
        say("1. handshake")
        _exchange(host, port, dev, Hello(protocol_version=PROTOCOL_VERSION, min_version=PROTOCOL_VERSION, session_id=0x12345678,
                                          heartbeat_period_ms=100, watchdog_timeout_ms=500), say)
        say("2. a command and its acknowledgement")
        _exchange(host, port, dev, MoveArc(target_mdeg=-12_500), say)
        say("3. the device's answer is lost: the host retransmits, the device answers from its cache")
        dev.drop_next_answer = True
        ev = _exchange(host, port, dev, MoveArc(target_mdeg=12_500), say)
        say("4. a corrupt frame: one bit flipped on the line")
        host.send(GetStatus(), time.monotonic())
        bad = bytearray(host.data_to_send())
        bad[len(bad) // 2] ^= 0x04
        port.write(bytes(bad))
        end = time.monotonic() + 0.2
        while time.monotonic() < end:
            dev.poll(time.monotonic())
            time.sleep(0.005)
        for note in dev.notes:
            say(note)
        dev.notes.clear()
        host.new_session()
        moves = dev.executed.count("MOVE_ARC")
        say(f"executed on the device: {dev.executed} (MOVE_ARC {moves}x for 2 commands sent, 1 retransmitted)")
        return {"executed_moves": moves, "attempts_of_lost": ev.attempts,
                "frame_errors": dev.link.stats.frame_errors, "duplicates": dev.link.stats.duplicates_answered}
    finally:
        port.close()
        os.close(master)
        os.close(slave)
