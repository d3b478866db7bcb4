"""Frame layer: header, CRC-32C and COBS byte stuffing with a 0x00 delimiter.

Unstuffed frame (all integers little-endian)::

    offset  size  field
    0       1     version     protocol version (catalogue protocol_version)
    1       1     flags       bit0 ACK_REQ, bit1 RESPONSE, bit2 SYN, bit3 RETRANSMIT, bit4 SIGNED,
                              bits 5-7 reserved (0)
    2       2     seq         sequence number (u16, wraps)
    4       1     msg_id      catalogue message id
    5       2     length      payload length, 0..MAX_PAYLOAD
    7       n     payload
    7+n     4     crc         CRC-32C of bytes 0 .. 7+n-1            (unsigned frame)

A SIGNED frame carries a 15-byte signature block between payload and CRC
(:mod:`protocols.wire.signing`), and its CRC covers it::

    7+n     1     link_id     the sender's link id
    8+n     6     timestamp   u48, 10 us units since 2015-01-01T00:00:00Z (monotonic per link id)
    14+n    8     tag         HMAC-SHA256(key, bytes 0 .. 14+n-1) truncated to 8 bytes
    22+n    4     crc         CRC-32C of bytes 0 .. 22+n-1

On the wire: ``b"\\x00" + COBS(frame) + b"\\x00"``. A receiver splits the byte
stream at 0x00, so after garbage or a lost byte it resynchronises at the next
delimiter; the leading delimiter ends any line noise received since the last
frame, so the frame that follows noise is not lost with it. Nothing here keeps state except :class:`FrameDecoder`'s partial
buffer, which is bounded by :data:`MAX_ENCODED`.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

from cobs import cobs

from protocols.wire.catalogue import load_catalogue
from protocols.wire.crc import crc32c
from protocols.wire.errors import FrameError, FrameErrorKind

PROTOCOL_VERSION = load_catalogue().protocol_version
HEADER = struct.Struct("<BBHBH")
HEADER_SIZE = HEADER.size  # 7
CRC_SIZE = 4
MAX_PAYLOAD = 640
SIGNATURE_SIZE = 15  # link_id u8, timestamp u48, tag 8 bytes (signed frames only)
TAG_SIZE = 8
MAX_FRAME_UNSIGNED = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE  # 651 unstuffed
MAX_FRAME = MAX_FRAME_UNSIGNED + SIGNATURE_SIZE  # 666 unstuffed (signed)
MAX_ENCODED = MAX_FRAME + (MAX_FRAME + 253) // 254  # 669 stuffed, without the delimiter
DELIMITER = b"\x00"

FLAG_ACK_REQ = 0x01
FLAG_RESPONSE = 0x02
FLAG_SYN = 0x04
FLAG_RETRANSMIT = 0x08
FLAG_SIGNED = 0x10
FLAGS_RESERVED = 0xE0

_CRC = struct.Struct("<I")
_SIG_HEAD = struct.Struct("<BIH")  # link_id, timestamp low 32 bits, timestamp high 16 bits


@dataclass(frozen=True, slots=True)
class Frame:
    """A received or to-be-sent frame (unstuffed, CRC checked)."""

    version: int
    flags: int
    seq: int
    msg_id: int
    payload: bytes
    signature: "Signature | None" = None

    @property
    def signed_part(self) -> bytes:
        """The bytes a signature covers: header, payload, link_id and timestamp (empty if unsigned)."""
        if self.signature is None:
            return b""
        head = HEADER.pack(self.version, self.flags, self.seq, self.msg_id, len(self.payload))
        return head + self.payload + pack_signature_head(self.signature.link_id, self.signature.timestamp)

    @property
    def ack_req(self) -> bool:
        return bool(self.flags & FLAG_ACK_REQ)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)


@dataclass(frozen=True, slots=True)
class Signature:
    """The signature block of a SIGNED frame (see module docstring)."""

    link_id: int
    timestamp: int  # 10 us units since 2015-01-01T00:00:00Z, u48
    tag: bytes  # TAG_SIZE bytes


def pack_signature_head(link_id: int, timestamp: int) -> bytes:
    """``link_id`` (u8) + ``timestamp`` (u48, little-endian): the signed part of the signature block."""
    return _SIG_HEAD.pack(link_id, timestamp & 0xFFFFFFFF, timestamp >> 32 & 0xFFFF)


def build_frame(msg_id: int, seq: int, flags: int, payload: bytes, version: int = PROTOCOL_VERSION,
                signature: tuple[int, int, Callable[[bytes], bytes]] | None = None) -> bytes:
    """Unstuffed frame bytes (header + payload [+ signature block] + CRC).

    ``signature``: ``(link_id, timestamp, tagger)`` makes a SIGNED frame (the flag is set here); the
    tagger maps the signed part (header, payload, link_id, timestamp) to the tag.
    """
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds MAX_PAYLOAD {MAX_PAYLOAD}")
    if signature is not None:
        flags |= FLAG_SIGNED
    head = HEADER.pack(version, flags, seq & 0xFFFF, msg_id, len(payload)) + payload
    if signature is not None:
        link_id, timestamp, tagger = signature
        if not 0 <= timestamp < 1 << 48:
            raise ValueError(f"signature timestamp {timestamp} outside u48")
        head += pack_signature_head(link_id, timestamp)
        tag = tagger(head)
        if len(tag) != TAG_SIZE:
            raise ValueError(f"tag of {len(tag)} bytes, expected {TAG_SIZE}")
        head += tag
    return head + _CRC.pack(crc32c(head))


def encode_frame(msg_id: int, seq: int, flags: int, payload: bytes, version: int = PROTOCOL_VERSION,
                 signature: tuple[int, int, Callable[[bytes], bytes]] | None = None) -> bytes:
    """Bytes to put on the wire: 0x00, the COBS-stuffed frame, 0x00."""
    return DELIMITER + cobs.encode(build_frame(msg_id, seq, flags, payload, version, signature)) + DELIMITER


def parse_frame(raw: bytes) -> Frame:
    """Check an unstuffed frame (size, CRC, length field) and split it. Raises :class:`FrameError`."""
    n = len(raw)
    if n < HEADER_SIZE + CRC_SIZE:
        raise FrameError(FrameErrorKind.TOO_SHORT, f"{n} bytes, a frame has at least {HEADER_SIZE + CRC_SIZE}", raw)
    if n > MAX_FRAME:
        raise FrameError(FrameErrorKind.TOO_LONG, f"{n} bytes, at most {MAX_FRAME}", raw)
    (got,) = _CRC.unpack_from(raw, n - CRC_SIZE)
    want = crc32c(memoryview(raw)[: n - CRC_SIZE])
    if got != want:
        raise FrameError(FrameErrorKind.CRC, f"CRC 0x{got:08X}, computed 0x{want:08X}", raw)
    version, flags, seq, msg_id, length = HEADER.unpack_from(raw, 0)
    trailer = SIGNATURE_SIZE if flags & FLAG_SIGNED else 0
    if length != n - HEADER_SIZE - CRC_SIZE - trailer:
        raise FrameError(
            FrameErrorKind.LENGTH, f"length field {length}, frame carries {n - HEADER_SIZE - CRC_SIZE - trailer}", raw)
    end = HEADER_SIZE + length
    signature = None
    if trailer:
        link_id, lo, hi = _SIG_HEAD.unpack_from(raw, end)
        signature = Signature(link_id, lo | hi << 32, bytes(raw[end + 7 : end + SIGNATURE_SIZE]))
    return Frame(version, flags, seq, msg_id, bytes(raw[HEADER_SIZE:end]), signature)


class FrameDecoder:
    """Streaming decoder: feed any byte chunks, get frames and framing errors in order.

    Memory is bounded: at most :data:`MAX_ENCODED` bytes are buffered; a longer
    run without a delimiter is reported once as ``TOO_LONG`` and skipped up to
    the next 0x00. Empty runs (consecutive delimiters) are idle fill, not errors.
    """

    __slots__ = ("_buf", "_skipping")

    def __init__(self) -> None:
        self._buf = bytearray()
        self._skipping = False

    @property
    def buffered(self) -> int:
        """Bytes held waiting for a delimiter."""
        return len(self._buf)

    def feed(self, data: bytes) -> list[Frame | FrameError]:
        """Consume ``data``; return the frames and errors it completes."""
        out: list[Frame | FrameError] = []
        parts = bytes(data).split(DELIMITER)
        last = len(parts) - 1
        for i, part in enumerate(parts):
            if i < last:  # this part ends at a delimiter
                if self._skipping:
                    self._skipping = False
                    self._buf.clear()
                    continue
                if self._buf:
                    self._buf += part
                    run = bytes(self._buf)
                    self._buf.clear()
                else:
                    run = part
                if not run:
                    continue
                if len(run) > MAX_ENCODED:
                    out.append(FrameError(FrameErrorKind.TOO_LONG, f"{len(run)} stuffed bytes before a delimiter"))
                    continue
                out.append(self._decode_run(run))
            elif not self._skipping:  # trailing partial run
                self._buf += part
                if len(self._buf) > MAX_ENCODED:
                    out.append(
                        FrameError(FrameErrorKind.TOO_LONG, f"more than {MAX_ENCODED} bytes without a delimiter")
                    )
                    self._buf.clear()
                    self._skipping = True
        return out

    @staticmethod
    def _decode_run(run: bytes) -> Frame | FrameError:
        try:
            raw = cobs.decode(run)
        except cobs.DecodeError as exc:
            return FrameError(FrameErrorKind.COBS, str(exc), run)
        try:
            return parse_frame(raw)
        except FrameError as exc:
            return exc
