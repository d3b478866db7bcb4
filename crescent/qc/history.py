"""QC history: an SQLite file with one row per figure of each test run (stdlib sqlite3).

Table ``qc_results``: ``run_id`` (one per ``crescent qc run``), ``timestamp`` (UTC ISO 8601), ``suite``,
``site`` (simulated / rig), ``device_serial``, ``test``, ``figure``, ``value``, ``unit``, ``limit_lo``,
``limit_hi``, ``source`` (the limit's citation), ``passed`` (the figure), ``test_passed`` (the test's
verdict), ``phantom``, ``exam``. The baseline of a figure is its value in the first run of the same
device (acceptance establishes it).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE IF NOT EXISTS qc_results (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    timestamp TEXT NOT NULL,
    suite TEXT NOT NULL,
    site TEXT NOT NULL,
    device_serial TEXT NOT NULL,
    test TEXT NOT NULL,
    figure TEXT NOT NULL,
    value REAL,
    unit TEXT NOT NULL,
    limit_lo REAL,
    limit_hi REAL,
    source TEXT NOT NULL,
    passed INTEGER NOT NULL,
    test_passed INTEGER NOT NULL,
    phantom TEXT NOT NULL,
    exam TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS qc_results_run ON qc_results(run_id);
"""


@dataclass(frozen=True)
class Row:
    run_id: str
    timestamp: str
    suite: str
    site: str
    device_serial: str
    test: str
    figure: str
    value: float | None
    unit: str
    limit_lo: float | None
    limit_hi: float | None
    source: str
    passed: bool
    test_passed: bool
    phantom: str
    exam: str


def connect(path: Path) -> sqlite3.Connection:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path)
    con.executescript(SCHEMA)
    return con


def store(path: Path, run_id: str, timestamp: str, suite: str, site: str, serial: str, results: list[Any]) -> int:
    """Append the figures of ``results`` (:class:`crescent.qc.procedures.QcResult`); returns the rows written."""
    n = 0
    with connect(path) as con:
        for r in results:
            for f in r.figures:
                value = None if f.value != f.value else float(f.value)
                con.execute("INSERT INTO qc_results (run_id, timestamp, suite, site, device_serial, test, figure, "
                            "value, unit, limit_lo, limit_hi, source, passed, test_passed, phantom, exam) "
                            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                            (run_id, timestamp, suite, site, serial, r.test, f.name, value, f.limit.unit,
                             f.limit.lo, f.limit.hi, f.limit.source, int(f.passed), int(r.passed), r.phantom,
                             r.exam))
                n += 1
    return n


def load(path: Path) -> list[Row]:
    """Every row, oldest first; FileNotFoundError if the database does not exist."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"QC history database {path} not found (run `crescent qc run` first)")
    con = sqlite3.connect(path)
    try:
        cur = con.execute("SELECT run_id, timestamp, suite, site, device_serial, test, figure, value, unit, "
                          "limit_lo, limit_hi, source, passed, test_passed, phantom, exam FROM qc_results ORDER BY id")
        return [Row(*row[:12], bool(row[12]), bool(row[13]), *row[14:]) for row in cur.fetchall()]
    finally:
        con.close()
