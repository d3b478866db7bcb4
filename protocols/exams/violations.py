"""Violations: one problem with an exam, named by field path, value, limit and rule.

Both the schema errors of the pydantic models (missing fields, unknown keys,
wrong types) and the device-limit checks of :mod:`protocols.exams.validate`
are reported as :class:`Violation` lists, so CI can show every problem of an
exam at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from pydantic import ValidationError

from protocols.yamlsafe import short_repr


class Code(StrEnum):
    """Machine-readable kind of a violation (stable; used by CI reports and tests)."""

    SCHEMA = "schema"  # the document does not match the exam model (missing/unknown/wrong field)
    ARC_TRAVEL = "arc_travel"  # an angle (or the run-up) lies beyond the arc travel limits
    ARC_SPEED = "arc_speed"  # the sweep is faster than the arc can move
    PROJECTIONS = "projections"  # more exposures than one plan may hold
    KVP_RANGE = "kvp_range"
    MAS_RANGE = "mas_range"
    TUBE_CURRENT = "tube_current"  # current (or power) beyond the tube's rating
    EXPOSURE_TIME = "exposure_time"  # a single exposure longer than the tube allows
    ANODE_FILTER = "anode_filter"  # pair the device does not offer
    FOCAL_SPOT = "focal_spot"
    MOTION_TIME = "motion_time"  # too little time for move + settle + exposure + readout
    SETTLE = "settle"  # settle time shorter than the arc needs
    COMPRESSION_FORCE = "compression_force"
    COMPRESSION_THICKNESS = "compression_thickness"
    HEAT_BUDGET = "heat_budget"
    DOSE = "dose"


@dataclass(frozen=True)
class Violation:
    """One problem: ``field`` is a dotted path into the exam (``arc.stop_deg``)."""

    field: str
    value: Any
    limit: Any
    message: str
    code: Code

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


#: Discriminator tags pydantic inserts into error locations of tagged unions.
_UNION_TAGS = frozenset({"dbt", "ffdm", "stereo", "aec", "manual", "step_and_shoot", "continuous"})


def field_path(loc: tuple[int | str, ...]) -> str:
    """Dotted path of a pydantic error location without union tags (``arc.angles_deg.2``)."""
    return ".".join(str(part) for part in loc if part not in _UNION_TAGS)


def _short_msg(msg: str, limit: int = 4 * 80) -> str:
    """Text cut to ``limit`` characters with "..." (custom rules quote values, e.g. a whole angle list)."""
    return msg if len(msg) <= limit else msg[: limit - 3] + "..."


def _describe(err: dict[str, Any]) -> str:
    path = _short_msg(field_path(err["loc"]) or "<exam>", 80)  # an unknown key may be long
    kind = err["type"]
    if kind == "missing":
        return f"{path}: required field is missing"
    if kind == "extra_forbidden":
        return f"{path}: unknown field (value {short_repr(err.get('input'))}); check the spelling"
    if kind == "union_tag_invalid":
        return f"{path}: {_short_msg(err['msg'])}"
    if err["loc"] and kind not in {"exactly_one", "arc_form", "arc_monotonic", "arc_span", "range_order"}:
        return f"{path} = {short_repr(err.get('input'))}: {_short_msg(err['msg'])}"
    return f"{path}: {_short_msg(err['msg'])}"


def violations_from_error(error: ValidationError) -> list[Violation]:
    """Turn a pydantic ``ValidationError`` into schema violations, one per error."""
    out = []
    for err in error.errors(include_url=False):
        ctx = err.get("ctx") or {}
        limit = next((ctx[k] for k in ("ge", "gt", "le", "lt", "expected", "min_length", "max_length") if k in ctx), None)
        value = None if err["type"] == "missing" else err.get("input")
        out.append(Violation(field_path(err["loc"]), value, limit, _describe(err), Code.SCHEMA))
    return out
