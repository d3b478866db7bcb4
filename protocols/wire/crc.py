"""CRC-32C (Castagnoli), the frame check of the wire protocol.

Parameters (Rocksoft/Williams model, as in the "CRC RevEng" catalogue, name
CRC-32/ISCSI): width 32, poly 0x1EDC6F41, init 0xFFFFFFFF, refin true,
refout true, xorout 0xFFFFFFFF, check ("123456789") 0xE3069283,
residue 0xB798B438.

Why this CRC: for data words up to 5,243 bits it has Hamming distance 6
(any 5 bit errors detected), and HD 4 up to 2^31 bits (Koopman, "32-Bit
Cyclic Redundancy Codes for Internet Applications", DSN 2002). The largest
frame (7-byte header + 640-byte payload = 5,176 bits) stays inside the HD 6
range. It is also the CRC with the widest hardware support (SSE 4.2 and
ARMv8 CRC32C instructions, configurable CRC units of common MCUs).
"""

from __future__ import annotations

import crc32c as _crc32c

POLY = 0x1EDC6F41
POLY_REFLECTED = 0x82F63B78
INIT = 0xFFFFFFFF
XOROUT = 0xFFFFFFFF
CHECK = 0xE3069283
RESIDUE = 0xB798B438


def crc32c(data: bytes | bytearray | memoryview, value: int = 0) -> int:
    """CRC-32C of ``data`` (continuing from a previous result ``value``)."""
    return _crc32c.crc32c(data, value)


def crc32c_reference(data: bytes) -> int:
    """Bit-at-a-time CRC-32C, written from the parameters above (for tests and C ports)."""
    crc = INIT
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (POLY_REFLECTED if crc & 1 else 0)
    return crc ^ XOROUT
