"""Decoder fuzzing: 100,000 random, truncated and bit-flipped frames give only defined errors, no hang,
bounded memory, and the next good frame is always recovered."""

from __future__ import annotations

import numpy as np

from protocols.wire.errors import FrameError
from protocols.wire.framing import MAX_ENCODED, Frame, FrameDecoder, encode_frame
from protocols.wire.link import Link, LinkConfig, Received
from protocols.wire.messages import BY_ID, BY_NAME, GetStatus
from protocols.wire.vectors import VECTORS

GOOD = encode_frame(GetStatus.ID, 0x4242, 1, b"")
SAMPLES = [v.wire() for v in VECTORS if v.message]


def mutate(rng: np.random.Generator, i: int) -> bytes:
    base = bytearray(SAMPLES[i % len(SAMPLES)])
    kind = i % 4
    if kind == 0:  # random bytes of random length (may contain delimiters)
        return rng.integers(0, 256, rng.integers(1, 900), dtype=np.uint8).tobytes()
    if kind == 1:  # truncated
        return bytes(base[: rng.integers(0, len(base))])
    if kind == 2:  # bit flips
        for _ in range(rng.integers(1, 6)):
            j = rng.integers(0, len(base))
            base[j] ^= 1 << int(rng.integers(0, 8))
        return bytes(base)
    # valid COBS, random content with a random msg id and header: exercises payload decoding
    payload = rng.integers(0, 256, rng.integers(0, 60), dtype=np.uint8).tobytes()
    return encode_frame(int(rng.integers(0, 256)), int(rng.integers(0, 65536)), int(rng.integers(0, 256)), payload)


def test_decoder_fuzz_100k() -> None:
    rng = np.random.default_rng(20261123)
    dec = FrameDecoder()
    recovered = 0
    for i in range(100_000):
        junk = mutate(rng, i)
        out = dec.feed(junk)
        for item in out:
            assert isinstance(item, (Frame, FrameError))
            if isinstance(item, Frame) and item.msg_id in BY_ID:
                try:
                    BY_ID[item.msg_id].unpack(item.payload)
                except Exception as exc:  # only PayloadError is defined
                    assert type(exc).__name__ == "PayloadError", exc
        assert dec.buffered <= MAX_ENCODED
        # the next good frame is always recovered (a leading delimiter flushes what junk left behind)
        out = dec.feed(b"\x00" + GOOD)
        frames = [f for f in out if isinstance(f, Frame)]
        assert frames and frames[-1].seq == 0x4242 and frames[-1].msg_id == GetStatus.ID
        recovered += 1
    assert recovered == 100_000


def test_link_survives_fuzz_and_answers_or_drops() -> None:
    rng = np.random.default_rng(7)
    link = Link(LinkConfig(send_heartbeats=False))
    now = 0.0
    for i in range(20_000):
        now += 0.001
        link.receive(mutate(rng, i), now)
        for ev in link.events():
            if isinstance(ev, Received) and ev.needs_answer:
                link.answer(ev.seq, BY_NAME["ACK"](acked_msg_id=ev.message.ID), now)
        link.data_to_send()
    link.receive(b"\x00" + encode_frame(GetStatus.ID, 0x7777, 1, b""), now)
    assert any(isinstance(e, Received) and e.seq == 0x7777 for e in link.events())


def test_overlong_run_is_bounded_and_reported_once() -> None:
    dec = FrameDecoder()
    errors = []
    for _ in range(100):
        errors += dec.feed(b"\x55" * 1000)
        assert dec.buffered <= MAX_ENCODED
    assert len(errors) == 1
    out = dec.feed(b"\x00" + GOOD)
    assert isinstance(out[-1], Frame)
