"""The sans-IO reliable link: exactly-once delivery over a lossy line, de-duplication, retries, watchdog."""

from __future__ import annotations

import numpy as np
import pytest

from lossy_channel import LossyChannel, VirtualWire
from protocols.wire.catalogue import ErrorCode
from protocols.wire.framing import FLAG_ACK_REQ, FLAG_SYN, FrameDecoder, encode_frame
from protocols.wire.link import (
    Answered,
    DuplicateAnswered,
    Link,
    LinkConfig,
    LinkError,
    PeerAlive,
    PeerLost,
    Received,
    Rejected,
    SendFailed,
    SenderState,
    StaleResponse,
)
from protocols.wire.messages import Ack, Fire, GetStatus, MoveArc, Nak

QUIET = LinkConfig(send_heartbeats=False)


def app_events(link: Link) -> list:
    """Events other than liveness notices."""
    return [e for e in link.events() if not isinstance(e, (PeerAlive, PeerLost))]


def pump(a: Link, b: Link, now: float) -> None:
    """Deliver everything both ways, instantly, until quiet."""
    for _ in range(10):
        da, db = a.data_to_send(), b.data_to_send()
        if not da and not db:
            return
        b.receive(da, now)
        a.receive(db, now)


def test_ten_thousand_commands_exactly_once_in_order_over_a_lossy_line() -> None:
    rng = np.random.default_rng(2026)
    cfg = LinkConfig(max_retries=25, send_heartbeats=False)
    host, dev = Link(cfg, initial_seq=40_000), Link(cfg)
    up = LossyChannel(rng, loss=0.10, duplication=0.05, ber=1e-3)
    down = LossyChannel(rng, loss=0.10, duplication=0.05, ber=1e-3)
    wire = VirtualWire(host, dev, up, down)
    n = 10_000
    executed: list[int] = []
    answered: list[int] = []
    failed: list[SendFailed] = []
    sent = 0
    while True:
        while sent < n and host.queued < 4:
            host.send(MoveArc(target_mdeg=sent - 5000), wire.now)
            sent += 1
        if not wire.step():
            break
        for ev in dev.events():
            if isinstance(ev, Received):
                executed.append(ev.message.target_mdeg + 5000)
                dev.answer(ev.seq, Ack(acked_msg_id=ev.message.ID, detail=ev.message.target_mdeg), wire.now)
        for ev in host.events():
            if isinstance(ev, Answered):
                answered.append(ev.response.detail + 5000)
            elif isinstance(ev, SendFailed):
                failed.append(ev)
    print(
        f"\n{n} commands: executed {len(executed)}, answered {len(answered)}, failed {len(failed)}; "
        f"line: {up.dropped + down.dropped} frames lost, {up.duplicated + down.duplicated} duplicated, "
        f"{up.flipped_bits + down.flipped_bits} bits flipped; {host.stats.retransmissions} retransmissions, "
        f"{dev.stats.duplicates_answered} duplicates answered from cache"
    )
    assert not failed
    assert executed == list(range(n))  # each exactly once, in order
    assert answered == list(range(n))
    # the line really was hostile
    assert up.dropped > 800 and down.duplicated > 300 and dev.stats.duplicates_answered > 1000
    assert dev.stats.frame_errors > 100


def test_retransmitted_fire_is_answered_from_cache_and_executed_once() -> None:
    host, dev = Link(QUIET), Link(QUIET)
    host.send(Fire(plan_id=3, digest=0xABCDEF01), 0.0)
    request = host.data_to_send()
    dev.receive(request, 0.0)
    (ev,) = app_events(dev)
    assert isinstance(ev, Received)
    dev.answer(ev.seq, Ack(acked_msg_id=Fire.ID, detail=1), 0.0)
    first_answer = dev.data_to_send()
    # the answer is lost; the host retransmits after the ACK timeout
    host.tick(QUIET.ack_timeout_s)
    retry = host.data_to_send()
    assert retry != request  # RETRANSMIT flag set
    dev.receive(retry, 0.2)
    (dup,) = app_events(dev)
    assert isinstance(dup, DuplicateAnswered) and dup.cached
    assert dev.data_to_send() == first_answer  # byte-identical cached answer
    # the identical original bytes again (line duplication) are not executed either
    dev.receive(request, 0.3)
    assert not any(isinstance(e, Received) for e in dev.events())
    host.receive(first_answer, 0.3)
    (done,) = app_events(host)
    assert isinstance(done, Answered) and done.attempts == 2


def test_send_fails_after_retries_and_next_request_proceeds() -> None:
    cfg = LinkConfig(ack_timeout_s=0.05, max_retries=3, send_heartbeats=False)
    host = Link(cfg)
    host.send(GetStatus(), 0.0)
    host.send(MoveArc(target_mdeg=1), 0.0)
    frames = 0
    t = 0.0
    failed = []
    while not failed:
        frames += len(FrameDecoder().feed(host.data_to_send()))
        t = host.next_deadline()
        host.tick(t)
        failed = [e for e in host.events() if isinstance(e, SendFailed)]
    assert failed[0].request.NAME == "GET_STATUS" and failed[0].attempts == 4
    assert frames == 4  # original + 3 retransmissions
    assert host.sender_state is SenderState.AWAITING  # MOVE_ARC is now in flight
    assert FrameDecoder().feed(host.data_to_send())[0].msg_id == MoveArc.ID


def test_peer_lost_after_silence_and_alive_again() -> None:
    cfg = LinkConfig(peer_timeout_s=0.5)
    a, b = Link(cfg), Link(cfg)
    a.tick(0.0)
    b.receive(a.data_to_send(), 0.0)
    assert any(isinstance(e, PeerAlive) for e in b.events())
    b.tick(0.499)
    assert not [e for e in b.events() if isinstance(e, PeerLost)]
    assert b.next_deadline() is not None and b.next_deadline() <= 0.5
    b.tick(0.5)
    lost = [e for e in b.events() if isinstance(e, PeerLost)]
    assert len(lost) == 1 and lost[0].silent_s == pytest.approx(0.5)
    b.tick(0.9)
    assert not [e for e in b.events() if isinstance(e, PeerLost)]  # reported once
    a.tick(1.0)
    b.receive(a.data_to_send(), 1.0)
    assert any(isinstance(e, PeerAlive) for e in b.events())


def test_heartbeats_are_sent_every_period() -> None:
    cfg = LinkConfig(heartbeat_period_s=0.1)
    a = Link(cfg)
    count = 0
    t = 0.0
    while t < 0.95:  # heartbeats due at 0.0, 0.1, ..., 0.9
        a.tick(t)
        count += len(FrameDecoder().feed(a.data_to_send()))
        t = a.next_deadline()
    assert count == 10


def test_bad_payload_is_nakked_by_the_link_not_delivered() -> None:
    dev = Link(QUIET)
    payload = (95_000).to_bytes(4, "little", signed=True) + (0).to_bytes(4, "little")
    dev.receive(encode_frame(MoveArc.ID, 9, FLAG_ACK_REQ | FLAG_SYN, payload), 0.0)
    (ev,) = app_events(dev)
    assert isinstance(ev, Rejected) and ev.error_code == ErrorCode.OUT_OF_RANGE
    (frame,) = FrameDecoder().feed(dev.data_to_send())
    nak = Nak.unpack(frame.payload)
    assert frame.seq == 9 and nak.error_code == ErrorCode.OUT_OF_RANGE and nak.acked_msg_id == MoveArc.ID


def test_unknown_message_and_wrong_version_are_nakked() -> None:
    dev = Link(QUIET)
    dev.receive(encode_frame(0xEE, 1, FLAG_ACK_REQ, b""), 0.0)
    dev.receive(encode_frame(GetStatus.ID, 2, FLAG_ACK_REQ, b"", version=9), 0.0)
    codes = [Nak.unpack(f.payload).error_code for f in FrameDecoder().feed(dev.data_to_send())]
    assert codes == [ErrorCode.UNKNOWN_MESSAGE, ErrorCode.VERSION_MISMATCH]


def test_new_session_with_reused_seq_is_executed() -> None:
    dev = Link(QUIET)
    for target in (1, 2):
        host = Link(QUIET, initial_seq=500)  # a restarted host picking the same first seq
        host.send(MoveArc(target_mdeg=target), 0.0)
        dev.receive(host.data_to_send(), 0.0)
        (ev,) = app_events(dev)
        assert isinstance(ev, Received) and ev.message.target_mdeg == target
        dev.answer(ev.seq, Ack(acked_msg_id=MoveArc.ID), 0.0)


def test_queue_is_bounded() -> None:
    host = Link(LinkConfig(max_queue=3, send_heartbeats=False))
    for i in range(4):  # one in flight + 3 queued
        host.send(MoveArc(target_mdeg=i), 0.0)
    with pytest.raises(LinkError, match="queue full"):
        host.send(MoveArc(target_mdeg=9), 0.0)


def test_stale_response_is_ignored_and_answer_misuse_is_refused() -> None:
    host, dev = Link(QUIET), Link(QUIET)
    host.receive(encode_frame(Ack.ID, 1234, 2, Ack(acked_msg_id=1).pack()), 0.0)
    assert isinstance(app_events(host)[0], StaleResponse)
    with pytest.raises(LinkError):
        dev.answer(77, Ack(acked_msg_id=1), 0.0)
    with pytest.raises(LinkError, match="response"):
        host.send(Ack(acked_msg_id=1), 0.0)
