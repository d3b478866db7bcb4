"""Signed links, sans-IO: frame signatures in the manner of MAVLink 2 signing.

A link end that holds the rig's *link key* (32 bytes, shared by host and
device, never on the wire) signs every frame it sends and accepts only frames
that verify. A SIGNED frame (flag bit 4) carries a 15-byte block between
payload and CRC (:mod:`protocols.wire.framing`)::

    link_id    u8   the sender's link id (the device is 0, a host 1..255)
    timestamp  u48  10 us units since 2015-01-01T00:00:00Z, strictly increasing per link id
    tag        8 B  HMAC-SHA256(key, header + payload + link_id + timestamp)[:8]

Receiving, in this order (the first failure decides the NAK code; nothing of
a refused frame reaches the application, feeds the peer watchdog or moves a
high-water mark):

1. no signature block                                  -> ``UNSIGNED``
2. tag differs (constant-time compare)                 -> ``BAD_SIGNATURE``
3. link id is this end's own (a reflected frame), or
   timestamp <= the high-water mark of that link id    -> ``REPLAYED``
4. a link id not seen before whose timestamp is more than
   :data:`STALE_WINDOW` behind the newest timestamp this
   end knows (sent or received)                         -> ``STALE``

then the link id's high-water mark becomes the frame's timestamp. The
high-water marks are the state a device must keep across a restart (the I/O
layer persists them through a :class:`HighWaterStore`); then a frame
recorded before the restart is still refused as REPLAYED.

Timestamps of frames sent: ``max(last + 1, clock)``, where ``clock`` is
``offset + 10^5 x now`` and the I/O layer sets ``offset`` once from the wall
clock (:func:`wall_clock_offset`), so the sans-IO code never reads a clock. A
retransmission is signed again with a new timestamp (a byte-identical copy is
a replay).

Why 8 bytes (64 bits) of tag (SPEC 2.6 gives the whole argument): a tag is only
checked online, by a receiver that refuses, counts and logs every wrong one, and
is single-use (the timestamp). A forger without the key must guess, one frame per
guess; at 10^6 frames/s (well beyond a 921 600 baud UART, ~1 400 frames/s) the
expected time to one accepted forgery is 2^63 / 10^6 s, about 2.9 x 10^5 years.
MAVLink 2 truncates to 48 bits by the same argument. RFC 2104's "at least half
the hash, at least 80 bits" is a margin for tags attacked offline, which these
are not.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

from protocols.wire.catalogue import ErrorCode
from protocols.wire.framing import TAG_SIZE, Frame

#: Length of a link key, bytes (HMAC-SHA256's block-internal key size; a longer key gains nothing).
KEY_SIZE = 32
#: Timestamp units per second (10 us ticks, as MAVLink 2).
TICKS_PER_S = 100_000
#: Unix time of the timestamp epoch, 2015-01-01T00:00:00Z, s.
EPOCH_UNIX_S = 1_420_070_400
#: A new link id's first frame may be this far behind the newest timestamp known (60 s, as MAVLink 2).
STALE_WINDOW = 60 * TICKS_PER_S
#: Largest timestamp (u48).
MAX_TIMESTAMP = (1 << 48) - 1
#: The device's link id; hosts use 1..255.
DEVICE_LINK_ID = 0
#: A host's link id unless configured.
DEFAULT_HOST_LINK_ID = 1
#: Domain separation of the data-channel token derivation (GET_DATA_TOKEN).
DATA_TOKEN_LABEL = b"crescent-data-token"


class Verdict(enum.Enum):
    """Outcome of verifying a received frame (a refused one maps to a NAK error code)."""

    OK = 0
    UNSIGNED = int(ErrorCode.UNSIGNED)  # type: ignore[attr-defined]
    BAD_SIGNATURE = int(ErrorCode.BAD_SIGNATURE)  # type: ignore[attr-defined]
    REPLAYED = int(ErrorCode.REPLAYED)  # type: ignore[attr-defined]
    STALE = int(ErrorCode.STALE)  # type: ignore[attr-defined]


#: NAK codes of the signing layer: a NAK with one of these never completes a request (see link.py).
SIGNING_ERROR_CODES: frozenset[int] = frozenset(v.value for v in Verdict if v is not Verdict.OK)


class LinkKey:
    """A link key. Its ``repr``/``str`` never show the bytes, so a key cannot leak into a log by accident."""

    __slots__ = ("_key",)

    def __init__(self, key: bytes) -> None:
        if not isinstance(key, (bytes, bytearray)) or len(key) != KEY_SIZE:
            raise ValueError(f"link key must be {KEY_SIZE} bytes, got {len(key) if isinstance(key, (bytes, bytearray)) else type(key).__name__}")
        self._key = bytes(key)

    @classmethod
    def from_hex(cls, text: str, source: str = "link key") -> "LinkKey":
        """A key from 64 hex digits (whitespace ignored). The error names ``source`` and the length, never the text."""
        digits = "".join(text.split())
        try:
            raw = bytes.fromhex(digits)
        except ValueError:
            raise ValueError(f"{source}: not hexadecimal (expected {2 * KEY_SIZE} hex digits)") from None
        if len(raw) != KEY_SIZE:
            raise ValueError(f"{source}: {len(digits)} hex digits, expected {2 * KEY_SIZE} ({KEY_SIZE} bytes)")
        return cls(raw)

    def tag(self, signed_part: bytes) -> bytes:
        """HMAC-SHA256 of ``signed_part`` truncated to :data:`~protocols.wire.framing.TAG_SIZE` bytes."""
        return hmac.digest(self._key, signed_part, "sha256")[:TAG_SIZE]  # one-shot (OpenSSL): the fast path

    def data_token(self, nonce: bytes) -> str:
        """The data-channel token of a session nonce (GET_DATA_TOKEN): 32 lower-case hex digits."""
        return hmac.new(self._key, DATA_TOKEN_LABEL + nonce, hashlib.sha256).digest()[:16].hex()

    def fingerprint(self) -> str:
        """First 8 hex digits of SHA-256("crescent-key-id" + key): names a key in logs without revealing it."""
        return hashlib.sha256(b"crescent-key-id" + self._key).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"LinkKey(id {self.fingerprint()})"

    __str__ = __repr__

    def __reduce__(self) -> tuple:  # never pickled into a worker or a capture by accident
        raise TypeError("a LinkKey is not picklable")


def wall_clock_offset(now_s: float, unix_time_s: float) -> int:
    """The ``offset`` (ticks) that makes ``offset + 10^5 x now_s`` the signing time at ``unix_time_s`` (I/O layer)."""
    return int(round((unix_time_s - EPOCH_UNIX_S - now_s) * TICKS_PER_S))


class HighWaterStore(Protocol):
    """Where a link end keeps its high-water marks (the I/O layer: a file on a device, memory in a test)."""

    def load(self) -> dict[int, int]: ...

    def save(self, marks: dict[int, int], *, durable: bool) -> None: ...


@dataclass
class MemoryHighWater:
    """High-water marks in memory (a virtual-time device: survives a simulated reset, not the process)."""

    marks: dict[int, int] = field(default_factory=dict)
    saves: int = 0

    def load(self) -> dict[int, int]:
        return dict(self.marks)

    def save(self, marks: dict[int, int], *, durable: bool) -> None:
        self.marks = dict(marks)
        self.saves += 1


@dataclass
class Signer:
    """One link end's signing state: the key, its link id, timestamps sent, high-water marks received.

    ``clock_offset`` (ticks) is set by the I/O layer (:func:`wall_clock_offset`); 0 makes the
    timestamps a counter from the stored high-water marks (virtual time). ``store`` persists the
    high-water marks: saved with ``durable=True`` before an accepted *request* is handed to the
    application (so a command executed before a restart is refused after it), lazily otherwise.
    """

    key: LinkKey
    link_id: int = DEVICE_LINK_ID
    clock_offset: int = 0
    store: HighWaterStore | None = None
    stale_window: int = STALE_WINDOW

    def __post_init__(self) -> None:
        if not 0 <= self.link_id <= 255:
            raise ValueError(f"link id {self.link_id} outside 0..255")
        self.marks: dict[int, int] = self.store.load() if self.store is not None else {}
        self.timestamp = max(self.marks.values(), default=0)  # newest timestamp known, sent or received
        self.rejected: dict[Verdict, int] = {v: 0 for v in Verdict if v is not Verdict.OK}

    def next_timestamp(self, now_s: float) -> int:
        """Timestamp of the next frame sent at link time ``now_s`` (strictly increasing)."""
        clock = self.clock_offset + int(now_s * TICKS_PER_S) if self.clock_offset else 0
        ts = max(self.timestamp + 1, clock)
        if ts > MAX_TIMESTAMP:
            raise OverflowError("signing timestamp beyond u48")
        self.timestamp = ts
        return ts

    def signature(self, now_s: float) -> tuple[int, int, Callable[[bytes], bytes]]:
        """``(link_id, timestamp, tagger)`` for :func:`protocols.wire.framing.build_frame`."""
        return self.link_id, self.next_timestamp(now_s), self.key.tag

    def verify(self, frame: Frame, *, request: bool = False) -> Verdict:
        """Check ``frame``'s signature and freshness; on OK its link id's high-water mark moves (module docstring)."""
        sig = frame.signature
        if sig is None:
            verdict = Verdict.UNSIGNED
        elif not hmac.compare_digest(self.key.tag(frame.signed_part), sig.tag):
            verdict = Verdict.BAD_SIGNATURE
        elif sig.link_id == self.link_id or sig.timestamp <= self.marks.get(sig.link_id, -1):
            verdict = Verdict.REPLAYED
        elif sig.link_id not in self.marks and sig.timestamp + self.stale_window < self.timestamp:
            verdict = Verdict.STALE
        else:
            self.marks[sig.link_id] = sig.timestamp
            self.timestamp = max(self.timestamp, sig.timestamp)
            if self.store is not None and request:
                self.store.save(dict(self.marks), durable=True)
            return Verdict.OK
        self.rejected[verdict] += 1
        return verdict

    def flush(self) -> None:
        """Save the high-water marks (not durable): call on a clean shutdown or now and then."""
        if self.store is not None:
            self.store.save(dict(self.marks), durable=False)
