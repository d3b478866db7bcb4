"""The simulated detector's TCP frame server, over a real socket."""

from __future__ import annotations

import socket

import numpy as np

from protocols.data_channel import Missing, ResponseParser, encode_request
from simulator.gantry.data_server import FrameServer
from simulator.gantry.detector import write_frame


def ask(sock: socket.socket, wire: bytes, n_answers: int = 1) -> list:
    sock.sendall(wire)
    parser, out = ResponseParser(), []
    while len(out) < n_answers:
        chunk = sock.recv(65536)
        if not chunk:
            break
        out += parser.feed(chunk)
    return out


def test_serves_frames_by_locator_on_one_connection(tmp_path) -> None:
    img = (np.arange(12 * 16, dtype=np.uint16).reshape(12, 16) * 7)
    frame = write_frame(tmp_path, 5, img)
    with FrameServer(tmp_path) as server, socket.create_connection(server.address, timeout=5) as sock:
        assert server.url == f"tcp://127.0.0.1:{server.address[1]}"
        got = ask(sock, encode_request(frame.locator) + encode_request("frame_6.raw"), 2)
    assert got[0] == img.astype("<u2").tobytes()
    assert isinstance(got[1], Missing) and "frame_6.raw" in got[1].reason


def test_a_request_outside_the_store_is_refused_and_the_connection_closed(tmp_path) -> None:
    (tmp_path.parent / "secret.raw").write_bytes(b"x")
    with FrameServer(tmp_path) as server, socket.create_connection(server.address, timeout=5) as sock:
        got = ask(sock, b"GET ../secret.raw\n")
        assert isinstance(got[0], Missing) and "bad request" in got[0].reason
        assert sock.recv(10) == b""  # closed by the server


def test_only_frame_files_are_served(tmp_path) -> None:
    (tmp_path / "device-events.jsonl").write_text("{}\n")
    with FrameServer(tmp_path) as server, socket.create_connection(server.address, timeout=5) as sock:
        got = ask(sock, encode_request("device-events.jsonl"))
    assert isinstance(got[0], Missing) and "not a frame name" in got[0].reason


def test_a_wildcard_bind_advertises_a_dialable_name(tmp_path) -> None:
    with FrameServer(tmp_path, bind="0.0.0.0") as server:
        assert not server.url.startswith("tcp://0.0.0.0") and server.url.endswith(f":{server.address[1]}")
    with FrameServer(tmp_path, advertise_host="rig-7.local") as server:
        assert server.url == f"tcp://rig-7.local:{server.address[1]}"


def test_close_drops_open_connections(tmp_path) -> None:
    server = FrameServer(tmp_path)
    sock = socket.create_connection(server.address, timeout=5)
    ask(sock, encode_request("frame_1.raw"))  # served, so the connection is registered
    server.close()
    assert sock.recv(10) == b""  # the host sees the channel go down at once
    sock.close()
