"""Errors of the wire layer, each with a precise message and a defined code."""

from __future__ import annotations

import enum

from protocols.wire.catalogue import ErrorCode


class WireError(Exception):
    """Base class of every wire-protocol error."""


class FieldRangeError(WireError, ValueError):
    """A message could not be encoded: a field is outside its catalogue range.

    Raised on the sending side, before anything is put on the wire.
    """

    def __init__(self, message: str, field: str, value: object, lo: object, hi: object, why: str = "") -> None:
        self.message_name = message
        self.field = field
        self.value = value
        self.lo = lo
        self.hi = hi
        text = why or f"{value!r} is outside [{lo}, {hi}]"
        super().__init__(f"{message}.{field}: {text}")


class PayloadError(WireError):
    """A frame's CRC was good but its payload does not decode.

    ``code`` is the NAK error code the receiver answers with; ``detail`` is the
    NAK detail (the field index where one applies, see SPEC.md).
    """

    def __init__(self, code: ErrorCode, detail: int, text: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(text)


class FrameErrorKind(enum.Enum):
    """Why a received byte run was not a frame. The receiver drops it and resynchronises."""

    COBS = "cobs"  # byte stuffing invalid
    TOO_SHORT = "too_short"  # fewer bytes than header + CRC
    TOO_LONG = "too_long"  # more than the maximum frame size before a delimiter
    CRC = "crc"  # CRC-32C mismatch
    LENGTH = "length"  # header length field disagrees with the frame size
    VERSION = "version"  # header version byte not spoken here
    FLAGS = "flags"  # reserved flag bits set
    PAYLOAD = "payload"  # CRC good, but an unanswerable frame's payload does not decode


class FrameError(WireError):
    """A received byte run was rejected at the framing layer."""

    def __init__(self, kind: FrameErrorKind, text: str, raw: bytes = b"") -> None:
        self.kind = kind
        self.raw = raw
        super().__init__(f"{kind.value}: {text}")
