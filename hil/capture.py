"""Traffic capture, sans-IO: every byte each way, cut into frames, with timestamps.

A :class:`Tap` sits beside a link (it never changes the bytes). The adapter
that moves bytes between host and device calls :meth:`Tap.record` with the
direction, the bytes and the time on its own clock (seconds: ``time.monotonic``
or SimPy virtual time). The tap adds ``clock_offset_s`` so that packet times are
wall-clock epoch seconds (``time.time() - time.monotonic()`` for a real-time
run; a fixed epoch for a virtual-time run, so its capture stays reproducible),
and stamps every packet with its own microsecond: frames cut from one read
get the read's time plus 1 us per earlier packet, so stamps are strictly
increasing in capture order and a pcap reader can tell them apart.
The tap cuts each direction's byte stream at the 0x00 frame delimiter, so one
:class:`Packet` holds one complete COBS frame *including* its delimiter -
exactly what one pcap record carries (see :mod:`hil.pcap`). The leading 0x00
a sender puts before a frame (and any idle fill) stays in front of that frame
in the same packet, so no byte is lost. Bytes that are not
a valid frame (line noise, a truncated frame) are kept as they came: the
capture is the line, not what a decoder made of it.

Example
-------
>>> from protocols.wire.framing import encode_frame
>>> tap = Tap()
>>> wire = encode_frame(0x06, 7, 0x01, b"")
>>> tap.record(HOST_TO_DEVICE, wire[:3], 0.010)
>>> tap.record(HOST_TO_DEVICE, wire[3:], 0.012)
>>> [(p.t_s, p.direction, p.data == wire) for p in tap.packets]
[(0.012, 0, True)]
>>> tap.record(HOST_TO_DEVICE, wire + wire, 0.012)  # two frames in one read: distinct stamps
>>> [p.t_s for p in tap.packets]
[0.012, 0.012001, 0.012002]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

#: Direction byte of the pcap pseudo-header.
HOST_TO_DEVICE = 0
DEVICE_TO_HOST = 1
DIRECTION_TEXT = {HOST_TO_DEVICE: "host->device", DEVICE_TO_HOST: "device->host"}

#: A run longer than this without a delimiter is flushed as one packet (bounded memory, bytes).
MAX_RUN = 4096


@dataclass(frozen=True, slots=True)
class Packet:
    """One captured unit: ``data`` is one frame with its 0x00 delimiter (or a flushed partial run).

    ``t_s`` is the time the last byte was seen, seconds (capture clock).
    """

    t_s: float
    direction: int
    data: bytes


@dataclass
class Tap:
    """Records both directions of a link as :class:`Packet` objects (sans-IO)."""

    packets: list[Packet] = field(default_factory=list)
    #: Added to every ``now`` passed to :meth:`record`: the epoch (s) of the recorder's clock zero.
    clock_offset_s: float = 0.0
    #: Called with each packet as it is cut (e.g. :class:`hil.pcap.PcapWriter`: the capture streamed to
    #: disk, a valid pcap at every moment); the Tap itself does no I/O.
    sink: Callable[[Packet], None] | None = None

    def __post_init__(self) -> None:
        self._last_us = -1
        self._partial: dict[int, bytearray] = {HOST_TO_DEVICE: bytearray(), DEVICE_TO_HOST: bytearray()}
        self._last_t: dict[int, float] = {HOST_TO_DEVICE: 0.0, DEVICE_TO_HOST: 0.0}

    def record(self, direction: int, data: bytes, now: float) -> None:
        """Note ``data`` seen travelling in ``direction`` at time ``now`` (s)."""
        if direction not in DIRECTION_TEXT:
            raise ValueError(f"direction must be 0 (host->device) or 1 (device->host), got {direction}")
        buf = self._partial[direction]
        self._last_t[direction] = now
        start = 0
        while True:
            end = data.find(b"\x00", start)
            if end < 0:
                break
            buf += data[start : end + 1]
            if buf.count(0) < len(buf):  # a run with content: one frame (idle 0x00 fill stays in front of it)
                self._emit(now, direction, buf)
            start = end + 1
        buf += data[start:]
        if len(buf) > MAX_RUN:
            self._emit(now, direction, buf)

    def _emit(self, now: float, direction: int, buf: bytearray) -> None:
        """Append one packet stamped ``now + clock_offset_s``, at least 1 us after the previous packet."""
        us = max(round((now + self.clock_offset_s) * 1e6), self._last_us + 1)
        self._last_us = us
        packet = Packet(us / 1e6, direction, bytes(buf))
        self.packets.append(packet)
        buf.clear()
        if self.sink is not None:
            self.sink(packet)

    def flush(self) -> None:
        """Emit any partial run (bytes after the last delimiter) as a final packet per direction."""
        for direction, buf in self._partial.items():
            if buf:
                self._emit(self._last_t[direction], direction, buf)

    def bytes_each_way(self) -> tuple[bytes, bytes]:
        """All captured bytes (host->device, device->host), in order, partial runs included."""
        out = {d: bytearray() for d in DIRECTION_TEXT}
        for p in self.packets:
            out[p.direction] += p.data
        for d, buf in self._partial.items():
            out[d] += buf
        return bytes(out[HOST_TO_DEVICE]), bytes(out[DEVICE_TO_HOST])


class SerialLike(Protocol):
    """The part of a pyserial port a :class:`TappedPort` needs."""

    def read(self, size: int = 1) -> bytes: ...

    def write(self, data: bytes) -> int | None: ...


class TappedPort:
    """Wrap a pyserial-like port (host side) so every byte read or written is recorded in ``tap``.

    ``clock`` returns the current time in seconds (e.g. ``time.monotonic``). Written
    bytes count as host->device, read bytes as device->host. Other attributes are
    passed through to the wrapped port.
    """

    def __init__(self, port: SerialLike, tap: Tap, clock: "ClockFn") -> None:
        self._port = port
        self.tap = tap
        self._clock = clock

    def write(self, data: bytes) -> int | None:
        n = self._port.write(data)
        self.tap.record(HOST_TO_DEVICE, bytes(data), self._clock())
        return n

    def read(self, size: int = 1) -> bytes:
        data = self._port.read(size)
        if data:
            self.tap.record(DEVICE_TO_HOST, bytes(data), self._clock())
        return data

    def __getattr__(self, name: str) -> object:
        return getattr(self._port, name)


class ClockFn(Protocol):
    def __call__(self) -> float: ...


class TappedEndpoint:
    """Wrap a SimPy serial endpoint (``write(bytes)``, ``read() -> simpy.Event``) so a :class:`Tap` sees every byte.

    ``env`` gives the virtual time (s). Used to capture exams run in virtual time.
    """

    def __init__(self, endpoint: "VirtualEndpoint", tap: Tap, env: "SimEnv") -> None:
        self._ep = endpoint
        self.tap = tap
        self._env = env

    def write(self, data: bytes) -> None:
        self.tap.record(HOST_TO_DEVICE, bytes(data), float(self._env.now))
        self._ep.write(data)

    def read(self) -> object:
        ev = self._ep.read()
        ev.callbacks.append(lambda e: self.tap.record(DEVICE_TO_HOST, bytes(e.value), float(self._env.now)))  # type: ignore[attr-defined]
        return ev


class VirtualEndpoint(Protocol):
    def write(self, data: bytes) -> None: ...

    def read(self) -> object: ...


class SimEnv(Protocol):
    @property
    def now(self) -> float: ...
