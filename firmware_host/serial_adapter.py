"""Serial adapter: runs the sans-IO controller on a real port through pyserial, in wall-clock time.

Any pyserial URL works (``/dev/ttyUSB0``, ``/dev/pts/N``, ``socket://127.0.0.1:5555``,
``rfc2217://host:port``, ``loop://``). One background thread owns the port and
the controller: it reads what arrives, feeds it with ``time.monotonic()``
readings, writes what the controller wants sent and ticks it at its deadlines,
so heartbeats keep flowing between exams. The application thread submits
plans and waits for them; Ctrl-C while waiting becomes an operator abort (the
plan's handler sends ABORT and releases as configured). This module is the
only place the host reads the wall clock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import serial

from firmware_host.controller import Controller
from firmware_host.errors import HostError
from firmware_host.plans import Plan
from protocols.wire.signing import wall_clock_offset

#: Longest the pump blocks in one read, s (bounds the reaction time to the controller's deadlines).
POLL_S = 0.005


class PortError(HostError):
    """The port could not be opened or failed."""


class SerialAdapter:
    """Binds a :class:`Controller` to a pyserial port (see module docstring)."""

    def __init__(self, url: str, controller: Controller, baudrate: int = 921600,
                 clock: Callable[[], float] = time.monotonic) -> None:
        try:
            self.port = serial.serial_for_url(url, baudrate=baudrate, timeout=POLL_S, write_timeout=2.0)
        except (serial.SerialException, ValueError, OSError) as exc:
            raise PortError(f"cannot open port {url!r}: {exc}") from exc
        self.url = url
        self.controller = controller
        self.clock = clock
        signer = controller.link.signer
        if signer is not None and not signer.clock_offset:  # signing timestamps: wall-clock time (SPEC 2.6)
            signer.clock_offset = wall_clock_offset(clock(), time.time())
        self.lock = threading.RLock()
        self._changed = threading.Condition(self.lock)
        self._stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, name=f"crescent-host {url}", daemon=True)
        self.thread.start()

    def now(self) -> float:
        return self.clock()

    def _loop(self) -> None:
        ctl = self.controller
        try:
            while not self._stop.is_set():
                with self.lock:
                    ctl.tick(self.clock())
                    out = ctl.data_to_send()
                if out:
                    self._write(out)
                data = self.port.read(max(1, self.port.in_waiting))
                with self.lock:
                    if data:
                        ctl.receive(data, self.clock())
                    out = ctl.data_to_send()
                    self._changed.notify_all()
                if out:
                    self._write(out)
        except (serial.SerialException, OSError) as exc:
            self.error = exc
            with self.lock:
                self._changed.notify_all()

    def _write(self, data: bytes) -> None:
        self.port.write(data)

    def run(self, plan: Plan, name: str = "plan") -> Any:
        """Run ``plan`` to its end; Ctrl-C turns into an operator abort; return its result."""
        with self.lock:
            runner = self.controller.start(plan, self.clock(), name)
        aborting = False
        while True:
            try:
                with self.lock:
                    while not runner.finished and self.error is None:
                        self._changed.wait(0.1)
                    break
            except KeyboardInterrupt:
                if aborting:
                    raise
                aborting = True
                with self.lock:
                    self.controller.request_abort("operator abort (Ctrl-C)", self.clock())
        if self.error is not None and not runner.finished:
            raise PortError(f"port {self.url} failed: {self.error}")
        return runner.outcome()

    def abort(self, reason: str = "operator abort") -> None:
        with self.lock:
            self.controller.request_abort(reason, self.clock())

    def send_aux(self, message: Any) -> None:
        with self.lock:
            self.controller.send_aux(message, self.clock())

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2.0)
        try:
            self.port.close()
        except Exception:  # closing a port that already failed
            pass
