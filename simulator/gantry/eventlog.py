"""The device event log: one JSON object per line, stamped with virtual device time.

Every line is ``{"t_us": <device clock, microseconds>, "kind": <what>, ...}`` with sorted keys and
compact separators, so the same seed gives the same file byte for byte. Nothing in it reads the
wall clock or the host's paths.

Kinds written by the firmware: ``boot``, ``command`` (msg, seq, fields), ``answer`` (msg, seq,
fields), ``event`` (every device event sent: msg, fields), ``state`` (old, new, trigger),
``interlocks``, ``input``, ``inject``, ``fault``, ``fault_cleared``, ``armed``, ``heat_refused``,
``sweep_start`` (thickness_mm), ``exposure`` (plan_id, index, frame_id, status, planned/start/end
deg, kv, mas, window_s), ``image`` (frame_id, checksum, locator), ``homed``, ``abort``,
``auto_release``, ``stall``, ``trigger_missed``, ``peer_lost``, ``peer_alive``, ``duplicate``
(a retransmitted request answered from the link cache), ``rejected``, ``frame_dropped``,
``event_acked`` (after retransmission), ``event_undelivered``, ``event_dropped``,
``stale_response``. TELEMETRY samples and host heartbeats are not logged.
"""

from __future__ import annotations

import json
from pathlib import Path
from collections.abc import Callable
from typing import IO, Any


class EventLog:
    """Append-only JSON-lines log; kept in memory (``lines``) and, if ``path`` is given, on disk."""

    def __init__(self, path: Path | None = None, keep: bool = True, echo: Callable[[str], None] | None = None) -> None:
        self.path = Path(path) if path is not None else None
        self.keep = keep
        self.echo = echo
        self.lines: list[str] = []
        self._fh: IO[str] | None = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = open(self.path, "w", encoding="utf-8")

    def write(self, t_us: int, kind: str, **fields: Any) -> None:
        """Append one record."""
        line = json.dumps({"t_us": t_us, "kind": kind, **fields}, sort_keys=True, separators=(",", ":"))
        if self.keep:
            self.lines.append(line)
        if self._fh is not None:
            self._fh.write(line + "\n")
            self._fh.flush()
        if self.echo is not None:
            self.echo(line)

    def records(self) -> list[dict[str, Any]]:
        """The kept lines, parsed."""
        return [json.loads(x) for x in self.lines]

    def text(self) -> str:
        """The kept log as one string (what the file holds)."""
        return "".join(x + "\n" for x in self.lines)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None
