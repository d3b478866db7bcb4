"""Tap and pcap: frames cut at the delimiter, byte-exact libpcap layout, round trips."""

from __future__ import annotations

import io
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hil.capture import DEVICE_TO_HOST, HOST_TO_DEVICE, Packet, Tap, TappedPort
from hil.pcap import DLT_USER0, PcapError, read_pcap, write_pcap
from protocols.wire.framing import FrameDecoder, encode_frame


def test_tap_cuts_frames_across_chunks_and_keeps_noise() -> None:
    f1 = encode_frame(0x06, 1, 1, b"")
    f2 = encode_frame(0x19, 2, 1, b"\x14\x00")
    stream = b"\x11\x22" + f1 + f2
    tap = Tap()
    for k, i in enumerate(range(0, len(stream), 3)):  # 3-byte chunks
        tap.record(HOST_TO_DEVICE, stream[i : i + 3], 0.001 * k)
    tap.record(DEVICE_TO_HOST, b"\x05\x05", 0.5)  # partial run, no delimiter yet
    # the noise ends at f1's leading delimiter; each frame keeps its own leading and trailing 0x00
    assert f1[0] == 0 and f1[-1] == 0
    assert [p.data for p in tap.packets] == [b"\x11\x22\x00", f1[1:], f2]
    assert tap.packets[2].t_s == pytest.approx(0.001 * ((len(stream) - 1) // 3))
    assert tap.bytes_each_way() == (stream, b"\x05\x05")
    tap.flush()
    assert tap.packets[-1] == Packet(0.5, DEVICE_TO_HOST, b"\x05\x05")


def test_pcap_header_and_record_bytes_by_hand() -> None:
    buf = io.BytesIO()
    write_pcap(buf, [Packet(2.000123, 1, b"\x01\x00")])
    raw = buf.getvalue()
    # global header: magic, v2.4, zone 0, sigfigs 0, snaplen 65535, DLT_USER0
    assert raw[:24] == struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 147)
    # record: 2 s, 123 us, 3 bytes captured/original, direction byte 1, data
    assert raw[24:40] == struct.pack("<IIII", 2, 123, 3, 3)
    assert raw[40:] == b"\x01\x01\x00"
    assert DLT_USER0 == 147


@settings(max_examples=50, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 10**9), st.integers(0, 1), st.binary(min_size=0, max_size=700)), max_size=20
    )
)
def test_pcap_round_trip(records: list[tuple[int, int, bytes]]) -> None:
    packets = [Packet(us / 1e6, d, data) for us, d, data in records]
    buf = io.BytesIO()
    assert write_pcap(buf, packets) == len(packets)
    back = read_pcap(io.BytesIO(buf.getvalue()))
    assert [(round(p.t_s * 1e6), p.direction, p.data) for p in back] == records


def test_read_rejects_wrong_link_type_and_truncation() -> None:
    other = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)
    with pytest.raises(PcapError, match="link type 1"):
        read_pcap(io.BytesIO(other))
    buf = io.BytesIO()
    write_pcap(buf, [Packet(0.0, 0, b"abc\x00")])
    with pytest.raises(PcapError, match="truncated"):
        read_pcap(io.BytesIO(buf.getvalue()[:-2]))
    bad_dir = bytearray(buf.getvalue())
    bad_dir[40] = 7
    with pytest.raises(PcapError, match="direction byte 7"):
        read_pcap(io.BytesIO(bytes(bad_dir)))


def test_big_endian_nanosecond_file_is_read() -> None:
    raw = struct.pack(">IHHiIII", 0xA1B23C4D, 2, 4, 0, 0, 65535, 147) + struct.pack(">IIII", 1, 500_000_000, 2, 2) + b"\x00\x00"
    assert read_pcap(io.BytesIO(raw)) == [Packet(1.5, 0, b"\x00")]


class _Loop:
    """A pyserial-like port that echoes what is written (like ``loop://``)."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.baudrate = 921600

    def write(self, data: bytes) -> int:
        self.buf += data
        return len(data)

    def read(self, size: int = 1) -> bytes:
        out = bytes(self.buf[:size])
        del self.buf[:size]
        return out


def test_tapped_port_records_both_directions_on_a_real_loop_port() -> None:
    import serial

    port = serial.serial_for_url("loop://", timeout=0)
    clock = iter([0.1, 0.2, 0.3]).__next__
    tap = Tap()
    tp = TappedPort(port, tap, clock)
    frame = encode_frame(0x06, 4, 1, b"")
    tp.write(frame)
    assert tp.read(len(frame)) == frame
    assert tp.baudrate == port.baudrate  # passes attributes through
    assert [(p.t_s, p.direction, p.data) for p in tap.packets] == [(0.1, 0, frame), (0.2, 1, frame)]
    decoded = FrameDecoder().feed(tap.packets[1].data)
    assert decoded[0].seq == 4
    port.close()


def test_a_streamed_capture_is_a_valid_pcap_at_every_moment(tmp_path) -> None:
    """hil.pcap.PcapWriter as a Tap sink: after every frame the file on disk (not closed) reads back as
    every packet so far, with the batch writer's exact bytes (issue 20: a killed acquire left no capture)."""
    from hil.capture import Tap
    from hil.pcap import PcapWriter, read_pcap, write_pcap
    from protocols.wire.framing import encode_frame

    path = tmp_path / "live.pcap"
    writer = PcapWriter(path)
    tap = Tap(clock_offset_s=1_700_000_000.0, sink=writer.write)
    assert read_pcap(path) == []  # the header is there from the start
    for k in range(20):
        wire = encode_frame(0x10 + k % 3, k, 0, bytes(range(k)))
        tap.record(k % 2, wire[:3], 0.001 * k)  # a frame in two reads: nothing until its delimiter
        assert len(read_pcap(path)) == k
        tap.record(k % 2, wire[3:], 0.001 * k + 0.0005)
        assert read_pcap(path) == tap.packets  # on disk, whole, without a close
    writer.close()
    batch = tmp_path / "batch.pcap"
    write_pcap(batch, tap.packets)
    assert path.read_bytes() == batch.read_bytes()
