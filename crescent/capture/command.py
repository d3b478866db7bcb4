"""``crescent check-capture``, ``crescent timing`` and ``crescent replay``: tools over a capture (pcap).

* ``check-capture CAPTURE`` - post-hoc invariants over a pcap (:mod:`hil.check_capture`);
* ``timing CAPTURE`` - round-trip histogram and telemetry jitter (:mod:`hil.timing`);
* ``replay CAPTURE [--to host|gantry] [--port URL]`` - feed a capture back (:mod:`hil.replay`).

The command imports its library only when run. Exit status: 0 passed, 1 check failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from crescent.exit_codes import EXIT_FAILED, EXIT_INPUT, EXIT_OK

def _read_packets(path: str):  # type: ignore[no-untyped-def]
    """The capture's packets, or None after printing why the file cannot be read."""
    from hil.pcap import PcapError, read_pcap

    try:
        return read_pcap(path)
    except FileNotFoundError:
        print(f"error: capture {path}: no such file", file=sys.stderr)
    except (PcapError, OSError) as exc:
        print(f"error: capture {path}: {exc}", file=sys.stderr)
    return None


def _load_items(path: str):  # type: ignore[no-untyped-def]
    from hil.decode import decode_packets

    packets = _read_packets(path)
    return None if packets is None else decode_packets(packets)


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


def _replay(args: argparse.Namespace) -> int:
    from hil.pcap import write_pcap
    from hil.replay import replay_to_host, replay_to_port, replay_to_virtual_gantry

    packets = _read_packets(args.capture)
    if packets is None:
        return EXIT_INPUT
    if args.to == "host":
        report = replay_to_host(packets, seed=args.seed)
    elif args.port:
        try:
            report = replay_to_port(packets, args.port)
        except Exception as exc:  # noqa: BLE001 - pyserial raises several types for a bad port
            print(f"error: port {args.port}: {exc}", file=sys.stderr)
            return EXIT_INPUT
    else:
        report = replay_to_virtual_gantry(packets, args.gantry_config, seed=args.seed)
    print(report.text())
    if args.out:
        write_pcap(args.out, report.replayed_packets)
    return EXIT_OK if report.ok else EXIT_FAILED


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the capture subcommands to the ``crescent`` parser."""
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
        "timing", help="round-trip latency histogram and telemetry jitter of a capture",
        description="Round-trip time of every request/answer pair per message type (histogram, percentiles) and "
        "the jitter of the device's telemetry period, from a capture.",
    )
    p.add_argument("capture", help="pcap file")
    p.add_argument("--json", metavar="FILE", help="write the statistics as JSON")
    p.add_argument("--csv", metavar="FILE", help="write the statistics as CSV")
    p.set_defaults(func=_timing)

    p = subparsers.add_parser(
        "replay",
        help="feed a capture back to a host controller or a gantry and report divergences",
        description="Replay a capture: the device's stream to a host controller (--to host), or the host's "
        "requests to a gantry (--to gantry, simulated in virtual time unless --port); report where they diverge.",
    )
    p.add_argument("capture", help="pcap file")
    p.add_argument("--to", choices=("host", "gantry"), default="host", help="which side to replay against")
    p.add_argument("--port", help="gantry port for --to gantry (default: simulated gantry in virtual time)")
    p.add_argument("--gantry-config", default=None, help="simulated gantry config (preset name or YAML)")
    p.add_argument("--out", metavar="FILE", help="write the replayed traffic as a pcap")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_replay)
