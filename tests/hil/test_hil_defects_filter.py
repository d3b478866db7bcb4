"""The defect proxy's sans-IO filter: each defect changes exactly the bytes it claims to."""

from __future__ import annotations

import pytest

from hil.defects import DEFECTS, LATE_WATCHDOG_S, SLOW_ABORT_S, DefectFilter
from protocols.wire.catalogue import ErrorCode
from protocols.wire.framing import FLAG_ACK_REQ, FLAG_RESPONSE, FrameDecoder, encode_frame
from protocols.wire.messages import Abort, Ack, GetStatus, Nak, Status, Telemetry


def frames(data: bytes) -> list:  # type: ignore[type-arg]
    return FrameDecoder().feed(data)


def test_clean_filter_passes_bytes_unchanged() -> None:
    f = DefectFilter("none")
    req = encode_frame(GetStatus.ID, 5, FLAG_ACK_REQ, b"")
    f.from_host(req[:4], 0.0)
    f.from_host(req[4:], 0.001)
    assert f.due(f.to_device, 0.001) == req


def test_no_dedup_answer_drops_only_the_answer_to_a_retransmission() -> None:
    f = DefectFilter("no-dedup-answer")
    req = encode_frame(GetStatus.ID, 5, FLAG_ACK_REQ, b"")
    ans = encode_frame(Status.ID, 5, FLAG_RESPONSE, Status(state=1).pack())
    f.from_host(req, 0.0)
    f.from_device(ans, 0.01)
    f.from_host(req, 0.02)  # identical bytes again
    f.from_device(ans, 0.03)
    assert f.due(f.to_device, 1.0) == req + req
    assert f.due(f.to_host, 1.0) == ans  # the second answer is gone


def test_accept_bad_crc_repairs_corrupt_frames_only() -> None:
    f = DefectFilter("accept-bad-crc")
    good = encode_frame(GetStatus.ID, 9, FLAG_ACK_REQ, b"")
    bad = bytearray(good)
    bad[-2] ^= 0x01
    f.from_host(bytes(bad), 0.0)
    out = f.due(f.to_device, 0.0)
    assert out == good
    assert FrameDecoder().feed(bytes(bad))[0].kind.value == "crc"


def test_wrong_error_code_rewrites_out_of_range_naks() -> None:
    f = DefectFilter("wrong-error-code")
    nak = encode_frame(Nak.ID, 3, FLAG_RESPONSE, Nak(acked_msg_id=0x11, error_code=int(ErrorCode.OUT_OF_RANGE)).pack())
    other = encode_frame(Nak.ID, 4, FLAG_RESPONSE, Nak(acked_msg_id=0x16, error_code=int(ErrorCode.NOT_ARMED)).pack())
    f.from_device(nak + other, 0.0)
    got = frames(f.due(f.to_host, 0.0))
    assert [Nak.unpack(fr.payload).error_code for fr in got] == [ErrorCode.BAD_STATE, ErrorCode.NOT_ARMED]


def test_slow_abort_delays_device_frames_after_abort() -> None:
    f = DefectFilter("slow-abort")
    f.from_host(encode_frame(Abort.ID, 7, FLAG_ACK_REQ, Abort(reason=0).pack()), 1.0)
    ack = encode_frame(Ack.ID, 7, FLAG_RESPONSE, Ack(acked_msg_id=Abort.ID).pack())
    f.from_device(ack, 1.002)
    assert f.due(f.to_host, 1.1) == b""
    assert f.due(f.to_host, 1.002 + SLOW_ABORT_S) == ack


def test_slow_telemetry_drops_every_other_frame() -> None:
    f = DefectFilter("slow-telemetry")
    tel = [encode_frame(Telemetry.ID, k, 0, Telemetry(device_time_us=20_000 * k).pack()) for k in range(6)]
    f.from_device(b"".join(tel), 0.0)
    assert len(frames(f.due(f.to_host, 0.0))) == 3


def test_late_watchdog_feeds_the_device_for_a_while_after_the_host_stops() -> None:
    f = DefectFilter("late-watchdog")
    f.from_host(encode_frame(GetStatus.ID, 1, FLAG_ACK_REQ, b""), 0.0)
    f.due(f.to_device, 0.0)
    fakes = 0
    t = 0.0
    while t < 1.0:
        t += 0.01
        f.tick(t)
        fakes += len(frames(f.due(f.to_device, t)))
    # one keep-alive every 50 ms from 50 ms of silence until LATE_WATCHDOG_S
    assert fakes == pytest.approx((LATE_WATCHDOG_S - 0.05) / 0.05, abs=1.5)


def test_every_defect_names_a_check() -> None:
    from hil.conformance.checks import CHECKS

    assert set(DEFECTS.values()) <= set(CHECKS)
    with pytest.raises(ValueError, match="unknown defect"):
        DefectFilter("melted-anode")
