"""The defect proxy's sans-IO filter: each defect changes exactly the bytes it claims to."""

from __future__ import annotations

import pytest

from hil.defects import DEFECTS, LATE_WATCHDOG_S, PROXY_SEQ_BASE, SLOW_ABORT_S, DefectFilter
from protocols.wire.catalogue import DeviceState, ErrorCode, SimInput
from protocols.wire.framing import FLAG_ACK_REQ, FLAG_RESPONSE, FLAG_RETRANSMIT, FLAG_SYN, FrameDecoder, encode_frame
from protocols.wire.messages import (
    Abort, Ack, GetStatus, Hello, HelloReply, MoveArc, Nak, ResetFault, SimSetInput, StateChanged, Status, Telemetry,
)


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


def _state_changed(new: DeviceState, seq: int) -> bytes:
    """A STATE_CHANGED event from the device (it needs an ACK, like every event)."""
    return encode_frame(StateChanged.ID, seq, FLAG_ACK_REQ, StateChanged(new_state=int(new)).pack())


def _sim_input(seq: int, which: SimInput, value: int) -> bytes:
    return encode_frame(SimSetInput.ID, seq, FLAG_ACK_REQ, SimSetInput(input=int(which), value=value).pack())


def test_estop_lost_in_hold_rewrites_only_the_press_made_in_safe_hold() -> None:
    f = DefectFilter("estop-lost-in-hold")
    # before the device has reported any state, and in IDLE: the press goes through as it is
    first = _sim_input(10, SimInput.ESTOP_RELEASED, 0)
    f.from_host(first, 0.0)
    idle = encode_frame(Status.ID, 11, FLAG_RESPONSE, Status(state=int(DeviceState.IDLE)).pack())
    f.from_device(idle, 0.01)
    in_idle = _sim_input(12, SimInput.ESTOP_RELEASED, 0)
    f.from_host(in_idle, 0.02)
    assert f.due(f.to_device, 0.02) == first + in_idle
    # the device reports SAFE_HOLD (the watchdog): now the press, and only the press, is changed
    hold = _state_changed(DeviceState.SAFE_HOLD, 40)
    f.from_device(hold, 0.03)
    assert f.due(f.to_host, 0.03) == idle + hold  # the device's frames are never changed
    press = _sim_input(13, SimInput.ESTOP_RELEASED, 0)
    release = _sim_input(14, SimInput.ESTOP_RELEASED, 1)
    door = _sim_input(15, SimInput.DOOR_CLOSED, 0)
    status = encode_frame(GetStatus.ID, 16, FLAG_ACK_REQ, b"")
    f.from_host(press + release + door + status, 0.04)
    got = f.due(f.to_device, 0.04)
    lost = _sim_input(13, SimInput.ESTOP_RELEASED, 1)  # "released": the press never reaches the latch
    assert got == lost + release + door + status
    (was,), (now,) = frames(press), frames(lost)
    assert (now.msg_id, now.seq, now.flags, now.version) == (was.msg_id, was.seq, was.flags, was.version)
    assert [k for k, (x, y) in enumerate(zip(was.payload, now.payload)) if x != y] == [1]  # the value byte
    # back in IDLE, a press passes unchanged again
    f.from_device(_state_changed(DeviceState.IDLE, 41), 0.05)
    again = _sim_input(17, SimInput.ESTOP_RELEASED, 0)
    f.from_host(again, 0.06)
    assert f.due(f.to_device, 0.06) == again


def test_copy_in_flight_nak_refuses_only_copies_that_overtake_the_answer() -> None:
    f = DefectFilter("copy-in-flight-nak")
    move = MoveArc(target_mdeg=1000, speed_mdeg_s=5000).pack()
    req = encode_frame(MoveArc.ID, 20, FLAG_ACK_REQ, move)
    copy = encode_frame(MoveArc.ID, 20, FLAG_ACK_REQ | FLAG_RETRANSMIT, move)
    other = encode_frame(GetStatus.ID, 21, FLAG_ACK_REQ, b"")
    f.from_host(req + copy + req + other, 0.0)
    # the original and another request go to the device; both copies of the unanswered original do not
    assert f.due(f.to_device, 0.0) == req + other
    naks = frames(f.due(f.to_host, 0.0))
    assert len(naks) == 2
    for nak in naks:
        assert (nak.msg_id, nak.seq, nak.flags) == (Nak.ID, 20, FLAG_RESPONSE)
        body = Nak.unpack(nak.payload)
        assert (body.acked_msg_id, body.error_code, body.detail) == (MoveArc.ID, ErrorCode.BUSY, 0)
    # the device answers; its answers pass unchanged, and a copy sent after the answer reaches the device
    ack = encode_frame(Ack.ID, 20, FLAG_RESPONSE, Ack(acked_msg_id=MoveArc.ID).pack())
    st = encode_frame(Status.ID, 21, FLAG_RESPONSE, Status(state=int(DeviceState.BUSY)).pack())
    f.from_device(ack + st, 0.01)
    assert f.due(f.to_host, 0.01) == ack + st
    f.from_host(copy, 0.02)
    assert f.due(f.to_device, 0.02) == copy
    assert f.due(f.to_host, 0.02) == b""
    f.from_device(ack, 0.03)  # the device answers the copy from its cache
    assert f.due(f.to_host, 0.03) == ack


def test_hello_clears_fault_adds_its_own_reset_fault_in_fault_only() -> None:
    f = DefectFilter("hello-clears-fault")
    hello = Hello(protocol_version=2, min_version=2, session_id=7, heartbeat_period_ms=100, watchdog_timeout_ms=500)
    idle_reply = encode_frame(HelloReply.ID, 30, FLAG_RESPONSE, HelloReply(state=int(DeviceState.IDLE)).pack())
    # HELLO in IDLE: passed on, nothing added
    h1 = encode_frame(Hello.ID, 30, FLAG_ACK_REQ | FLAG_SYN, hello.pack())
    f.from_host(h1, 0.0)
    assert f.due(f.to_device, 0.0) == h1
    f.from_device(idle_reply, 0.01)
    assert f.due(f.to_host, 0.01) == idle_reply
    # the device latches a fault: a HELLO now is passed on, followed by the proxy's own RESET_FAULT 0
    fault = _state_changed(DeviceState.FAULT, 50)
    f.from_device(fault, 0.02)
    assert f.due(f.to_host, 0.02) == fault
    h2 = encode_frame(Hello.ID, 31, FLAG_ACK_REQ | FLAG_SYN, hello.pack())
    f.from_host(h2, 0.03)
    reset = encode_frame(ResetFault.ID, PROXY_SEQ_BASE, FLAG_ACK_REQ, ResetFault(fault_code=0).pack())
    assert f.due(f.to_device, 0.03) == h2 + reset
    # the device's answer to the RESET_FAULT is swallowed; its other frames pass unchanged
    reply = encode_frame(HelloReply.ID, 31, FLAG_RESPONSE, HelloReply(state=int(DeviceState.FAULT)).pack())
    reset_ack = encode_frame(Ack.ID, PROXY_SEQ_BASE, FLAG_RESPONSE, Ack(acked_msg_id=ResetFault.ID).pack())
    to_idle = _state_changed(DeviceState.IDLE, 51)
    f.from_device(reply + reset_ack + to_idle, 0.04)
    assert f.due(f.to_host, 0.04) == reply + to_idle
    # in IDLE again: HELLO adds nothing; in FAULT again, the next own request has the next sequence number
    h3 = encode_frame(Hello.ID, 32, FLAG_ACK_REQ | FLAG_SYN, hello.pack())
    f.from_host(h3, 0.05)
    assert f.due(f.to_device, 0.05) == h3
    f.from_device(_state_changed(DeviceState.FAULT, 52), 0.06)
    h4 = encode_frame(Hello.ID, 33, FLAG_ACK_REQ | FLAG_SYN, hello.pack())
    f.from_host(h4, 0.07)
    assert frames(f.due(f.to_device, 0.07))[1].seq == PROXY_SEQ_BASE + 1
