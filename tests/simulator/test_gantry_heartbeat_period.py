"""The device adopts HELLO.heartbeat_period_ms for its own HEARTBEATs (SPEC.md section 2.3), in virtual time.

Before a session it sends at the default period (100 ms); each HELLO sets the period from then on.
The intervals are read from the device clock each HEARTBEAT carries (``uptime_ms``) and from the
virtual time the host received them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simpy

from protocols.wire import messages as M
from protocols.wire.framing import FrameDecoder
from simulator.gantry import load_config, start_virtual_gantry
from simulator.gantry.client import LinkClient, hello
from simulator.gantry.config import small_detector

DEFAULT_PERIOD_MS = 100


def _beats_between(beats: list[tuple[float, int]], t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
    """Intervals (ms) between consecutive HEARTBEATs received in [t0, t1): by arrival, by the device clock."""
    sel = [(t, up) for t, up in beats if t0 <= t < t1]
    arrival = np.diff([t for t, _ in sel]) * 1000.0
    device = np.diff([up for _, up in sel]).astype(np.float64)
    return arrival, device


def test_the_device_sends_heartbeats_at_the_period_each_hello_sets(tmp_path) -> None:
    cfg = load_config().with_overrides(geometry={"detector": small_detector(8, 10, 8).model_dump()},
                                       phantom={"name": "uniform"})
    env = simpy.Environment()
    _gantry, ep = start_virtual_gantry(env, cfg, seed=3, data_dir=tmp_path, event_log=None)
    host = LinkClient(env, ep)
    beats: list[tuple[float, int]] = []
    decoder = FrameDecoder()
    host_sink = ep.rx.sink

    def tap(data: bytes, *rest: Any) -> None:
        for f in decoder.feed(data):
            if not isinstance(f, Exception) and f.msg_id == M.Heartbeat.ID:
                beats.append((env.now, M.Heartbeat.unpack(f.payload).uptime_ms))
        host_sink(data, *rest)

    ep.rx.sink = tap
    marks: dict[str, float] = {}

    def script():  # type: ignore[no-untyped-def]
        # no session yet: the default period. (The virtual device's link clock starts with the first frame it
        # receives, so a request refused NO_SESSION starts its heartbeats; the real-time loop clocks it from boot.)
        refused = yield host.request(M.GetStatus())
        assert refused.NAME == "NAK"
        marks["first"] = env.now
        yield env.timeout(1.0)
        marks["hello50"] = env.now
        reply = yield host.request(hello(session_id=1, heartbeat_period_ms=50, watchdog_timeout_ms=500))
        assert reply.NAME == "HELLO_REPLY"
        yield env.timeout(1.0)
        marks["hello200"] = env.now
        reply = yield host.request(hello(session_id=2, heartbeat_period_ms=200, watchdog_timeout_ms=1000))
        assert reply.NAME == "HELLO_REPLY"
        yield env.timeout(2.0)
        marks["end"] = env.now

    env.run(until=env.process(script()))
    settle = 0.25  # the beat in flight when a HELLO is handled may still come at the old period
    for (t0, t1), period in (((marks["first"], marks["hello50"]), DEFAULT_PERIOD_MS),
                             ((marks["hello50"] + settle, marks["hello200"]), 50),
                             ((marks["hello200"] + settle, marks["end"]), 200)):
        arrival, device = _beats_between(beats, t0, t1)
        assert device.size >= 3, f"only {device.size + 1} HEARTBEATs in {t0:.2f}..{t1:.2f} s"
        assert np.all(np.abs(device - period) <= 1.0), f"period {period} ms: device-clock intervals {device.tolist()}"
        assert np.all(np.abs(arrival - period) <= 1.0), f"period {period} ms: arrival intervals {arrival.tolist()}"
