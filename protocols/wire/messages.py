"""Message classes generated from the catalogue: fast struct codec + pydantic boundary models.

Every catalogue message becomes a slotted class (``HELLO`` -> :class:`Hello`,
``ARM_PLAN`` -> :class:`ArmPlan` with records :class:`ArmPlan.Entry`). The hot
path is :meth:`Message.pack` / :meth:`Message.unpack` on precompiled
``struct.Struct`` objects; :func:`pydantic_model` gives the validated model of
a message for JSON logs and user input.

Example
-------
>>> m = MoveArc(target_mdeg=12_500, speed_mdeg_s=0)
>>> MoveArc.unpack(m.pack()) == m
True
"""

from __future__ import annotations

import struct
from functools import cache
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, create_model

from protocols.wire.catalogue import SCALAR_TYPES, ErrorCode, FieldDef, MessageDef, load_catalogue
from protocols.wire.errors import FieldRangeError, PayloadError

CATALOGUE = load_catalogue()


def camel(name: str) -> str:
    """``ARM_PLAN`` -> ``ArmPlan``."""
    return "".join(part.capitalize() for part in name.split("_"))


class Record:
    """A fixed-size record inside an array field (e.g. one ARM_PLAN entry)."""

    __slots__: tuple[str, ...] = ()
    FIELDS: ClassVar[tuple[FieldDef, ...]] = ()
    STRUCT: ClassVar[struct.Struct]

    def __init__(self, *args: int, **kwargs: int) -> None:
        names = [f.name for f in self.FIELDS]
        if len(args) > len(names):
            raise TypeError(f"{type(self).__name__} takes {len(names)} fields")
        values = dict(zip(names, args))
        values.update(kwargs)
        missing = [n for n in names if n not in values]
        extra = [k for k in values if k not in names]
        if missing or extra:
            raise TypeError(f"{type(self).__name__}: missing {missing}, unknown {extra}")
        for n in names:
            setattr(self, n, values[n])

    def astuple(self) -> tuple[int, ...]:
        return tuple(getattr(self, f.name) for f in self.FIELDS)

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.astuple() == other.astuple()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        body = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in self.FIELDS)
        return f"{type(self).__name__}({body})"


class Message:
    """Base of the generated message classes."""

    __slots__: tuple[str, ...] = ()
    DEF: ClassVar[MessageDef]
    ID: ClassVar[int]
    NAME: ClassVar[str]
    FIXED: ClassVar[struct.Struct]
    SCALARS: ClassVar[tuple[FieldDef, ...]]
    TAIL: ClassVar[FieldDef | None]
    ENTRY: ClassVar[type[Record] | None] = None
    _CHECKS: ClassVar[tuple[tuple[int, str, int, int, frozenset[int] | None], ...]]

    def __init__(self, **kwargs: Any) -> None:
        names = [f.name for f in self.DEF.fields]
        unknown = [k for k in kwargs if k not in names]
        if unknown:
            raise TypeError(f"{self.NAME}: unknown fields {unknown}; fields are {names}")
        for f in self.DEF.fields:
            if f.name in kwargs:
                value = kwargs[f.name]
            elif f.type == "str":
                value = ""
            elif f.type == "array":
                value = []
            elif f.min is not None and f.min > 0:
                raise TypeError(f"{self.NAME}: field {f.name} is required (minimum {f.min})")
            else:
                value = 0
            if f.type == "array":
                value = [e if isinstance(e, Record) else self._entry(e) for e in value]
            setattr(self, f.name, value)

    @classmethod
    def _entry(cls, raw: Any) -> Record:
        assert cls.ENTRY is not None
        if isinstance(raw, dict):
            return cls.ENTRY(**raw)
        return cls.ENTRY(*raw)

    # -- hot path -------------------------------------------------------
    def pack(self) -> bytes:
        """Encode the payload. Raises :class:`FieldRangeError` naming the field."""
        values = [getattr(self, f.name) for f in self.SCALARS]
        for idx, name, lo, hi, allowed in self._CHECKS:
            v = values[idx]
            if type(v) is not int:
                if isinstance(v, bool) or not isinstance(v, int):
                    raise FieldRangeError(self.NAME, name, v, lo, hi, f"{v!r} is not an integer")
                v = values[idx] = int(v)
            if v < lo or v > hi:
                raise FieldRangeError(self.NAME, name, v, lo, hi)
            if allowed is not None and v not in allowed:
                raise FieldRangeError(self.NAME, name, v, lo, hi, f"{v} is not a defined {self._enum_name(name)}")
        out = self.FIXED.pack(*values)
        tail = self.TAIL
        if tail is None:
            return out
        if tail.type == "str":
            raw = str(getattr(self, tail.name)).encode("utf-8")
            if len(raw) > tail.max_len:
                raise FieldRangeError(
                    self.NAME, tail.name, len(raw), 0, tail.max_len, f"{len(raw)} bytes exceed max_len {tail.max_len}"
                )
            return out + bytes((len(raw),)) + raw
        entries: list[Record] = getattr(self, tail.name)
        if len(entries) > tail.max_count:
            raise FieldRangeError(
                self.NAME, tail.name, len(entries), 0, tail.max_count, f"{len(entries)} records exceed {tail.max_count}"
            )
        parts = [out, bytes((len(entries),))]
        entry_cls = self.ENTRY
        assert entry_cls is not None
        for e in entries:
            vals = e.astuple()
            for f, v in zip(entry_cls.FIELDS, vals):
                if isinstance(v, bool) or not isinstance(v, int) or v < f.lo or v > f.hi:
                    raise FieldRangeError(self.NAME, f"{tail.name}[].{f.name}", v, f.lo, f.hi)
            parts.append(entry_cls.STRUCT.pack(*vals))
        return b"".join(parts)

    @classmethod
    def unpack(cls, payload: bytes) -> "Message":
        """Decode a payload. Raises :class:`PayloadError` with the NAK code and detail."""
        fixed = cls.FIXED.size
        n = len(payload)
        tail = cls.TAIL
        if n < fixed or (tail is None and n != fixed):
            raise PayloadError(
                ErrorCode.BAD_LENGTH, n, f"{cls.NAME}: payload is {n} bytes, layout needs {fixed}"
                + ("" if tail is None else "+")
            )
        values = cls.FIXED.unpack_from(payload, 0)
        for idx, name, lo, hi, allowed in cls._CHECKS:
            v = values[idx]
            if v < lo or v > hi:
                raise PayloadError(ErrorCode.OUT_OF_RANGE, idx, f"{cls.NAME}.{name}={v} outside [{lo}, {hi}]")
            if allowed is not None and v not in allowed:
                raise PayloadError(ErrorCode.BAD_ENUM, idx, f"{cls.NAME}.{name}={v} is not a defined value")
        obj = cls.__new__(cls)
        for f, v in zip(cls.SCALARS, values):
            setattr(obj, f.name, v)
        if tail is None:
            return obj
        if n < fixed + 1:
            raise PayloadError(ErrorCode.BAD_LENGTH, n, f"{cls.NAME}: missing the length byte of {tail.name}")
        count = payload[fixed]
        tail_idx = len(cls.SCALARS)
        if tail.type == "str":
            if count > tail.max_len or n != fixed + 1 + count:
                raise PayloadError(
                    ErrorCode.BAD_LENGTH, n, f"{cls.NAME}.{tail.name}: length byte {count} disagrees with payload"
                )
            try:
                setattr(obj, tail.name, payload[fixed + 1 :].decode("utf-8"))
            except UnicodeDecodeError:
                raise PayloadError(ErrorCode.OUT_OF_RANGE, tail_idx, f"{cls.NAME}.{tail.name}: not UTF-8") from None
            return obj
        entry_cls = cls.ENTRY
        assert entry_cls is not None
        size = entry_cls.STRUCT.size
        if count > tail.max_count:
            raise PayloadError(
                ErrorCode.OUT_OF_RANGE, tail_idx, f"{cls.NAME}.{tail.name}: {count} records exceed {tail.max_count}"
            )
        if n != fixed + 1 + count * size:
            raise PayloadError(ErrorCode.BAD_LENGTH, n, f"{cls.NAME}: {count} records need {fixed + 1 + count * size} bytes")
        entries = []
        for i, vals in enumerate(entry_cls.STRUCT.iter_unpack(payload[fixed + 1 :])):
            for j, (f, v) in enumerate(zip(entry_cls.FIELDS, vals)):
                if v < f.lo or v > f.hi:
                    raise PayloadError(
                        ErrorCode.OUT_OF_RANGE,
                        1000 * (i + 1) + j,
                        f"{cls.NAME}.{tail.name}[{i}].{f.name}={v} outside [{f.lo}, {f.hi}]",
                    )
            e = entry_cls.__new__(entry_cls)
            for f, v in zip(entry_cls.FIELDS, vals):
                setattr(e, f.name, v)
            entries.append(e)
        setattr(obj, tail.name, entries)
        return obj

    # -- conveniences ----------------------------------------------------
    @classmethod
    def _enum_name(cls, field_name: str) -> str:
        for f in cls.DEF.fields:
            if f.name == field_name and f.enum:
                return f.enum
        return "value"

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of the fields (records as dicts), for JSON logs."""
        out: dict[str, Any] = {}
        for f in self.DEF.fields:
            v = getattr(self, f.name)
            if f.type == "array":
                v = [{rf.name: getattr(e, rf.name) for rf in f.record} for e in v]
            out[f.name] = v
        return out

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self) and self.to_dict() == other.to_dict()  # type: ignore[attr-defined]

    def __repr__(self) -> str:
        body = ", ".join(f"{k}={v!r}" for k, v in self.to_dict().items())
        return f"{type(self).__name__}({body})"


def _build_record(msg: MessageDef, f: FieldDef) -> type[Record]:
    fmt = "<" + "".join(SCALAR_TYPES[r.type][0] for r in f.record)
    return type(
        "Entry",
        (Record,),
        {
            "__slots__": tuple(r.name for r in f.record),
            "FIELDS": f.record,
            "STRUCT": struct.Struct(fmt),
            "__qualname__": f"{camel(msg.name)}.Entry",
        },
    )


def _build_message(msg: MessageDef) -> type[Message]:
    cat = CATALOGUE
    scalars = tuple(f for f in msg.fields if f.is_scalar)
    tail = next((f for f in msg.fields if not f.is_scalar), None)
    checks = []
    for i, f in enumerate(scalars):
        _, _, tmin, tmax = SCALAR_TYPES[f.type]
        allowed = frozenset(cat.enums[f.enum][1].values()) if f.enum else None
        if f.lo != tmin or f.hi != tmax or allowed is not None:
            checks.append((i, f.name, f.lo, f.hi, allowed))
        else:
            checks.append((i, f.name, tmin, tmax, None))
    ns: dict[str, Any] = {
        "__slots__": tuple(f.name for f in msg.fields),
        "DEF": msg,
        "ID": msg.id,
        "NAME": msg.name,
        "FIXED": struct.Struct("<" + "".join(SCALAR_TYPES[f.type][0] for f in scalars)),
        "SCALARS": scalars,
        "TAIL": tail,
        "_CHECKS": tuple(checks),
        "__doc__": f"{msg.name} (0x{msg.id:02X}, {msg.kind}): {msg.description}",
    }
    if tail is not None and tail.type == "array":
        ns["ENTRY"] = _build_record(msg, tail)
    return type(camel(msg.name), (Message,), ns)


#: Message class by wire id and by catalogue name.
BY_ID: dict[int, type[Message]] = {}
BY_NAME: dict[str, type[Message]] = {}
for _m in CATALOGUE.messages:
    _cls = _build_message(_m)
    BY_ID[_m.id] = _cls
    BY_NAME[_m.name] = _cls
    globals()[_cls.__name__] = _cls

# Names for static readers and type checkers (the classes are generated above).
Hello: type[Message] = BY_NAME["HELLO"]
HelloReply: type[Message] = BY_NAME["HELLO_REPLY"]
Ack: type[Message] = BY_NAME["ACK"]
Nak: type[Message] = BY_NAME["NAK"]
Heartbeat: type[Message] = BY_NAME["HEARTBEAT"]
GetStatus: type[Message] = BY_NAME["GET_STATUS"]
Status: type[Message] = BY_NAME["STATUS"]
GetInfo: type[Message] = BY_NAME["GET_INFO"]
DeviceInfo: type[Message] = BY_NAME["DEVICE_INFO"]
Home: type[Message] = BY_NAME["HOME"]
MoveArc: type[Message] = BY_NAME["MOVE_ARC"]
Compress: type[Message] = BY_NAME["COMPRESS"]
Release: type[Message] = BY_NAME["RELEASE"]
SetTechnique: type[Message] = BY_NAME["SET_TECHNIQUE"]
ArmPlan: type[Message] = BY_NAME["ARM_PLAN"]
Fire: type[Message] = BY_NAME["FIRE"]
Abort: type[Message] = BY_NAME["ABORT"]
ResetFault: type[Message] = BY_NAME["RESET_FAULT"]
SetTelemetry: type[Message] = BY_NAME["SET_TELEMETRY"]
SimSetInput: type[Message] = BY_NAME["SIM_SET_INPUT"]
SimInjectFault: type[Message] = BY_NAME["SIM_INJECT_FAULT"]
Telemetry: type[Message] = BY_NAME["TELEMETRY"]
StateChanged: type[Message] = BY_NAME["STATE_CHANGED"]
ExposureDone: type[Message] = BY_NAME["EXPOSURE_DONE"]
ImageReady: type[Message] = BY_NAME["IMAGE_READY"]
InterlockChanged: type[Message] = BY_NAME["INTERLOCK_CHANGED"]
Fault: type[Message] = BY_NAME["FAULT"]
MotionDone: type[Message] = BY_NAME["MOTION_DONE"]


def plan_digest(plan: Message) -> int:
    """CRC-32C of an ARM_PLAN payload with its 4 digest bytes left out (see SPEC.md)."""
    from protocols.wire.crc import crc32c

    if plan.NAME != "ARM_PLAN":
        raise TypeError("plan_digest takes an ARM_PLAN message")
    saved = plan.digest  # type: ignore[attr-defined]
    plan.digest = 0  # type: ignore[attr-defined]
    try:
        raw = plan.pack()
    finally:
        plan.digest = saved  # type: ignore[attr-defined]
    off = _DIGEST_OFFSET
    return crc32c(raw[:off] + raw[off + 4 :])


_DIGEST_OFFSET = struct.calcsize("<HBBBI")  # plan_id, motion, anode_filter, focal_spot, speed_mdeg_s


# -- pydantic boundary models ---------------------------------------------------
def _annotated(f: FieldDef) -> Any:
    if f.type == "str":
        return Annotated[str, Field(max_length=f.max_len, description=f.description)]
    return Annotated[int, Field(ge=f.lo, le=f.hi, description=f"{f.description} [{f.unit}]".strip(" []"))]


@cache
def pydantic_model(name: str) -> type[BaseModel]:
    """Validated pydantic model of catalogue message ``name`` (for JSON, files, CLI input)."""
    msg = CATALOGUE.by_name[name]
    fields: dict[str, Any] = {}
    for f in msg.fields:
        if f.type == "array":
            rec = create_model(  # type: ignore[call-overload]
                f"{camel(name)}Entry",
                __config__=ConfigDict(extra="forbid"),
                **{r.name: (_annotated(r), ...) for r in f.record},
            )
            fields[f.name] = (Annotated[list[rec], Field(max_length=f.max_count)], [])  # type: ignore[valid-type]
        else:
            fields[f.name] = (_annotated(f), ... if (f.min or 0) > 0 else ("" if f.type == "str" else 0))
    return create_model(camel(name) + "Model", __config__=ConfigDict(extra="forbid"), **fields)  # type: ignore[call-overload]


def message_from_dict(name: str, data: dict[str, Any]) -> Message:
    """Build a message from user data, validated by its pydantic model (clear errors)."""
    model = pydantic_model(name).model_validate(data)
    return BY_NAME[name](**model.model_dump())
