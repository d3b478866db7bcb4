"""A seeded lossy, duplicating, bit-flipping channel and a virtual-time loop for two links."""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field

import numpy as np

from protocols.wire.link import Link


@dataclass
class LossyChannel:
    """One direction of a line. Each frame (run up to a 0x00) is dropped with ``loss``,
    sent twice with ``duplication``, and every bit flips with probability ``ber``."""

    rng: np.random.Generator
    loss: float = 0.0
    duplication: float = 0.0
    ber: float = 0.0
    latency_s: float = 0.002
    dropped: int = 0
    duplicated: int = 0
    flipped_bits: int = 0

    def transmit(self, data: bytes) -> bytes:
        out = bytearray()
        for run in data.split(b"\x00"):
            if not run:
                continue
            frame = b"\x00" + run + b"\x00"
            if self.rng.random() < self.loss:
                self.dropped += 1
                continue
            copies = 2 if self.rng.random() < self.duplication else 1
            self.duplicated += copies - 1
            for _ in range(copies):
                out += self._flip(frame)
        return bytes(out)

    def _flip(self, frame: bytes) -> bytes:
        if self.ber <= 0:
            return frame
        bits = np.unpackbits(np.frombuffer(frame, dtype=np.uint8))
        mask = self.rng.random(bits.size) < self.ber
        n = int(mask.sum())
        if n == 0:
            return frame
        self.flipped_bits += n
        bits ^= mask.astype(np.uint8)
        return np.packbits(bits).tobytes()


@dataclass(order=True)
class _Delivery:
    time_s: float
    order: int
    target: str = field(compare=False)
    data: bytes = field(compare=False)


class VirtualWire:
    """Runs two links against each other in virtual time through two channels."""

    def __init__(self, a: Link, b: Link, a_to_b: LossyChannel, b_to_a: LossyChannel) -> None:
        self.links = {"a": a, "b": b}
        self.channels = {"a": a_to_b, "b": b_to_a}
        self.now = 0.0
        self._heap: list[_Delivery] = []
        self._order = 0

    def flush(self) -> None:
        """Move bytes each link wants to send onto its channel."""
        for name, link in self.links.items():
            data = link.data_to_send()
            if data:
                other = "b" if name == "a" else "a"
                out = self.channels[name].transmit(data)
                if out:
                    self._order += 1
                    heapq.heappush(self._heap, _Delivery(self.now + self.channels[name].latency_s, self._order, other, out))

    def step(self) -> bool:
        """Advance to the next delivery or deadline; False when nothing is left to do."""
        self.flush()
        times = [d for d in (self.links["a"].next_deadline(), self.links["b"].next_deadline()) if d is not None]
        if self._heap:
            times.append(self._heap[0].time_s)
        if not times:
            return False
        self.now = max(self.now, min(times))
        while self._heap and self._heap[0].time_s <= self.now:
            d = heapq.heappop(self._heap)
            self.links[d.target].receive(d.data, self.now)
        for link in self.links.values():
            link.tick(self.now)
        self.flush()
        return True
