"""``crescent`` subcommands of the HIL/CI tooling.

* ``check-capture CAPTURE`` - post-hoc invariants over a pcap (:mod:`hil.check_capture`);
* ``timing CAPTURE`` - round-trip histogram and telemetry jitter (:mod:`hil.timing`).

Each command imports its module only when run, so ``crescent --help`` stays fast.
Exit status: 0 success / check passed, 1 check failed, 2 bad input (file, port).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INPUT = 2


def _load_items(path: str):  # type: ignore[no-untyped-def]
    from hil.decode import decode_packets
    from hil.pcap import PcapError, read_pcap

    try:
        return decode_packets(read_pcap(path))
    except FileNotFoundError:
        print(f"error: capture {path}: no such file", file=sys.stderr)
    except (PcapError, OSError) as exc:
        print(f"error: capture {path}: {exc}", file=sys.stderr)
    return None


def _check_capture(args: argparse.Namespace) -> int:
    from hil.check_capture import check_items

    items = _load_items(args.capture)
    if items is None:
        return EXIT_INPUT
    report = check_items(items, grace_s=args.grace_ms / 1000.0)
    if args.verbose:
        for it in items:
            print(it.describe())
    print(report.text())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    return EXIT_OK if report.ok else EXIT_FAILED


def _timing(args: argparse.Namespace) -> int:
    from hil.timing import timing_report

    items = _load_items(args.capture)
    if items is None:
        return EXIT_INPUT
    report = timing_report(items)
    print(report.text())
    if args.json:
        Path(args.json).write_text(json.dumps(report.to_dict(), indent=2), encoding="utf-8")
    if args.csv:
        Path(args.csv).write_text(report.csv(), encoding="utf-8")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the HIL subcommands to the ``crescent`` parser."""
    p = subparsers.add_parser(
        "check-capture",
        help="check safety/protocol invariants over a capture (pcap)",
        description="Post-hoc invariants: no FIRE without an accepted ARM_PLAN, every command answered, "
        "no exposure outside an armed plan or after ABORT, no duplicate execution, no silence over the watchdog.",
    )
    p.add_argument("capture", help="pcap file (DLT_USER0, see hil/pcap.py)")
    p.add_argument("--json", metavar="FILE", help="also write the report as JSON")
    p.add_argument("--grace-ms", type=float, default=200.0, help="requests this close to the end may be unanswered")
    p.add_argument("-v", "--verbose", action="store_true", help="print every decoded frame")
    p.set_defaults(func=_check_capture)

    p = subparsers.add_parser(
        "timing", help="round-trip latency histogram and telemetry jitter of a capture"
    )
    p.add_argument("capture", help="pcap file")
    p.add_argument("--json", metavar="FILE", help="write the statistics as JSON")
    p.add_argument("--csv", metavar="FILE", help="write the statistics as CSV")
    p.set_defaults(func=_timing)
