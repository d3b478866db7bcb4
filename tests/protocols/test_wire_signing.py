"""Signed links, sans-IO (protocols/wire/signing.py, SPEC 2.6): verdicts, their order, and the link's use of them."""

from __future__ import annotations

import pickle

import pytest

from protocols.wire.catalogue import ErrorCode
from protocols.wire.errors import FrameError
from protocols.wire.framing import FLAG_ACK_REQ, FLAG_RESPONSE, FrameDecoder, build_frame, encode_frame, parse_frame
from protocols.wire.link import Answered, AuthRejected, Link, LinkConfig, Received, SendFailed
from protocols.wire.messages import Ack, GetStatus, Home, Nak
from protocols.wire.signing import (
    STALE_WINDOW,
    LinkKey,
    MemoryHighWater,
    Signer,
    Verdict,
    wall_clock_offset,
)

KEY = LinkKey(bytes(range(32)))
OTHER = LinkKey(bytes(range(1, 33)))


def frame(msg_id: int = 0x06, payload: bytes = b"", *, link_id: int = 1, ts: int = 1000, key: LinkKey = KEY,
          seq: int = 5, flags: int = FLAG_ACK_REQ, signed: bool = True):
    sig = (link_id, ts, key.tag) if signed else None
    return parse_frame(build_frame(msg_id, seq, flags, payload, signature=sig))


def test_verdicts_in_the_order_of_spec_2_6() -> None:
    dev = Signer(KEY, 0)
    assert dev.verify(frame(signed=False)) is Verdict.UNSIGNED
    assert dev.verify(frame(key=OTHER)) is Verdict.BAD_SIGNATURE
    assert dev.verify(frame(key=OTHER, ts=1)) is Verdict.BAD_SIGNATURE  # a bad tag wins over an old timestamp
    assert dev.verify(frame(link_id=0)) is Verdict.REPLAYED  # its own link id: a reflected frame
    assert dev.verify(frame(ts=1000)) is Verdict.OK
    assert dev.verify(frame(ts=1000)) is Verdict.REPLAYED
    assert dev.verify(frame(ts=999)) is Verdict.REPLAYED
    assert dev.verify(frame(ts=1001)) is Verdict.OK
    assert dev.marks == {1: 1001}
    dev.timestamp = 10 * STALE_WINDOW
    assert dev.verify(frame(link_id=7, ts=9 * STALE_WINDOW - 1)) is Verdict.STALE  # a new link id, too old
    assert dev.verify(frame(link_id=7, ts=9 * STALE_WINDOW)) is Verdict.OK  # exactly at the window: accepted
    assert dev.verify(frame(link_id=1, ts=1002)) is Verdict.OK  # a known link id is judged by its mark only
    assert {v: n for v, n in dev.rejected.items() if n} == {
        Verdict.UNSIGNED: 1, Verdict.BAD_SIGNATURE: 2, Verdict.REPLAYED: 3, Verdict.STALE: 1}


def test_a_changed_byte_anywhere_fails_the_tag() -> None:
    """Header, payload, link id and timestamp are all covered: every single-byte change is BAD_SIGNATURE."""
    from protocols.wire.crc import crc32c

    raw = build_frame(Home.ID, 9, FLAG_ACK_REQ, b"\x01\x02\x03", signature=(1, 123456, KEY.tag))
    body = raw[:-4]
    layout = {5, 6}  # the length field: the frame no longer parses (a LENGTH framing error)
    for i in range(len(body)):
        changed = bytearray(body)
        changed[i] ^= 0x01
        raw_changed = bytes(changed) + crc32c(bytes(changed)).to_bytes(4, "little")
        if i in layout:
            with pytest.raises(FrameError):
                parse_frame(raw_changed)
            continue
        assert Signer(KEY, 0).verify(parse_frame(raw_changed)) is Verdict.BAD_SIGNATURE, i


def test_timestamps_are_strictly_increasing_and_follow_the_clock() -> None:
    s = Signer(KEY, 1)
    assert [s.next_timestamp(0.0) for _ in range(3)] == [1, 2, 3]  # no clock: a counter
    s.clock_offset = wall_clock_offset(10.0, 1_767_225_600.0)  # at link time 10 s it is 2026-01-01
    assert s.next_timestamp(10.0) == (1_767_225_600 - 1_420_070_400) * 100_000
    assert s.next_timestamp(10.0) == (1_767_225_600 - 1_420_070_400) * 100_000 + 1  # same instant: still +1
    assert s.next_timestamp(9.0) > s.timestamp - 1  # a clock that goes back never makes a timestamp go back


def test_marks_survive_a_restart_through_the_store() -> None:
    store = MemoryHighWater()
    dev = Signer(KEY, 0, store=store)
    assert dev.verify(frame(ts=50), request=True) is Verdict.OK
    assert store.marks == {1: 50} and store.saves == 1  # saved before the request is handed up
    assert dev.verify(frame(ts=51, flags=0)) is Verdict.OK and store.saves == 1  # a stream frame: not saved at once
    restarted = Signer(KEY, 0, store=store)
    assert restarted.verify(frame(ts=50)) is Verdict.REPLAYED
    assert restarted.timestamp == 50


def test_key_is_never_shown() -> None:
    text = repr(KEY) + str(KEY)
    assert KEY._key.hex() not in text and "00010203" not in text and KEY.fingerprint() in text
    with pytest.raises(TypeError):
        pickle.dumps(KEY)
    secret = "ab" * 31 + "zz"
    with pytest.raises(ValueError) as exc:
        LinkKey.from_hex(secret, source="CRESCENT_LINK_KEY")
    assert "CRESCENT_LINK_KEY" in str(exc.value) and "ab" * 4 not in str(exc.value)
    with pytest.raises(ValueError, match="62 hex digits, expected 64"):
        LinkKey.from_hex("ab" * 31)


def _pair(key_host: LinkKey | None = KEY, key_dev: LinkKey | None = KEY) -> tuple[Link, Link]:
    cfg = LinkConfig(send_heartbeats=False)
    host = Link(cfg, initial_seq=0x100, signer=Signer(key_host, 1) if key_host else None)
    dev = Link(cfg, initial_seq=0x900, signer=Signer(key_dev, 0) if key_dev else None)
    return host, dev


def _run(host: Link, dev: Link, t: float, *, answer=lambda ev: Ack(acked_msg_id=ev.message.ID, detail=0),
         drop_to_dev: bool = False) -> list:
    seen = []
    for _ in range(10):
        out = host.data_to_send()
        if out and not drop_to_dev:
            dev.receive(out, t)
        for ev in dev.events():
            seen.append(ev)
            if isinstance(ev, Received) and ev.needs_answer:
                dev.answer(ev.seq, answer(ev), t)
        back = dev.data_to_send()
        if back:
            host.receive(back, t)
    return seen


def test_signed_request_answered_and_retransmission_resigned() -> None:
    host, dev = _pair()
    host.send(Home(), 0.0)
    first = host.data_to_send()
    dev.receive(first, 0.0)
    (rx,) = [e for e in dev.events() if isinstance(e, Received)]
    dev.answer(rx.seq, Ack(acked_msg_id=Home.ID, detail=0), 0.0)
    dev.data_to_send()  # the answer is lost
    host.tick(0.2)  # retransmission: same seq, a new timestamp
    again = host.data_to_send()
    assert again != first
    (f1,), (f2,) = FrameDecoder().feed(first), FrameDecoder().feed(again)
    assert f1.seq == f2.seq and f2.signature.timestamp > f1.signature.timestamp
    dev.receive(again, 0.2)
    assert [type(e).__name__ for e in dev.events()] == ["DuplicateAnswered"]  # de-duplicated, not executed again
    host.receive(dev.data_to_send(), 0.2)  # the cached answer, signed again: accepted
    assert [type(e) for e in host.events() if isinstance(e, Answered)] == [Answered]
    dev.receive(first, 0.3)  # the first copy replayed byte for byte
    (ev,) = dev.events()
    assert isinstance(ev, AuthRejected) and ev.verdict is Verdict.REPLAYED and ev.request


def test_signing_nak_never_completes_a_request() -> None:
    """A forged frame that reuses our seq gets a NAK from the device: it must not be taken as our answer."""
    host, dev = _pair()
    host.send(Home(), 0.0)
    real = host.data_to_send()
    (f,) = FrameDecoder().feed(real)
    forged = encode_frame(Home.ID, f.seq, FLAG_ACK_REQ, b"", signature=(1, 10**9, OTHER.tag))
    dev.receive(forged, 0.0)
    (ev,) = dev.events()
    assert isinstance(ev, AuthRejected) and ev.verdict is Verdict.BAD_SIGNATURE
    nak = dev.data_to_send()
    host.receive(nak, 0.0)
    assert not [e for e in host.events() if isinstance(e, Answered)] and host.busy
    assert host.stats.signing_naks == 1
    dev.receive(real, 0.01)  # the real request arrives and is answered
    (rx,) = [e for e in dev.events() if isinstance(e, Received)]
    dev.answer(rx.seq, Ack(acked_msg_id=Home.ID, detail=0), 0.01)
    host.receive(dev.data_to_send(), 0.01)
    (ans,) = [e for e in host.events() if isinstance(e, Answered)]
    assert ans.response.NAME == "ACK"


def test_wrong_key_fails_with_the_reason() -> None:
    host, dev = _pair(key_host=OTHER)
    host.send(GetStatus(), 0.0)
    t = 0.0
    for _ in range(8):
        _run(host, dev, t)
        t += 0.15
        host.tick(t)
    failed = [e for e in host.events() if isinstance(e, SendFailed)]
    assert failed and "no response" in failed[0].reason
    assert dev.signer.rejected[Verdict.BAD_SIGNATURE] == 6  # every attempt refused, nothing executed


def test_unkeyed_host_learns_the_device_wants_signatures() -> None:
    host, dev = _pair(key_host=None)
    host.send(GetStatus(), 0.0)
    t = 0.0
    for _ in range(8):
        _run(host, dev, t)
        t += 0.15
        host.tick(t)
    (failed,) = [e for e in host.events() if isinstance(e, SendFailed)]
    assert "NAK UNSIGNED" in failed.reason


def test_refused_frames_are_not_signs_of_life() -> None:
    """A replayed heartbeat must not keep the device's watchdog happy."""
    host, dev = _pair()
    host.send(GetStatus(), 0.0)
    _run(host, dev, 0.0)
    dev.events()
    captured = build_frame(GetStatus.ID, 77, FLAG_ACK_REQ, b"", signature=(1, 1, KEY.tag))  # an old timestamp
    from cobs import cobs

    dev.tick(0.4)
    dev.receive(b"\x00" + cobs.encode(captured + b"") + b"\x00", 0.45)
    dev.tick(0.6)
    names = [type(e).__name__ for e in dev.events()]
    assert "PeerLost" in names  # judged from the last *valid* frame (t = 0), the replay did not count


def test_nak_codes_are_the_catalogues() -> None:
    assert {v.value for v in Verdict if v is not Verdict.OK} == {
        int(ErrorCode.UNSIGNED), int(ErrorCode.BAD_SIGNATURE), int(ErrorCode.REPLAYED), int(ErrorCode.STALE)}
    assert (int(ErrorCode.UNSIGNED), int(ErrorCode.BAD_SIGNATURE), int(ErrorCode.REPLAYED), int(ErrorCode.STALE)) == (
        20, 21, 22, 23)
    assert Nak.ID == 0x04 and FLAG_RESPONSE == 0x02


def test_keyed_host_against_an_unkeyed_device_says_why() -> None:
    host, dev = _pair(key_dev=None)
    host.send(GetStatus(), 0.0)
    t = 0.0
    for _ in range(8):
        _run(host, dev, t, answer=lambda ev: __import__("protocols.wire.messages", fromlist=["x"]).Status(
            state=1, fault_code=0, interlocks=0, homed=0, arc_mdeg=0, force_dn=0, thickness_um=0, anode_heat_permille=0,
            armed_plan_id=0, exposures_done=0, detector_state=0, exposure_counter=0))
        t += 0.15
        host.tick(t)
    (failed,) = [e for e in host.events() if isinstance(e, SendFailed)]
    assert "failed our signature check (last: UNSIGNED)" in failed.reason, failed.reason
