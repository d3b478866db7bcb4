"""Load and check the declarative message catalogue (``catalogue.yaml``).

The catalogue is data; this module turns it into frozen definitions that the
codec, the spec generator and the C-header generator share. Nothing here
encodes bytes (see :mod:`protocols.wire.messages`).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import yaml

#: struct format letter, size in bytes, minimum, maximum of each scalar wire type.
SCALAR_TYPES: dict[str, tuple[str, int, int, int]] = {
    "u8": ("B", 1, 0, 2**8 - 1),
    "u16": ("H", 2, 0, 2**16 - 1),
    "u32": ("I", 4, 0, 2**32 - 1),
    "u64": ("Q", 8, 0, 2**64 - 1),
    "i8": ("b", 1, -(2**7), 2**7 - 1),
    "i16": ("h", 2, -(2**15), 2**15 - 1),
    "i32": ("i", 4, -(2**31), 2**31 - 1),
    "i64": ("q", 8, -(2**63), 2**63 - 1),
}

KINDS = ("command", "event", "response", "stream")


class CatalogueError(ValueError):
    """The catalogue file is inconsistent (a developer error, caught by the tests)."""


@dataclass(frozen=True)
class FieldDef:
    """One field of a message (or of an array record).

    ``type`` is a scalar type name, ``"str"`` or ``"array"``. For ``str``,
    ``max_len`` bytes of UTF-8 follow a u8 length. For ``array``, ``record``
    lists the record's scalar fields and ``max_count`` bounds the u8 count.
    """

    name: str
    type: str
    description: str = ""
    min: int | None = None
    max: int | None = None
    enum: str | None = None
    max_len: int = 0
    max_count: int = 0
    record: tuple["FieldDef", ...] = ()

    @property
    def is_scalar(self) -> bool:
        return self.type in SCALAR_TYPES

    @property
    def lo(self) -> int:
        """Lowest valid value (declared ``min`` or the type's minimum)."""
        return SCALAR_TYPES[self.type][2] if self.min is None else self.min

    @property
    def hi(self) -> int:
        """Highest valid value (declared ``max`` or the type's maximum)."""
        return SCALAR_TYPES[self.type][3] if self.max is None else self.max

    @property
    def unit(self) -> str:
        """Unit implied by the name suffix (``_mdeg`` -> ``mdeg``), or ``""``."""
        for suffix, unit in UNIT_SUFFIXES:
            if self.name.endswith(suffix):
                return unit
        return ""


UNIT_SUFFIXES: tuple[tuple[str, str], ...] = (
    ("_mdeg_s", "millidegree/s"),
    ("_mdeg", "millidegree"),
    ("_dn", "decinewton"),
    ("_ckv", "centi-kV"),
    ("_dma", "0.1 mA"),
    ("_nas", "nanoampere-second (nAs = 1e-6 mAs)"),
    ("_us", "microsecond"),
    ("_ms", "millisecond"),
    ("_um_s", "micrometre/s"),
    ("_um", "micrometre"),
    ("_nm", "nanometre"),
    ("_permille", "1/1000"),
    ("_bytes", "byte"),
)


@dataclass(frozen=True)
class MessageDef:
    """One message of the catalogue."""

    name: str
    id: int
    kind: str
    description: str
    fields: tuple[FieldDef, ...]
    response: str | None = None
    ack_detail: str = ""

    @property
    def needs_answer(self) -> bool:
        """True when the receiver must answer it (ACK_REQ set on the wire)."""
        return self.kind in ("command", "event")


@dataclass(frozen=True)
class Catalogue:
    """The whole catalogue: messages, enumerations, bit assignments, error codes."""

    protocol_version: int
    min_supported_version: int
    messages: tuple[MessageDef, ...]
    enums: dict[str, tuple[str, dict[str, int]]]
    interlock_bits: dict[str, int]
    capability_bits: dict[str, int]
    error_codes: dict[str, tuple[int, str]]
    error_details: dict[str, str] = field(default_factory=dict)
    by_id: dict[int, MessageDef] = field(default_factory=dict)
    by_name: dict[str, MessageDef] = field(default_factory=dict)


def _field(raw: dict[str, Any], where: str) -> FieldDef:
    known = {"name", "type", "description", "min", "max", "enum", "max_len", "max_count", "fields", "unit"}
    unknown = set(raw) - known
    if unknown:
        raise CatalogueError(f"{where}: unknown keys {sorted(unknown)}")
    ftype = raw["type"]
    record: tuple[FieldDef, ...] = ()
    if ftype == "array":
        record = tuple(_field(r, f"{where}.{r.get('name')}") for r in raw.get("fields", []))
        if not record or not all(r.is_scalar for r in record):
            raise CatalogueError(f"{where}: array records must hold scalar fields only")
        if not 0 < int(raw.get("max_count", 0)) <= 255:
            raise CatalogueError(f"{where}: array needs 0 < max_count <= 255")
    elif ftype == "str":
        if not 0 < int(raw.get("max_len", 0)) <= 255:
            raise CatalogueError(f"{where}: str needs 0 < max_len <= 255")
    elif ftype not in SCALAR_TYPES:
        raise CatalogueError(f"{where}: unknown type {ftype!r}")
    fd = FieldDef(
        name=raw["name"],
        type=ftype,
        description=str(raw.get("description", "")),
        min=raw.get("min"),
        max=raw.get("max"),
        enum=raw.get("enum"),
        max_len=int(raw.get("max_len", 0)),
        max_count=int(raw.get("max_count", 0)),
        record=record,
    )
    if fd.is_scalar:
        _, _, tmin, tmax = SCALAR_TYPES[ftype]
        if not tmin <= fd.lo <= fd.hi <= tmax:
            raise CatalogueError(f"{where}: range [{fd.lo}, {fd.hi}] does not fit {ftype}")
    return fd


def parse_catalogue(text: str) -> Catalogue:
    """Parse and check catalogue YAML text."""
    raw = yaml.safe_load(text)
    enums = {
        name: (str(spec.get("description", "")), {k: int(v) for k, v in spec["values"].items()})
        for name, spec in raw["enums"].items()
    }
    for k, v in raw["error_codes"].items():
        if not isinstance(v, dict) or set(v) != {"code", "text", "detail"}:
            raise CatalogueError(f"error code {k}: needs exactly code, text and detail (quote texts with commas)")
    errors = {k: (int(v["code"]), str(v["text"])) for k, v in raw["error_codes"].items()}
    error_details = {k: str(v["detail"]) for k, v in raw["error_codes"].items()}
    if len({c for c, _ in errors.values()}) != len(errors):
        raise CatalogueError("error codes: duplicate code")
    messages: list[MessageDef] = []
    for m in raw["messages"]:
        where = m.get("name", "?")
        unknown = set(m) - {"name", "id", "kind", "description", "fields", "response", "ack_detail"}
        if unknown:
            raise CatalogueError(f"{where}: unknown keys {sorted(unknown)}")
        if "ack_detail" in m and m.get("response") != "ACK":
            raise CatalogueError(f"{where}: ack_detail on a command not answered by ACK")
        if m.get("kind") not in KINDS:
            raise CatalogueError(f"{where}: kind must be one of {KINDS}")
        fields = tuple(_field(f, f"{where}.{f.get('name')}") for f in m.get("fields") or [])
        for f in fields[:-1]:
            if not f.is_scalar:
                raise CatalogueError(f"{where}.{f.name}: only the last field may be variable-length")
        for f in fields:
            if f.enum is not None and f.enum not in enums:
                raise CatalogueError(f"{where}.{f.name}: unknown enum {f.enum}")
        messages.append(
            MessageDef(
                name=m["name"],
                id=int(m["id"]),
                kind=m["kind"],
                description=" ".join(str(m.get("description", "")).split()),
                fields=fields,
                response=m.get("response"),
                ack_detail=" ".join(str(m.get("ack_detail", "")).split()),
            )
        )
    cat = Catalogue(
        protocol_version=int(raw["protocol_version"]),
        min_supported_version=int(raw["min_supported_version"]),
        messages=tuple(messages),
        enums=enums,
        interlock_bits={k: int(v) for k, v in raw["interlock_bits"].items()},
        capability_bits={k: int(v) for k, v in raw["capability_bits"].items()},
        error_codes=errors,
        error_details=error_details,
    )
    for msg in cat.messages:
        if not 0 < msg.id < 256:
            raise CatalogueError(f"{msg.name}: id {msg.id} outside 1..255")
        if msg.id in cat.by_id or msg.name in cat.by_name:
            raise CatalogueError(f"{msg.name}: duplicate id or name")
        cat.by_id[msg.id] = msg
        cat.by_name[msg.name] = msg
    for msg in cat.messages:
        if msg.response is not None and msg.response not in cat.by_name:
            raise CatalogueError(f"{msg.name}: unknown response {msg.response}")
    return cat


@cache
def load_catalogue() -> Catalogue:
    """The shipped catalogue (parsed once)."""
    text = resources.files("protocols.wire").joinpath("catalogue.yaml").read_text(encoding="utf-8")
    return parse_catalogue(text)


def _make_enum(name: str, values: dict[str, int]) -> type[enum.IntEnum]:
    return enum.IntEnum(name, values)  # type: ignore[return-value]


_CAT = load_catalogue()

#: Enumerations of the catalogue as IntEnums.
DeviceState = _make_enum("DeviceState", _CAT.enums["DeviceState"][1])
AnodeFilter = _make_enum("AnodeFilter", _CAT.enums["AnodeFilter"][1])
MotionMode = _make_enum("MotionMode", _CAT.enums["MotionMode"][1])
FocalSpot = _make_enum("FocalSpot", _CAT.enums["FocalSpot"][1])
ExposureStatus = _make_enum("ExposureStatus", _CAT.enums["ExposureStatus"][1])
DetectorState = _make_enum("DetectorState", _CAT.enums["DetectorState"][1])
AbortReason = _make_enum("AbortReason", _CAT.enums["AbortReason"][1])
SimInput = _make_enum("SimInput", _CAT.enums["SimInput"][1])
FaultCode = _make_enum("FaultCode", _CAT.enums["FaultCode"][1])
PlanInvalidReason = _make_enum("PlanInvalidReason", _CAT.enums["PlanInvalidReason"][1])
ErrorCode = enum.IntEnum("ErrorCode", {k: v[0] for k, v in _CAT.error_codes.items()})  # type: ignore[misc]
Interlock = enum.IntFlag("Interlock", {k: 1 << v for k, v in _CAT.interlock_bits.items()})  # type: ignore[misc]
Capability = enum.IntFlag("Capability", {k: 1 << v for k, v in _CAT.capability_bits.items()})  # type: ignore[misc]

#: Every interlock bit: all must be set for X-rays.
ALL_INTERLOCKS: int = sum(1 << v for v in _CAT.interlock_bits.values())

#: Text of an anode/filter pair as used by protocols.records ("W/Rh").
ANODE_FILTER_TEXT: dict[int, str] = {
    int(AnodeFilter.W_RH): "W/Rh",
    int(AnodeFilter.W_AG): "W/Ag",
    int(AnodeFilter.W_AL): "W/Al",
    int(AnodeFilter.MO_MO): "Mo/Mo",
    int(AnodeFilter.MO_RH): "Mo/Rh",
    int(AnodeFilter.RH_RH): "Rh/Rh",
}
ANODE_FILTER_CODE: dict[str, int] = {v: k for k, v in ANODE_FILTER_TEXT.items()}
