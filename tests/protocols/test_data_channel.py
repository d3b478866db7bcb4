"""The TCP data channel codec: exact bytes, refusals by name, bounded parsers under fuzzing."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols.data_channel import (
    MAX_FRAME_BYTES,
    MAX_LINE,
    DataChannelProtocolError,
    Missing,
    RequestParser,
    ResponseParser,
    encode_frame,
    encode_missing,
    encode_request,
)


def test_exact_bytes_of_each_message() -> None:
    assert encode_request("frame_12.raw") == b"GET frame_12.raw\n"
    assert encode_frame(b"\x01\x02\x03") == b"OK 3\n\x01\x02\x03"
    assert encode_missing("no frame 7") == b"NO no frame 7\n"


@pytest.mark.parametrize("locator", ["../etc/passwd", "/etc/passwd", ".hidden", "a/b", "", "x" * 201, "frame 1"])
def test_locators_that_could_escape_the_store_are_refused(locator: str) -> None:
    with pytest.raises(DataChannelProtocolError, match="refused"):
        encode_request(locator)
    assert isinstance(RequestParser().feed(b"GET " + locator.encode() + b"\n")[0], DataChannelProtocolError)


def test_requests_split_anywhere_and_several_per_chunk() -> None:
    parser = RequestParser()
    wire = encode_request("frame_1.raw") + encode_request("frame_2.raw")
    got = [item for i in range(len(wire)) for item in parser.feed(wire[i:i + 1])]
    assert got == ["frame_1.raw", "frame_2.raw"]
    assert RequestParser().feed(wire) == ["frame_1.raw", "frame_2.raw"]


def test_responses_split_anywhere() -> None:
    frame = bytes(range(256)) * 3
    wire = encode_frame(frame) + encode_missing("no frame 9 (yet)") + encode_frame(b"")
    parser = ResponseParser()
    got = [item for i in range(0, len(wire), 7) for item in parser.feed(wire[i:i + 7])]
    assert got == [frame, Missing("no frame 9 (yet)"), b""]


def test_bad_status_lines_and_oversized_frames_are_named() -> None:
    with pytest.raises(DataChannelProtocolError, match="bad status line"):
        ResponseParser().feed(b"HELLO\n")
    with pytest.raises(DataChannelProtocolError, match="exceeds"):
        ResponseParser().feed(b"OK %d\n" % (MAX_FRAME_BYTES + 1))
    with pytest.raises(DataChannelProtocolError, match="longer than"):
        ResponseParser().feed(b"O" * MAX_LINE)
    assert isinstance(RequestParser().feed(b"PUT x\n")[0], DataChannelProtocolError)
    assert isinstance(RequestParser().feed(b"G" * MAX_LINE)[0], DataChannelProtocolError)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=400), max_size=20))
def test_request_parser_never_fails_otherwise_and_stays_bounded(chunks: list[bytes]) -> None:
    parser = RequestParser()
    for chunk in chunks:
        for item in parser.feed(chunk):
            assert isinstance(item, (str, DataChannelProtocolError))
        assert len(parser._buf) < MAX_LINE


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=400), max_size=20))
def test_response_parser_only_raises_its_own_error(chunks: list[bytes]) -> None:
    parser = ResponseParser()
    try:
        for chunk in chunks:
            for item in parser.feed(chunk):
                assert isinstance(item, (bytes, Missing))
            assert parser._need is not None or len(parser._buf) < MAX_LINE
    except DataChannelProtocolError:
        pass
