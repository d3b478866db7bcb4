"""Decode a capture into frames and messages with the project's own codec.

Every packet of a capture (:mod:`hil.capture`) is fed to one
:class:`~protocols.wire.framing.FrameDecoder` per direction, and each frame's
payload to its catalogue class. Nothing is re-implemented here: framing, CRC
and message layouts come from :mod:`protocols.wire`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from protocols.wire.errors import FrameError, PayloadError
from protocols.wire.framing import FLAG_RESPONSE, Frame, FrameDecoder
from protocols.wire.messages import BY_ID, Message

from hil.capture import DIRECTION_TEXT, Packet


@dataclass(frozen=True, slots=True)
class WireItem:
    """One decoded unit of a capture.

    ``frame`` is None when the bytes were not a valid frame (``error`` says why);
    ``message`` is None when the frame's payload did not decode (``error`` says why).
    ``t_s`` is the capture time in seconds.
    """

    index: int
    t_s: float
    direction: int
    frame: Frame | None
    message: Message | None
    error: str = ""

    @property
    def name(self) -> str:
        """Catalogue name of the message, or ``?0xNN`` / ``<error>``."""
        if self.message is not None:
            return self.message.NAME
        if self.frame is not None:
            cls = BY_ID.get(self.frame.msg_id)
            return cls.NAME if cls else f"?0x{self.frame.msg_id:02X}"
        return "<error>"

    @property
    def is_response(self) -> bool:
        return self.frame is not None and bool(self.frame.flags & FLAG_RESPONSE)

    def describe(self) -> str:
        """One line for reports: time, direction, seq, name and fields."""
        where = f"#{self.index} t={self.t_s:.6f}s {DIRECTION_TEXT[self.direction]}"
        if self.frame is None:
            return f"{where} invalid bytes: {self.error}"
        body = self.message.to_dict() if self.message is not None else self.error
        return f"{where} seq={self.frame.seq} flags=0x{self.frame.flags:02X} {self.name} {body}"


def decode_packets(packets: Iterable[Packet]) -> list[WireItem]:
    """Decode captured packets in order into :class:`WireItem` objects."""
    decoders = {0: FrameDecoder(), 1: FrameDecoder()}
    out: list[WireItem] = []
    for p in packets:
        for item in decoders[p.direction].feed(p.data):
            if isinstance(item, FrameError):
                out.append(WireItem(len(out), p.t_s, p.direction, None, None, str(item)))
                continue
            cls = BY_ID.get(item.msg_id)
            if cls is None:
                out.append(WireItem(len(out), p.t_s, p.direction, item, None, f"unknown msg id 0x{item.msg_id:02X}"))
                continue
            try:
                msg = cls.unpack(item.payload)
            except PayloadError as exc:
                out.append(WireItem(len(out), p.t_s, p.direction, item, None, f"payload: {exc}"))
                continue
            out.append(WireItem(len(out), p.t_s, p.direction, item, msg))
    return out
