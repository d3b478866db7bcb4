"""The simulated gantry in real time, behind a pseudo-terminal or a TCP socket.

The firmware runs on ``simpy.rt.RealtimeEnvironment(strict=False)``: device time is anchored to
the wall clock (``env_start + monotonic() - real_start``), so after any stall it catches up and
never drifts. Images are formed in a separate worker process
(:mod:`simulator.gantry.render_worker`; ``CRESCENT_RENDER_WORKERS`` asks for more) that also
writes the frame files, so the control loop
keeps its period (telemetry, heartbeats, the sweep) while the physics runs.

Input: an I/O thread reads the port and stamps every chunk with the monotonic time it was read
(if the thread itself was not running for a while, the frames it then finds are stamped evenly
across that blind interval: :func:`stamp_chunk`).
The loop feeds each chunk to the link at that arrival time (converted to device time), every
``poll_s`` and, crucially, just before any link timer runs (``SimLinkDriver.before_tick``), so the
peer watchdog is judged on when the host's frames ARRIVED, never on when a late loop got round to
them: a stalled device never calls a live host lost.

Overrun: a monitor compares device time with the wall clock; when the loop has fallen behind by
more than :data:`OVERRUN_LIMIT_S` it reports FAULT ``REALTIME_OVERRUN`` (not latched: a host notes
it and goes on), and beyond :data:`OVERRUN_LATCH_S` latched if the arm, paddle or X-rays were under
way (see :meth:`simulator.gantry.firmware.Gantry.realtime_overrun`); once per episode.

Parent death (``exit_with_parent``): the gantry child of ``crescent acquire`` watches its parent;
when it dies the gantry keeps running until it is safe (the watchdog has stopped X-rays and motion
and the paddle released, every readout of the last plan written to the data channel, bounded by
:data:`PARENT_EXIT_GRACE_S`) and then exits, leaving its data directory and event log for
``crescent exam recover``. ``leave`` asks for the same exit while the parent lives on (``crescent
acquire`` sets it with SIGHUP when it leaves after a stop, without waiting for the paddle's park).

* PTY: ``os.openpty()``; the slave is put in raw mode (no echo, no line discipline) and kept
  open, so any program can open its ``/dev/pts/N`` path with pyserial, close it and open it
  again. Bytes written while nobody listens are dropped when the pty buffer is full (a UART
  with nobody listening loses them too).
* TCP: a listening socket (127.0.0.1 unless told otherwise), one client at a time; a second
  client is refused (closed) while one is connected. ``pyserial`` reaches it as
  ``socket://127.0.0.1:PORT``.
"""

from __future__ import annotations

import collections
import errno
import gc
import logging
import os
import queue
import secrets
import select
import socket
import ssl
import threading
import time
import tty
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Literal

import simpy
import simpy.rt

from simulator.gantry.config import GantryConfig
from simulator.gantry.data_server import FrameServer
from simulator.gantry.faults import FaultPlan
from simulator.gantry.firmware import Gantry
from protocols.wire.signing import LinkKey, wall_clock_offset
from simulator.gantry.render_worker import RENDER_THREADS, RenderPool, render_workers
from simulator.gantry.signing_state import FileHighWater, default_state_path
from simulator.gantry.uart import UartChannel
from simulator.gantry.virtual import build_gantry

__all__ = ["ArrivalFeed", "OVERRUN_LATCH_S", "OVERRUN_LIMIT_S", "PARENT_EXIT_GRACE_S", "RENDER_THREADS", "RenderPool", "serve"]

#: The control loop may lag the wall clock by this much before the device reports REALTIME_OVERRUN
#: (not latched), s: half the shortest watchdog a host asks for (500 ms).
OVERRUN_LIMIT_S = 0.25
#: A lag beyond this while the arm, paddle or X-rays are under way latches REALTIME_OVERRUN, s: the
#: device reacted to its inputs later than two watchdog periods, so its motion and exposure timing are void.
OVERRUN_LATCH_S = 1.0
#: Niceness the real-time gantry asks for (lower = sooner on the CPU). Only a privileged process gets a
#: negative value; otherwise the gantry runs at its inherited priority (logged). Its render workers
#: set their own, lower, priority (:data:`simulator.gantry.render_worker.RENDER_NICE`).
LOOP_NICE = -10
#: After its parent died, the longest the gantry waits for its safe state before exiting anyway, s.
PARENT_EXIT_GRACE_S = 30.0

#: A chunk read by the I/O thread: (time.monotonic() when read, bytes).
Chunk = tuple[float, bytes]

log = logging.getLogger("crescent.gantry")


#: The I/O thread polls at least this often; a longer gap between its polls means this process was
#: not running (starved by the OS, or the GIL), s.
BLIND_GAP_S = 0.1


def stamp_chunk(data: bytes, last_poll: float, now: float, blind_gap_s: float = BLIND_GAP_S) -> list[Chunk]:
    """Arrival stamps for ``data`` read at ``now`` by an I/O thread whose previous poll was at ``last_poll``.

    Normally the whole chunk arrived at ``now``. If the thread itself was not running for longer than
    ``blind_gap_s`` (the process was starved), the frames in the chunk arrived at unknown times during
    that blind interval: they are split at the frame delimiter (0x00) and stamped evenly across
    ``(last_poll, now]``, so that a host whose heartbeats queued up while the device was blind is not
    declared lost (a host that was really silent left nothing to read, and is). Monotonic seconds.
    """
    if now - last_poll <= blind_gap_s or b"\x00" not in data:
        return [(now, data)]
    parts = [p + b"\x00" for p in data.split(b"\x00")]
    parts[-1] = parts[-1][:-1]
    if not parts[-1]:
        parts.pop()
    n = len(parts)
    return [(last_poll + (now - last_poll) * (i + 1) / n, p) for i, p in enumerate(parts)]


class _PtyPort:
    """Master side of a pseudo-terminal pair."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        os.set_blocking(self.master, False)
        self.path = os.ttyname(self.slave)
        self.dropped = 0

    @property
    def where(self) -> str:
        return f"pty {self.path}"

    def read_loop(self, out: queue.Queue[Chunk], stop: threading.Event) -> None:
        last_poll = time.monotonic()
        while not stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                last_poll = time.monotonic()
                continue
            try:
                data = os.read(self.master, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            now = time.monotonic()
            if data:
                for chunk in stamp_chunk(data, last_poll, now):
                    out.put(chunk)
            last_poll = now

    def write(self, data: bytes) -> None:
        try:
            n = os.write(self.master, data)
            self.dropped += len(data) - n
        except BlockingIOError:
            self.dropped += len(data)
        except OSError:
            self.dropped += len(data)

    def close(self) -> None:
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass


class _TcpPort:
    """A listening socket serving one client at a time."""

    def __init__(self, bind: str, port: int) -> None:
        self.server = socket.create_server((bind, port))
        self.server.settimeout(0.1)
        host, port = self.server.getsockname()[:2]
        self.host, self.port = host, port
        self.client: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"tcp {self.host}:{self.port}"

    def read_loop(self, out: queue.Queue[Chunk], stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                conn, addr = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                busy = self.client is not None
            if busy:
                log.info("refusing %s:%s: a client is connected", *addr[:2])
                conn.close()
                continue
            conn.settimeout(0.1)
            with self._lock:
                self.client = conn
            log.info("client %s:%s connected", *addr[:2])
            threading.Thread(target=self._client_loop, args=(conn, out, stop), daemon=True).start()

    def _client_loop(self, conn: socket.socket, out: queue.Queue[Chunk], stop: threading.Event) -> None:
        last_poll = time.monotonic()
        while not stop.is_set():
            try:
                data = conn.recv(4096)
            except TimeoutError:
                last_poll = time.monotonic()
                continue
            except OSError:
                break
            if not data:
                break
            now = time.monotonic()
            for chunk in stamp_chunk(data, last_poll, now, blind_gap_s=2 * BLIND_GAP_S):  # recv waits 0.1 s
                out.put(chunk)
            last_poll = now
        with self._lock:
            if self.client is conn:
                self.client = None
        conn.close()
        log.info("client disconnected")

    def write(self, data: bytes) -> None:
        with self._lock:
            conn = self.client
        if conn is None:
            return
        try:
            conn.sendall(data)
        except OSError:
            pass

    def close(self) -> None:
        with self._lock:
            if self.client is not None:
                self.client.close()
                self.client = None
        self.server.close()


#: ``mlockall`` flags (Linux ``sys/mman.h``): lock what is mapped now and later, each page once it is touched.
MCL_CURRENT, MCL_FUTURE, MCL_ONFAULT = 1, 2, 4


def _raise_priority() -> None:
    """Ask for :data:`LOOP_NICE` so the control loop is scheduled before ordinary work, and lock the
    process's memory (``mlockall``: no page-fault stalls when the machine reclaims memory); no error if
    either is refused (unprivileged).

    The lock is ``MCL_ONFAULT`` (Linux 4.4 and later): a page is locked once the process has touched it, so a
    page the loop uses is never evicted, while the untouched parts of its libraries and thread stacks are never
    read in. Without it ``mlockall`` faulted in everything mapped (numba's LLVM, scipy, every thread's stack):
    about 530 MB for an idle gantry instead of 150 MB, and every later allocation pre-faulted in full. A kernel
    without ``MCL_ONFAULT`` (EINVAL) gets the plain lock."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        locked = libc.mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT) == 0
        if not locked and ctypes.get_errno() == errno.EINVAL:
            locked = libc.mlockall(MCL_CURRENT | MCL_FUTURE) == 0
        log.info("real-time loop memory %s", "locked (on fault)" if locked else "not locked")
    except (OSError, AttributeError):
        pass
    try:
        current = os.getpriority(os.PRIO_PROCESS, 0)
        if current > LOOP_NICE:
            os.setpriority(os.PRIO_PROCESS, 0, LOOP_NICE)
        log.info("real-time loop at nice %d", os.getpriority(os.PRIO_PROCESS, 0))
    except (AttributeError, OSError) as exc:
        log.info("real-time loop keeps its priority (%s)", exc)


class ArrivalFeed:
    """Chunks an I/O thread read (``inbox`` of ``(time.monotonic(), bytes)``), fed to the device's link at
    their arrival times.

    :meth:`feed_arrived` feeds, in order, every chunk whose arrival (``to_device_time(mono)``) is not
    later than the device's present (``now()``), each stamped with its own arrival time, through
    ``rx.arrive_stamped`` (line faults apply). The gantry calls it every poll and, through
    ``SimLinkDriver.before_tick``, before every link timer: so when a late control loop reaches the
    watchdog deadline, the host's frames that arrived before it have already been counted.
    """

    def __init__(self, rx: UartChannel, now: Callable[[], float], to_device_time: Callable[[float], float],
                 inbox: queue.Queue[Chunk] | None = None) -> None:
        self.rx = rx
        self.now = now
        self.to_device_time = to_device_time
        self.inbox: queue.Queue[Chunk] = inbox if inbox is not None else queue.Queue()
        self._held: list[tuple[float, bytes]] = []

    def feed_arrived(self) -> None:
        while True:
            try:
                mono, data = self.inbox.get_nowait()
            except queue.Empty:
                break
            self._held.append((self.to_device_time(mono), data))
        if not self._held:
            return
        now = self.now()
        n = 0
        for at, data in self._held:
            if at > now:
                break
            n += 1
        ready, self._held = self._held[:n], self._held[n:]
        for at, data in ready:
            self.rx.arrive_stamped(data, at)


def serve(config: GantryConfig, *, mode: Literal["pty", "tcp"] = "pty", port: int = 0, bind: str = "127.0.0.1",
          seed: int = 0, faults: FaultPlan | None = None, data_dir: str | Path | None = None,
          event_log: str | Path | None = "auto", on_listening: Callable[[str], None] = print,
          stop: threading.Event | None = None, echo: Callable[[str], None] | None = None,
          poll_s: float = 0.001, run_for_s: float | None = None,
          data_channel: Literal["file", "tcp"] = "file", data_port: int = 0,
          data_host: str | None = None, exit_with_parent: bool = False,
          on_gantry: Callable[[Gantry], None] | None = None, link_key: LinkKey | None = None,
          signing_state: str | Path | None = None, data_tls: ssl.SSLContext | None = None,
          leave: threading.Event | None = None) -> Gantry:
    """Run the gantry in real time until ``stop`` is set (or ``run_for_s`` elapsed); returns the gantry.

    ``on_listening`` is called once with ``"pty /dev/pts/N"`` or ``"tcp HOST:PORT"``.
    ``data_channel="tcp"`` serves the frames on ``bind:data_port`` (0: any free
    port; :mod:`protocols.data_channel`) and names that URL in DEVICE_INFO,
    with ``data_host`` as the host part (default: the bind address, or this
    machine's name when bound to every interface). ``exit_with_parent``: stop
    once the parent process has died and the device is safe (see module docstring); ``leave``: once it is
    set, the same (the host has left: exit as soon as the device is safe, at most :data:`PARENT_EXIT_GRACE_S`).
    ``on_gantry`` is called with the gantry before it starts listening (tests, benchmarks).
    ``link_key``: sign the link (SPEC 2.6), timestamps from the wall clock, high-water marks kept in
    ``signing_state`` (default :func:`simulator.gantry.signing_state.default_state_path`). The TCP
    data channel always requires the session's token; ``data_tls`` (a server SSLContext with the
    certificate) serves it as ``tls://``.
    """
    stop = stop or threading.Event()
    parent = os.getppid() if exit_with_parent else None
    _raise_priority()
    # Images render in worker processes (started before any thread) so the firmware never stalls on physics.
    executor = RenderPool(render_workers())
    env = simpy.rt.RealtimeEnvironment(factor=1.0, strict=False)
    high_water = None
    if link_key is not None:
        high_water = FileHighWater(signing_state or default_state_path(config.identity.serial_number))
        high_water.load()  # a corrupt state file is an error now, not at the first frame
    gantry, endpoint = build_gantry(env, config, seed=seed, faults=faults, data_dir=data_dir, event_log=event_log,
                                    keep_log=False, link_key=link_key, high_water=high_water)
    gantry.random_bytes = secrets.token_bytes  # data-channel nonces: unpredictable in real time
    if link_key is not None:
        log.info("signed link: key id %s, signing state %s", link_key.fingerprint(), high_water.path)
    gantry.log.echo = echo
    gantry.detector.executor = executor
    frames = (FrameServer(gantry.detector.data_dir, bind=bind, port=data_port, advertise_host=data_host,
                          token=lambda: gantry.data_token, tls=data_tls)
              if data_channel == "tcp" else None)
    if frames is not None:
        gantry.detector.data_channel_url = frames.url
    executor.warm_up(config, seed)
    if on_gantry is not None:
        on_gantry(gantry)
    # everything built so far (modules, the gantry, the phantom's set-up) goes to a generation that garbage
    # collection no longer walks: a full collection would otherwise hold the interpreter for a few hundred ms
    # on a loaded machine, delaying the reader thread's arrival stamps and the loop (see host serial adapter)
    gc.collect()
    gc.freeze()
    io_port: _PtyPort | _TcpPort = _PtyPort() if mode == "pty" else _TcpPort(bind, port)
    inbox: queue.Queue[Chunk] = queue.Queue()
    reader = threading.Thread(target=io_port.read_loop, args=(inbox, stop), daemon=True)
    reader.start()

    def device_time(mono: float) -> float:
        return env.env_start + (mono - env.real_start) / env.factor

    feed = ArrivalFeed(gantry.line.rx, lambda: env.now, device_time, inbox)
    gantry._driver.before_tick = feed.feed_arrived
    overrun = {"level": 0, "max_lag_s": 0.0}
    lags: collections.deque[float] = collections.deque(maxlen=500_000)  # loop lag at every poll, s

    def pump_in() -> Generator[simpy.Event, None, None]:
        while True:
            yield env.timeout(poll_s)
            feed.feed_arrived()
            if gantry.loop_stall_request_s > 0.0:  # injected stall (SIM_INJECT_FAULT REALTIME_OVERRUN)
                stall_s, gantry.loop_stall_request_s = gantry.loop_stall_request_s, 0.0
                time.sleep(stall_s)  # the reader thread keeps stamping arrivals meanwhile
                feed.feed_arrived()
            lag = device_time(time.monotonic()) - env.now
            lags.append(lag)
            overrun["max_lag_s"] = max(overrun["max_lag_s"], lag)
            if lag > OVERRUN_LIMIT_S and overrun["level"] < 1:
                overrun["level"] = 1
                gantry.realtime_overrun(lag, latch=False)
            if lag > OVERRUN_LATCH_S and overrun["level"] < 2:
                overrun["level"] = 2
                gantry.realtime_overrun(lag, latch=True)
            elif lag < OVERRUN_LIMIT_S / 2:
                overrun["level"] = 0  # caught up: the next episode is reported again

    def pump_out() -> Generator[simpy.Event, None, None]:
        while True:
            data = yield endpoint.read()
            io_port.write(data)

    env.process(pump_in())
    env.process(pump_out())
    on_listening(io_port.where)
    log.info("data channel %s; event log %s", gantry.detector.data_channel, gantry.log.path)
    import protocols.exams.motion  # noqa: F401  (imported by HOME: not on the loop's time)

    env.sync()  # device time 0 = now: the set-up above is not a lag of the control loop
    if gantry.link.signer is not None:  # signing time = wall clock (env.now 0 is now)
        gantry.signing_clock_offset = gantry.link.signer.clock_offset = wall_clock_offset(env.now, time.time())
    orphaned_at: float | None = None
    try:
        while not stop.is_set():
            if run_for_s is not None and env.now >= run_for_s:
                break
            env.run(until=env.now + 0.05)
            if parent is not None and orphaned_at is None and os.getppid() != parent:
                orphaned_at = env.now
                gantry.log.write(gantry.now_us(), "parent_gone", parent_pid=parent)
                log.info("parent process %d died: exiting once the device is safe", parent)
            if leave is not None and orphaned_at is None and leave.is_set():
                orphaned_at = env.now
                gantry.log.write(gantry.now_us(), "host_left")
                log.info("the host has left: exiting once the device is safe")
            if orphaned_at is not None and (gantry.is_safe() or env.now - orphaned_at > PARENT_EXIT_GRACE_S):
                gantry.log.write(gantry.now_us(), "exit_orphaned", safe=gantry.is_safe(),
                                 waited_ms=round((env.now - orphaned_at) * 1000.0, 3))
                break
    finally:
        stop.set()
        gantry.max_lag_s = overrun["max_lag_s"]
        if lags:  # how late the loop ran its 1 ms polls behind the wall clock (bench_realtime.py reads it)
            ms = sorted(x * 1000.0 for x in lags)
            gantry.log.write(gantry.now_us(), "loop_lag", polls=len(ms), p50_ms=round(ms[len(ms) // 2], 3),
                             p99_ms=round(ms[min(len(ms) - 1, int(len(ms) * 0.99))], 3), max_ms=round(ms[-1], 3))
        reader.join(timeout=1.0)
        io_port.close()
        if frames is not None:
            frames.close()
        if gantry.link.signer is not None:
            gantry.link.signer.flush()
        gantry.log.close()
        executor.terminate()
    return gantry
