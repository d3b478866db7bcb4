"""A test session with a gantry over any byte port, in wall-clock time.

:class:`Session` binds the project's sans-IO :class:`~protocols.wire.link.Link`
to a pyserial-like port (``read``/``write``/``in_waiting``) and a clock. It
answers device events with ACK (unless told not to), records every frame the
device sends (decoded with the project's codec) and, when given a
:class:`~hil.capture.Tap`, every byte each way. Checks use
:meth:`Session.request` for ordinary commands and :meth:`Session.send_raw`
for hand-made frames (bad CRC, wrong version, identical retransmissions).
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Protocol

from protocols.wire.errors import FrameError, PayloadError
from protocols.wire.framing import FLAG_ACK_REQ, FLAG_RESPONSE, PROTOCOL_VERSION, Frame, FrameDecoder, encode_frame
from protocols.wire.link import Answered, Link, LinkConfig, Received, SendFailed
from protocols.wire.messages import BY_ID, Ack, Message
from protocols.wire.signing import Signer

from hil.capture import DEVICE_TO_HOST, HOST_TO_DEVICE, Tap

#: Sequence numbers of hand-made frames start here, far from the link's own.
RAW_SEQ_BASE = 0xC000


class Port(Protocol):
    """What a session needs of a port (pyserial ``Serial`` opened with a short timeout)."""

    @property
    def in_waiting(self) -> int: ...

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...


class SessionError(RuntimeError):
    """The device did not answer as the protocol requires (no response, link failure)."""


@dataclass(frozen=True)
class RxFrame:
    """A frame received from the device at ``t_s`` (session clock, s); ``message`` None if it did not decode."""

    t_s: float
    frame: Frame
    message: Message | None

    @property
    def name(self) -> str:
        return self.message.NAME if self.message is not None else f"?0x{self.frame.msg_id:02X}"


class Session:
    """One conversation with a gantry. ``clock`` returns seconds (default ``time.monotonic``)."""

    def __init__(
        self,
        port: Port,
        *,
        clock: Callable[[], float] = time.monotonic,
        link_config: LinkConfig | None = None,
        tap: Tap | None = None,
        seed: int = 0,
        signer: Signer | None = None,
    ) -> None:
        self.port = port
        self.clock = clock
        self.tap = tap
        rng = random.Random(seed)
        #: ``signer``: a signed session (SPEC 2.6); hand-made frames are signed too unless told otherwise.
        self.link = Link(config=link_config or LinkConfig(peer_timeout_s=2.0), initial_seq=rng.randrange(1, 0x4000),
                         signer=signer)
        self.decoder = FrameDecoder()
        self.frames: list[RxFrame] = []
        self.frame_errors: list[FrameError] = []
        self.answer_events = True
        self._unanswered: list[tuple[int, int]] = []
        self._answered: dict[int, Answered | SendFailed] = {}
        self._raw_seq = RAW_SEQ_BASE
        self.session_id = rng.randrange(1, 2**32)
        self.last_tx_s: float | None = None
        #: Added to session times in the capture so pcap timestamps are wall-clock dates (s).
        self.capture_epoch_s = time.time() - clock() if clock is time.monotonic else 0.0

    # -- the I/O loop ------------------------------------------------------------------------
    def now(self) -> float:
        return self.clock()

    def _write(self, data: bytes) -> None:
        if not data:
            return
        self.port.write(data)
        t = self.now()
        self.last_tx_s = t
        if self.tap is not None:
            self.tap.record(HOST_TO_DEVICE, data, t + self.capture_epoch_s)

    def step(self) -> None:
        """Read what arrived (waiting at most the port's read timeout), feed the link, write its output."""
        n = self.port.in_waiting
        data = self.port.read(n if n > 0 else 1)
        now = self.now()
        if data:
            if self.tap is not None:
                self.tap.record(DEVICE_TO_HOST, data, now + self.capture_epoch_s)
            for item in self.decoder.feed(data):
                if isinstance(item, FrameError):
                    self.frame_errors.append(item)
                    continue
                cls = BY_ID.get(item.msg_id)
                try:
                    msg = cls.unpack(item.payload) if cls is not None else None
                except PayloadError:
                    msg = None
                self.frames.append(RxFrame(now, item, msg))
            self.link.receive(data, now)
        else:
            self.link.tick(now)
        for ev in self.link.events():
            if isinstance(ev, Received) and ev.needs_answer:
                if self.answer_events:
                    self.link.answer(ev.seq, Ack(acked_msg_id=ev.message.ID, detail=0), now)
                else:
                    self._unanswered.append((ev.seq, ev.message.ID))
            elif isinstance(ev, (Answered, SendFailed)):
                self._answered[ev.seq] = ev
        self._write(self.link.data_to_send())

    def pump(self, duration_s: float) -> None:
        """Run the loop for ``duration_s`` seconds."""
        end = self.now() + duration_s
        while self.now() < end:
            self.step()

    def wait_for(self, pred: Callable[[RxFrame], bool], timeout_s: float, since: int = 0) -> RxFrame | None:
        """First received frame (index >= ``since``) matching ``pred`` within ``timeout_s``, else None."""
        end = self.now() + timeout_s
        i = since
        while True:
            while i < len(self.frames):
                if pred(self.frames[i]):
                    return self.frames[i]
                i += 1
            if self.now() >= end:
                return None
            self.step()

    # -- requests ----------------------------------------------------------------------------
    def request(self, msg: Message, timeout_s: float = 3.0) -> Message:
        """Send ``msg`` through the link and return the device's response (ACK, NAK or typed reply)."""
        before = set(self._answered)
        self.link.send(msg, self.now())
        self._write(self.link.data_to_send())
        end = self.now() + timeout_s
        while self.now() < end:
            self.step()
            for seq in set(self._answered) - before:
                ev = self._answered.pop(seq)
                if ev.request is msg:
                    if isinstance(ev, SendFailed):
                        raise SessionError(f"{msg.NAME}: no response after {ev.attempts} attempts")
                    return ev.response
        raise SessionError(f"{msg.NAME}: no response within {timeout_s} s")

    def new_raw_seq(self) -> int:
        self._raw_seq = RAW_SEQ_BASE + ((self._raw_seq - RAW_SEQ_BASE + 1) & 0x3FFF)
        return self._raw_seq

    def raw_frame(self, msg_id: int, payload: bytes, *, seq: int | None = None, flags: int = FLAG_ACK_REQ,
                  version: int = PROTOCOL_VERSION, signed: bool = True) -> tuple[int, bytes]:
        """(seq, wire bytes) of a hand-made request frame; on a signed session signed with a fresh timestamp
        (``signed=False``: not)."""
        seq = self.new_raw_seq() if seq is None else seq
        signer = self.link.signer
        signature = signer.signature(self.now()) if signer is not None and signed else None
        return seq, encode_frame(msg_id, seq, flags, payload, version, signature=signature)

    def send_raw(self, data: bytes) -> int:
        """Write ``data`` as is; returns the index of the next received frame (for :meth:`responses_to`)."""
        mark = len(self.frames)
        self._write(data)
        return mark

    def responses_to(self, seq: int, since: int, wait_s: float, count: int = 1) -> list[RxFrame]:
        """Responses with ``seq`` received after index ``since``, waiting up to ``wait_s`` for ``count`` of them."""
        end = self.now() + wait_s
        while True:
            got = [f for f in self.frames[since:] if f.frame.flags & FLAG_RESPONSE and f.frame.seq == seq]
            if len(got) >= count or self.now() >= end:
                return got
            self.step()

    # -- heartbeats and events ---------------------------------------------------------------
    def go_silent(self) -> None:
        """Stop heartbeats and event answers: the host says nothing from now on."""
        self.link.config = replace(self.link.config, send_heartbeats=False)
        self.answer_events = False

    def resume(self) -> None:
        """Heartbeats and event answers again; events received while silent are answered now."""
        self.link.config = replace(self.link.config, send_heartbeats=True)
        self.answer_events = True
        now = self.now()
        for seq, msg_id in self._unanswered:
            try:
                self.link.answer(seq, Ack(acked_msg_id=msg_id, detail=0), now)
            except Exception:  # noqa: BLE001 - forgotten by the dedup window or a new session: nothing to answer
                pass
        self._unanswered.clear()
        self._write(self.link.data_to_send())

    def states_seen(self, since: int = 0) -> list[tuple[float, int]]:
        """(time, new_state) of every STATE_CHANGED event received after ``since`` (retransmissions once)."""
        out: list[tuple[float, int]] = []
        seen: set[int] = set()
        for f in self.frames[since:]:
            if f.message is not None and f.message.NAME == "STATE_CHANGED" and f.frame.seq not in seen:
                seen.add(f.frame.seq)
                out.append((f.t_s, f.message.new_state))  # type: ignore[attr-defined]
        return out


def describe(msg: Message | Any) -> str:
    """``NAK{...}`` style text of a response for messages in check results."""
    if isinstance(msg, Message):
        return f"{msg.NAME} {msg.to_dict()}"
    return repr(msg)
