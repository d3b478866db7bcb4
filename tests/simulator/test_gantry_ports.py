"""The gantry as a separate process: a real pseudo-terminal and a TCP socket, driven with plain pyserial."""

from __future__ import annotations

from protocols.wire.framing import PROTOCOL_VERSION

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial
import yaml

from protocols.wire import messages as M
from protocols.wire.framing import FLAG_ACK_REQ, FLAG_RESPONSE, FLAG_SYN, Frame, FrameDecoder, encode_frame
from simulator.gantry.firmware import DEVICE_CAPABILITIES

HELLO = M.Hello(protocol_version=PROTOCOL_VERSION, min_version=PROTOCOL_VERSION, host_capabilities=0, session_id=0x12345678,
                heartbeat_period_ms=100, watchdog_timeout_ms=500)
EXPECTED_REPLY = M.HelloReply(protocol_version=PROTOCOL_VERSION, device_capabilities=DEVICE_CAPABILITIES, session_id=0x12345678,
                              firmware_version=0x000100, serial_number=1001, watchdog_timeout_ms=500, max_payload=640,
                              state=1, resumed_plan_id=0, resumed_exposures_done=0)


def _vector(name: str) -> dict:
    """A test vector of SPEC.md (protocols/wire/test_vectors.yaml)."""
    path = Path(__file__).resolve().parents[2] / "protocols" / "wire" / "test_vectors.yaml"
    return next(v for v in yaml.safe_load(path.read_text())["vectors"] if v["name"] == name)


def _start(args: list[str], tmp_path: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "crescent", "gantry", *args, "--quiet",
                             "--data-dir", str(tmp_path)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if not line.startswith("listening "):
        proc.kill()
        pytest.fail(f"gantry did not start: {line!r} {proc.stderr.read() if proc.stderr else ''}")
    return proc, line


def _stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise


def _read_reply(port: serial.Serial, seq: int, timeout_s: float = 5.0) -> Frame:
    dec = FrameDecoder()
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        for item in dec.feed(port.read(512)):
            if isinstance(item, Frame) and item.flags & FLAG_RESPONSE and item.seq == seq:
                return item
    pytest.fail("no response from the gantry")


def test_hello_test_vector_over_a_real_pseudo_terminal(tmp_path: Path) -> None:
    proc, line = _start(["--pty"], tmp_path)
    try:
        kind, path = line.split()[1:]
        assert kind == "pty" and os.path.exists(path)
        hello_v, reply_v = _vector("hello"), _vector("hello_reply")
        with serial.Serial(path, 921600, timeout=0.1) as port:
            wire = bytes.fromhex(hello_v["wire_hex"])
            assert wire == encode_frame(HELLO.ID, 0x0100, FLAG_ACK_REQ | FLAG_SYN, HELLO.pack())
            port.write(wire)  # the SPEC.md vector, written with plain pyserial
            frame = _read_reply(port, hello_v["seq"])
        assert frame.msg_id == M.HelloReply.ID and frame.flags == reply_v["flags"] == FLAG_RESPONSE
        reply = M.HelloReply.unpack(frame.payload)
        assert reply == EXPECTED_REPLY
        assert reply.to_dict() == reply_v["fields"]  # the specified answer, field by field
        assert encode_frame(frame.msg_id, frame.seq, frame.flags, frame.payload).hex() == reply_v["wire_hex"]
        assert DEVICE_CAPABILITIES == 63
    finally:
        assert _stop(proc) == 0
    assert (tmp_path / "device-events.jsonl").read_text().count('"msg":"HELLO"') == 1


def test_tcp_socket_serves_one_client_with_pyserial_url(tmp_path: Path) -> None:
    proc, line = _start(["--tcp", "0"], tmp_path)
    try:
        kind, where = line.split()[1:]
        host, port_s = where.rsplit(":", 1)
        assert kind == "tcp" and host == "127.0.0.1"
        with serial.serial_for_url(f"socket://{where}", timeout=0.1) as port:
            port.write(encode_frame(HELLO.ID, 0x0100, FLAG_ACK_REQ | FLAG_SYN, HELLO.pack()))
            frame = _read_reply(port, 0x0100)
            assert M.HelloReply.unpack(frame.payload) == EXPECTED_REPLY
            get = M.GetInfo()
            port.write(encode_frame(get.ID, 0x0101, FLAG_ACK_REQ, get.pack()))
            info = M.DeviceInfo.unpack(_read_reply(port, 0x0101).payload)
            assert info.data_channel == "file://" + str(tmp_path.resolve()) and info.sid_um == 660_000
    finally:
        assert _stop(proc) == 0


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    proc, _ = _start(["--pty"], tmp_path)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


def test_real_time_exam_over_tcp_renders_images_in_the_worker(tmp_path: Path) -> None:
    """HELLO, HOME, ARM, FIRE against serve() in real time, with a wall-clock Link client over pyserial."""
    import threading

    from protocols.wire.crc import crc32c
    from protocols.wire.link import Answered, Link, Received
    from simulator.gantry.client import hello, make_plan
    from simulator.gantry.config import load_config, small_detector
    from simulator.gantry.realtime import serve

    cfg = load_config().with_overrides(geometry={"detector": small_detector(16, 20, 8).model_dump()},
                                       phantom={"name": "uniform"})
    where: list[str] = []
    stop = threading.Event()
    server = threading.Thread(target=serve, args=(cfg,), kwargs=dict(mode="tcp", data_dir=tmp_path, seed=3, stop=stop,
                                                                     on_listening=where.append), daemon=True)
    server.start()
    deadline = time.monotonic() + 20
    while not where and time.monotonic() < deadline:
        time.sleep(0.01)
    addr = where[0].split()[1]
    link = Link()
    events: list[M.Message] = []
    answers: list[M.Message] = []
    plan = make_plan(4, [0.0], continuous=False)
    t0 = time.monotonic()

    def pump(port: serial.Serial, done, timeout_s: float = 20.0) -> None:
        """Run the wall-clock link until ``done()``; ACK every device event, collect every answer."""
        end = time.monotonic() + timeout_s
        while not done() and time.monotonic() < end:
            now = time.monotonic() - t0
            port.write(link.data_to_send())
            link.receive(port.read(4096), now)
            for ev in link.events():
                if isinstance(ev, Received) and ev.needs_answer:
                    link.answer(ev.seq, M.Ack(acked_msg_id=ev.message.ID, detail=0), now)
                    events.append(ev.message)
                elif isinstance(ev, Answered):
                    answers.append(ev.response)
            link.tick(now)

    def call(port: serial.Serial, msg: M.Message) -> None:
        n = len(answers)
        link.send(msg, time.monotonic() - t0)
        pump(port, lambda: len(answers) > n)

    try:
        with serial.serial_for_url(f"socket://{addr}", timeout=0.01) as port:
            call(port, hello())
            call(port, M.Home())
            pump(port, lambda: any(e.NAME == "MOTION_DONE" for e in events))
            call(port, plan)
            call(port, M.Fire(plan_id=4, digest=plan.digest))
            pump(port, lambda: any(e.NAME == "IMAGE_READY" for e in events))
    finally:
        stop.set()
        server.join(timeout=15)
    assert [a.NAME for a in answers] == ["HELLO_REPLY", "ACK", "ACK", "ACK"]
    ready = [e for e in events if e.NAME == "IMAGE_READY"]
    assert ready, [e.NAME for e in events]
    raw = (tmp_path / ready[0].locator).read_bytes()
    assert crc32c(raw) == ready[0].checksum and len(raw) == 16 * 20 * 2
    assert not server.is_alive()
