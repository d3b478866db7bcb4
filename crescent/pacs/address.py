"""A DICOM peer's address, ``AE@HOST:PORT``: parsed and checked without loading pynetdicom.

Example
-------
>>> a = parse_address("ORTHANC@127.0.0.1:4242")
>>> (a.ae_title, a.host, a.port)
('ORTHANC', '127.0.0.1', 4242)
>>> str(a)
'ORTHANC@127.0.0.1:4242'
>>> parse_address("[::1]:104", what="--to")
Traceback (most recent call last):
...
ValueError: --to '[::1]:104': expected AE@HOST:PORT (e.g. ORTHANC@127.0.0.1:4242): no '@' between the AE title and the host
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: AE title: 1 to 16 characters of the Default Character Repertoire, no backslash or control character
#: (DICOM PS3.5 table 6.2-1, VR AE); leading and trailing spaces are not significant.
AE_TITLE_MAX = 16
#: Our own AE title when none is given (the calling AE of every association we open).
DEFAULT_CALLING_AE = "CRESCENT"

_EXAMPLE = "ORTHANC@127.0.0.1:4242"


def check_ae_title(value: str, what: str = "AE title") -> str:
    """``value`` stripped, or ValueError naming ``what``, the value and the limit (1..16 printable ASCII)."""
    ae = value.strip()
    if not ae:
        raise ValueError(f"{what} {value!r}: empty (1 to {AE_TITLE_MAX} characters)")
    if len(ae) > AE_TITLE_MAX:
        raise ValueError(f"{what} {value!r}: {len(ae)} characters, the limit is {AE_TITLE_MAX}")
    bad = [c for c in ae if not (0x20 <= ord(c) < 0x7F) or c == "\\"]
    if bad:
        raise ValueError(f"{what} {value!r}: character {bad[0]!r} not allowed (printable ASCII except backslash)")
    return ae


class PacsAddress(BaseModel):
    """Where a DICOM service listens: the called AE title, a host name or IP address and a TCP port."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ae_title: str = Field(description="called AE title, 1..16 characters")
    host: str = Field(min_length=1, description="host name or IP address")
    port: int = Field(ge=1, le=65535, description="TCP port")

    @field_validator("ae_title")
    @classmethod
    def _ae(cls, v: str) -> str:
        return check_ae_title(v, "called AE title")

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.ae_title}@{host}:{self.port}"


def parse_address(text: str, what: str = "address") -> PacsAddress:
    """Parse ``AE@HOST:PORT`` (IPv6 hosts in brackets, ``AE@[::1]:104``); ValueError says what is wrong."""
    def bad(why: str) -> ValueError:
        return ValueError(f"{what} {text!r}: expected AE@HOST:PORT (e.g. {_EXAMPLE}): {why}")

    if "@" not in text:
        raise bad("no '@' between the AE title and the host")
    ae, _, rest = text.rpartition("@")
    if not ae.strip():
        raise bad("no AE title before '@'")
    m = re.fullmatch(r"\[(?P<v6>[^\]]+)\]:(?P<port>[^:]*)|(?P<host>[^:\[\]]*):(?P<port2>[^:]*)", rest)
    if not m:
        raise bad(f"{rest!r} is not HOST:PORT")
    host = m.group("v6") or m.group("host") or ""
    port_text = m.group("port") if m.group("v6") else m.group("port2")
    if not host:
        raise bad("no host before ':'")
    if not port_text or not port_text.isdigit():
        raise bad(f"port {port_text!r} is not a number")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise bad(f"port {port} out of range 1..65535")
    try:
        return PacsAddress(ae_title=check_ae_title(ae, "AE title"), host=host, port=port)
    except ValueError as exc:
        raise bad(str(exc).splitlines()[-1] if "validation error" in str(exc) else str(exc)) from None
