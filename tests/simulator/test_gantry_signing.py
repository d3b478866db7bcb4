"""Signed links on the simulated gantry (SPEC 2.6): forged and replayed frames are refused, nothing executed.

A virtual-time gantry holds a link key; a host (``LinkClient`` with a :class:`Signer`) opens a
session and runs a few commands, and every frame it wrote is recorded. Then attacks are fed to
the device's receiver: recorded frames replayed verbatim, recorded frames with one byte changed
and the CRC recomputed (so only the signature can catch it), fresh commands signed with a wrong
key, and fresh unsigned commands. The gantry's command handler is counted: it must never run for
an attack. ``test_the_execution_counter_sees_an_unprotected_gantry`` shows the counter catches a
gantry whose verification is switched off.
"""

from __future__ import annotations

import random

import hypothesis.strategies as st
import pytest
import simpy
from cobs import cobs
from hypothesis import HealthCheck, given, settings

from protocols.wire import messages as M
from protocols.wire.catalogue import Capability, ErrorCode
from protocols.wire.crc import crc32c
from protocols.wire.framing import FLAG_ACK_REQ, FrameDecoder, encode_frame
from protocols.wire.signing import LinkKey, MemoryHighWater, Signer, Verdict
from simulator.gantry.client import LinkClient, hello, make_plan
from simulator.gantry.virtual import start_virtual_gantry

KEY = LinkKey(bytes(range(100, 132)))
WRONG_KEY = LinkKey(bytes(range(1, 33)))

#: Attacks fed across the whole property test (the issue asks for at least 10 000).
ATTACKS = {"count": 0}


class Rig:
    """A keyed virtual gantry with a signed host session and its recorded host->device frames."""

    def __init__(self, tmp_path, seed: int = 3) -> None:
        self.env = simpy.Environment()
        self.gantry, self.endpoint = start_virtual_gantry(self.env, "default", seed=seed, data_dir=tmp_path,
                                                           event_log=None, link_key=KEY)
        self.recorded: list[bytes] = []
        write = self.endpoint.write

        def record(data: bytes) -> None:
            self.recorded.append(bytes(data))
            write(data)

        self.endpoint.write = record  # type: ignore[method-assign]
        self.client = LinkClient(self.env, self.endpoint, signer=Signer(KEY, 1))
        self.executed: list[str] = []
        on_command = self.gantry._on_command

        def counted(msg: M.Message, seq: int) -> None:
            self.executed.append(msg.NAME)
            on_command(msg, seq)

        self.gantry._on_command = counted  # type: ignore[method-assign]
        self.replies: list = []

        def session():
            reply = yield self.client.request(hello())
            self.replies.append(reply)
            done = self.client.wait_event(lambda m: m.NAME == "MOTION_DONE")
            self.replies.append((yield self.client.request(M.Home())))
            yield done
            self.replies.append((yield self.client.request(M.GetStatus())))
            self.replies.append((yield self.client.request(M.MoveArc(target_mdeg=5000, speed_mdeg_s=0))))

        self.env.process(session())
        self.env.run(until=self.env.now + 6.0)
        self.client.go_silent()  # let what is on the line arrive: a recorded frame is then one the device has seen
        self.env.run(until=self.env.now + 0.05)
        # every frame the host wrote, one per entry (a write may carry several)
        self.frames = [b"\x00" + run + b"\x00" for chunk in self.recorded for run in chunk.split(b"\x00") if run]
        self.requests = [f for f in self.frames if _flags(f) & FLAG_ACK_REQ]

    def feed(self, data: bytes) -> None:
        """Bytes arriving at the device now (its receiver, as the UART would deliver them)."""
        self.gantry._driver._on_bytes(data)


def _flags(wire: bytes) -> int:
    return cobs.decode(wire[1:-1])[1]


def _reframe(raw: bytes) -> bytes:
    """An unstuffed frame body (without CRC) with a correct CRC and stuffing: only the signature can refuse it."""
    return b"\x00" + cobs.encode(raw + crc32c(raw).to_bytes(4, "little")) + b"\x00"


FRESH = [M.Home(), M.Fire(plan_id=7, digest=1), M.MoveArc(target_mdeg=-10000, speed_mdeg_s=0), M.Abort(reason=0),
         make_plan(7, [-5.0, 0.0, 5.0]), M.ResetFault(fault_code=0), M.Hello(**hello().to_dict()), M.GetDataToken()]


def attack_bytes(rig: Rig, kind: str, rnd: random.Random) -> bytes:
    if kind == "replay":  # a frame the host sent, verbatim (the device accepted it once)
        return rnd.choice(rig.frames)
    if kind == "tamper":  # one byte of header/payload/signature block changed, CRC made good again
        raw = bytearray(cobs.decode(rnd.choice(rig.requests)[1:-1])[:-4])
        i = rnd.randrange(len(raw))
        raw[i] ^= rnd.randrange(1, 256)
        return _reframe(bytes(raw))
    msg = rnd.choice(FRESH)
    seq = rnd.randrange(0x10000)
    if kind == "wrong_key":  # a fresh command, signed with another key, any link id, a timestamp far ahead
        sig = (rnd.randrange(256), rnd.randrange(1 << 40, 1 << 48), WRONG_KEY.tag)
        return encode_frame(msg.ID, seq, FLAG_ACK_REQ, msg.pack(), signature=sig)
    if kind == "random_tag":  # right layout, random tag
        sig = (1, rnd.randrange(1 << 48), lambda _part: rnd.randbytes(8))
        return encode_frame(msg.ID, seq, FLAG_ACK_REQ, msg.pack(), signature=sig)
    return encode_frame(msg.ID, seq, FLAG_ACK_REQ, msg.pack())  # unsigned


@pytest.fixture(scope="module")
def rig(tmp_path_factory) -> Rig:
    r = Rig(tmp_path_factory.mktemp("signed-gantry"))
    assert r.replies[0] is not None and r.replies[0].device_capabilities & int(Capability.SIGNED_LINK)
    assert [x.NAME for x in r.replies[1:]] == ["ACK", "STATUS", "ACK"], r.replies
    assert r.executed == ["HELLO", "HOME", "GET_STATUS", "MOVE_ARC"]
    return r


@settings(max_examples=1000, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1),
       kinds=st.lists(st.sampled_from(["replay", "tamper", "wrong_key", "random_tag", "unsigned"]), min_size=10, max_size=10))
def test_forged_and_replayed_frames_are_all_refused_and_nothing_executed(rig: Rig, seed: int, kinds: list[str]) -> None:
    rnd = random.Random(seed)
    executed = len(rig.executed)
    rejected = rig.gantry.link.stats.auth_rejected
    dropped = rig.gantry.link.stats.frame_errors
    marks = dict(rig.gantry.link.signer.marks)
    for kind in kinds:
        rig.feed(attack_bytes(rig, kind, rnd))
    ATTACKS["count"] += len(kinds)
    assert len(rig.executed) == executed, rig.executed[executed:]
    # every attack was refused by the signature check (or, a tampered flags byte, by the framing)
    stats = rig.gantry.link.stats
    assert (stats.auth_rejected - rejected) + (stats.frame_errors - dropped) == len(kinds)
    assert rig.gantry.link.signer.marks == marks  # no refused frame moved a high-water mark


def test_at_least_ten_thousand_attacks_were_refused(rig: Rig) -> None:
    """Runs after the property test (file order): the count the issue asks for, and the device still works."""
    if ATTACKS["count"] == 0:
        pytest.skip("the property test did not run (selected alone)")
    assert ATTACKS["count"] >= 10_000
    refused = rig.gantry.link.signer.rejected
    assert refused[Verdict.REPLAYED] > 0 and refused[Verdict.BAD_SIGNATURE] > 0 and refused[Verdict.UNSIGNED] > 0
    before = len(rig.executed)
    signer = rig.client.link.signer
    real = encode_frame(M.GetStatus.ID, 0x7777, FLAG_ACK_REQ, b"", signature=signer.signature(rig.env.now))
    rig.feed(real)
    assert rig.executed[before:] == ["GET_STATUS"]  # the real host is still served


def test_the_execution_counter_sees_an_unprotected_gantry(tmp_path, monkeypatch) -> None:
    """The checker can fail: with verification switched off, a replayed command is executed again."""
    r = Rig(tmp_path)
    monkeypatch.setattr(Signer, "verify", lambda self, frame, request=False: Verdict.OK)
    before = len(r.executed)
    for f in r.requests:
        frame = cobs.decode(f[1:-1])
        r.feed(_reframe(frame[:-4][:2] + bytes([frame[2] ^ 0x55]) + frame[3:-4]))  # a new seq: not a duplicate
    assert len(r.executed) > before


def _naks(rig: Rig, data: bytes) -> list[M.Message]:
    """Feed ``data`` and return the NAKs the device sent in answer."""
    sent: list[bytes] = []
    write = rig.gantry._driver.endpoint.write
    rig.gantry._driver.endpoint.write = lambda d: (sent.append(d), write(d))  # type: ignore[method-assign]
    try:
        rig.feed(data)
    finally:
        rig.gantry._driver.endpoint.write = write  # type: ignore[method-assign]
    frames = [f for chunk in sent for f in FrameDecoder().feed(chunk)]
    return [M.Nak.unpack(f.payload) for f in frames if f.msg_id == M.Nak.ID]


@pytest.mark.parametrize("kind,code", [("replay", "REPLAYED"), ("wrong_key", "BAD_SIGNATURE"), ("unsigned", "UNSIGNED")])
def test_each_refusal_is_answered_with_its_nak_code(tmp_path, kind: str, code: str) -> None:
    r = Rig(tmp_path)
    rnd = random.Random(5)
    data = rnd.choice(r.requests) if kind == "replay" else attack_bytes(r, kind, rnd)
    naks = _naks(r, data)
    assert [n.error_code for n in naks] == [int(ErrorCode[code])]


def test_stale_timestamp_of_a_new_link_id_is_refused(tmp_path) -> None:
    r = Rig(tmp_path)
    newest = r.gantry.link.signer.timestamp = 10**9  # as if it had a wall clock: 10 000 s after its epoch
    stale = encode_frame(M.GetStatus.ID, 0x4444, FLAG_ACK_REQ, b"", signature=(9, newest - 61 * 100_000, KEY.tag))
    fresh = encode_frame(M.GetStatus.ID, 0x4445, FLAG_ACK_REQ, b"", signature=(10, newest - 59 * 100_000, KEY.tag))
    before = len(r.executed)
    assert [n.error_code for n in _naks(r, stale)] == [int(ErrorCode.STALE)]
    assert len(r.executed) == before
    assert _naks(r, fresh) == [] and len(r.executed) == before + 1  # inside the window: accepted


def test_a_frame_replayed_after_a_device_restart_is_refused(tmp_path) -> None:
    """The high-water marks survive a device reset (non-volatile): a recorded HOME is still a replay."""
    r = Rig(tmp_path)
    store = r.gantry.high_water
    assert isinstance(store, MemoryHighWater) and store.saves >= 4  # saved before each request was executed
    r.gantry._device_reset()
    assert r.gantry.link.signer.marks == store.marks and store.marks
    home = next(f for f in r.requests if cobs.decode(f[1:-1])[4] == M.Home.ID)
    before = len(r.executed)
    assert [n.error_code for n in _naks(r, home)] == [int(ErrorCode.REPLAYED)]
    assert len(r.executed) == before


def test_a_restart_without_the_marks_would_execute_the_replay(tmp_path) -> None:
    """The restart check can fail: a device that forgot its marks (volatile) executes the recorded HOME."""
    r = Rig(tmp_path)
    r.gantry.high_water = MemoryHighWater()  # marks lost with the reset
    r.gantry._device_reset()
    home = next(f for f in r.requests if cobs.decode(f[1:-1])[4] == M.Home.ID)
    before = len(r.executed)
    r.feed(home)
    assert r.executed[before:] == ["HOME"]


def test_unsigned_host_is_told_why(tmp_path) -> None:
    """An unkeyed host gets NAK UNSIGNED for its HELLO (and nothing is executed)."""
    env = simpy.Environment()
    gantry, endpoint = start_virtual_gantry(env, "default", seed=1, data_dir=tmp_path, event_log=None, link_key=KEY)
    client = LinkClient(env, endpoint)
    out: list = []

    def go():
        out.append((yield client.request(hello())))

    env.process(go())
    env.run(until=3.0)
    assert out == [None]  # signing NAKs never complete a request: it fails after its retries
    assert gantry.state == 0 and gantry.link.signer.rejected[Verdict.UNSIGNED] >= 6  # HELLO x 6 and heartbeats
    assert client.link.stats.signing_naks == 6


def test_key_never_in_the_event_log(tmp_path) -> None:
    r = Rig(tmp_path)
    rnd = random.Random(1)
    for kind in ("replay", "tamper", "wrong_key", "unsigned"):
        r.feed(attack_bytes(r, kind, rnd))
    text = "\n".join(str(x) for x in r.gantry.log.lines)
    assert "auth_rejected" in text
    for secret in (KEY._key.hex(), KEY._key.hex().upper(), repr(KEY._key)):
        assert secret not in text
    assert "link key" not in repr(KEY) and KEY._key.hex() not in repr(KEY)


def test_signing_state_file_round_trip_and_bad_files(tmp_path) -> None:
    from simulator.gantry.signing_state import FileHighWater, SigningStateError

    path = tmp_path / "state" / "s.json"
    store = FileHighWater(path)
    assert store.load() == {}
    store.save({1: 5, 2: 1 << 40}, durable=True)
    assert FileHighWater(path).load() == {1: 5, 2: 1 << 40}
    assert not path.with_name("s.json.tmp").exists()
    path.write_text("{not json")
    with pytest.raises(SigningStateError, match="s.json"):
        store.load()
    path.write_text('{"marks": {"300": 1}}')
    with pytest.raises(SigningStateError, match="link id\\(s\\) \\[300\\]"):
        store.load()
    path.write_text('{"other": 1}')
    with pytest.raises(SigningStateError, match="expected"):
        store.load()
