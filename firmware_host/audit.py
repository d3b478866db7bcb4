"""Audit log: JSON lines, one object per command, response, event, exposure and decision.

Each line is written and flushed as it happens; lines that matter for "nothing
lost" (exposures, images, the end of the exam) are also fsynced, on a background thread so the
link thread that writes them keeps sending heartbeats (:mod:`firmware_host.durability`). A crash can
therefore leave at most one torn last line, which :func:`read_audit_log`
tolerates and reports. Every line carries ``t`` (host clock, s: wall clock
or SimPy virtual time) and ``kind``; device times are in the message fields
(``*_us`` = microseconds on the device clock).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from firmware_host.durability import Syncer
from protocols.wire.messages import Message

#: Kinds whose lines are fsynced as soon as they are written (by the background syncer).
DURABLE_KINDS = frozenset({"exposure", "image", "exam_end", "interrupt", "armed"})


class AuditSink(Protocol):
    """Anything that takes audit entries (a file log, a list in tests)."""

    def write(self, entry: dict[str, Any]) -> None: ...


def message_dict(message: Message) -> dict[str, Any]:
    """The fields of a wire message as a JSON-able dict (array entries as dicts)."""
    return message.to_dict()  # type: ignore[attr-defined, no-any-return]


@dataclass
class MemoryAudit:
    """Audit entries kept in a list (tests, dry runs)."""

    entries: list[dict[str, Any]] = field(default_factory=list)

    def write(self, entry: dict[str, Any]) -> None:
        self.entries.append(entry)

    def kinds(self, kind: str) -> list[dict[str, Any]]:
        return [e for e in self.entries if e["kind"] == kind]


class JsonlAudit:
    """Append-only JSON-lines file; flushed every line (a dying host loses no line), fsynced after each
    :data:`DURABLE_KINDS` line on a background thread (:mod:`firmware_host.durability`: the link thread
    that writes it must keep its heartbeats), and at :meth:`close`."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "a", encoding="utf-8")
        self._syncer = Syncer("crescent-audit-fsync")
        self._fd = self._f.fileno()

    def write(self, entry: dict[str, Any]) -> None:
        if self._f.closed:
            return
        self._f.write(json.dumps(entry, separators=(",", ":"), default=str) + "\n")
        self._f.flush()
        if entry.get("kind") in DURABLE_KINDS:
            self._syncer.submit(self._fsync)

    def _fsync(self) -> None:
        if not self._f.closed:
            os.fsync(self._fd)

    def sync(self) -> None:
        """Block until every line written so far is on disk."""
        self._syncer.wait()
        if not self._f.closed:
            os.fsync(self._fd)

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            self._syncer.close()
            os.fsync(self._fd)
            self._f.close()


class TeeAudit:
    """Writes every entry to several sinks (e.g. the session log and an exam's own log)."""

    def __init__(self, *sinks: AuditSink) -> None:
        self.sinks = list(sinks)

    def write(self, entry: dict[str, Any]) -> None:
        for s in self.sinks:
            s.write(entry)


@dataclass
class AuditRead:
    """Result of reading an audit log: the parsed entries and whether the last line was torn."""

    entries: list[dict[str, Any]]
    torn_last_line: bool
    torn_text: str = ""


def read_audit_log(path: str | os.PathLike[str]) -> AuditRead:
    """Parse a JSON-lines audit log line by line.

    A last line that does not parse (or lacks its newline) is a torn write from
    a crash: it is dropped and reported in :attr:`AuditRead.torn_last_line`.
    A bad line anywhere else raises ``ValueError`` naming the line number.
    """
    raw = Path(path).read_bytes()
    lines = raw.split(b"\n")
    tail = lines.pop()  # text after the last newline ('' when the file ends cleanly)
    entries: list[dict[str, Any]] = []
    for n, line in enumerate(lines, start=1):
        try:
            entries.append(json.loads(line))
        except ValueError as exc:
            if n == len(lines) and not tail:
                return AuditRead(entries, True, line.decode("utf-8", "replace"))
            raise ValueError(f"{path}: line {n} is not valid JSON: {exc}") from exc
    if tail:
        try:
            entries.append(json.loads(tail))
        except ValueError:
            return AuditRead(entries, True, tail.decode("utf-8", "replace"))
        return AuditRead(entries, True, "")  # complete JSON but no newline: flush was cut short
    return AuditRead(entries, False)
