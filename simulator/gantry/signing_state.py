"""The device's non-volatile signing state: the high-water marks of a signed link, in a file (SPEC 2.6).

JSON ``{"marks": {"<link id>": <timestamp>, ...}}`` (timestamps in 10 us ticks since 2015). Written
atomically (a temporary file renamed over it); ``durable`` saves (before a request is executed) are
fsynced, file and directory, so a command executed before a power cut is still refused as a replay
after it. No key and nothing secret is stored here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


class SigningStateError(ValueError):
    """The state file exists but cannot be used (the message says which file and why)."""


class FileHighWater:
    """High-water marks kept in ``path`` (see module docstring)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.saves = 0

    def load(self) -> dict[int, int]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise SigningStateError(f"signing state {self.path}: {exc}") from None
        try:
            marks = {int(k): int(v) for k, v in raw["marks"].items()}
        except (KeyError, TypeError, ValueError, AttributeError):
            raise SigningStateError(f"signing state {self.path}: expected {{\"marks\": {{link id: timestamp}}}}") from None
        bad = [k for k, v in marks.items() if not (0 <= k <= 255 and 0 <= v < 1 << 48)]
        if bad:
            raise SigningStateError(f"signing state {self.path}: link id or timestamp out of range for link id(s) {bad}")
        return marks

    def save(self, marks: dict[int, int], *, durable: bool) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump({"marks": {str(k): v for k, v in sorted(marks.items())}}, f)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, self.path)
        if durable:
            fd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        self.saves += 1


def default_state_path(serial_number: int) -> Path:
    """``$XDG_STATE_HOME/crescent/gantry-<serial>-signing.json`` (default ``~/.local/state``): survives restarts."""
    base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "crescent" / f"gantry-{serial_number}-signing.json"
