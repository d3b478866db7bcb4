"""``crescent qc``: the physicist's DBT QC protocol on the simulated gantry or a rig, with history and report.

``crescent qc run --suite acceptance|constancy [--port URL] [--db FILE] [--out DIR]`` runs the suite's
tests (crescent.qc.procedures), stores every figure in the SQLite history and writes the HTML report;
``crescent qc report [--db FILE] [--out DIR]`` renders the history. Exit status of ``run``: 0 when every
test passed, 1 when any failed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

SUITES = ("acceptance", "constancy")  # crescent.qc.runner.SUITES (kept here so --help imports nothing heavy)


def _run(args: argparse.Namespace) -> int:
    from crescent.qc.report import write_report
    from crescent.qc.runner import record_run, run_suite
    from crescent.qc.history import load
    from crescent.qc.site import RigSite, SimulatedSite

    out = Path(args.out)
    work = out / "exams"
    if args.port:
        site = RigSite(args.port, work, seed=args.seed, watchdog_ms=args.watchdog_ms)
    else:
        site = SimulatedSite(work, seed=args.seed, binning=args.binning, gantry_config=args.gantry_config)
    say = (lambda s: None) if args.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    results = run_suite(site, args.suite, only=tuple(args.test or ()), say=say)
    serial = getattr(site, "serial", None) or ("rig" if args.port else "sim-1001")
    run_id = record_run(Path(args.db), args.suite, site.kind, serial, results)
    report = write_report(load(Path(args.db)), out, results)
    for r in results:
        print(f"{'PASS' if r.passed else 'FAIL'}  {r.test}")
        for f in r.figures:
            print(f"      {f.name}: {f.value:.4g} (limit {f.limit.describe()}) {'ok' if f.passed else 'OUT'}")
    ok = all(r.passed for r in results)
    print(f"QC {args.suite} {'passed' if ok else 'FAILED'}: run {run_id}, history {args.db}, report {report}")
    return 0 if ok else 1


def _report(args: argparse.Namespace) -> int:
    from crescent.qc.history import load
    from crescent.qc.report import write_report

    try:
        rows = load(Path(args.db))
    except FileNotFoundError as exc:
        print(f"crescent qc report: {exc}", file=sys.stderr)
        return 2
    print(f"report {write_report(rows, Path(args.out))}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``crescent qc`` with ``run`` and ``report``."""
    p = sub.add_parser("qc", help="run the DBT quality-control protocol (simulated gantry or a rig) and report",
                       description="The physicist's DBT QC protocol (EUREF/EFOMP, NHSBSP, ACR limits cited in "
                       "crescent/qc/limits.py), automated on the simulated gantry or on a rig.")
    qsub = p.add_subparsers(dest="qc_command", metavar="SUBCOMMAND")
    r = qsub.add_parser("run", help="run a QC suite, store it in the history, write the report",
                       description="Run a QC suite (acceptance, daily, weekly...) against the simulated gantry or a rig, store every result in the SQLite history and write the HTML report with pass/fail against each limit.")
    r.add_argument("--suite", choices=SUITES, default="constancy", help="acceptance (all thicknesses) or constancy")
    r.add_argument("--port", help="pyserial URL of a rig (the operator is prompted to place each phantom); "
                   "default: the simulated gantry in virtual time")
    r.add_argument("--db", default="qc_history.sqlite", help="QC history database (SQLite), created if missing")
    r.add_argument("--out", default="qc_out", help="folder for the exams, the report and its figures")
    r.add_argument("--test", action="append", help="run only this test (repeatable)")
    r.add_argument("--seed", type=int, default=1, help="seed of the simulated gantry's noise")
    r.add_argument("--binning", type=int, default=8, choices=range(1, 9), metavar="1-8",
                   help="read-out binning of the simulated panel for whole-field tests (default 8)")
    r.add_argument("--gantry-config", help="simulated gantry config name or YAML (defects can be injected here)")
    r.add_argument("--watchdog-ms", type=int, help="device watchdog asked for on a --port connection, ms")
    r.add_argument("--quiet", action="store_true", help="no progress on stderr")
    r.set_defaults(qc_func=_run)
    rep = qsub.add_parser("report", help="render the QC history as HTML with trends",
                         description="Render the QC history (SQLite) as an HTML report: each test's results over time against its limits.")
    rep.add_argument("--db", default="qc_history.sqlite", help="QC history database (SQLite)")
    rep.add_argument("--out", default="qc_out", help="folder for the report")
    rep.set_defaults(qc_func=_report)
    p.set_defaults(func=lambda a: a.qc_func(a) if getattr(a, "qc_func", None) else (p.print_help() or 0))
