"""Child processes of a process and whether one has exited, read from ``/proc`` (Linux).

Used by the tests and the benchmark that signal or kill ``crescent acquire`` and then watch its
simulated-gantry child (a session leader of its own, so not in the parent's process group).
"""

from __future__ import annotations

from pathlib import Path


def children(pid: int) -> list[int]:
    """PIDs of the direct children of ``pid`` (empty when it has none or is gone)."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(d.name))
    return out


def gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody reaped counts as exited)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")
