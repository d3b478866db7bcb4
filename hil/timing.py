"""Timing report of a capture (``crescent timing``): round trips and telemetry jitter.

* Command round trip: from the first transmission of a request to its first
  response, per message type, in milliseconds, with a text histogram
  (log-spaced bins) and percentiles. Retransmitted requests are counted
  once; their attempts are reported.
* Telemetry period: intervals between consecutive TELEMETRY frames on the
  capture clock and on the device clock (``device_time_us``), in ms, with
  jitter as the standard deviation and the largest deviation from the
  median period.

Example
-------
>>> rep = timing_report([])
>>> rep.round_trips, rep.telemetry is None
({}, True)
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hil.capture import DEVICE_TO_HOST, HOST_TO_DEVICE
from hil.decode import WireItem

#: Histogram bin edges, ms (log-spaced, 0.1 ms .. 10 s).
BIN_EDGES_MS: tuple[float, ...] = (0.0, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, math.inf)


@dataclass
class Stats:
    """Summary of a sample of durations, ms."""

    n: int
    mean_ms: float
    std_ms: float
    min_ms: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    histogram: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, values_ms: Sequence[float]) -> "Stats":
        v = np.asarray(values_ms, dtype=float)
        hist, _ = np.histogram(v, bins=np.asarray(BIN_EDGES_MS))
        p50, p95, p99 = np.percentile(v, [50, 95, 99])
        return cls(len(v), float(v.mean()), float(v.std()), float(v.min()), float(p50), float(p95), float(p99), float(v.max()), hist.tolist())


@dataclass
class TelemetryStats:
    """Telemetry period on the capture clock and the device clock, ms; jitter = max |period - median|."""

    capture: Stats
    device: Stats
    capture_jitter_ms: float
    device_jitter_ms: float


@dataclass
class TimingReport:
    """Round trips per message name and telemetry statistics (None without two TELEMETRY frames)."""

    round_trips: dict[str, Stats]
    attempts: dict[str, int]
    telemetry: TelemetryStats | None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "bin_edges_ms": [e if math.isfinite(e) else None for e in BIN_EDGES_MS],
            "round_trips": {k: v.__dict__ for k, v in self.round_trips.items()},
            "attempts": self.attempts,
            "telemetry": None,
        }
        if self.telemetry is not None:
            t = self.telemetry
            out["telemetry"] = {
                "capture": t.capture.__dict__,
                "device": t.device.__dict__,
                "capture_jitter_ms": t.capture_jitter_ms,
                "device_jitter_ms": t.device_jitter_ms,
            }
        return out

    def csv(self) -> str:
        """One row per message type (and telemetry), columns = statistics."""
        buf = io.StringIO()
        w = csv.writer(buf)
        cols = ["n", "mean_ms", "std_ms", "min_ms", "p50_ms", "p95_ms", "p99_ms", "max_ms"]
        w.writerow(["series", *cols])
        for name, s in sorted(self.round_trips.items()):
            w.writerow([f"rtt:{name}", *(getattr(s, c) for c in cols)])
        if self.telemetry is not None:
            w.writerow(["telemetry:capture", *(getattr(self.telemetry.capture, c) for c in cols)])
            w.writerow(["telemetry:device", *(getattr(self.telemetry.device, c) for c in cols)])
        return buf.getvalue()

    def text(self) -> str:
        lines = ["command round trip (first transmission -> first response), ms:"]
        if not self.round_trips:
            lines.append("  (no answered requests)")
        for name, s in sorted(self.round_trips.items()):
            lines.append(
                f"  {name:18s} n={s.n:5d} mean={s.mean_ms:8.3f} p50={s.p50_ms:8.3f} p95={s.p95_ms:8.3f} "
                f"max={s.max_ms:8.3f} attempts={self.attempts.get(name, s.n)}"
            )
            for lo, hi, count in zip(BIN_EDGES_MS[:-1], BIN_EDGES_MS[1:], s.histogram):
                if count:
                    bar = "#" * max(1, round(40 * count / s.n))
                    lines.append(f"      [{lo:7g}, {hi:7g}) {count:5d} {bar}")
        t = self.telemetry
        if t is None:
            lines.append("telemetry: fewer than two TELEMETRY frames")
        else:
            for label, s, j in (("capture clock", t.capture, t.capture_jitter_ms), ("device clock", t.device, t.device_jitter_ms)):
                lines.append(
                    f"telemetry period ({label}): n={s.n} median={s.p50_ms:.3f} ms mean={s.mean_ms:.3f} "
                    f"std={s.std_ms:.3f} min={s.min_ms:.3f} max={s.max_ms:.3f} jitter(max |dev|)={j:.3f} ms"
                )
        return "\n".join(lines)


def round_trips_ms(items: Sequence[WireItem]) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Round-trip times (ms) and total transmissions per request name, both directions."""
    pending: dict[tuple[int, int], tuple[WireItem, int]] = {}
    rtts: dict[str, list[float]] = {}
    attempts: dict[str, int] = {}
    for it in items:
        if it.frame is None:
            continue
        if it.is_response:
            key = (HOST_TO_DEVICE if it.direction == DEVICE_TO_HOST else DEVICE_TO_HOST, it.frame.seq)
            hit = pending.pop(key, None)
            if hit is not None:
                req, n = hit
                rtts.setdefault(req.name, []).append(round((it.t_s - req.t_s) * 1e6) / 1e3)  # whole us
                attempts[req.name] = attempts.get(req.name, 0) + n
        elif it.frame.ack_req:
            key = (it.direction, it.frame.seq)
            prev = pending.get(key)
            if prev is not None and prev[0].frame.payload == it.frame.payload:  # type: ignore[union-attr]
                pending[key] = (prev[0], prev[1] + 1)
            else:
                pending[key] = (it, 1)
    return rtts, attempts


def timing_report(items: Sequence[WireItem]) -> TimingReport:
    """Build the :class:`TimingReport` of decoded capture ``items``."""
    rtts, attempts = round_trips_ms(items)
    tel = [it for it in items if it.message is not None and it.message.NAME == "TELEMETRY"]
    telemetry = None
    if len(tel) >= 2:
        cap = np.round(np.diff([it.t_s for it in tel]) * 1e6) / 1e3
        dev = np.diff([it.message.device_time_us for it in tel]) / 1000.0  # type: ignore[union-attr]
        telemetry = TelemetryStats(
            Stats.of(cap),
            Stats.of(dev),
            float(np.max(np.abs(cap - np.median(cap)))),
            float(np.max(np.abs(dev - np.median(dev)))),
        )
    return TimingReport({k: Stats.of(v) for k, v in rtts.items()}, attempts, telemetry)
