"""``crescent`` subcommands of the HIL/CI tooling.

* ``check-capture CAPTURE`` - post-hoc invariants over a pcap (:mod:`hil.check_capture`);
* ``timing CAPTURE`` - round-trip histogram and telemetry jitter (:mod:`hil.timing`);
* ``replay CAPTURE [--to host|gantry] [--port URL]`` - feed a capture back (:mod:`hil.replay`);
* ``conformance --port URL [--junit FILE] [--rig FILE]`` - protocol conformance (:mod:`hil.conformance`);
* ``validate EXAM.yaml... [--gantry FILE] [--junit FILE]`` - exam validation for CI (:mod:`hil.validate_exam`).

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


def _validate(args: argparse.Namespace) -> int:
    from hil.validate_exam import validate_file, write_report_junit

    from hil.validate_exam import REFERENCE_BREASTS

    by_name = {b.name.replace(" ", ""): b for b in REFERENCE_BREASTS}
    try:
        breasts = [by_name[n.replace(" ", "")] for n in args.breast] if args.breast else list(REFERENCE_BREASTS)
    except KeyError as exc:
        print(f"error: unknown reference breast {exc}; known: {', '.join(b.name for b in REFERENCE_BREASTS)}", file=sys.stderr)
        return EXIT_INPUT
    reports = []
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

    p = subparsers.add_parser(
        "replay",
        help="feed a capture back to a host controller or a gantry and report divergences",
    )
    p.add_argument("capture", help="pcap file")
    p.add_argument("--to", choices=("host", "gantry"), default="host", help="which side to replay against")
    p.add_argument("--port", help="gantry port for --to gantry (default: simulated gantry in virtual time)")
    p.add_argument("--gantry-config", default=None, help="simulated gantry config (preset name or YAML)")
    p.add_argument("--out", metavar="FILE", help="write the replayed traffic as a pcap")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_replay)

    p = subparsers.add_parser(
        "conformance",
        help="run the protocol conformance suite against a gantry port",
        description="Checks what protocols/SPEC.md promises: handshake and version negotiation, CRC/framing "
        "errors and resync, de-duplication, watchdog, FIRE refusals, abort latency, telemetry rate, range errors.",
    )
    p.add_argument("--port", help="pyserial URL or device path of the gantry (e.g. /dev/pts/5)")
    p.add_argument("--rig", metavar="FILE", help="rig description YAML (hil/rigs/sim-pty.yaml is an example)")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--capture", metavar="FILE", help="record the session's traffic as a pcap")
    p.add_argument("--check", action="append", metavar="NAME", help="run only this check (repeatable)")
    p.add_argument("--list", action="store_true", help="list the checks and exit")
    p.set_defaults(func=_conformance)

    p = subparsers.add_parser(
        "validate",
        help="validate exam files for CI: static checks, dry run on the simulated gantry, dose",
        description="Exit status 0 only when every exam is safe: no static violation, the dry run completes, "
        "and the mean glandular dose of every reference breast is within its limit.",
    )
    p.add_argument("exam", nargs="+", help="exam YAML file(s)")
    p.add_argument("--gantry", default=None, help="gantry config (preset name or YAML; default: default)")
    p.add_argument("--junit", metavar="FILE", help="write a JUnit XML report")
    p.add_argument("--static-only", action="store_true", help="skip the dry run and the dose")
    p.add_argument(
        "--breast", action="append", metavar="NAME",
        help="reference breast to check (repeatable; e.g. '45 mm / 50 %%'; default: all)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_validate)
