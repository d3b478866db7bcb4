"""The Wireshark dissector: generated from the catalogue, and tshark decodes our captures with it."""

from __future__ import annotations

from protocols.wire.framing import PROTOCOL_VERSION

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hil.capture import Tap
from hil.decode import decode_packets
from hil.pcap import write_pcap
from hil.wireshark.generate import DISSECTOR_PATH, generate_lua
from protocols.wire.framing import encode_frame
from protocols.wire.link import Link, Received
from protocols.wire.messages import CATALOGUE, Ack, ArmPlan, HelloReply, Hello, MoveArc, Nak, plan_digest

TSHARK = shutil.which("tshark")


def test_shipped_dissector_is_in_sync_with_the_catalogue() -> None:
    assert DISSECTOR_PATH.read_text(encoding="utf-8") == generate_lua(), "run: python -m hil.wireshark.generate"


def test_dissector_names_every_message_and_field_with_units() -> None:
    lua = DISSECTOR_PATH.read_text(encoding="utf-8")
    for m in CATALOGUE.messages:
        assert f'[{m.id}] = "{m.name}"' in lua
        for f in m.fields:
            assert f'"crescent.{m.name.lower()}.{f.name}"' in lua
    assert '"target_mdeg [millidegree]"' in lua
    assert 'DissectorTable.get("wtap_encap")' in lua


def linked_capture() -> tuple[Tap, list[str]]:
    """Host and device Links talking through a tap: HELLO, ARM_PLAN, MOVE_ARC (NAK), then a corrupted frame."""
    tap, host, dev = Tap(), Link(), Link(initial_seq=500)
    t = 0.0

    def pump() -> None:
        nonlocal t
        for _ in range(4):
            for src, dst, d in ((host, dev, 0), (dev, host, 1)):
                data = src.data_to_send()
                if data:
                    tap.record(d, data, t)
                    dst.receive(data, t)
            for ev in dev.events():
                if isinstance(ev, Received) and ev.needs_answer:
                    m = ev.message
                    if m.NAME == "HELLO":
                        r = HelloReply(protocol_version=PROTOCOL_VERSION, session_id=m.session_id, state=1, max_payload=640)
                    elif m.NAME == "MOVE_ARC":
                        r = Nak(acked_msg_id=m.ID, error_code=13)
                    else:
                        r = Ack(acked_msg_id=m.ID)
                    dev.answer(ev.seq, r, t)
            host.events()
            t += 0.001

    host.send(Hello(protocol_version=PROTOCOL_VERSION, min_version=PROTOCOL_VERSION, session_id=77, heartbeat_period_ms=100, watchdog_timeout_ms=500), t)
    pump()
    plan = ArmPlan(plan_id=3, motion=1, anode_filter=0, focal_spot=0, speed_mdeg_s=4000, entries=[(-7500, 2800, 5000, 50000), (7500, 2900, 5000, 50000)])
    plan.digest = plan_digest(plan)
    host.send(plan, t)
    pump()
    host.send(MoveArc(target_mdeg=-12345, speed_mdeg_s=0), t)
    pump()
    bad = bytearray(encode_frame(0x06, 9, 1, b""))
    bad[-3] ^= 0x40  # a CRC byte
    tap.record(0, bytes(bad), t)
    names = [it.name for it in decode_packets(tap.packets)]
    return tap, names


def _tshark(pcap: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Some builds refuse Lua plugins for root unless this is set in init.lua; -X lua_script still loads ours
    # where allowed. The test skips (not fails) when Lua is disabled.
    return subprocess.run(
        [TSHARK, "-n", "-X", f"lua_script:{DISSECTOR_PATH}", "-r", str(pcap), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_tshark_decodes_a_capture(tmp_path: Path) -> None:
    tap, names = linked_capture()
    pcap = tmp_path / "cap.pcap"
    write_pcap(pcap, tap.packets)
    res = _tshark(pcap, "-T", "fields", "-E", "separator=|", "-e", "crescent.msg", "-e", "crescent.seq",
                  "-e", "crescent.crc_ok", "-e", "crescent.arm_plan.entries.kv_ckv", "-e", "crescent.move_arc.target_mdeg",
                  "-e", "crescent.nak.error_code")
    assert res.returncode == 0, res.stderr
    rows = [line.split("|") for line in res.stdout.splitlines()]
    if rows and all(r == [""] * 6 for r in rows):
        pytest.skip(f"tshark did not run the Lua dissector: {res.stderr.strip()}")
    assert len(rows) == len(tap.packets)
    tshark_names = [r[0] for r in rows]
    # our decoder reports the corrupted frame as an error; tshark names it but flags the CRC
    assert tshark_names[:-1] == names[:-1]
    assert "HELLO" in tshark_names and "HELLO_REPLY" in tshark_names and "ARM_PLAN" in tshark_names
    arm = rows[tshark_names.index("ARM_PLAN")]
    assert arm[3] == "2800,2900"
    assert rows[tshark_names.index("MOVE_ARC")][4] == "-12345"
    assert rows[tshark_names.index("NAK")][5] == "13"
    assert all(r[2] in ("1", "True") for r in rows[:-1])
    assert rows[-1][0] == "GET_STATUS" and rows[-1][2] in ("0", "False")


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_tshark_verbose_shows_units_and_enum_names(tmp_path: Path) -> None:
    tap, _ = linked_capture()
    pcap = tmp_path / "cap.pcap"
    write_pcap(pcap, tap.packets)
    res = _tshark(pcap, "-V")
    assert res.returncode == 0, res.stderr
    if "Crescent wire protocol" not in res.stdout:
        pytest.skip(f"tshark did not run the Lua dissector: {res.stderr.strip()}")
    out = res.stdout
    assert "angle_mdeg [millidegree]: -7500" in out
    assert "motion: CONTINUOUS (1)" in out
    assert "error_code: NOT_HOMED (13)" in out
    assert "[Group: Checksum]" in out and "computed 0x" in out  # the expert item of the bad CRC


@pytest.mark.skipif(TSHARK is None, reason="tshark not installed")
def test_tshark_shows_the_signature_fields(tmp_path: Path) -> None:
    """The signed vectors of SPEC.md: tshark shows link id, timestamp (ticks and UTC) and tag; payload still decoded."""
    import yaml

    from hil.capture import Packet
    from protocols.wire import specgen

    vectors = {v["name"]: v for v in yaml.safe_load(specgen.VECTORS_PATH.read_text())["vectors"]}
    hello, nak = vectors["signed_hello"], vectors["signed_nak_replayed"]
    unsigned = vectors["hello"]
    pcap = tmp_path / "signed.pcap"
    write_pcap(pcap, [Packet(1.0, 0, bytes.fromhex(hello["wire_hex"])), Packet(1.1, 1, bytes.fromhex(nak["wire_hex"])),
                      Packet(1.2, 0, bytes.fromhex(unsigned["wire_hex"]))])
    res = _tshark(pcap, "-T", "fields", "-E", "separator=|", "-e", "crescent.msg", "-e", "crescent.flags.signed",
                  "-e", "crescent.sig.link_id", "-e", "crescent.sig.timestamp", "-e", "crescent.sig.tag",
                  "-e", "crescent.crc_ok", "-e", "crescent.nak.error_code", "-e", "crescent.sig.time")
    assert res.returncode == 0, res.stderr
    rows = [line.split("|") for line in res.stdout.splitlines()]
    if rows and all(r[0] == "" for r in rows):
        pytest.skip(f"tshark did not run the Lua dissector: {res.stderr.strip()}")
    tag_of = lambda v: bytes.fromhex(v["frame_hex"])[-12:-4].hex()  # noqa: E731 - the 8 tag bytes before the CRC
    assert rows[0][:6] == ["HELLO", rows[0][1], "1", str(hello["signature"]["timestamp"]), tag_of(hello), rows[0][5]]
    assert rows[0][1] in ("1", "True") and rows[0][5] in ("1", "True")
    assert rows[0][7] == "2026-01-01 00:00:00"
    assert rows[1][0] == "NAK" and rows[1][2] == "0" and rows[1][6] == "22" and rows[1][4] == tag_of(nak)
    assert rows[2][0] == "HELLO" and rows[2][1] in ("0", "False") and rows[2][2] == ""  # unsigned: no signature
