"""The receiving link in any interleaving of what arrives and what the application answers (issue 13, defect 2).

A device died with ``LinkError: no request with seq N awaits an answer`` when a burst of
retransmitted copies, heartbeats and a new session's SYN arrived at once after it had stalled:
the SYN cleared the duplicate memory before the application answered the request handed up just
before it. The stateful test below drives one device-side :class:`Link` with arbitrary bursts of
new requests, exact copies (with and without RETRANSMIT), requests reusing a seq with other
content, SYNs, heartbeats, stale responses and corrupted bytes, interleaved with the application's
answers (in any order, late, after copies arrived) and its own events, and checks every step
against an independent model of SPEC.md section 2.2 (remember the last ``dedup_window`` accepted
requests by (seq, msg_id, payload); a copy is answered from the cache, never handed up again; SYN
clears the memory). The last test runs the same machine against two defective links (the
defect-2 link, and one that hands up a copy arriving before its original was answered) and
expects it to fail.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from protocols.wire.framing import FLAG_ACK_REQ, FLAG_RESPONSE, FLAG_RETRANSMIT, FLAG_SYN, FrameDecoder, encode_frame
from protocols.wire.link import DuplicateAnswered, Link, LinkConfig, LinkError, Received
from protocols.wire.messages import Ack, Fire, GetStatus, Heartbeat, MoveArc, StateChanged

QUIET = LinkConfig(send_heartbeats=False)


def frames(data: bytes) -> list:
    return [f for f in FrameDecoder().feed(data) if not isinstance(f, Exception) and hasattr(f, "seq")]


def responses(data: bytes) -> list:
    return [f for f in frames(data) if f.flags & FLAG_RESPONSE]


# --------------------------------------------------------------------------------------------
# regressions (fail on the link before issue 13: answer() raised LinkError)
def test_answer_owed_across_a_new_sessions_syn_in_the_same_burst_is_discarded_not_an_error() -> None:
    """Defect 2: request, its retransmission, a heartbeat and a new session's HELLO-like SYN in one read."""
    dev = Link(QUIET)
    old = Link(QUIET, initial_seq=700)
    old.send(MoveArc(target_mdeg=1000), 0.0)
    first = old.data_to_send()
    old.tick(0.2)  # no answer (the device is stalled): retransmitted
    copy = old.data_to_send()
    assert frames(copy)[0].flags & FLAG_RETRANSMIT
    hb = encode_frame(Heartbeat.ID, 701, 0, Heartbeat(uptime_ms=300, state=1).pack())
    new = Link(QUIET, initial_seq=900)  # the host gave up and began a new session
    new.send(GetStatus(), 0.3)
    dev.receive(first + copy + hb + new.data_to_send(), 0.3)
    got = [e for e in dev.events() if isinstance(e, Received) and e.needs_answer]
    assert [e.seq for e in got] == [700, 900]
    for e in got:  # the application answers in order, after the whole burst was read
        dev.answer(e.seq, Ack(acked_msg_id=e.message.ID, detail=e.seq), 0.3)
    # the old session's answer is discarded (its peer dropped that request), the new one is sent
    assert [(f.seq, Ack.unpack(f.payload).detail) for f in responses(dev.data_to_send())] == [(900, 900)]
    assert dev.stats.answers_discarded == 1
    with pytest.raises(LinkError, match="already answered"):
        dev.answer(900, Ack(acked_msg_id=GetStatus.ID), 0.3)  # a real misuse is still refused


def test_answer_owed_after_more_than_the_duplicate_memory_of_newer_requests() -> None:
    dev = Link(LinkConfig(send_heartbeats=False, dedup_window=4))
    burst = b"".join(encode_frame(MoveArc.ID, 10 + i, FLAG_ACK_REQ, MoveArc(target_mdeg=i).pack()) for i in range(9))
    dev.receive(burst, 0.0)
    got = [e for e in dev.events() if isinstance(e, Received)]
    assert len(got) == 9
    for e in reversed(got):  # answered late and out of order
        dev.answer(e.seq, Ack(acked_msg_id=MoveArc.ID, detail=e.seq), 0.0)
    assert [f.seq for f in responses(dev.data_to_send())] == list(range(18, 9, -1))


def test_a_copy_of_a_request_is_a_duplicate_even_after_another_request_reused_its_seq() -> None:
    dev = Link(QUIET)
    a = encode_frame(MoveArc.ID, 5, FLAG_ACK_REQ, MoveArc(target_mdeg=1).pack())
    b = encode_frame(MoveArc.ID, 5, FLAG_ACK_REQ, MoveArc(target_mdeg=2).pack())
    dev.receive(a + b + a, 0.0)
    evs = dev.events()
    assert [e.message.target_mdeg for e in evs if isinstance(e, Received)] == [1, 2]
    assert sum(isinstance(e, DuplicateAnswered) for e in evs) == 1
    dev.answer(5, Ack(acked_msg_id=MoveArc.ID, detail=1), 0.0)  # oldest first: the answer to a
    dev.answer(5, Ack(acked_msg_id=MoveArc.ID, detail=2), 0.0)
    assert [Ack.unpack(f.payload).detail for f in responses(dev.data_to_send())] == [1, 2]
    dev.receive(a, 0.1)  # a's copy gets a's cached answer, never b's
    assert [Ack.unpack(f.payload).detail for f in responses(dev.data_to_send())] == [1]


# --------------------------------------------------------------------------------------------
# the stateful property test
@dataclass
class _Req:
    seq: int
    msg_id: int
    payload: bytes
    session: int
    answer: bytes | None = None


class LinkInterleavings(RuleBasedStateMachine):
    """Host frames in bursts vs. application answers; checked against a model of SPEC.md 2.2."""

    window = 32
    link_class: type[Link] = Link

    def __init__(self) -> None:
        super().__init__()
        self.dev = self.link_class(LinkConfig(send_heartbeats=False, dedup_window=self.window, peer_timeout_s=1e9), initial_seq=3)
        self.now = 0.0
        self.burst: list[tuple[bytes, tuple[int, int, bytes] | None, int]] = []  # (wire, key, flags)
        self.history: list[tuple[int, int, bytes]] = []  # keys of requests sent so far (for copies)
        self.next_seq = 0xFFF0  # wraps during a run
        self.memory: OrderedDict[tuple[int, int, bytes], _Req] = OrderedDict()
        self.session = 0
        self.owed: list[_Req] = []
        self.detail = 0

    @initialize()
    def start(self) -> None:
        self.dev.tick(self.now)

    # -- what the host puts on the wire (collected into one burst) --------------------------
    def _request(self, seq: int, msg, flags: int) -> None:
        payload = msg.pack()
        key = (seq, msg.ID, payload)
        self.burst.append((encode_frame(msg.ID, seq, flags, payload), key, flags))
        self.history.append(key)

    def _take_seq(self) -> int:
        seq = self.next_seq
        self.next_seq = (self.next_seq + 1) & 0xFFFF
        return seq

    @rule(kind=st.sampled_from(["status", "move", "fire"]), arg=st.integers(0, 3), syn=st.booleans())
    def new_request(self, kind: str, arg: int, syn: bool) -> None:
        msg = {"status": GetStatus(), "move": MoveArc(target_mdeg=arg * 1000), "fire": Fire(plan_id=arg + 1, digest=7)}[kind]
        self._request(self._take_seq(), msg, FLAG_ACK_REQ | (FLAG_SYN if syn else 0))

    @precondition(lambda self: self.history)
    @rule(back=st.integers(0, 40), retransmit=st.booleans())
    def copy_of_earlier_request(self, back: int, retransmit: bool) -> None:
        seq, msg_id, payload = self.history[max(0, len(self.history) - 1 - back)]
        flags = FLAG_ACK_REQ | (FLAG_RETRANSMIT if retransmit else 0)
        self.burst.append((encode_frame(msg_id, seq, flags, payload), (seq, msg_id, payload), flags))

    @precondition(lambda self: self.history)
    @rule(back=st.integers(0, 40), value=st.integers(10, 12))
    def request_reusing_a_seq(self, back: int, value: int) -> None:
        seq = self.history[max(0, len(self.history) - 1 - back)][0]
        self._request(seq, MoveArc(target_mdeg=value * 1000), FLAG_ACK_REQ)

    @rule()
    def heartbeat(self) -> None:
        self.burst.append((encode_frame(Heartbeat.ID, self._take_seq(), 0, Heartbeat(uptime_ms=1, state=1).pack()), None, 0))

    @rule(seq=st.integers(0, 0xFFFF))
    def stale_response(self, seq: int) -> None:
        self.burst.append((encode_frame(Ack.ID, seq, FLAG_RESPONSE, Ack(acked_msg_id=1).pack()), None, FLAG_RESPONSE))

    @rule()
    def corrupted_bytes(self) -> None:
        wire = bytearray(encode_frame(GetStatus.ID, 1, FLAG_ACK_REQ, b""))
        wire[3] ^= 0x40  # CRC fails: dropped silently
        self.burst.append((bytes(wire), None, 0))

    @precondition(lambda self: self.burst)
    @rule(data=st.data())
    def deliver(self, data) -> None:
        """The device reads the burst, in one read or split at arbitrary byte positions."""
        wire = b"".join(w for w, _, _ in self.burst)
        cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=3)))
        expected_new: list[tuple[int, int]] = []
        expected_dups: list[int] = []
        expected_out: list[bytes] = []
        for _, key, flags in self.burst:  # the model, frame by frame
            if key is None:
                continue
            seen = self.memory.get(key)
            if seen is not None:
                expected_dups.append(key[0])
                if seen.answer is not None:
                    expected_out.append(seen.answer)
                continue
            if flags & FLAG_SYN:
                self.memory.clear()
                self.session += 1
            req = _Req(key[0], key[1], key[2], self.session)
            self.memory[key] = req
            while len(self.memory) > self.window:
                self.memory.popitem(last=False)
            self.owed.append(req)
            expected_new.append((key[0], key[1]))
        self.burst.clear()
        for a, b in zip([0, *cuts], [*cuts, len(wire)]):
            self.dev.receive(wire[a:b], self.now)
        evs = self.dev.events()
        got_new = [(e.seq, e.message.ID) for e in evs if isinstance(e, Received) and e.needs_answer]
        got_dups = [e.seq for e in evs if isinstance(e, DuplicateAnswered)]
        assert got_new == expected_new
        assert got_dups == expected_dups
        out = self.dev.data_to_send()
        assert [f for f in frames(out) if f.flags & FLAG_RESPONSE] == [f for w in expected_out for f in frames(w)]

    # -- the application --------------------------------------------------------------------
    @precondition(lambda self: self.owed)
    @rule(data=st.data())
    def application_answers(self, data) -> None:
        """Answer one owed request (any seq, in any order; equal seqs oldest first)."""
        seqs = sorted({r.seq for r in self.owed})
        seq = data.draw(st.sampled_from(seqs))
        req = next(r for r in self.owed if r.seq == seq)
        self.owed.remove(req)
        self.detail += 1
        ack = Ack(acked_msg_id=req.msg_id, detail=self.detail)
        self.dev.answer(seq, ack, self.now)  # must never raise
        req.answer = encode_frame(Ack.ID, seq, FLAG_RESPONSE, ack.pack())
        out = responses(self.dev.data_to_send())
        if req.session == self.session:
            assert [(f.seq, Ack.unpack(f.payload).detail) for f in out] == [(seq, self.detail)]
        else:
            assert out == []  # owed to a session the peer has left: discarded

    @rule(state=st.integers(0, 6))
    def device_sends_event(self, state: int) -> None:
        before = self.dev.data_to_send()
        assert not responses(before)
        self.dev.send(StateChanged(device_time_us=1, old_state=1, new_state=state, cause_msg_id=0, fault_code=0), self.now)
        assert not responses(self.dev.data_to_send())

    @rule(dt=st.sampled_from([0.01, 0.15, 1.0]))
    def time_passes(self, dt: float) -> None:
        self.now += dt
        self.dev.tick(self.now)
        assert not responses(self.dev.data_to_send())  # timers never answer anything

    @invariant()
    def nothing_unexpected_pending(self) -> None:
        for e in self.dev.events():  # events outside deliver: only the device's own sends
            assert not isinstance(e, (Received, DuplicateAnswered)), e


LinkInterleavings.TestCase.settings = settings(
    max_examples=150, stateful_step_count=40, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


class SmallMemory(LinkInterleavings):
    """The same with a 4-request duplicate memory, so evictions happen within a short run."""

    window = 4


SmallMemory.TestCase.settings = LinkInterleavings.TestCase.settings

TestLinkInterleavings = LinkInterleavings.TestCase
TestLinkInterleavingsSmallMemory = SmallMemory.TestCase


# --------------------------------------------------------------------------------------------
# the same machine against defective links: it must find each defect on its own
class ForgetsOwedAnswersOnSyn(Link):
    """Defect 2 as it was: a new session's SYN dropped the answers owed, so the application's late answer raised."""

    def _on_request(self, frame, now: float) -> None:  # type: ignore[no-untyped-def]
        if frame.flags & FLAG_SYN and (frame.seq, frame.msg_id, frame.payload) not in self._seen:
            self._owed.clear()
        super()._on_request(frame, now)


class HandsUpCopiesNotYetAnswered(Link):
    """Treats a copy that arrives before its original was answered as a new request (executed twice)."""

    def _on_request(self, frame, now: float) -> None:  # type: ignore[no-untyped-def]
        key = (frame.seq, frame.msg_id, frame.payload)
        seen = self._seen.get(key)
        if seen is not None and seen.response is None:
            del self._seen[key]
        super()._on_request(frame, now)


@pytest.mark.parametrize(("link_class", "caught"), [
    (ForgetsOwedAnswersOnSyn, (LinkError, AssertionError)),  # the late answer raises, or goes out to the wrong session
    (HandsUpCopiesNotYetAnswered, AssertionError),
])
def test_the_random_machine_finds_a_defective_link(link_class: type[Link], caught) -> None:  # type: ignore[no-untyped-def]
    machine = type(f"LinkInterleavings_{link_class.__name__}", (LinkInterleavings,), {"link_class": link_class})
    with pytest.raises(caught):
        run_state_machine_as_test(machine, settings=settings(LinkInterleavings.TestCase.settings, phases=[Phase.generate]))
