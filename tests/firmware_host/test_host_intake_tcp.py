"""The host's TCP data channel against the simulated detector's frame server (real sockets)."""

from __future__ import annotations

import socket
import time

import numpy as np
import pytest

from firmware_host.intake import DataChannelError, TcpDataChannel, check_frame, open_data_channel
from protocols.wire.messages import ImageReady
from simulator.gantry.data_server import FrameServer
from simulator.gantry.detector import write_frame


def ready_for(frame) -> ImageReady:
    return ImageReady(frame_id=frame.frame_id, rows=frame.rows, cols=frame.cols, bits=16, size_bytes=frame.size_bytes,
                      checksum=frame.checksum, locator=frame.locator)


def read_until(channel: TcpDataChannel, locator: str, done, timeout_s: float = 5.0) -> tuple[bytes | None, float]:
    """Read as the exam plan does (read, sleep, read...) until ``done(data, channel)``; (last data, longest read s)."""
    end, longest = time.monotonic() + timeout_s, 0.0
    while True:
        t0 = time.monotonic()
        data = channel.read(locator)
        longest = max(longest, time.monotonic() - t0)
        if done(data, channel) or time.monotonic() > end:
            return data, longest
        time.sleep(0.01)


def test_reads_a_frame_that_passes_the_crc_check(tmp_path) -> None:
    frame = write_frame(tmp_path, 3, np.full((8, 10), 1234, dtype=np.uint16))
    with FrameServer(tmp_path) as server:
        channel = open_data_channel(server.url)
        assert isinstance(channel, TcpDataChannel)
        try:
            data, _ = read_until(channel, "frame_4.raw", lambda d, c: "no frame" in c.last_problem)
            assert data is None and "frame_4.raw" in channel.last_problem
            data, _ = read_until(channel, frame.locator, lambda d, c: d is not None)
            chk = check_frame(data, ready_for(frame))
            assert chk.data is not None and chk.problem == ""
            again, _ = read_until(channel, frame.locator, lambda d, c: d is not None)  # same kept connection
            assert again == chk.data
        finally:
            channel.close()


def test_a_dead_server_is_reported_then_the_channel_recovers(tmp_path) -> None:
    frame = write_frame(tmp_path, 1, np.zeros((4, 4), dtype=np.uint16))
    server = FrameServer(tmp_path)
    port = server.address[1]
    channel = TcpDataChannel(server.url, connect_timeout_s=0.5, read_timeout_s=0.5)
    assert read_until(channel, frame.locator, lambda d, c: d is not None)[0] is not None
    server.close()
    data, _ = read_until(channel, frame.locator, lambda d, c: c.last_problem.startswith(server.url + ": ")
                         and "fetching" not in c.last_problem, timeout_s=3.0)
    assert data is None and "fetching" not in channel.last_problem
    with FrameServer(tmp_path, port=port):  # back on the same port: the next fetch reconnects
        assert read_until(channel, frame.locator, lambda d, c: d is not None)[0] is not None
    channel.close()


def test_a_server_that_never_answers_never_blocks_the_reader(tmp_path) -> None:
    """The control loop calls read(): it must return at once even while the fetch hangs."""
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        channel = TcpDataChannel(f"tcp://127.0.0.1:{silent.getsockname()[1]}", read_timeout_s=3.0)
        data, longest = read_until(channel, "frame_1.raw", lambda d, c: "timed out" in c.last_problem, timeout_s=12.0)
        assert data is None and "timed out" in channel.last_problem
        # a blocking read would have waited out the 3 s fetch timeout; each read returned well before it
        assert longest < 1.5
        channel.close()
    finally:
        silent.close()


@pytest.mark.parametrize("url", ["ftp://example/x", "tcp://127.0.0.1", "http://h:1/"])
def test_unknown_channels_are_named(url: str) -> None:
    with pytest.raises(DataChannelError, match="data channel"):
        open_data_channel(url)
