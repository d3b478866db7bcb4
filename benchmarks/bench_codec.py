"""Codec benchmark: frames per second for encode + decode of a TELEMETRY frame, and the ratio
against pymavlink encoding and decoding a message of similar size, measured in the same process.

Crescent's TELEMETRY payload is 31 bytes; the MAVLink v2 message used for comparison is
GLOBAL_POSITION_INT (28-byte payload), a telemetry message of the same role.

It also reports the cost of signing (protocols/SPEC.md 2.6): the same round trip with every frame
signed on encode (HMAC-SHA256 truncated to 8 bytes, link id, u48 timestamp) and verified on
decode (tag, replay window) -- what a signed link adds per frame.

    python benchmarks/bench_codec.py [--frames N]
"""

from __future__ import annotations

import argparse
import time

from protocols.wire.framing import FrameDecoder, encode_frame
from protocols.wire.messages import Telemetry
from protocols.wire.signing import LinkKey, Signer, Verdict


def crescent_round_trips(n: int, signed: bool = False) -> float:
    """Seconds for n encode+decode round trips of a telemetry frame through the full stack (``signed``:
    signed by one end's :class:`Signer` and verified by the other's)."""
    key = LinkKey(bytes(range(32)))
    tx, rx = Signer(key, 0), Signer(key, 1)
    decoder = FrameDecoder()
    msg = Telemetry(device_time_us=12_345_678, arc_mdeg=-3250, arc_speed_mdeg_s=3571, force_dn=1187,
                    thickness_um=52340, kv_ckv=2905, ma_dma=1000, anode_heat_permille=42, state=4,
                    interlocks=63, detector_state=2)
    t0 = time.perf_counter()
    for i in range(n):
        msg.arc_mdeg = i & 0xFFFF
        wire = encode_frame(Telemetry.ID, i & 0xFFFF, 0, msg.pack(), signature=tx.signature(0.0) if signed else None)
        (frame,) = decoder.feed(wire)
        if signed and rx.verify(frame) is not Verdict.OK:
            raise AssertionError("a signed frame did not verify")
        out = Telemetry.unpack(frame.payload)
    t1 = time.perf_counter()
    assert out.arc_mdeg == (n - 1) & 0xFFFF
    return t1 - t0


def mavlink_round_trips(n: int) -> float:
    """Seconds for n encode+decode round trips of GLOBAL_POSITION_INT with pymavlink (MAVLink 2)."""
    from pymavlink.dialects.v20 import common as mavlink2

    tx = mavlink2.MAVLink(None, srcSystem=1, srcComponent=1)
    rx = mavlink2.MAVLink(None)
    t0 = time.perf_counter()
    for i in range(n):
        msg = tx.global_position_int_encode(i, 473_977_418, 85_455_939, 500_000, 10_000, 100, -50, 0, 9000)
        buf = msg.pack(tx)
        out = rx.parse_buffer(buf)
    t1 = time.perf_counter()
    assert out and out[-1].time_boot_ms == n - 1
    return t1 - t0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=100_000)
    args = parser.parse_args()
    n = args.frames
    crescent_round_trips(1000)  # warm-up
    crescent_round_trips(1000, signed=True)
    u_times, s_times = [], []
    for _ in range(3):  # interleaved, best of 3
        u_times.append(crescent_round_trips(n))
        s_times.append(crescent_round_trips(n, signed=True))
    u, sg = min(u_times), min(s_times)
    print(f"crescent TELEMETRY unsigned encode+decode: {n / u:,.0f} frames/s ({u / n * 1e6:.2f} us/frame)")
    print(f"crescent TELEMETRY signed   encode+decode: {n / sg:,.0f} frames/s ({sg / n * 1e6:.2f} us/frame)")
    print(f"cost of signing: +{(sg - u) / n * 1e6:.2f} us per frame (sign + verify), x{sg / u:.2f}; "
          f"+15 bytes per frame on the wire")
    try:
        mavlink_round_trips(1000)
    except ImportError:
        print("pymavlink not installed (pip install '.[bench]'); Crescent figure only")
        t = crescent_round_trips(n)
        print(f"crescent telemetry encode+decode: {n / t:,.0f} frames/s")
        return 0
    # interleave the two runs so machine load hits both alike; take the best of 3
    c_times, m_times = [], []
    for _ in range(3):
        c_times.append(crescent_round_trips(n))
        m_times.append(mavlink_round_trips(n))
    c, m = min(c_times), min(m_times)
    print(f"crescent TELEMETRY (31 B payload) encode+decode: {n / c:,.0f} frames/s ({c / n * 1e6:.2f} us/frame)")
    print(f"pymavlink GLOBAL_POSITION_INT (28 B) encode+decode: {n / m:,.0f} frames/s ({m / n * 1e6:.2f} us/frame)")
    print(f"ratio crescent / pymavlink: {m / c:.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
