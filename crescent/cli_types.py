"""Argument types for the ``crescent`` commands: range-checked numbers whose errors name the option
as the user typed it and the allowed range (argparse prefixes ``argument --watchdog-ms:``).

Light on purpose: ``crescent CMD --help`` imports this module.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable


def int_in(lo: int, hi: int, unit: str = "") -> Callable[[str], int]:
    """An argparse ``type``: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number; allowed {lo}..{hi}{unit}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{value} is outside the allowed range {lo}..{hi}{unit}")
        return value
    parse.__name__ = "integer"
    return parse


def float_in(lo: float, hi: float, unit: str = "", *, lo_open: bool = True) -> Callable[[str], float]:
    """An argparse ``type``: a number in (lo, hi] (``lo_open``) or [lo, hi]."""
    left = "(" if lo_open else "["
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number; allowed {left}{lo:g}, {hi:g}]{unit}") from None
        if not ((lo < value) if lo_open else (lo <= value)) or not value <= hi:  # NaN fails too
            raise argparse.ArgumentTypeError(f"{text} is outside the allowed range {left}{lo:g}, {hi:g}]{unit}")
        return value
    parse.__name__ = "number"
    return parse


def describe_error(exc: BaseException, limit: int = 60) -> str:
    """A user-facing one-paragraph message for ``exc``: pydantic validation errors as ``field: problem
    (got value)`` lines with values cut to ``limit`` characters, never the library's raw dump."""
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover
        ValidationError = ()  # type: ignore[assignment,misc]
    seen: BaseException | None = exc
    prefix = ""
    while seen is not None and not isinstance(seen, ValidationError):
        seen = seen.__cause__
    if seen is None:
        if isinstance(exc, KeyError) and exc.args:
            return str(exc.args[0])  # str(KeyError) is the repr of its message
        return f"{exc}" if str(exc) else type(exc).__name__
    if seen is not exc:  # e.g. "faults.yaml: <dump>": keep the wrapper's file name
        head = str(exc).split(":", 1)[0]
        prefix = f"{head}: " if head and "\n" not in head and "validation error" not in head else ""
    lines = []
    for err in seen.errors():  # type: ignore[union-attr]
        where = ".".join(str(p) for p in err.get("loc", ())) or "(top level)"
        got = repr(err.get("input"))
        got = got if len(got) <= limit else got[:limit] + "..."
        lines.append(f"{where}: {err.get('msg', 'invalid')} (got {got})")
    return prefix + "; ".join(lines)
