"""Protocol test vectors: frames given by their fields, with the bytes they must produce.

The vectors are defined here as data and written, with their hex, to
``test_vectors.yaml`` and SPEC.md by :mod:`protocols.wire.specgen`. The tests
check every vector both ways: encoding the fields gives the hex, and an
independent reference decoder (bitwise CRC, COBS from its definition) reads
the hex back to the fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from protocols.wire.catalogue import ALL_INTERLOCKS, Capability
from protocols.wire.framing import (
    FLAG_ACK_REQ,
    FLAG_RESPONSE,
    FLAG_RETRANSMIT,
    FLAG_SIGNED,
    FLAG_SYN,
    PROTOCOL_VERSION,
    build_frame,
    encode_frame,
)
from protocols.wire.messages import BY_NAME, plan_digest
from protocols.wire.signing import LinkKey

#: The published test key of the signed vectors (bytes 0x00..0x1f). Never a rig's key.
TEST_LINK_KEY_HEX = bytes(range(32)).hex()
#: 2026-01-01T00:00:00Z in signing ticks (10 us since 2015-01-01).
TEST_TIMESTAMP = (1_767_225_600 - 1_420_070_400) * 100_000

#: Capabilities of the simulated gantry in its default configuration.
SIM_DEVICE_CAPABILITIES = int(
    Capability.CONTINUOUS_MOTION
    | Capability.STEP_AND_SHOOT
    | Capability.POSITION_TRIGGER
    | Capability.AEC_SCOUT
    | Capability.SIMULATION_CONTROLS
    | Capability.FILE_DATA_CHANNEL
)

HELLO_FIELDS: dict[str, int] = dict(
    protocol_version=PROTOCOL_VERSION,
    min_version=PROTOCOL_VERSION,
    host_capabilities=0,
    session_id=0x12345678,
    heartbeat_period_ms=100,
    watchdog_timeout_ms=500,
)
HELLO_REPLY_FIELDS: dict[str, int] = dict(
    protocol_version=PROTOCOL_VERSION,
    device_capabilities=SIM_DEVICE_CAPABILITIES,
    session_id=0x12345678,
    firmware_version=0x000100,
    serial_number=1001,
    watchdog_timeout_ms=500,
    max_payload=640,
    state=1,
    resumed_plan_id=0,
    resumed_exposures_done=0,
)


@dataclass(frozen=True)
class Vector:
    """One test vector. ``wire_hex`` is computed from the fields unless ``raw_wire_hex`` is given."""

    name: str
    description: str
    message: str | None = None
    seq: int = 0
    flags: int = 0
    fields: dict[str, Any] = field(default_factory=dict)
    raw_wire_hex: str | None = None
    receiver: str = "decodes to the message"
    signature: tuple[int, int] | None = None  # (link_id, timestamp): signed with TEST_LINK_KEY_HEX

    def _sig(self) -> Any:
        if self.signature is None:
            return None
        return self.signature[0], self.signature[1], LinkKey.from_hex(TEST_LINK_KEY_HEX).tag

    def build_message(self) -> Any:
        assert self.message is not None
        msg = BY_NAME[self.message](**self.fields)
        if self.message == "ARM_PLAN" and self.fields.get("digest") == "auto":
            msg.digest = 0
            msg.digest = plan_digest(msg)
        return msg

    def wire(self) -> bytes:
        if self.raw_wire_hex is not None:
            return bytes.fromhex(self.raw_wire_hex)
        msg = self.build_message()
        return encode_frame(msg.ID, self.seq, self.flags, msg.pack(), signature=self._sig())

    def frame(self) -> bytes | None:
        """Unstuffed frame bytes (None for raw vectors)."""
        if self.raw_wire_hex is not None:
            return None
        msg = self.build_message()
        return build_frame(msg.ID, self.seq, self.flags, msg.pack(), signature=self._sig())


def _largest_plan() -> dict[str, Any]:
    entries = [
        {"angle_mdeg": -21500 + 1000 * i, "kv_ckv": 2900 + (i % 5) * 100, "mas_nas": 50000 + 1000 * i, "pulse_us": 60000}
        for i in range(44)
    ]
    return dict(plan_id=7, motion=1, anode_filter=0, focal_spot=0, speed_mdeg_s=6000, digest="auto", entries=entries)


def _corrupted_hello() -> str:
    good = bytearray(
        encode_frame(BY_NAME["HELLO"].ID, 0x0100, FLAG_ACK_REQ | FLAG_SYN, BY_NAME["HELLO"](**HELLO_FIELDS).pack())
    )
    good[7] ^= 0x10  # one bit flipped inside the stuffed payload
    return good.hex()


def _garbage_then_get_status() -> str:
    frame = encode_frame(BY_NAME["GET_STATUS"].ID, 0x0102, FLAG_ACK_REQ, b"")
    return (bytes.fromhex("deadbeef55aa") + frame).hex()


def _length_mismatch() -> str:
    # A frame whose CRC is valid but whose length field says 3 while it carries 2 bytes.
    from cobs import cobs

    from protocols.wire.crc import crc32c

    head = bytes([PROTOCOL_VERSION, FLAG_ACK_REQ, 0x03, 0x01, 0x18, 3, 0]) + b"\x00\x00"
    return (b"\x00" + cobs.encode(head + crc32c(head).to_bytes(4, "little")) + b"\x00").hex()


def _forged_signed_get_status() -> str:
    """A signed GET_STATUS whose tag's last byte is changed (CRC recomputed, so only the tag is wrong)."""
    from cobs import cobs

    from protocols.wire.crc import crc32c

    good = build_frame(BY_NAME["GET_STATUS"].ID, 0x0111, FLAG_ACK_REQ, b"",
                       signature=(1, TEST_TIMESTAMP + 2, LinkKey.from_hex(TEST_LINK_KEY_HEX).tag))
    body = bytearray(good[:-4])
    body[-1] ^= 0x01
    return (b"\x00" + cobs.encode(bytes(body) + crc32c(bytes(body)).to_bytes(4, "little")) + b"\x00").hex()


VECTORS: tuple[Vector, ...] = (
    Vector("hello", "Host opens a session (SYN: first request of the session).", "HELLO", 0x0100,
           FLAG_ACK_REQ | FLAG_SYN, HELLO_FIELDS),
    Vector("hello_reply", "Simulated gantry's answer to `hello` (default configuration).", "HELLO_REPLY", 0x0100,
           FLAG_RESPONSE, HELLO_REPLY_FIELDS),
    Vector("get_status_empty", "A request with an empty payload.", "GET_STATUS", 0x0101, FLAG_ACK_REQ, {}),
    Vector("heartbeat_zeros", "All-zero payload and seq 0: every zero byte must be stuffed.", "HEARTBEAT", 0x0000, 0,
           dict(uptime_ms=0, state=0)),
    Vector("move_arc", "Move to -12.5 deg at the default speed.", "MOVE_ARC", 0x0103, FLAG_ACK_REQ,
           dict(target_mdeg=-12500, speed_mdeg_s=0)),
    Vector("ack_move", "ACK of `move_arc` with an estimated duration of 1830 ms.", "ACK", 0x0103, FLAG_RESPONSE,
           dict(acked_msg_id=0x11, detail=1830)),
    Vector("fire_retransmitted", "FIRE sent again after an ACK timeout (RETRANSMIT set, same seq).", "FIRE",
           0x0104, FLAG_ACK_REQ | FLAG_RETRANSMIT, dict(plan_id=7, digest=0x5EB0C1A2)),
    Vector("nak_not_armed", "NAK of a FIRE in IDLE, no plan armed (error NOT_ARMED = 5, detail 0 = none armed).",
           "NAK", 0x0104, FLAG_RESPONSE, dict(acked_msg_id=0x16, error_code=5, detail=0)),
    Vector("telemetry", "A 50 Hz telemetry frame during a sweep.", "TELEMETRY", 0x2A10, 0,
           dict(device_time_us=12_345_678, arc_mdeg=-3250, arc_speed_mdeg_s=3571, force_dn=1187, thickness_um=52340,
                kv_ckv=2905, ma_dma=1000, anode_heat_permille=42, state=4, interlocks=ALL_INTERLOCKS, detector_state=2)),
    Vector("exposure_done", "Device event: projection 3 of plan 7, actual angles at window start and end.",
           "EXPOSURE_DONE", 0x0800, FLAG_ACK_REQ,
           dict(plan_id=7, index=3, frame_id=104, status=0, planned_mdeg=-5000, start_mdeg=-5180, end_mdeg=-4820,
                kv_ckv=2902, mas_nas=49870, window_start_us=4_100_000, window_end_us=4_160_000)),
    Vector("image_ready", "Device event: frame 104 is on the data channel.", "IMAGE_READY", 0x0801, FLAG_ACK_REQ,
           dict(frame_id=104, rows=1200, cols=1500, bits=16, checksum=0x1B2C3D4E, size_bytes=3_600_000,
                locator="frame_000104.raw")),
    Vector("arm_plan_largest", "The largest frame: ARM_PLAN with 44 entries (digest computed).", "ARM_PLAN",
           0x0105, FLAG_ACK_REQ, _largest_plan()),
    Vector("arm_plan_mas_unit", "One exposure at +2.5 deg, 28 kV, 4.522636 mAs in 60 ms: `mas_nas` = 4522636 "
           "(nanoampere-seconds, 1 nAs = 1e-6 mAs; bytes 8c 02 45 00), pulse_us = 60000.", "ARM_PLAN", 0x0106,
           FLAG_ACK_REQ, dict(plan_id=9, motion=0, anode_filter=0, focal_spot=0, speed_mdeg_s=0, digest="auto", final=1,
                              entries=[dict(angle_mdeg=2500, kv_ckv=2800, mas_nas=4_522_636, pulse_us=60000)])),
    Vector("nak_plan_not_monotonic", "NAK of a continuous ARM_PLAN whose entry 2 turns back (angles 0, 1, 0.5 deg): "
           "PLAN_INVALID = 15, detail 1000 x NOT_MONOTONIC (2) + entry 2 = 2002.", "NAK", 0x0107, FLAG_RESPONSE,
           dict(acked_msg_id=0x15, error_code=15, detail=2002)),
    Vector("nak_beyond_limits_current", "NAK of an ARM_PLAN whose entry 0 needs 1000 mA (60 mAs in 60 ms): "
           "BEYOND_LIMITS = 19, detail 1000 x (0 + 1) + 4 = 1004 (the implied tube current).", "NAK", 0x0108,
           FLAG_RESPONSE, dict(acked_msg_id=0x15, error_code=19, detail=1004)),
    Vector("corrupted_hello", "`hello` with one bit flipped.", raw_wire_hex=_corrupted_hello(),
           receiver="CRC (or COBS) error: drop silently, send nothing; the sender's retransmission recovers"),
    Vector("garbage_then_frame", "Six bytes of line noise, then a GET_STATUS frame.",
           raw_wire_hex=_garbage_then_get_status(),
           receiver="one framing error for the noise, then GET_STATUS seq 0x0102 decodes (resynchronised)"),
    Vector("length_mismatch", "CRC valid, but the header's length field disagrees with the frame size.",
           raw_wire_hex=_length_mismatch(), receiver="framing error LENGTH: drop, send nothing"),
    Vector("signed_hello", "`hello` on a signed link: host link id 1, timestamp 2026-01-01T00:00:00Z, capability "
           "SIGNED_LINK, test key 00 01 .. 1f (section 2.6).", "HELLO", 0x0100,
           FLAG_ACK_REQ | FLAG_SYN | FLAG_SIGNED, {**HELLO_FIELDS, "host_capabilities": int(Capability.SIGNED_LINK)}, signature=(1, TEST_TIMESTAMP)),
    Vector("signed_nak_replayed", "The device (link id 0) refuses a replayed GET_STATUS of host link 1: NAK "
           "REPLAYED = 22, detail = link id 1.", "NAK", 0x0101, FLAG_RESPONSE | FLAG_SIGNED,
           dict(acked_msg_id=0x06, error_code=22, detail=1), signature=(0, TEST_TIMESTAMP + 1)),
    Vector("forged_signed_get_status", "A signed GET_STATUS (link id 1) with one bit of its tag changed and the "
           "CRC recomputed.", raw_wire_hex=_forged_signed_get_status(),
           receiver="frame good, signature BAD_SIGNATURE: answered NAK BAD_SIGNATURE (21), detail 1; not executed"),
)
