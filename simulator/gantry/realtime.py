"""The simulated gantry in real time, behind a pseudo-terminal or a TCP socket.

The firmware runs on ``simpy.rt.RealtimeEnvironment(strict=False)`` (virtual seconds follow the
wall clock; a slow step makes it lag, never fail). Images are rendered in a worker process so the
firmware keeps answering while the physics runs (numba kernels hold the GIL). A reader thread
moves bytes from the port into a queue; a SimPy process drains that queue into the simulated
UART every ``poll_s``; another writes the device's bytes to the port.

* PTY: ``os.openpty()``; the slave is put in raw mode (no echo, no line discipline) and kept
  open, so any program can open its ``/dev/pts/N`` path with pyserial, close it and open it
  again. Bytes written while nobody listens are dropped when the pty buffer is full (a UART
  with nobody listening loses them too).
* TCP: a listening socket (127.0.0.1 unless told otherwise), one client at a time; a second
  client is refused (closed) while one is connected. ``pyserial`` reaches it as
  ``socket://127.0.0.1:PORT``.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import queue
import select
import signal
import socket
import threading
import tty
from collections.abc import Callable, Generator
from pathlib import Path
from typing import Any, Literal

import simpy
import simpy.rt

from simulator.gantry.config import GantryConfig
from simulator.gantry.data_server import FrameServer
from simulator.gantry.detector import render_job
from simulator.gantry.faults import FaultPlan
from simulator.gantry.firmware import Gantry
from simulator.gantry.virtual import build_gantry

log = logging.getLogger("crescent.gantry")


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

    def read_loop(self, out: queue.Queue[bytes], stop: threading.Event) -> None:
        while not stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(self.master, 4096)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                return
            if data:
                out.put(data)

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

    def read_loop(self, out: queue.Queue[bytes], stop: threading.Event) -> None:
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

    def _client_loop(self, conn: socket.socket, out: queue.Queue[bytes], stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                data = conn.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                break
            if not data:
                break
            out.put(data)
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


def serve(config: GantryConfig, *, mode: Literal["pty", "tcp"] = "pty", port: int = 0, bind: str = "127.0.0.1",
          seed: int = 0, faults: FaultPlan | None = None, data_dir: str | Path | None = None,
          event_log: str | Path | None = "auto", on_listening: Callable[[str], None] = print,
          stop: threading.Event | None = None, echo: Callable[[str], None] | None = None,
          poll_s: float = 0.001, run_for_s: float | None = None,
          data_channel: Literal["file", "tcp"] = "file", data_port: int = 0,
          data_host: str | None = None) -> Gantry:
    """Run the gantry in real time until ``stop`` is set (or ``run_for_s`` elapsed); returns the gantry.

    ``on_listening`` is called once with ``"pty /dev/pts/N"`` or ``"tcp HOST:PORT"``.
    ``data_channel="tcp"`` serves the frames on ``bind:data_port`` (0: any free
    port; :mod:`protocols.data_channel`) and names that URL in DEVICE_INFO,
    with ``data_host`` as the host part (default: the bind address, or this
    machine's name when bound to every interface).
    """
    stop = stop or threading.Event()
    # Images render in a worker process (started before any thread) so the firmware never stalls on physics.
    executor = RenderPool()
    env = simpy.rt.RealtimeEnvironment(factor=1.0, strict=False)
    gantry, endpoint = build_gantry(env, config, seed=seed, faults=faults, data_dir=data_dir, event_log=event_log,
                                    keep_log=False)
    gantry.log.echo = echo
    gantry.detector.executor = executor
    frames = (FrameServer(gantry.detector.data_dir, bind=bind, port=data_port, advertise_host=data_host)
              if data_channel == "tcp" else None)
    if frames is not None:
        gantry.detector.data_channel_url = frames.url
    _warm_up(executor, config, seed)
    io_port: _PtyPort | _TcpPort = _PtyPort() if mode == "pty" else _TcpPort(bind, port)
    inbox: queue.Queue[bytes] = queue.Queue()
    reader = threading.Thread(target=io_port.read_loop, args=(inbox, stop), daemon=True)
    reader.start()

    def pump_in() -> Generator[simpy.Event, None, None]:
        while True:
            yield env.timeout(poll_s)
            chunks = []
            while True:
                try:
                    chunks.append(inbox.get_nowait())
                except queue.Empty:
                    break
            if chunks:
                endpoint.write(b"".join(chunks))

    def pump_out() -> Generator[simpy.Event, None, None]:
        while True:
            data = yield endpoint.read()
            io_port.write(data)

    env.process(pump_in())
    env.process(pump_out())
    on_listening(io_port.where)
    log.info("data channel %s; event log %s", gantry.detector.data_channel, gantry.log.path)
    try:
        while not stop.is_set():
            if run_for_s is not None and env.now >= run_for_s:
                break
            env.run(until=env.now + 0.05)
    finally:
        stop.set()
        reader.join(timeout=1.0)
        io_port.close()
        if frames is not None:
            frames.close()
        gantry.log.close()
        executor.terminate()
    return gantry


class _Result:
    """Future-like view of a ``multiprocessing`` AsyncResult (``done()`` / ``result()``)."""

    def __init__(self, res: Any) -> None:
        self._res = res

    def done(self) -> bool:
        return bool(self._res.ready())

    def result(self) -> Any:
        return self._res.get(0)


#: Numba threads of the render worker: one, so that on a 2-core machine a core stays free for the
#: firmware's real-time loop (and a host on the same machine); a render is slower, the link never stalls.
RENDER_THREADS = 1


class RenderPool:
    """One spawned worker process for image rendering; :meth:`terminate` kills it at once."""

    def __init__(self) -> None:
        ctx = multiprocessing.get_context("spawn")
        self._pool = ctx.Pool(1, initializer=_init_worker)

    def submit(self, fn: Callable[..., Any], *args: Any) -> _Result:
        return _Result(self._pool.apply_async(fn, args))

    def terminate(self) -> None:
        self._pool.terminate()
        self._pool.join()


def _init_worker() -> None:
    """Pool initializer: limit numba's threads, and die with the gantry process."""
    os.environ["NUMBA_NUM_THREADS"] = str(RENDER_THREADS)  # read when numba is first imported here
    _die_with_parent()


def _die_with_parent() -> None:
    """On Linux, ask the kernel to SIGTERM this worker when the gantry process dies."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _warm_up(executor: RenderPool, config: GantryConfig, seed: int) -> None:
    """Render a tiny throw-away frame in the worker so numba compiles before the first exam.

    Cheap on purpose (16 x 20 pixels, open field): kernels compile per type, not per size.
    """
    from protocols.geometry import DetectorGeometry
    from protocols.records import ExposureRecord
    from simulator.gantry.config import PhantomConfig

    tiny = config.geometry.model_copy(update={"detector": DetectorGeometry(native_pitch_mm=0.05, binning=8, rows=16,
                                                                           cols=20)})
    rec = ExposureRecord(index=0, frame_id=0, planned_angle_deg=0.0, angle_start_deg=0.0, angle_end_deg=0.0, kvp=29.0,
                         mas=1.0, anode_filter=config.limits.anode_filters[0], window_start_s=0.0, window_end_s=0.05)
    executor.submit(render_job, tiny.model_dump_json(), PhantomConfig(name="uniform").model_dump_json(),
                    config.detector.model_dump_json(), seed, 40.0, rec.model_dump_json())
