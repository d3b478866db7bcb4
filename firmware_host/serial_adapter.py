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
#: Niceness the link thread asks for (lower = sooner on the CPU): it carries the heartbeats the device's
#: 500 ms watchdog waits for. Only a privileged process gets a negative value; otherwise it keeps its own.
LINK_THREAD_NICE = -10


def prepare_for_real_time() -> None:
    """Keep garbage collection from stalling the link (the heartbeats the device's watchdog waits for).

    A full (generation 2) collection walks every live object with the interpreter lock held: in a host
    that has imported numpy, scipy and pydantic that is hundreds of thousands of objects, 0.2-0.4 s on a
    loaded 2-core machine, long enough with scheduling delays to miss a 500 ms watchdog. ``gc.freeze()``
    moves everything alive now (modules, classes, the exam's set-up) into a permanent generation that
    collections no longer walk; objects made later are collected as usual. Called when a port is opened.
    """
    import gc

    gc.collect()
    gc.freeze()


#: Real-time (SCHED_RR) priority the link thread asks for where allowed: it then runs as soon as its select
#: returns, ahead of every ordinary (CFS) task however loaded the machine; it blocks in select between
#: frames and never spins, and the kernel's real-time throttling keeps 5 % of each CPU for the rest.
LINK_THREAD_RT_PRIORITY = 10


def raise_calling_thread_nice() -> Callable[[], None]:
    """Set the calling thread's niceness to :data:`LINK_THREAD_NICE` if allowed; returns how to restore it."""
    import os

    try:
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        if before <= LINK_THREAD_NICE:
            return lambda: None
        os.setpriority(os.PRIO_PROCESS, tid, LINK_THREAD_NICE)
    except (AttributeError, OSError):
        return lambda: None

    def restore() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, tid, before)
        except OSError:
            pass
    return restore


def raise_link_thread_priority() -> str:
    """Ask real-time scheduling for the calling thread, else :data:`LINK_THREAD_NICE` (Linux: both are per
    thread); returns what was granted: ``"SCHED_RR"``, ``"nice -10"`` or ``"unchanged"``."""
    import os

    tid = threading.get_native_id()
    try:
        os.sched_setscheduler(tid, os.SCHED_RR, os.sched_param(LINK_THREAD_RT_PRIORITY))
        return "SCHED_RR"
    except (AttributeError, OSError):
        pass
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) > LINK_THREAD_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, LINK_THREAD_NICE)
        if os.getpriority(os.PRIO_PROCESS, tid) <= LINK_THREAD_NICE:
            return f"nice {LINK_THREAD_NICE}"
    except (AttributeError, OSError):  # unprivileged, or not Linux: the thread keeps the process's priority
        pass
    return "unchanged"


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
        self.link_priority = "unchanged"  # what the link thread was granted (raise_link_thread_priority)
        self._waiting: Any = None  # the runner the application thread waits for (woken only when it ends)
        prepare_for_real_time()
        self.thread = threading.Thread(target=self._loop, name=f"crescent-host {url}", daemon=True)
        self.thread.start()

    def now(self) -> float:
        return self.clock()

    def _loop(self) -> None:
        ctl = self.controller
        self.link_priority = raise_link_thread_priority()
        try:
            while not self._stop.is_set():
                with self.lock:
                    ctl.tick(self.clock())
                    out = ctl.data_to_send()
                    self._wake_if_done()
                if out:
                    self._write(out)
                data = self.port.read(max(1, self.port.in_waiting))
                with self.lock:
                    if data:
                        ctl.receive(data, self.clock())
                    out = ctl.data_to_send()
                    self._wake_if_done()
                if out:
                    self._write(out)
        except (serial.SerialException, OSError) as exc:
            self.error = exc
            with self.lock:
                self._changed.notify_all()

    def _wake_if_done(self) -> None:
        """Wake the application thread when the plan it waits for has ended (not at every frame: each
        wake-up takes the interpreter lock, and a waker descheduled while holding it on a loaded machine
        would hold up this thread's heartbeats)."""
        if self._waiting is not None and self._waiting.finished:
            self._changed.notify_all()

    def _write(self, data: bytes) -> None:
        self.port.write(data)

    def run(self, plan: Plan, name: str = "plan") -> Any:
        """Run ``plan`` to its end; Ctrl-C turns into an operator abort; return its result."""
        with self.lock:
            runner = self.controller.start(plan, self.clock(), name)
            self._waiting = runner
        # this thread, too, takes the interpreter lock when it wakes: at a low priority on a loaded machine it
        # could be descheduled holding it and hold up the link thread; it runs at the link's niceness meanwhile
        restore = raise_calling_thread_nice()
        try:
            return self._wait(runner)
        finally:
            restore()

    def _wait(self, runner: Any) -> Any:
        aborting = False
        while True:
            try:
                with self.lock:
                    while not runner.finished and self.error is None:
                        self._changed.wait(0.5)  # woken at the end; the timeout only re-checks
                    break
            except KeyboardInterrupt as exc:
                if aborting:
                    raise
                aborting = True
                why = str(exc.args[0]) if exc.args else "Ctrl-C"  # e.g. KeyboardInterrupt("SIGTERM")
                with self.lock:
                    self.controller.request_abort(f"operator abort ({why})", self.clock())
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
