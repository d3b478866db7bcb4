"""``crescent validate EXAM... [--gantry FILE] [--junit FILE]``: exam validation for CI (:mod:`hil.validate_exam`).

Exit status: 0 every exam safe; 1 an exam unsafe, or a file that cannot be read (each file gets its own
verdict and the JUnit is always written); 2 a bad option.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crescent.exit_codes import EXIT_FAILED, EXIT_INPUT, EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from hil.validate_exam import REFERENCE_BREASTS, validate_file, write_report_junit
    from simulator.gantry.detector import reuse_phantoms

    by_name = {b.name.replace(" ", ""): b for b in REFERENCE_BREASTS}
    try:
        breasts = [by_name[n.replace(" ", "")] for n in args.breast] if args.breast else list(REFERENCE_BREASTS)
    except KeyError as exc:
        print(f"error: unknown reference breast {exc}; known: {', '.join(b.name for b in REFERENCE_BREASTS)}", file=sys.stderr)
        return EXIT_INPUT
    reports = []
    with reuse_phantoms():  # the dry runs of every file image the same few reference breasts
        for path in args.exam:
            try:
                report = validate_file(path, args.gantry, seed=args.seed, dry=not args.static_only, breasts=breasts)
            except (FileNotFoundError, ValueError) as exc:
                print(f"error: {exc}", file=sys.stderr)
                return EXIT_INPUT
            print(report.text())
            reports.append(report)
    if args.junit:
        write_report_junit(args.junit, reports)
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``crescent validate`` to the ``crescent`` parser."""
    p = subparsers.add_parser(
        "validate",
        help="validate exam files for CI: static checks, dry run on the simulated gantry, dose",
        description="Exit status 0 only when every exam is safe: no static violation, the dry run completes, "
        "and the mean glandular dose of every reference breast is within its limit.",
    )
    p.add_argument("exam", nargs="+", help="exam YAML files or shipped exam names (crescent exam list)")
    p.add_argument("--gantry", default=None, help="gantry config (preset name or YAML; default: default)")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--static-only", action="store_true", help="skip the dry run and the dose")
    p.add_argument(
        "--breast", action="append", metavar="NAME",
        help="reference breast to check (repeatable; e.g. '45 mm / 50 %%'; default: all)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_validate)
