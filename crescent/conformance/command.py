"""``crescent conformance --port URL [--junit FILE] [--rig FILE]``: the protocol conformance suite (:mod:`hil.conformance`).

Exit status: 0 every check passed, 1 a check failed, 2 bad input (port, rig file).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crescent.exit_codes import EXIT_FAILED, EXIT_INPUT, EXIT_OK

def _conformance(args: argparse.Namespace) -> int:
    from hil.conformance import run_suite
    from hil.conformance.checks import CHECKS
    from hil.rig import RigFileError, load_rig, sim_rig

    if args.list:
        for name, fn in CHECKS.items():
            print(f"{name:34s} {(fn.__doc__ or '').strip().splitlines()[0]}")
        return EXIT_OK
    if not args.port:
        print("error: --port URL is required (e.g. the pty printed by `crescent gantry --pty`)", file=sys.stderr)
        return EXIT_INPUT
    try:
        rig = load_rig(args.rig) if args.rig else sim_rig(args.port)
    except RigFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    try:
        report = run_suite(args.port, rig=rig, only=args.check, capture=args.capture, junit=args.junit)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - pyserial raises SerialException/OSError for a bad port
        print(f"error: cannot talk to {args.port}: {exc}", file=sys.stderr)
        return EXIT_INPUT
    print(report.text())
    return EXIT_OK if report.ok else EXIT_FAILED


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``crescent conformance`` to the ``crescent`` parser."""
    p = subparsers.add_parser(
        "conformance",
        help="run the protocol conformance suite against a gantry port",
        description="Checks what protocols/SPEC.md promises: handshake and version negotiation, CRC/framing "
        "errors and resync, de-duplication, watchdog, FIRE refusals, abort latency, telemetry rate, range errors; "
        "with a link key (rig file link_key_file, or CRESCENT_LINK_KEY) the session is signed and forged, replayed, "
        "stale and unsigned frames and the data-channel token are checked too (SPEC 2.6).",
    )
    p.add_argument("--port", help="pyserial URL or device path of the gantry (e.g. /dev/pts/5)")
    p.add_argument("--rig", metavar="FILE", help="rig description YAML (hil/rigs/sim-pty.yaml is an example)")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--capture", metavar="FILE", help="record the session's traffic as a pcap")
    p.add_argument("--check", action="append", metavar="NAME", help="run only this check (repeatable)")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.set_defaults(func=_conformance)
