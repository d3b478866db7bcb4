"""Property tests: every message round-trips over its whole field ranges; out-of-range is refused by name."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.wire.catalogue import SCALAR_TYPES, ErrorCode, FieldDef, load_catalogue
from protocols.wire.errors import FieldRangeError, PayloadError
from protocols.wire.framing import FrameDecoder, encode_frame
from protocols.wire.messages import BY_NAME, ArmPlan, MoveArc, Nak, message_from_dict, plan_digest

CAT = load_catalogue()


def scalar(f: FieldDef) -> st.SearchStrategy[int]:
    if f.enum:
        return st.sampled_from(sorted(CAT.enums[f.enum][1].values()))
    return st.integers(min_value=f.lo, max_value=f.hi)


def message_strategy(name: str) -> st.SearchStrategy[dict]:
    m = CAT.by_name[name]
    fields: dict[str, st.SearchStrategy] = {}
    for f in m.fields:
        if f.type == "str":
            fields[f.name] = st.text(max_size=f.max_len).filter(lambda s, n=f.max_len: len(s.encode()) <= n)
        elif f.type == "array":
            rec = st.fixed_dictionaries({r.name: scalar(r) for r in f.record})
            fields[f.name] = st.lists(rec, max_size=f.max_count)
        else:
            fields[f.name] = scalar(f)
    return st.fixed_dictionaries(fields)


@pytest.mark.parametrize("name", [m.name for m in CAT.messages])
def test_round_trip_whole_ranges(name: str) -> None:
    cls = BY_NAME[name]

    @settings(max_examples=150, deadline=None)
    @given(message_strategy(name), st.integers(0, 0xFFFF), st.sampled_from([0, 1, 2, 5, 9]))
    def check(values: dict, seq: int, flags: int) -> None:
        msg = cls(**values)
        payload = msg.pack()
        assert cls.unpack(payload) == msg
        (frame,) = FrameDecoder().feed(encode_frame(cls.ID, seq, flags, payload))
        assert (frame.seq, frame.flags, frame.msg_id) == (seq, flags, cls.ID)
        assert cls.unpack(frame.payload).to_dict() == values
        # the pydantic boundary model accepts the same values
        assert message_from_dict(name, values) == msg

    check()


def test_extremes_of_every_scalar_type() -> None:
    for m in CAT.messages:
        cls = BY_NAME[m.name]
        for pick in (0, 1):
            values = {}
            for f in m.fields:
                if f.is_scalar:
                    allowed = sorted(CAT.enums[f.enum][1].values()) if f.enum else [f.lo, f.hi]
                    values[f.name] = allowed[0] if pick == 0 else allowed[-1]
            msg = cls(**values)
            assert cls.unpack(msg.pack()) == msg


def test_encode_out_of_range_names_the_field() -> None:
    with pytest.raises(FieldRangeError, match=r"MOVE_ARC.target_mdeg: 90001 is outside \[-90000, 90000\]"):
        MoveArc(target_mdeg=90_001).pack()
    with pytest.raises(FieldRangeError, match="anode_filter"):
        ArmPlan(plan_id=1, anode_filter=99).pack()
    with pytest.raises(FieldRangeError, match=r"entries\[\]\.kv_ckv"):
        ArmPlan(plan_id=1, entries=[dict(angle_mdeg=0, kv_ckv=5000, mas_nas=1, pulse_us=1)]).pack()
    with pytest.raises(FieldRangeError, match="not an integer"):
        MoveArc(target_mdeg=1.5).pack()


def test_decode_out_of_range_gives_nak_code_and_field_index() -> None:
    raw = bytearray(MoveArc(target_mdeg=0).pack())
    raw[0:4] = (95_000).to_bytes(4, "little", signed=True)
    with pytest.raises(PayloadError) as info:
        MoveArc.unpack(bytes(raw))
    assert info.value.code == ErrorCode.OUT_OF_RANGE and info.value.detail == 0
    with pytest.raises(PayloadError) as info:
        MoveArc.unpack(bytes(raw[:-1]))
    assert info.value.code == ErrorCode.BAD_LENGTH
    plan = ArmPlan(plan_id=1, entries=[dict(angle_mdeg=0, kv_ckv=2800, mas_nas=5, pulse_us=7)] * 2)
    raw = bytearray(plan.pack())
    raw[-8:-4] = (0).to_bytes(4, "little")  # second entry mas_nas = 0 < min 1
    with pytest.raises(PayloadError) as info:
        ArmPlan.unpack(bytes(raw))
    assert info.value.code == ErrorCode.OUT_OF_RANGE and info.value.detail == 2002


def test_plan_digest_covers_every_entry() -> None:
    entries = [dict(angle_mdeg=1000 * i, kv_ckv=2900, mas_nas=40000, pulse_us=50000) for i in range(5)]
    a = ArmPlan(plan_id=3, motion=1, entries=entries)
    d = plan_digest(a)
    entries[4] = dict(entries[4], angle_mdeg=4001)
    assert plan_digest(ArmPlan(plan_id=3, motion=1, entries=entries)) != d
    a.digest = 12345
    assert plan_digest(a) == d  # the digest field itself is excluded


def test_every_scalar_type_is_little_endian() -> None:
    nak = Nak(acked_msg_id=0x16, error_code=0x0102, detail=-2)
    assert nak.pack() == bytes([0x16, 0x02, 0x01, 0xFE, 0xFF, 0xFF, 0xFF])
    assert set(SCALAR_TYPES) >= {"u8", "u16", "u32", "u64", "i32"}
