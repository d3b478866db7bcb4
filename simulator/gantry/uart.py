"""The control serial line in virtual time: every byte charged its wire time, seeded line faults.

A :class:`UartChannel` is one direction of the line. :meth:`UartChannel.write` queues bytes
behind whatever is still on the wire; each chunk arrives in the receiver's inbox (a
``simpy.Store`` of ``bytes``) when its last stop bit has been sent, i.e. after
``len(chunk) * bits_per_byte / baud`` seconds (10 bits per byte at 8N1: 921600 baud moves
92160 bytes/s, 10.85 us per byte). Line faults (:class:`LineFaults`) corrupt, drop or add
bytes, or kill the line, from a seeded numpy generator.

:class:`SerialEndpoint` is one end of the full-duplex line (a pair of channels):
``write(data) -> None`` and ``read() -> simpy.Event`` whose value is the next chunk of bytes
that arrived for this end.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import simpy


@dataclass
class LineFaults:
    """Line fault sources of one direction (rates per bit / per byte)."""

    bit_error_rate: float = 0.0
    drop_rate: float = 0.0
    dead_until_s: float = -1.0  # the line carries nothing before this virtual time

    def active(self) -> bool:
        return self.bit_error_rate > 0.0 or self.drop_rate > 0.0


@dataclass
class LineStats:
    """Counters of one direction."""

    bytes_sent: int = 0
    bytes_delivered: int = 0
    bits_flipped: int = 0
    bytes_dropped: int = 0
    noise_bytes: int = 0


class UartChannel:
    """One direction of an asynchronous serial line (see module docstring)."""

    def __init__(self, env: simpy.Environment, byte_time_s: float, rng: np.random.Generator, name: str = "") -> None:
        self.env = env
        self.byte_time_s = byte_time_s
        self.rng = rng
        self.name = name
        self.inbox: simpy.Store = simpy.Store(env)
        self.sink: Callable[[bytes], None] | None = None  # if set, arrivals are handed to it instead of the inbox
        self.faults = LineFaults()
        self.stats = LineStats()
        self._busy_until = 0.0

    def write(self, data: bytes) -> None:
        """Put bytes on the wire after those already queued; they arrive after their wire time."""
        if not data:
            return
        start = max(self.env.now, self._busy_until)
        end = start + len(data) * self.byte_time_s
        self._busy_until = end
        self.stats.bytes_sent += len(data)
        if self.env.now < self.faults.dead_until_s:
            self.stats.bytes_dropped += len(data)
            return
        if self.faults.active():
            data = self._corrupt(data)
        if data:
            self._deliver_at(end, data)

    def inject_noise(self, n_bytes: int) -> None:
        """A noise burst: ``n_bytes`` random bytes appear on the line now (seeded)."""
        noise = self.rng.integers(0, 256, size=max(0, int(n_bytes)), dtype=np.uint8).tobytes()
        self.stats.noise_bytes += len(noise)
        start = max(self.env.now, self._busy_until)
        end = start + len(noise) * self.byte_time_s
        self._busy_until = end
        if noise:
            self._deliver_at(end, noise)

    def kill(self, duration_s: float) -> None:
        """Dead line: nothing written in the next ``duration_s`` seconds arrives."""
        self.faults.dead_until_s = max(self.faults.dead_until_s, self.env.now + duration_s)

    def arrive_stamped(self, data: bytes, at_s: float) -> None:
        """Real time: bytes that a real port delivered at device time ``at_s`` (<= now) arrive now.

        The real port already charged their wire time, so no UART delay is added; the line's faults
        (dead line, bit errors, drops) still apply. The sink is called as ``sink(data, at_s)`` so the
        link judges its watchdog on when the bytes arrived, not on when the control loop got to them
        (see :class:`simulator.gantry.linkio.SimLinkDriver`).
        """
        if not data:
            return
        self.stats.bytes_sent += len(data)
        if at_s < self.faults.dead_until_s:
            self.stats.bytes_dropped += len(data)
            return
        if self.faults.active():
            data = self._corrupt(data)
        if not data:
            return
        self.stats.bytes_delivered += len(data)
        if self.sink is not None:
            self.sink(data, at_s)  # type: ignore[call-arg]
        else:
            self.inbox.put(data)

    def _deliver_at(self, t: float, data: bytes) -> None:
        ev = self.env.timeout(max(0.0, t - self.env.now))
        ev.callbacks.append(lambda _ev: self._arrive(data))

    def _arrive(self, data: bytes) -> None:
        self.stats.bytes_delivered += len(data)
        if self.sink is not None:
            self.sink(data)
        else:
            self.inbox.put(data)

    def _corrupt(self, data: bytes) -> bytes:
        arr = np.frombuffer(data, dtype=np.uint8).copy()
        f = self.faults
        if f.bit_error_rate > 0.0:
            flips = self.rng.random((arr.size, 8)) < f.bit_error_rate
            if flips.any():
                masks = np.packbits(flips, axis=1, bitorder="little")[:, 0]
                arr ^= masks
                self.stats.bits_flipped += int(flips.sum())
        if f.drop_rate > 0.0:
            keep = self.rng.random(arr.size) >= f.drop_rate
            self.stats.bytes_dropped += int((~keep).sum())
            arr = arr[keep]
        return arr.tobytes()


class SerialEndpoint:
    """One end of the simulated full-duplex serial line.

    ``write(data)`` sends bytes toward the other end (charged their UART time);
    ``read()`` returns a ``simpy.Event`` that succeeds with the next chunk of
    ``bytes`` that arrived for this end.
    """

    def __init__(self, tx: UartChannel, rx: UartChannel) -> None:
        self.tx = tx
        self.rx = rx

    def write(self, data: bytes) -> None:
        """Send ``data`` to the other end."""
        self.tx.write(bytes(data))

    def read(self) -> simpy.Event:
        """Event whose value is the next chunk of bytes received (waits until some arrive)."""
        return self.rx.inbox.get()

    def on_receive(self, callback: Callable[[bytes], None]) -> None:
        """Alternative to :meth:`read`: call ``callback(data)`` at each arrival (in simulation time)."""
        self.rx.sink = callback


def serial_line(env: simpy.Environment, byte_time_s: float, seed: int) -> tuple[SerialEndpoint, SerialEndpoint]:
    """A full-duplex line: ``(host_end, device_end)``; each direction has its own seeded fault stream."""
    to_device = UartChannel(env, byte_time_s, np.random.default_rng([seed, 101]), "host->device")
    to_host = UartChannel(env, byte_time_s, np.random.default_rng([seed, 102]), "device->host")
    return SerialEndpoint(to_device, to_host), SerialEndpoint(to_host, to_device)
