"""Image intake from the detector data channel (never the control UART).

DEVICE_INFO.data_channel names the channel:

* ``file:///dir``: the pixels of frame ``IMAGE_READY.locator`` are the file
  ``dir/locator`` (raw little-endian, ``bits`` per pixel, ``rows x cols``);
* ``tcp://host:port``: the same bytes fetched from the device's frame server
  (:mod:`protocols.data_channel`) by a worker thread over one kept-open
  connection with bounded connect and read timeouts, so the control loop
  (heartbeats, events, abort) never waits on the network.

:func:`check_frame` verifies size and CRC-32C against IMAGE_READY; a missing
or short frame is reported so the exam plan can retry within its timeout
(the detector may still be writing it, or the connection may be down).
"""

from __future__ import annotations

import os
import socket
import ssl
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlparse

import numpy as np

from protocols.data_channel import DataChannelProtocolError, Missing, ResponseParser, encode_request
from protocols.wire.crc import crc32c
from protocols.wire.messages import Message


class DataChannelError(ValueError):
    """The data channel URL is not one the host can read."""


@dataclass(frozen=True)
class FrameCheck:
    """Outcome of one read attempt: ``data`` is set only when size and CRC match."""

    data: bytes | None
    problem: str = ""


class DataChannel(Protocol):
    """What the exam plan needs of a data channel."""

    url: str
    last_problem: str

    def read(self, locator: str) -> bytes | None: ...

    def close(self) -> None: ...


class FileDataChannel:
    """Frames as files in a directory (``file:///dir``)."""

    def __init__(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme != "file":
            raise DataChannelError(f"data channel {url!r}: expected file:///directory")
        self.url = url
        self.root = Path(unquote(parsed.path))
        self.last_problem = ""

    def path(self, locator: str) -> Path:
        p = Path(locator)
        return p if p.is_absolute() else self.root / p

    def read(self, locator: str) -> bytes | None:
        """The frame's bytes, or None if the file does not exist (yet)."""
        try:
            return self.path(locator).read_bytes()
        except FileNotFoundError:
            return None

    def close(self) -> None:
        """Nothing to release (files are opened per read)."""


class TcpDataChannel:
    """Frames from a device's frame server (``tcp://host:port``; :mod:`protocols.data_channel`).

    The socket work happens on a worker thread, so :meth:`read` never blocks
    the control loop for more than ``poll_wait_s``: it returns a finished
    fetch, or starts one and returns None (the exam plan sleeps and reads
    again, as for a file not yet written). A fetch that fails (connection
    refused, timed out, protocol error, frame not there yet) is reported once
    by a None with ``last_problem`` saying why; the next read starts a new
    fetch on a new connection.
    """

    #: Finished fetches kept for a read that has not collected them (oldest dropped first).
    MAX_KEPT = 8

    def __init__(self, url: str, *, connect_timeout_s: float = 2.0, read_timeout_s: float = 10.0,
                 poll_wait_s: float = 0.02, token: str | None = None, ca_file: str | None = None) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("tcp", "tls") or not parsed.hostname or parsed.port is None:
            raise DataChannelError(f"data channel {url!r}: expected tcp://host:port or tls://host:port")
        self.url = url
        self.token = token  # the session's data-channel token (SPEC 2.6), sent with every request
        self.tls: ssl.SSLContext | None = None
        if parsed.scheme == "tls":  # verify the device's certificate and host name against ca_file (or the system's CAs)
            try:
                self.tls = ssl.create_default_context(cafile=ca_file)
            except (OSError, ssl.SSLError) as exc:
                raise DataChannelError(f"data channel {url!r}: CA file {ca_file!r}: {exc}") from None
        self.address = (parsed.hostname, parsed.port)
        self.connect_timeout_s = connect_timeout_s
        self.read_timeout_s = read_timeout_s
        self.poll_wait_s = poll_wait_s
        self.last_problem = ""
        self._sock: socket.socket | None = None
        self._cond = threading.Condition()
        self._pending: str | None = None
        self._done: dict[str, tuple[bytes | None, str]] = {}
        self._closed = False
        self._thread: threading.Thread | None = None

    def read(self, locator: str) -> bytes | None:
        """The frame's bytes if a fetch of it has finished; otherwise None (a fetch is started or under way)."""
        try:
            encode_request(locator, self.token)
        except DataChannelProtocolError as exc:
            self.last_problem = str(exc)
            return None
        with self._cond:
            if self._closed:
                self.last_problem = f"{self.url}: channel closed"
                return None
            if locator not in self._done and self._pending is None:
                self._pending = locator
                self._ensure_worker()
                self._cond.notify_all()
            self._cond.wait_for(lambda: locator in self._done, timeout=self.poll_wait_s)
            if locator in self._done:
                data, self.last_problem = self._done.pop(locator)
                return data
            self.last_problem = f"{self.url}: fetching {self._pending or locator}"
            return None

    def _ensure_worker(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="tcp-data-channel", daemon=True)
            self._thread.start()

    def _work(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._pending is not None or self._closed)
                if self._closed:
                    return
                locator = self._pending
            assert locator is not None
            result = self._fetch(locator)
            with self._cond:
                self._done[locator] = result
                while len(self._done) > self.MAX_KEPT:
                    self._done.pop(next(iter(self._done)))
                self._pending = None
                self._cond.notify_all()

    def _fetch(self, locator: str) -> tuple[bytes | None, str]:
        """One request on the kept connection (opened if needed); (bytes, "") or (None, why)."""
        try:
            if self._sock is None:
                raw = socket.create_connection(self.address, timeout=self.connect_timeout_s)
                if self.tls is not None:
                    try:
                        raw = self.tls.wrap_socket(raw, server_hostname=self.address[0])
                    except BaseException:
                        raw.close()
                        raise
                self._sock = raw
                self._sock.settimeout(self.read_timeout_s)
            sock = self._sock
            sock.sendall(encode_request(locator, self.token))
            parser = ResponseParser()
            while True:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    raise ConnectionError("the frame server closed the connection")
                answers = parser.feed(chunk)
                if answers:
                    break
        except (OSError, DataChannelProtocolError) as exc:
            self._drop_socket()
            return None, f"{self.url}: {exc}"
        answer = answers[0]
        if isinstance(answer, Missing):
            return None, answer.reason
        return answer, ""

    def _drop_socket(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None

    def close(self) -> None:
        """Stop the worker (an in-flight fetch is cut short) and close the connection."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=2.0)
        self._drop_socket()


def open_data_channel(url: str, token: str | None = None, ca_file: str | None = None) -> DataChannel:
    """The reader for DEVICE_INFO.data_channel (``file://``, ``tcp://`` or ``tls://``).

    ``token``: the session's data-channel token (SessionInfo.data_token); ``ca_file``: the CA (PEM) a
    ``tls://`` channel's certificate is verified against (default: the system's CAs)."""
    scheme = urlparse(url).scheme
    if scheme == "file":
        return FileDataChannel(url)
    if scheme in ("tcp", "tls"):
        return TcpDataChannel(url, token=token, ca_file=ca_file)
    raise DataChannelError(f"data channel {url!r}: this host reads file://, tcp:// and tls:// channels")


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
