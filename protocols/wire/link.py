"""Reliable link, sans-IO: fed bytes and clock readings, returns bytes to send and events.

Theory of operation
-------------------
Both ends run the same :class:`Link`. Each end is a *sender* of its own
requests (commands from the host, events from the device) and a *receiver*
of the peer's.

Sending (stop-and-wait). A message whose catalogue kind is ``command`` or
``event`` goes into a bounded queue. One at a time it is framed with
``ACK_REQ`` and a fresh sequence number and sent; the sender then waits for
the one response frame (``RESPONSE`` flag, same ``seq``). If none arrives in
``ack_timeout_s`` the identical frame is sent again with ``RETRANSMIT`` set,
up to ``max_retries`` times; after that the request is reported as
:class:`SendFailed` and the next one is sent. Because only one request is
ever in flight, requests are executed in order. ``stream`` messages
(heartbeat, telemetry) are sent at once and never answered.

Receiving (exactly once). A request frame that is new is handed to the
application once as :class:`Received`; the application must call
:meth:`Link.answer` with exactly one response, which the link caches. A
frame whose ``seq``, ``msg_id`` and payload equal one of the last
``dedup_window`` requests is a retransmission: it is answered from the cache
(or ignored while the application has not answered yet) and never handed up
again, so a retransmitted FIRE is answered but never executed twice. A frame
with ``SYN`` starts a new peer session. Requests whose payload does not
decode are answered with NAK by the link itself.

Answers and what arrives meanwhile. Nothing that arrives on the wire makes
:meth:`Link.answer` fail: a request handed up as :class:`Received` stays owed
an answer until the application gives it, whatever arrives in between (copies
of it, other requests, a request reusing its seq, a SYN, more than
``dedup_window`` newer requests). Answers to one seq are matched to its owed
requests oldest first. An answer owed to a previous peer session (a SYN
arrived after the request was handed up) is accepted and discarded, not sent:
the peer dropped that request when it began its new session, and a response
could collide with a new request's seq (``stats.answers_discarded``).

Liveness. Every ``heartbeat_period_s`` the link sends HEARTBEAT. If no valid
frame has arrived for ``peer_timeout_s`` the peer is reported lost once
(:class:`PeerLost`), and found again with the next frame (:class:`PeerAlive`).

Framing errors (bad CRC, bad stuffing, over-long runs) drop the bytes up to
the next delimiter and are reported as :class:`FrameDropped`; the sender's
retransmission recovers.

Signed links. With a :class:`~protocols.wire.signing.Signer` every frame sent
is signed (a retransmission or a cached answer with a new timestamp) and every
frame received is verified before anything else (:mod:`protocols.wire.signing`):
a refused frame is reported as :class:`AuthRejected`, a refused request is
answered NAK (UNSIGNED, BAD_SIGNATURE, REPLAYED or STALE; never cached), and
nothing of it reaches the application, the de-duplication memory or the peer
watchdog. A NAK with one of those codes never completes a request of ours
either (it may answer a forged frame that reused our seq): the request is
retransmitted and, if every attempt is refused so, fails naming the code.
Without a signer, a signature block received is ignored (such an end accepts
anything, signed or not).

The tables :data:`SENDER_TRANSITIONS` and :data:`PEER_TRANSITIONS` are the
whole state machine; the code below only follows them, and SPEC.md's link
diagrams are generated from them.
"""

from __future__ import annotations

import enum
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from protocols.wire.catalogue import ErrorCode
from protocols.wire.errors import FrameError, FrameErrorKind, PayloadError, WireError
from protocols.wire.framing import (
    FLAG_ACK_REQ,
    FLAG_RESPONSE,
    FLAG_RETRANSMIT,
    FLAG_SYN,
    FLAGS_RESERVED,
    PROTOCOL_VERSION,
    Frame,
    FrameDecoder,
    encode_frame,
)
from protocols.wire.messages import BY_ID, Heartbeat, Message, Nak
from protocols.wire.signing import SIGNING_ERROR_CODES, Signer, Verdict

# --------------------------------------------------------------------------------------------
# Timing constants (defaults; SPEC.md "Timing")
HEARTBEAT_PERIOD_S = 0.100
PEER_TIMEOUT_S = 0.500
ACK_TIMEOUT_S = 0.100
MAX_RETRIES = 5
MAX_QUEUE = 64
DEDUP_WINDOW = 32


class SenderState(enum.Enum):
    IDLE = "IDLE"  # nothing in flight
    AWAITING = "AWAITING"  # one request sent, waiting for its response


class PeerState(enum.Enum):
    UNKNOWN = "UNKNOWN"  # nothing received yet
    ALIVE = "ALIVE"
    LOST = "LOST"


class SenderTrigger(enum.Enum):
    SEND = "request queued / next in queue"
    RESPONSE = "response with matching seq"
    TIMEOUT_RETRY = "ack timeout, retries left: retransmit"
    TIMEOUT_GIVE_UP = "ack timeout, retries exhausted: SendFailed"
    RESPONSE_QUEUE_EMPTY = "response, queue empty"


class PeerTrigger(enum.Enum):
    FRAME = "valid frame received"
    SILENCE = "no valid frame for peer_timeout"


#: (state, trigger) -> next state, for the sending side.
SENDER_TRANSITIONS: dict[tuple[SenderState, SenderTrigger], SenderState] = {
    (SenderState.IDLE, SenderTrigger.SEND): SenderState.AWAITING,
    (SenderState.AWAITING, SenderTrigger.TIMEOUT_RETRY): SenderState.AWAITING,
    (SenderState.AWAITING, SenderTrigger.RESPONSE): SenderState.AWAITING,
    (SenderState.AWAITING, SenderTrigger.RESPONSE_QUEUE_EMPTY): SenderState.IDLE,
    (SenderState.AWAITING, SenderTrigger.TIMEOUT_GIVE_UP): SenderState.IDLE,
}

#: (state, trigger) -> next state, for the peer-liveness watch.
PEER_TRANSITIONS: dict[tuple[PeerState, PeerTrigger], PeerState] = {
    (PeerState.UNKNOWN, PeerTrigger.FRAME): PeerState.ALIVE,
    (PeerState.ALIVE, PeerTrigger.FRAME): PeerState.ALIVE,
    (PeerState.ALIVE, PeerTrigger.SILENCE): PeerState.LOST,
    (PeerState.LOST, PeerTrigger.FRAME): PeerState.ALIVE,
}


class LinkError(WireError):
    """Misuse of the link by the application (e.g. queue full, answering twice)."""


@dataclass(frozen=True)
class LinkConfig:
    """Link parameters; times in seconds."""

    ack_timeout_s: float = ACK_TIMEOUT_S
    max_retries: int = MAX_RETRIES
    heartbeat_period_s: float = HEARTBEAT_PERIOD_S
    peer_timeout_s: float = PEER_TIMEOUT_S
    max_queue: int = MAX_QUEUE
    dedup_window: int = DEDUP_WINDOW
    send_heartbeats: bool = True


# --------------------------------------------------------------------------------------------
# Events handed to the application
@dataclass(frozen=True)
class Received:
    """A new message from the peer. If ``needs_answer``, call :meth:`Link.answer` once with ``seq``."""

    message: Message
    seq: int
    needs_answer: bool
    time_s: float


@dataclass(frozen=True)
class Answered:
    """A request of ours got its response."""

    request: Message
    seq: int
    response: Message
    attempts: int
    round_trip_s: float


@dataclass(frozen=True)
class SendFailed:
    """A request of ours got no response after every retransmission."""

    request: Message
    seq: int
    attempts: int
    reason: str


@dataclass(frozen=True)
class DuplicateAnswered:
    """A retransmitted request of the peer was answered from the cache (not executed again)."""

    seq: int
    msg_id: int
    cached: bool


@dataclass(frozen=True)
class Rejected:
    """A request of the peer that did not decode was answered with NAK by the link."""

    seq: int
    msg_id: int
    error_code: int
    detail: int
    reason: str


@dataclass(frozen=True)
class AuthRejected:
    """A frame refused by signature verification (nothing of it was used); requests were answered NAK ``verdict``."""

    seq: int
    msg_id: int
    verdict: Verdict
    link_id: int | None  # the link id the frame claimed (None: unsigned)
    request: bool


@dataclass(frozen=True)
class FrameDropped:
    """Bytes that were not a valid frame were dropped (resynchronised at the next delimiter)."""

    error: FrameError


@dataclass(frozen=True)
class StaleResponse:
    """A response that matches no request in flight (late duplicate); ignored."""

    seq: int
    msg_id: int


@dataclass(frozen=True)
class PeerLost:
    """No valid frame from the peer for ``silent_s`` seconds (watchdog)."""

    silent_s: float
    time_s: float


@dataclass(frozen=True)
class PeerAlive:
    """The peer is heard (first frame, or again after :class:`PeerLost`)."""

    time_s: float


LinkEvent = (
    Received | Answered | SendFailed | DuplicateAnswered | Rejected | FrameDropped | StaleResponse | PeerLost | PeerAlive
    | AuthRejected
)


@dataclass
class LinkStats:
    """Counters for reports and tests."""

    frames_sent: int = 0
    frames_received: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    retransmissions: int = 0
    duplicates_answered: int = 0
    frame_errors: int = 0
    rejected: int = 0
    send_failures: int = 0
    stale_responses: int = 0
    answers_discarded: int = 0
    auth_rejected: int = 0  # frames refused by signature verification
    signing_naks: int = 0  # NAKs with a signing error code received for our requests


@dataclass
class _InFlight:
    seq: int
    message: Message
    payload: bytes
    flags: int
    first_sent_s: float
    last_sent_s: float
    attempts: int
    refused: str = ""  # the last signing NAK the peer answered an attempt with
    peer_refused: int = 0  # frames of the peer our signature check refused while this request was in flight
    peer_refused_last: str = ""


@dataclass
class _Seen:
    msg_id: int
    payload: bytes
    session: int  # the peer session (count of SYNs received) the request belongs to
    response: tuple[int, bytes] | None = None  # (msg id, payload) of the response, once answered


@dataclass
class Link:
    """One end of the reliable link. See the module docstring for the theory of operation.

    ``initial_seq`` lets a caller choose the first sequence number (a host picks
    a random one per session from its seeded generator). ``signer`` makes a
    signed link (see "Signed links").
    """

    config: LinkConfig = field(default_factory=LinkConfig)
    initial_seq: int = 1
    heartbeat_state: int = 0
    stats: LinkStats = field(default_factory=LinkStats)
    signer: Signer | None = None

    def __post_init__(self) -> None:
        self._decoder = FrameDecoder()
        self._out = bytearray()
        self._events: deque[LinkEvent] = deque()
        self._queue: deque[Message] = deque()
        self._inflight: _InFlight | None = None
        self._sender_state = SenderState.IDLE
        self._peer_state = PeerState.UNKNOWN
        self._seq = self.initial_seq & 0xFFFF
        self._syn_pending = True
        # the last dedup_window requests accepted, keyed by (seq, msg_id, payload), oldest first
        self._seen: OrderedDict[tuple[int, int, bytes], _Seen] = OrderedDict()
        self._owed: dict[int, deque[_Seen]] = {}  # seq -> requests handed up and not yet answered, oldest first
        self._peer_session = 0
        self._last_rx_s: float | None = None
        self._next_heartbeat_s: float | None = None
        self._started_s: float | None = None

    # -- state -------------------------------------------------------------------------------
    @property
    def sender_state(self) -> SenderState:
        return self._sender_state

    @property
    def peer_state(self) -> PeerState:
        return self._peer_state

    @property
    def queued(self) -> int:
        """Requests waiting behind the one in flight."""
        return len(self._queue)

    @property
    def busy(self) -> bool:
        """True while a request is in flight or queued."""
        return self._inflight is not None or bool(self._queue)

    def _sender(self, trigger: SenderTrigger) -> None:
        key = (self._sender_state, trigger)
        if key not in SENDER_TRANSITIONS:
            raise LinkError(f"sender: no transition from {self._sender_state.value} on {trigger.value}")
        self._sender_state = SENDER_TRANSITIONS[key]

    def _peer(self, trigger: PeerTrigger) -> None:
        self._peer_state = PEER_TRANSITIONS[(self._peer_state, trigger)]

    # -- application API ---------------------------------------------------------------------
    def send(self, message: Message, now: float) -> None:
        """Send a message: queued and retransmitted until answered if it is a request, else at once.

        Raises :class:`LinkError` when the queue is full (the caller must not
        outrun the link) or for a response message (use :meth:`answer`), and
        :class:`~protocols.wire.errors.FieldRangeError` if a field is out of range.
        """
        self._clock(now)
        kind = message.DEF.kind
        if kind == "response":
            raise LinkError(f"{message.NAME} is a response; use answer(seq, message)")
        payload = message.pack()  # validate now, in the caller's context
        if kind == "stream":
            self._emit_frame(message.ID, self._next_seq(), 0, payload, now)
            return
        if len(self._queue) >= self.config.max_queue:
            raise LinkError(f"send queue full ({self.config.max_queue} requests); {message.NAME} not sent")
        self._queue.append(message)
        if self._inflight is None:
            self._start_next(now)

    def answer(self, seq: int, response: Message, now: float) -> None:
        """Answer the peer's request ``seq`` (from :class:`Received`) with ``response``; cached for retries.

        Whatever arrived since the request was handed up, this never fails (see "Answers and what
        arrives meanwhile"). Raises :class:`LinkError` only for a misuse: ``response`` is not a
        response message, or no request with ``seq`` is owed an answer (never handed up, or
        answered already).
        """
        self._clock(now)
        if response.DEF.kind != "response":
            raise LinkError(f"{response.NAME} is not a response message")
        owed = self._owed.get(seq)
        if not owed:
            if any(k[0] == seq and v.response is not None for k, v in self._seen.items()):
                raise LinkError(f"request seq {seq} is already answered")
            raise LinkError(f"no request with seq {seq} awaits an answer")
        entry = owed.popleft()
        if not owed:
            del self._owed[seq]
        entry.response = (response.ID, response.pack())
        if entry.session != self._peer_session:
            self.stats.answers_discarded += 1  # the peer began a new session since: it waits for no such answer
            return
        self._emit_frame(response.ID, seq, FLAG_RESPONSE, entry.response[1], now)

    def receive(self, data: bytes, now: float) -> None:
        """Feed bytes read from the line."""
        self._clock(now)
        self.stats.bytes_received += len(data)
        for item in self._decoder.feed(data):
            if isinstance(item, FrameError):
                self.stats.frame_errors += 1
                self._events.append(FrameDropped(item))
            else:
                self._on_frame(item, now)
        self.tick(now)

    def tick(self, now: float) -> None:
        """Advance timers: retransmissions, heartbeats, peer watchdog. Call at :meth:`next_deadline`."""
        self._clock(now)
        cfg = self.config
        inflight = self._inflight
        if inflight is not None and now >= inflight.last_sent_s + cfg.ack_timeout_s:
            if inflight.attempts > cfg.max_retries:
                self._sender(SenderTrigger.TIMEOUT_GIVE_UP)
                self.stats.send_failures += 1
                reason = f"no response after {inflight.attempts} attempts"
                if inflight.refused:
                    reason += f"; the peer refused our frames: {inflight.refused}"
                if inflight.peer_refused:
                    reason += (f"; {inflight.peer_refused} frame(s) from the peer failed our signature check "
                               f"(last: {inflight.peer_refused_last}): a peer without the link key, or another key")
                self._events.append(SendFailed(inflight.message, inflight.seq, inflight.attempts, reason))
                self._inflight = None
                if self._queue:
                    self._start_next(now)
            else:
                self._sender(SenderTrigger.TIMEOUT_RETRY)
                inflight.attempts += 1
                inflight.last_sent_s = now
                self.stats.retransmissions += 1
                self._emit_frame(inflight.message.ID, inflight.seq, inflight.flags | FLAG_RETRANSMIT, inflight.payload, now)
        if cfg.send_heartbeats and self._next_heartbeat_s is not None and now >= self._next_heartbeat_s:
            uptime_ms = int((now - (self._started_s or now)) * 1000) & 0xFFFFFFFF
            self._emit_frame(
                Heartbeat.ID, self._next_seq(), 0, Heartbeat(uptime_ms=uptime_ms, state=self.heartbeat_state & 0xFF).pack(),
                now,
            )
            self._next_heartbeat_s = now + cfg.heartbeat_period_s
        if (
            self._peer_state is PeerState.ALIVE
            and self._last_rx_s is not None
            and now >= self._last_rx_s + cfg.peer_timeout_s
        ):
            self._peer(PeerTrigger.SILENCE)
            self._events.append(PeerLost(now - self._last_rx_s, now))

    def next_deadline(self) -> float | None:
        """Earliest time at which :meth:`tick` has work (None if never)."""
        times = []
        if self._inflight is not None:
            times.append(self._inflight.last_sent_s + self.config.ack_timeout_s)
        if self.config.send_heartbeats and self._next_heartbeat_s is not None:
            times.append(self._next_heartbeat_s)
        if self._peer_state is PeerState.ALIVE and self._last_rx_s is not None:
            times.append(self._last_rx_s + self.config.peer_timeout_s)
        return min(times) if times else None

    def data_to_send(self) -> bytes:
        """Drain the bytes the link wants written to the line."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def events(self) -> list[LinkEvent]:
        """Drain pending events, oldest first."""
        out = list(self._events)
        self._events.clear()
        return out

    def new_session(self, initial_seq: int | None = None) -> None:
        """Start a new session: drop queued requests, mark the next request SYN."""
        self._queue.clear()
        self._inflight = None
        self._sender_state = SenderState.IDLE
        self._syn_pending = True
        if initial_seq is not None:
            self._seq = initial_seq & 0xFFFF

    # -- internals ---------------------------------------------------------------------------
    def _clock(self, now: float) -> None:
        if self._started_s is None:
            self._started_s = now
            self._next_heartbeat_s = now if self.config.send_heartbeats else None

    def _next_seq(self) -> int:
        seq = self._seq
        self._seq = (self._seq + 1) & 0xFFFF
        return seq

    def _write(self, data: bytes) -> None:
        self._out += data
        self.stats.frames_sent += 1
        self.stats.bytes_sent += len(data)

    def _emit_frame(self, msg_id: int, seq: int, flags: int, payload: bytes, now: float) -> None:
        signature = self.signer.signature(now) if self.signer is not None else None
        self._write(encode_frame(msg_id, seq, flags, payload, signature=signature))

    def _start_next(self, now: float) -> None:
        message = self._queue.popleft()
        flags = FLAG_ACK_REQ
        if self._syn_pending:
            flags |= FLAG_SYN
            self._syn_pending = False
        seq = self._next_seq()
        payload = message.pack()
        self._inflight = _InFlight(seq, message, payload, flags, now, now, 1)
        if self._sender_state is SenderState.IDLE:
            self._sender(SenderTrigger.SEND)
        self._emit_frame(message.ID, seq, flags, payload, now)

    def _on_frame(self, frame: Frame, now: float) -> None:
        self.stats.frames_received += 1
        if self.signer is not None:
            request = bool(frame.flags & FLAG_ACK_REQ) and not frame.flags & FLAG_RESPONSE
            verdict = self.signer.verify(frame, request=request)
            if verdict is not Verdict.OK:
                self._refuse(frame, verdict, request, now)
                return
        self._last_rx_s = now
        before = self._peer_state
        self._peer(PeerTrigger.FRAME)
        if before is not PeerState.ALIVE:
            self._events.append(PeerAlive(now))
        if frame.flags & FLAG_RESPONSE:
            self._on_response(frame, now)
        elif frame.flags & FLAG_ACK_REQ:
            self._on_request(frame, now)
        else:
            self._on_stream(frame, now)

    def _refuse(self, frame: Frame, verdict: Verdict, request: bool, now: float) -> None:
        """A frame that failed verification: NAK it if it is a request (never cached), report it, use nothing of it."""
        self.stats.auth_rejected += 1
        link_id = frame.signature.link_id if frame.signature is not None else None
        if self._inflight is not None:
            self._inflight.peer_refused += 1
            self._inflight.peer_refused_last = verdict.name
        if request:
            nak = Nak(acked_msg_id=frame.msg_id, error_code=verdict.value, detail=link_id or 0)
            self._emit_frame(Nak.ID, frame.seq, FLAG_RESPONSE, nak.pack(), now)
        self._events.append(AuthRejected(frame.seq, frame.msg_id, verdict, link_id, request))

    def _on_response(self, frame: Frame, now: float) -> None:
        inflight = self._inflight
        if inflight is None or frame.seq != inflight.seq:
            self.stats.stale_responses += 1
            self._events.append(StaleResponse(frame.seq, frame.msg_id))
            return
        # A corrupt-but-CRC-valid response cannot be trusted; keep waiting, the retry recovers.
        response = self._decode_unanswerable(frame, "response")
        if response is None:
            return
        if isinstance(response, Nak) and response.error_code in SIGNING_ERROR_CODES:
            # Not an answer to our request (which was signed): a refusal of our key, or of a forged frame
            # that reused our seq. Keep retransmitting; if every attempt is refused, fail naming it.
            self.stats.signing_naks += 1
            inflight.refused = f"NAK {Verdict(response.error_code).name} (link id {response.detail})"
            return
        self._inflight = None
        self._sender(SenderTrigger.RESPONSE if self._queue else SenderTrigger.RESPONSE_QUEUE_EMPTY)
        self._events.append(Answered(inflight.message, inflight.seq, response, inflight.attempts, now - inflight.first_sent_s))
        if self._queue:
            self._start_next(now)

    def _on_request(self, frame: Frame, now: float) -> None:
        key = (frame.seq, frame.msg_id, frame.payload)
        seen = self._seen.get(key)
        if seen is not None:
            self.stats.duplicates_answered += 1
            if seen.response is not None:
                self._emit_frame(seen.response[0], frame.seq, FLAG_RESPONSE, seen.response[1], now)
            self._events.append(DuplicateAnswered(frame.seq, frame.msg_id, seen.response is not None))
            return
        if frame.flags & FLAG_SYN:
            self._seen.clear()
            self._peer_session += 1
        entry = _Seen(frame.msg_id, frame.payload, self._peer_session)
        self._seen[key] = entry
        while len(self._seen) > self.config.dedup_window:
            self._seen.popitem(last=False)
        try:
            message = self._decode_request(frame)
        except PayloadError as exc:
            nak = Nak(acked_msg_id=frame.msg_id, error_code=int(exc.code), detail=exc.detail)
            entry.response = (Nak.ID, nak.pack())
            self._emit_frame(Nak.ID, frame.seq, FLAG_RESPONSE, entry.response[1], now)
            self.stats.rejected += 1
            self._events.append(Rejected(frame.seq, frame.msg_id, int(exc.code), exc.detail, str(exc)))
            return
        self._owed.setdefault(frame.seq, deque()).append(entry)
        self._events.append(Received(message, frame.seq, True, now))

    @staticmethod
    def _decode_request(frame: Frame) -> Message:
        if frame.version != PROTOCOL_VERSION:
            raise PayloadError(
                # detail: the highest version this end speaks (SPEC.md section 5)
                ErrorCode.VERSION_MISMATCH, PROTOCOL_VERSION, f"frame version {frame.version}, this end speaks {PROTOCOL_VERSION}"
            )
        if frame.flags & FLAGS_RESERVED:
            raise PayloadError(ErrorCode.BAD_FLAGS, frame.flags, f"reserved flag bits set: 0x{frame.flags:02X}")
        cls = BY_ID.get(frame.msg_id)
        if cls is None or not cls.DEF.needs_answer:
            raise PayloadError(ErrorCode.UNKNOWN_MESSAGE, frame.msg_id, f"msg id 0x{frame.msg_id:02X} is not a request")
        return cls.unpack(frame.payload)

    def _on_stream(self, frame: Frame, now: float) -> None:
        message = self._decode_unanswerable(frame, "stream")
        if message is not None:
            self._events.append(Received(message, frame.seq, False, now))

    def _decode_unanswerable(self, frame: Frame, kind: str) -> Message | None:
        """Decode a frame that gets no answer (a response or a stream message); drop it if it does not decode."""
        cls = BY_ID.get(frame.msg_id)
        try:
            if frame.version != PROTOCOL_VERSION:
                raise PayloadError(ErrorCode.VERSION_MISMATCH, frame.version, f"frame version {frame.version}")
            if cls is None or cls.DEF.kind != kind:
                raise PayloadError(ErrorCode.UNKNOWN_MESSAGE, frame.msg_id, f"msg id 0x{frame.msg_id:02X} is not a {kind}")
            return cls.unpack(frame.payload)
        except PayloadError as exc:
            self.stats.frame_errors += 1
            self._events.append(FrameDropped(_payload_drop(exc, frame)))
            return None


def _payload_drop(exc: PayloadError, frame: Frame) -> FrameError:
    """A frame that cannot be answered (stream or response) whose payload does not decode."""
    return FrameError(FrameErrorKind.PAYLOAD, str(exc), frame.payload)
