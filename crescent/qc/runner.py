"""Run a QC suite on a site, store the figures in the history and write the report."""

from __future__ import annotations

import datetime as _dt
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from crescent.qc import history
from crescent.qc.procedures import TESTS, QcResult

SUITES = ("acceptance", "constancy")


def run_suite(site: Any, suite: str, *, only: tuple[str, ...] = (),
              say: Callable[[str], None] = lambda s: None) -> list[QcResult]:
    """Run every test of ``suite`` (or only the named ones) on ``site``; a test that raises fails with its error."""
    if suite not in SUITES:
        raise ValueError(f"suite {suite!r} unknown; choose one of {', '.join(SUITES)}")
    unknown = set(only) - {t.name for t in TESTS}
    if unknown:
        raise ValueError(f"unknown QC test(s) {sorted(unknown)}; known: {', '.join(t.name for t in TESTS)}")
    results = []
    for t in TESTS:
        if suite not in t.suites or (only and t.name not in only):
            continue
        say(f"{t.name}: {t.title} ...")
        try:
            r = t.run(site, suite)
        except Exception as exc:  # a test that cannot run is a failed test, reported with its reason
            r = QcResult(t.name, t.title, "-", "-", [], notes=f"{type(exc).__name__}: {exc}")
        say(f"{t.name}: {'pass' if r.passed else 'FAIL'}" + (f" ({r.notes})" if r.notes else ""))
        results.append(r)
    return results


def record_run(db: Path, suite: str, site_kind: str, serial: str, results: list[QcResult]) -> str:
    """Store the run's figures in the history database; returns the run id."""
    ts = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    run_id = ts + "-" + uuid.uuid4().hex[:6]
    # a test that could not run still leaves a row, so the history shows the failure
    from crescent.qc.limits import Limit
    from crescent.qc.procedures import Figure

    for r in results:
        if not r.figures:
            r.figures = [Figure(f"could not run: {r.notes}"[:200], float("nan"), Limit(None, None, "", "-"))]
    history.store(db, run_id, ts, suite, site_kind, serial, results)
    return run_id
