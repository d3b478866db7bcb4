"""The Crescent wire protocol: catalogue, CRC-32C + COBS framing, codec and the sans-IO reliable link.

See protocols/SPEC.md for the byte-level specification.
"""
