"""Frame layer: header, CRC-32C and COBS byte stuffing with a 0x00 delimiter.

Unstuffed frame (all integers little-endian)::

    offset  size  field
    0       1     version     protocol version (catalogue protocol_version)
    1       1     flags       bit0 ACK_REQ, bit1 RESPONSE, bit2 SYN, bit3 RETRANSMIT, bits 4-7 reserved (0)
    2       2     seq         sequence number (u16, wraps)
    4       1     msg_id      catalogue message id
    5       2     length      payload length, 0..MAX_PAYLOAD
    7       n     payload
    7+n     4     crc         CRC-32C of bytes 0 .. 7+n-1

On the wire: ``b"\\x00" + COBS(frame) + b"\\x00"``. A receiver splits the byte
stream at 0x00, so after garbage or a lost byte it resynchronises at the next
delimiter; the leading delimiter ends any line noise received since the last
frame, so the frame that follows noise is not lost with it. Nothing here keeps state except :class:`FrameDecoder`'s partial
buffer, which is bounded by :data:`MAX_ENCODED`.
"""

from __future__ import annotations

import struct
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
MAX_FRAME = HEADER_SIZE + MAX_PAYLOAD + CRC_SIZE  # 651 unstuffed
MAX_ENCODED = MAX_FRAME + (MAX_FRAME + 253) // 254  # 654 stuffed, without the delimiter
DELIMITER = b"\x00"

FLAG_ACK_REQ = 0x01
FLAG_RESPONSE = 0x02
FLAG_SYN = 0x04
FLAG_RETRANSMIT = 0x08
FLAGS_RESERVED = 0xF0

_CRC = struct.Struct("<I")


@dataclass(frozen=True, slots=True)
class Frame:
    """A received or to-be-sent frame (unstuffed, CRC checked)."""

    version: int
    flags: int
    seq: int
    msg_id: int
    payload: bytes

    @property
    def ack_req(self) -> bool:
        return bool(self.flags & FLAG_ACK_REQ)

    @property
    def is_response(self) -> bool:
        return bool(self.flags & FLAG_RESPONSE)


def build_frame(msg_id: int, seq: int, flags: int, payload: bytes, version: int = PROTOCOL_VERSION) -> bytes:
    """Unstuffed frame bytes (header + payload + CRC)."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"payload of {len(payload)} bytes exceeds MAX_PAYLOAD {MAX_PAYLOAD}")
    head = HEADER.pack(version, flags, seq & 0xFFFF, msg_id, len(payload)) + payload
    return head + _CRC.pack(crc32c(head))


def encode_frame(msg_id: int, seq: int, flags: int, payload: bytes, version: int = PROTOCOL_VERSION) -> bytes:
    """Bytes to put on the wire: 0x00, the COBS-stuffed frame, 0x00."""
    return DELIMITER + cobs.encode(build_frame(msg_id, seq, flags, payload, version)) + DELIMITER


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
    if length != n - HEADER_SIZE - CRC_SIZE:
        raise FrameError(FrameErrorKind.LENGTH, f"length field {length}, frame carries {n - 11}", raw)
    return Frame(version, flags, seq, msg_id, bytes(raw[HEADER_SIZE : n - CRC_SIZE]))


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
