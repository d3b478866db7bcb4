"""The TCP image data channel: a sans-IO codec for ``tcp://host:port`` (no sockets here).

The control link carries IMAGE_READY (frame id, size, CRC-32C, locator); the
pixels travel on a separate channel named in DEVICE_INFO.data_channel.
``file:///dir`` is a shared directory. ``tcp://host:port`` is this protocol,
for rigs whose host and detector share no file system:

* The host sends one request line per frame: ``GET <locator> <token>\\n``. The
  locator is IMAGE_READY's, 1-200 characters from ``[A-Za-z0-9_.-]``, and does
  not start with a dot, so it can never name a path outside the device's store.
  The token is the session's data-channel token (SPEC 2.6, GET_DATA_TOKEN: 32
  lower-case hex digits); a device that requires one refuses a request without
  it, or with an earlier session's, with ``NO`` and closes the connection.
* ``tls://host:port`` is the same protocol inside TLS (standard-library ssl).
* The device answers either ``OK <size>\\n`` followed by exactly ``size``
  bytes (the raw frame, as IMAGE_READY describes it), or ``NO <reason>\\n``
  when it has no such frame (yet) or refuses the request. The connection
  stays open for the next request.
* Lines are ASCII and at most :data:`MAX_LINE` bytes including the newline;
  a frame is at most :data:`MAX_FRAME_BYTES`. Anything else is a protocol
  error, reported by name; the parsers never buffer more than one line or
  one frame.

The CRC is not repeated here: the host checks the bytes against
IMAGE_READY, as it does for files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: Longest request or status line, bytes (newline included).
MAX_LINE = 256
#: Largest frame the channel carries, bytes (a 4800 x 6000 x 32-bit frame is 115 MB).
MAX_FRAME_BYTES = 256 * 1024 * 1024
#: What a locator may be.
LOCATOR_RE = re.compile(r"[A-Za-z0-9_-][A-Za-z0-9_.-]{0,199}")
#: What a token is.
TOKEN_RE = re.compile(r"[0-9a-f]{32}")


class Request(str):
    """A parsed request: the locator (this string itself) and the ``token`` it carried (None: none)."""

    token: str | None = None


class DataChannelProtocolError(ValueError):
    """A malformed request or response on the TCP data channel (the message says what and why)."""


def check_locator(locator: str) -> str:
    """The locator itself, or :class:`DataChannelProtocolError` naming why it is refused."""
    if not LOCATOR_RE.fullmatch(locator):
        raise DataChannelProtocolError(
            f"locator {locator[:60]!r} refused: 1-200 characters from [A-Za-z0-9_.-], not starting with '.'")
    return locator


def encode_request(locator: str, token: str | None = None) -> bytes:
    """``GET <locator>\\n``, or ``GET <locator> <token>\\n``."""
    if token is None:
        return b"GET " + check_locator(locator).encode("ascii") + b"\n"
    if not TOKEN_RE.fullmatch(token):
        raise DataChannelProtocolError("data-channel token refused: expected 32 lower-case hex digits")
    return b"GET " + check_locator(locator).encode("ascii") + b" " + token.encode("ascii") + b"\n"


def encode_frame(data: bytes) -> bytes:
    """``OK <size>\\n`` + the frame."""
    if len(data) > MAX_FRAME_BYTES:
        raise DataChannelProtocolError(f"frame of {len(data)} bytes exceeds the channel limit {MAX_FRAME_BYTES}")
    return b"OK %d\n" % len(data) + data


def encode_missing(reason: str) -> bytes:
    """``NO <reason>\\n`` (reason shortened to fit a line, non-ASCII replaced)."""
    text = reason.encode("ascii", "replace").replace(b"\n", b" ")[: MAX_LINE - 4]
    return b"NO " + text + b"\n"


class RequestParser:
    """Device side: bytes in, locators (or a named error) out, one line at a time."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Request | DataChannelProtocolError]:
        """Every complete request in ``data``: a locator, or the error that line is."""
        self._buf += data
        out: list[str | DataChannelProtocolError] = []
        while True:
            nl = self._buf.find(b"\n")
            if nl < 0:
                if len(self._buf) >= MAX_LINE:
                    self._buf.clear()
                    out.append(DataChannelProtocolError(f"request line longer than {MAX_LINE} bytes"))
                return out
            line = bytes(self._buf[:nl])
            del self._buf[: nl + 1]
            out.append(self._parse(line))

    @staticmethod
    def _parse(line: bytes) -> Request | DataChannelProtocolError:
        if len(line) + 1 > MAX_LINE:
            return DataChannelProtocolError(f"request line longer than {MAX_LINE} bytes")
        if not line.startswith(b"GET "):
            return DataChannelProtocolError(f"unknown request {line[:20]!r} (expected 'GET <locator> <token>')")
        try:
            words = line[4:].decode("ascii").split(" ")
            if len(words) > 2:
                return DataChannelProtocolError("request has more than a locator and a token")
            request = Request(check_locator(words[0]))
            if len(words) == 2:
                if not TOKEN_RE.fullmatch(words[1]):
                    return DataChannelProtocolError("token is not 32 lower-case hex digits")
                request.token = words[1]
            return request
        except UnicodeDecodeError:
            return DataChannelProtocolError("locator is not ASCII")
        except DataChannelProtocolError as exc:
            return exc


@dataclass(frozen=True)
class Missing:
    """The device has no such frame (yet), or refused the request: ``reason`` says which."""

    reason: str


class ResponseParser:
    """Host side: bytes in, one answer (frame bytes or :class:`Missing`) out per request.

    Raises :class:`DataChannelProtocolError` on a malformed status line or an
    oversized frame; the connection should then be dropped.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._need: int | None = None  # body bytes still expected

    def feed(self, data: bytes) -> list[bytes | Missing]:
        self._buf += data
        out: list[bytes | Missing] = []
        while True:
            if self._need is None:
                nl = self._buf.find(b"\n")
                if nl < 0:
                    if len(self._buf) >= MAX_LINE:
                        raise DataChannelProtocolError(f"status line longer than {MAX_LINE} bytes")
                    return out
                line = bytes(self._buf[:nl])
                del self._buf[: nl + 1]
                if line.startswith(b"NO"):
                    out.append(Missing(line[3:].decode("ascii", "replace")))
                    continue
                if not line.startswith(b"OK ") or not line[3:].isdigit():
                    raise DataChannelProtocolError(f"bad status line {line[:40]!r} (expected 'OK <size>' or 'NO ...')")
                size = int(line[3:])
                if size > MAX_FRAME_BYTES:
                    raise DataChannelProtocolError(f"announced frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
                self._need = size
            if len(self._buf) < self._need:
                return out
            out.append(bytes(self._buf[: self._need]))
            del self._buf[: self._need]
            self._need = None
