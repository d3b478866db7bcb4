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


def test_reads_a_frame_that_passes_the_crc_check(tmp_path) -> None:
    frame = write_frame(tmp_path, 3, np.full((8, 10), 1234, dtype=np.uint16))
    with FrameServer(tmp_path) as server:
        channel = open_data_channel(server.url)
        assert isinstance(channel, TcpDataChannel)
        try:
            assert channel.read("frame_4.raw") is None and "frame_4.raw" in channel.last_problem
            chk = check_frame(channel.read(frame.locator), ready_for(frame))
            assert chk.data is not None and chk.problem == ""
            # the connection is kept: a second read on the same socket
            assert channel.read(frame.locator) == chk.data
        finally:
            channel.close()


def test_a_dead_server_gives_none_within_the_timeouts_then_recovers(tmp_path) -> None:
    frame = write_frame(tmp_path, 1, np.zeros((4, 4), dtype=np.uint16))
    server = FrameServer(tmp_path)
    port = server.address[1]
    channel = TcpDataChannel(server.url, connect_timeout_s=0.5, read_timeout_s=0.5)
    assert channel.read(frame.locator) is not None
    server.close()
    t0 = time.monotonic()
    assert channel.read(frame.locator) is None
    assert time.monotonic() - t0 < 3.0 and channel.last_problem.startswith(server.url)
    with FrameServer(tmp_path, port=port):  # back on the same port: the next read reconnects
        assert channel.read(frame.locator) is not None
    channel.close()


def test_a_server_that_never_answers_does_not_hang_the_host(tmp_path) -> None:
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(1)
    try:
        channel = TcpDataChannel(f"tcp://127.0.0.1:{silent.getsockname()[1]}", read_timeout_s=0.3)
        t0 = time.monotonic()
        assert channel.read("frame_1.raw") is None
        assert time.monotonic() - t0 < 2.0 and "timed out" in channel.last_problem
    finally:
        silent.close()


@pytest.mark.parametrize("url", ["ftp://example/x", "tcp://127.0.0.1", "http://h:1/"])
def test_unknown_channels_are_named(url: str) -> None:
    with pytest.raises(DataChannelError, match="data channel"):
        open_data_channel(url)
