"""Image intake from the detector data channel (never the control UART).

DEVICE_INFO.data_channel names the channel; ``file:///dir`` is supported: the
pixels of frame ``IMAGE_READY.locator`` are the file ``dir/locator`` (raw
little-endian, ``bits`` per pixel, ``rows x cols``). :func:`check_frame`
verifies size and CRC-32C against IMAGE_READY; a missing or short file is
reported so the exam plan can retry within its timeout (the detector may
still be writing it).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np

from protocols.wire.crc import crc32c
from protocols.wire.messages import Message


class DataChannelError(ValueError):
    """The data channel URL is not one the host can read."""


@dataclass(frozen=True)
class FrameCheck:
    """Outcome of one read attempt: ``data`` is set only when size and CRC match."""

    data: bytes | None
    problem: str = ""


class FileDataChannel:
    """Frames as files in a directory (``file:///dir``)."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise DataChannelError(f"data channel {url!r}: only file:// directories are supported by this host")
        self.url = url
        self.root = Path(unquote(parsed.path))

    def path(self, locator: str) -> Path:
        p = Path(locator)
        return p if p.is_absolute() else self.root / p

    def read(self, locator: str) -> bytes | None:
        """The frame's bytes, or None if the file does not exist (yet)."""
        try:
            return self.path(locator).read_bytes()
        except FileNotFoundError:
            return None


def open_data_channel(url: str) -> FileDataChannel:
    """The reader for DEVICE_INFO.data_channel."""
    return FileDataChannel(url)


def check_frame(data: bytes | None, ready: Message) -> FrameCheck:
    """Compare a read against IMAGE_READY (size_bytes, checksum)."""
    if data is None:
        return FrameCheck(None, f"frame {ready.frame_id}: {ready.locator} not on the data channel yet")
    if len(data) < ready.size_bytes:
        return FrameCheck(None, f"frame {ready.frame_id}: short file, {len(data)} of {ready.size_bytes} bytes")
    if len(data) > ready.size_bytes:
        return FrameCheck(None, f"frame {ready.frame_id}: {len(data)} bytes, IMAGE_READY said {ready.size_bytes}")
    crc = crc32c(data)
    if crc != ready.checksum:
        return FrameCheck(None, f"frame {ready.frame_id}: CRC-32C 0x{crc:08X} != IMAGE_READY 0x{ready.checksum:08X}")
    return FrameCheck(data)


def pixel_dtype(bits: int) -> np.dtype:
    """Little-endian unsigned dtype holding ``bits`` per pixel."""
    if bits <= 8:
        return np.dtype("u1")
    if bits <= 16:
        return np.dtype("<u2")
    return np.dtype("<u4")


def frame_array(data: bytes, ready: Message) -> np.ndarray:
    """Raw frame bytes -> ``(rows, cols)`` array."""
    return np.frombuffer(data, dtype=pixel_dtype(ready.bits)).reshape(ready.rows, ready.cols)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """fsync a directory so a rename inside it is durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
