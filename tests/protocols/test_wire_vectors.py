"""Test vectors of SPEC.md, checked against an independent reference decoder, and generated files in sync."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import yaml

from protocols.wire import specgen
from protocols.wire.crc import CHECK, RESIDUE, crc32c, crc32c_reference
from protocols.wire.errors import FrameError, FrameErrorKind
from protocols.wire.framing import PROTOCOL_VERSION, Frame, FrameDecoder
from protocols.wire.messages import BY_NAME

VECTORS = yaml.safe_load(specgen.VECTORS_PATH.read_text())


def cobs_decode_reference(data: bytes) -> bytes:
    """COBS decoding written from Cheshire & Baker's definition (independent of the cobs package)."""
    out = bytearray()
    i = 0
    while i < len(data):
        code = data[i]
        if code == 0:
            raise ValueError("zero byte inside a COBS run")
        block = data[i + 1 : i + code]
        if len(block) != code - 1 or 0 in block:
            raise ValueError("truncated COBS block")
        out += block
        i += code
        if code < 0xFF and i < len(data):
            out.append(0)
    return bytes(out)


def test_crc_check_value_and_residue() -> None:
    assert crc32c(b"123456789") == CHECK == 0xE3069283
    assert crc32c_reference(b"123456789") == 0xE3069283
    data = b"crescent"
    framed = data + crc32c(data).to_bytes(4, "little")
    # residue of the reflected CRC register before the final xor (see the RevEng catalogue)
    assert crc32c_reference(framed) ^ 0xFFFFFFFF == RESIDUE


def test_cobs_reference_examples() -> None:
    # Examples from the COBS paper / common references
    assert cobs_decode_reference(bytes.fromhex("0101")) == b"\x00"
    assert cobs_decode_reference(bytes.fromhex("010101")) == b"\x00\x00"
    assert cobs_decode_reference(bytes.fromhex("0311220233")) == bytes.fromhex("11220033")
    assert cobs_decode_reference(bytes.fromhex("0511223344")) == bytes.fromhex("11223344")


@pytest.mark.parametrize("vec", [v for v in VECTORS["vectors"] if "message" in v], ids=lambda v: v["name"])
def test_message_vector_both_ways(vec: dict) -> None:
    wire = bytes.fromhex(vec["wire_hex"])
    assert wire.startswith(b"\x00") and wire.endswith(b"\x00") and wire.count(0) == 2
    frame = cobs_decode_reference(wire[1:-1])
    assert frame.hex() == vec["frame_hex"]
    version, flags, seq, msg_id, length = struct.unpack_from("<BBHBH", frame)
    assert (version, flags, seq) == (PROTOCOL_VERSION, vec["flags"], vec["seq"])
    signed = "signature" in vec
    assert bool(flags & 0x10) == signed
    assert length == len(frame) - 11 - (15 if signed else 0)
    assert crc32c_reference(frame[:-4]) == int.from_bytes(frame[-4:], "little")
    cls = BY_NAME[vec["message"]]
    assert msg_id == cls.ID
    payload = frame[7 : 7 + length]
    assert cls.unpack(payload).to_dict() == vec["fields"]
    if signed:  # SPEC 1 / 2.6: link_id, u48 timestamp, then the tag = HMAC over everything before it
        sig = vec["signature"]
        assert frame[7 + length] == sig["link_id"]
        assert int.from_bytes(frame[8 + length : 14 + length], "little") == sig["timestamp"]
        assert frame[14 + length : 22 + length] == openssl_hmac_sha256(sig["key_hex"], frame[: 14 + length])[:8]
    # and our encoder produces exactly these bytes from the fields
    decoded = FrameDecoder().feed(wire)
    assert len(decoded) == 1 and isinstance(decoded[0], Frame)
    assert cls(**vec["fields"]).pack() == payload


def openssl_hmac_sha256(key_hex: str, data: bytes) -> bytes:
    """HMAC-SHA256 by the openssl command line tool: an implementation independent of Python's hmac."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    out = subprocess.run(["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{key_hex}", "-binary"],
                         input=data, capture_output=True, check=True).stdout
    assert len(out) == 32
    return out


def test_openssl_hmac_matches_rfc4231_case_2() -> None:
    # RFC 4231 test case 2 (key "Jefe"): checks the independent HMAC itself.
    got = openssl_hmac_sha256(b"Jefe".hex(), b"what do ya want for nothing?")
    assert got.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_forged_signed_vector_has_a_good_frame_and_a_bad_tag() -> None:
    vec = next(v for v in VECTORS["vectors"] if v["name"] == "forged_signed_get_status")
    (frame,) = FrameDecoder().feed(bytes.fromhex(vec["wire_hex"]))
    assert isinstance(frame, Frame) and frame.signature is not None
    key = next(v for v in VECTORS["vectors"] if "signature" in v)["signature"]["key_hex"]
    assert openssl_hmac_sha256(key, frame.signed_part)[:8] != frame.signature.tag


def test_largest_frame_is_within_limits() -> None:
    vec = next(v for v in VECTORS["vectors"] if v["name"] == "arm_plan_largest")
    frame = bytes.fromhex(vec["frame_hex"])
    assert len(vec["fields"]["entries"]) == 44
    assert (len(frame) - 4) * 8 <= 5243  # inside CRC-32C's HD 6 range


def test_corrupted_frame_is_dropped_and_next_frame_recovered() -> None:
    bad = bytes.fromhex(next(v for v in VECTORS["vectors"] if v["name"] == "corrupted_hello")["wire_hex"])
    good = bytes.fromhex(next(v for v in VECTORS["vectors"] if v["name"] == "hello")["wire_hex"])
    out = FrameDecoder().feed(bad + good)
    assert isinstance(out[0], FrameError) and out[0].kind in (FrameErrorKind.CRC, FrameErrorKind.COBS)
    assert isinstance(out[1], Frame) and out[1].msg_id == BY_NAME["HELLO"].ID


def test_garbage_then_frame_resynchronises() -> None:
    raw = bytes.fromhex(next(v for v in VECTORS["vectors"] if v["name"] == "garbage_then_frame")["wire_hex"])
    out = FrameDecoder().feed(raw)
    assert len(out) == 2 and isinstance(out[0], FrameError)
    assert isinstance(out[1], Frame) and out[1].seq == 0x0102 and out[1].msg_id == BY_NAME["GET_STATUS"].ID


def test_length_mismatch_is_a_length_error() -> None:
    raw = bytes.fromhex(next(v for v in VECTORS["vectors"] if v["name"] == "length_mismatch")["wire_hex"])
    (err,) = FrameDecoder().feed(raw)
    assert isinstance(err, FrameError) and err.kind is FrameErrorKind.LENGTH


def test_at_least_ten_vectors() -> None:
    assert len(VECTORS["vectors"]) >= 10


@pytest.mark.parametrize("path,render", specgen.OUTPUTS, ids=lambda x: getattr(x, "name", ""))
def test_generated_files_in_sync(path: Path, render) -> None:
    assert path.read_text(encoding="utf-8") == render(), f"{path} is stale: run python -m protocols.wire.specgen"


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")
def test_c_header_compiles_and_matches_layouts(tmp_path: Path) -> None:
    src = tmp_path / "t.c"
    src.write_text(
        '#include "crescent_wire.h"\n#include <stdio.h>\n'
        "int main(void){printf(\"%zu %zu %zu\\n\", sizeof(crescent_telemetry_t), sizeof(crescent_exposure_done_t),"
        " sizeof(crescent_arm_plan_entries_t)); return 0;}\n"
    )
    exe = tmp_path / "t"
    subprocess.run(["gcc", "-Wall", "-Werror", "-I", str(specgen.HEADER_PATH.parent), str(src), "-o", str(exe)], check=True)
    sizes = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout.split()
    assert [int(s) for s in sizes] == [
        BY_NAME["TELEMETRY"].FIXED.size,
        BY_NAME["EXPOSURE_DONE"].FIXED.size,
        BY_NAME["ARM_PLAN"].ENTRY.STRUCT.size,
    ]
