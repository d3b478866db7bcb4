"""The simulated detector's TCP data channel (``tcp://host:port``; protocol in :mod:`protocols.data_channel`).

A threaded server that answers ``GET <locator>`` with the frame file of that
name from the detector's data directory (frames are written there atomically,
so a file that exists is complete). Only ``frame_<id>.raw`` files are served.
DEVICE_INFO names ``tcp://<advertised host>:<port>``: the bind address, or this
machine's name when bound to every interface (override with ``advertise_host``). Used by the real-time gantry when started
with ``--data-channel tcp``; the file channel stays the default.

Each connection is served on its own daemon thread and closed after
``idle_timeout_s`` without a request; a malformed request gets ``NO`` with
the reason and the connection is closed.

``token``: a callable giving the current session's data-channel token (SPEC 2.6); every request must
carry it, else ``NO`` (token missing / stale or wrong) and the connection is closed. ``tls``: an
:class:`ssl.SSLContext` (server side, with the configured certificate) makes it a ``tls://`` server.
"""

from __future__ import annotations

import hmac
import logging
import re
import ssl
import socket
import socketserver
import threading
from collections.abc import Callable
from pathlib import Path

from protocols.data_channel import MAX_FRAME_BYTES, Request, RequestParser, encode_frame, encode_missing

log = logging.getLogger("crescent.gantry.data")

#: The only files served: the detector's frames (not the event log or temporary files beside them).
FRAME_NAME = re.compile(r"frame_\d+\.raw")


class _Handler(socketserver.BaseRequestHandler):
    server: "_Server"

    def handle(self) -> None:
        sock: socket.socket = self.request
        sock.settimeout(self.server.idle_timeout_s)
        if self.server.tls is not None:
            try:
                sock = self.server.tls.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError) as exc:
                log.info("TLS handshake refused: %s", exc.__class__.__name__)
                return
        with self.server.lock:
            if self.server.closing:
                return
            self.server.connections.add(sock)
        try:
            self._serve(sock)
        finally:
            with self.server.lock:
                self.server.connections.discard(sock)

    def _serve(self, sock: socket.socket) -> None:
        parser = RequestParser()
        while True:
            try:
                chunk = sock.recv(4096)
            except (TimeoutError, OSError):
                return
            if not chunk:
                return
            for item in parser.feed(chunk):
                if isinstance(item, Exception):
                    self._send(sock, encode_missing(f"bad request: {item}"))
                    return
                refused = self._token_problem(item)
                if refused:
                    self._send(sock, encode_missing(refused))
                    return
                self._send(sock, self._answer(item))

    def _token_problem(self, request: Request) -> str:
        """Why the request's token is refused ("" if it is good or none is required)."""
        if self.server.token is None:
            return ""
        want = self.server.token()
        if request.token is None:
            return "token required (GET <locator> <token>; GET_DATA_TOKEN on the control link)"
        if want is None or not hmac.compare_digest(request.token, want):
            return "stale or wrong token (a new HELLO makes a new one; GET_DATA_TOKEN)"
        return ""

    def _answer(self, locator: str) -> bytes:
        if not FRAME_NAME.fullmatch(locator):
            return encode_missing(f"{locator}: not a frame name (frame_<id>.raw)")
        path = self.server.root / locator
        try:
            size = path.stat().st_size
            if size > MAX_FRAME_BYTES:
                return encode_missing(f"{locator}: {size} bytes exceeds the channel limit {MAX_FRAME_BYTES}")
            return encode_frame(path.read_bytes())
        except FileNotFoundError:
            return encode_missing(f"no frame {locator} (yet)")
        except (OSError, ValueError) as exc:
            return encode_missing(f"{locator}: {exc}")

    @staticmethod
    def _send(sock: socket.socket, data: bytes) -> None:
        try:
            sock.sendall(data)
        except OSError:
            pass


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], root: Path, idle_timeout_s: float,
                 token: Callable[[], str | None] | None, tls: ssl.SSLContext | None) -> None:
        self.root = root
        self.token = token
        self.tls = tls
        self.idle_timeout_s = idle_timeout_s
        self.connections: set[socket.socket] = set()
        self.lock = threading.Lock()
        self.closing = False
        super().__init__(address, _Handler)


class FrameServer:
    """Serve ``root``'s frame files on ``bind:port`` (port 0: any free port) until :meth:`close`."""

    def __init__(self, root: str | Path, *, bind: str = "127.0.0.1", port: int = 0, idle_timeout_s: float = 30.0,
                 advertise_host: str | None = None, token: Callable[[], str | None] | None = None,
                 tls: ssl.SSLContext | None = None) -> None:
        self._server = _Server((bind, port), Path(root).resolve(), idle_timeout_s, token, tls)
        self.scheme = "tls" if tls is not None else "tcp"
        # the address a host should dial: a wildcard bind is not one, so name this machine instead
        self.advertise_host = advertise_host or (socket.getfqdn() if bind in ("", "0.0.0.0", "::") else bind)
        self._thread = threading.Thread(target=self._server.serve_forever, name="frame-server", daemon=True)
        self._thread.start()
        log.info("data channel %s serving %s", self.url, self._server.root)

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def url(self) -> str:
        """``tcp://<advertised host>:<port>``, what DEVICE_INFO names."""
        host = self.advertise_host
        if ":" in host:  # IPv6 literal
            host = f"[{host}]"
        return f"{self.scheme}://{host}:{self.address[1]}"

    def close(self) -> None:
        """Stop accepting and drop every open connection (a host then sees the channel go down)."""
        self._server.shutdown()
        self._server.server_close()
        with self._server.lock:
            self._server.closing = True
            for sock in list(self._server.connections):
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
        self._thread.join(timeout=5.0)

    def __enter__(self) -> "FrameServer":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
