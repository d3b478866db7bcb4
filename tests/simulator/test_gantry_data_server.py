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


def test_token_required_and_a_stale_token_refused(tmp_path) -> None:
    """SPEC 2.6: every request carries the session's token; none, or an earlier session's, is refused and the
    connection closed. The host side (TcpDataChannel) sends it and gets the frame."""
    from firmware_host.intake import TcpDataChannel

    img = np.arange(6 * 8, dtype=np.uint16).reshape(6, 8)
    frame = write_frame(tmp_path, 1, img)
    current = {"token": "0f" * 16}
    with FrameServer(tmp_path, token=lambda: current["token"]) as server:
        with socket.create_connection(server.address, timeout=5) as sock:
            (got,) = ask(sock, encode_request(frame.locator))
            assert isinstance(got, Missing) and "token required" in got.reason and sock.recv(10) == b""
        with socket.create_connection(server.address, timeout=5) as sock:
            assert ask(sock, encode_request(frame.locator, "0f" * 16)) == [img.astype("<u2").tobytes()]
        current["token"] = "a1" * 16  # a new HELLO: a new token
        with socket.create_connection(server.address, timeout=5) as sock:
            (got,) = ask(sock, encode_request(frame.locator, "0f" * 16))
            assert isinstance(got, Missing) and "stale or wrong token" in got.reason and sock.recv(10) == b""
        channel = TcpDataChannel(server.url, token="a1" * 16, poll_wait_s=2.0)
        try:
            data = None
            for _ in range(50):
                data = channel.read(frame.locator)
                if data is not None:
                    break
            assert data == img.astype("<u2").tobytes(), channel.last_problem
        finally:
            channel.close()


def test_tls_data_channel_with_a_self_signed_certificate(tmp_path) -> None:
    """tls://: the host verifies the device's certificate (made here by openssl) and host name; a host that does
    not trust it gets no frame."""
    import shutil
    import ssl
    import subprocess

    from firmware_host.intake import TcpDataChannel

    if shutil.which("openssl") is None:
        import pytest

        pytest.skip("openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    store = tmp_path / "frames"
    store.mkdir()
    img = np.arange(4 * 4, dtype=np.uint16).reshape(4, 4)
    frame = write_frame(store, 2, img)

    def fetch(ca: str | None) -> tuple[bytes | None, str]:
        channel = TcpDataChannel(server.url, token="77" * 16, ca_file=ca, poll_wait_s=2.0)
        try:
            for _ in range(20):
                data = channel.read(frame.locator)
                if data is not None or "fetching" not in channel.last_problem:
                    return data, channel.last_problem
            return None, channel.last_problem
        finally:
            channel.close()

    with FrameServer(store, token=lambda: "77" * 16, tls=ctx) as server:
        assert server.url.startswith("tls://127.0.0.1:")
        assert fetch(str(cert)) == (img.astype("<u2").tobytes(), "")
        data, problem = fetch(None)  # the system's CAs do not know the self-signed certificate
        assert data is None and "CERTIFICATE_VERIFY_FAILED" in problem
        with socket.create_connection(server.address, timeout=5) as sock:  # plain TCP to a TLS server: nothing served
            sock.sendall(encode_request(frame.locator, "77" * 16))
            try:
                answer = sock.recv(100)
            except ConnectionResetError:
                answer = b""
            assert b"OK" not in answer
