"""Classic libpcap files for Crescent captures (link type DLT_USER0 = 147).

Each record is a 1-byte direction pseudo-header (0 host->device, 1
device->host) followed by one COBS frame including its 0x00 delimiter (see
:mod:`hil.capture`). Timestamps are written with microsecond resolution
(magic 0xA1B2C3D4, little-endian); the reader also accepts big-endian files
and the nanosecond variant (0xA1B23C4D). Wireshark and tshark open these
files; ``hil/wireshark/crescent.lua`` decodes them.

Example
-------
>>> import io
>>> from hil.capture import Packet
>>> buf = io.BytesIO()
>>> write_pcap(buf, [Packet(1.5, 0, b"\\x02\\x01\\x00")])
1
>>> read_pcap(io.BytesIO(buf.getvalue()))
[Packet(t_s=1.5, direction=0, data=b'\\x02\\x01\\x00')]
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from hil.capture import Packet

DLT_USER0 = 147
SNAPLEN = 65535
MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D
_GLOBAL = "IHHiIII"  # magic, major, minor, thiszone, sigfigs, snaplen, network
_RECORD = "IIII"  # ts_sec, ts_frac, incl_len, orig_len


class PcapError(ValueError):
    """The file is not a Crescent pcap (wrong magic, link type or truncated record)."""


def write_pcap(dest: str | Path | BinaryIO, packets: Iterable[Packet]) -> int:
    """Write ``packets`` to ``dest`` (path or binary file); return the number of records.

    Times are epoch seconds (the :class:`~hil.capture.Tap` adds its clock offset) and must be >= 0.
    """
    if isinstance(dest, (str, Path)):
        with open(dest, "wb") as fh:
            return write_pcap(fh, packets)
    dest.write(_HEADER)
    n = 0
    for p in packets:
        dest.write(_record_bytes(p))
        n += 1
    return n


_HEADER = struct.pack("<" + _GLOBAL, MAGIC_US, 2, 4, 0, 0, SNAPLEN, DLT_USER0)
_REC = struct.Struct("<" + _RECORD)


def _record_bytes(p: Packet) -> bytes:
    """One pcap record (header + direction byte + frame) of packet ``p``."""
    if p.t_s < 0:
        raise ValueError(f"packet time {p.t_s} s is negative")
    us = round(p.t_s * 1e6)
    body = bytes((p.direction,)) + p.data
    return _REC.pack(us // 1_000_000, us % 1_000_000, len(body), len(body)) + body


class PcapWriter:
    """A pcap file written as packets arrive: the global header at once, then each record written whole
    and flushed to the OS, so the file is a valid capture at every moment (a killed process leaves
    every packet it had seen, up to the last whole record).

    Use as a :class:`~hil.capture.Tap` ``sink``: ``Tap(sink=writer.write)``. With ``fsync`` each record
    is also forced to the disk (survives a power cut, slower).
    """

    def __init__(self, path: str | Path, *, fsync: bool = False) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self.count = 0
        self._fh: BinaryIO | None = open(self.path, "wb")
        self._put(_HEADER)

    def _put(self, data: bytes) -> None:
        assert self._fh is not None
        self._fh.write(data)  # one write per record: a torn record is at most the last one
        self._fh.flush()
        if self.fsync:
            import os

            os.fsync(self._fh.fileno())

    def write(self, packet: Packet) -> None:
        """Append one packet (ignored once closed)."""
        if self._fh is None:
            return
        self._put(_record_bytes(packet))
        self.count += 1

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> "PcapWriter":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_pcap(src: str | Path | BinaryIO) -> list[Packet]:
    """Read a Crescent pcap written by :func:`write_pcap` (or any DLT_USER0 capture of this format)."""
    if isinstance(src, (str, Path)):
        with open(src, "rb") as fh:
            return read_pcap(fh)
    head = src.read(24)
    if len(head) < 24:
        raise PcapError(f"file too short for a pcap header ({len(head)} bytes)")
    for order in ("<", ">"):
        magic = struct.unpack(order + "I", head[:4])[0]
        if magic in (MAGIC_US, MAGIC_NS):
            break
    else:
        raise PcapError(f"not a classic pcap file (magic {head[:4].hex()})")
    scale = 1e-6 if magic == MAGIC_US else 1e-9
    *_, network = struct.unpack(order + _GLOBAL, head)
    if network != DLT_USER0:
        raise PcapError(f"link type {network}, a Crescent capture uses DLT_USER0 ({DLT_USER0})")
    rec = struct.Struct(order + _RECORD)
    out: list[Packet] = []
    while True:
        rh = src.read(rec.size)
        if not rh:
            return out
        if len(rh) < rec.size:
            raise PcapError(f"truncated record header after {len(out)} records")
        sec, frac, incl, _orig = rec.unpack(rh)
        body = src.read(incl)
        if len(body) < incl or incl < 1:
            raise PcapError(f"truncated record {len(out)}: {len(body)} of {incl} bytes")
        if body[0] not in (0, 1):
            raise PcapError(f"record {len(out)}: direction byte {body[0]} is not 0 or 1")
        out.append(Packet(sec + frac * scale, body[0], body[1:]))
