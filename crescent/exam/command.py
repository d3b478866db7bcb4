"""``crescent exam ...``: run, list, show and inspect exams from the command line.

* ``crescent exam list`` - the shipped standard exams;
* ``crescent exam show NAME|FILE`` - the exam as YAML, its planned exposures and static validation;
* ``crescent exam schema`` - the exam JSON Schema;
* ``crescent exam run EXAM --port URL [--out DIR]`` - run an exam on the device at URL;
* ``crescent exam status --port URL`` - device state and any plan a lost host left behind;
* ``crescent exam recover DIR --port URL`` - report (and make safe) an exam a crashed host left in DIR
  (``--data-dir DIR`` instead when the gantry is gone: the frames left there, CRC checked);
* ``crescent exam verify DIR`` - check every stored image's CRC-32C and the audit log.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from crescent.cli_types import describe_error, float_in, int_in
from protocols.option_bounds import IMAGE_TIMEOUT_S_MAX, WATCHDOG_MS_MAX, WATCHDOG_MS_MIN

BAUD = int_in(1200, 12_000_000, " bit/s")

#: ``crescent exam --help``: plain text, one line per action.
DESCRIPTION = """Run, list, show and inspect exam protocols.

  crescent exam list                       the shipped standard exams
  crescent exam show NAME|FILE             the exam as YAML, its planned exposures and static validation
  crescent exam schema                     the exam JSON Schema
  crescent exam run EXAM --port URL        run an exam on the device at URL
  crescent exam status --port URL          device state and any plan a lost host left behind
  crescent exam recover DIR --port URL     report (and make safe) an exam a crashed host left in DIR
  crescent exam verify DIR                 check every stored image's CRC-32C and the audit log
"""


def _action(sub: Any, name: str, text: str) -> argparse.ArgumentParser:
    """One ``crescent exam`` action; its ``--help`` description is the help line as a sentence."""
    return sub.add_parser(name, help=text, description=text[0].upper() + text[1:] + ".")


def register(subparsers: Any) -> None:
    """Add ``crescent exam`` and its subcommands."""
    p = subparsers.add_parser("exam", help="run, list and inspect exam protocols", description=DESCRIPTION,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="exam_command", metavar="ACTION")
    p.set_defaults(func=lambda a: (p.print_help(), 0)[1])

    _action(sub, "list", "list the standard exams").set_defaults(func=_list)
    show = _action(sub, "show", "show an exam, its plan and validation")
    show.add_argument("exam", help="standard exam name or YAML file")
    show.set_defaults(func=_show)
    _action(sub, "schema", "print the exam JSON Schema").set_defaults(func=_schema)

    run = _action(sub, "run", "run an exam on a device")
    run.add_argument("exam", help="standard exam name or YAML file")
    run.add_argument("--port", required=True, help="pyserial URL: /dev/pts/N, socket://127.0.0.1:5555, rfc2217://...")
    run.add_argument("--out", default=None, help="exam folder (default ./exam-<name>-1)")
    run.add_argument("--baud", type=BAUD, default=921600, help="bit/s (default 921600)")
    run.add_argument("--seed", type=int, default=None, help="seed of session and plan ids")
    run.add_argument("--image-timeout", type=float_in(0.0, IMAGE_TIMEOUT_S_MAX, " s"), default=None, metavar="S",
                     help="wait this long for each image, restarted by each image's arrival (default: 3 s on a "
                     f"rig, 60 s on a simulated gantry; at most {IMAGE_TIMEOUT_S_MAX:g} s)")
    run.add_argument("--watchdog-ms", type=int_in(WATCHDOG_MS_MIN, WATCHDOG_MS_MAX, " ms"), default=None, metavar="MS",
                     help="device watchdog asked for in HELLO (default 500 ms, SPEC's default, on a rig as on a "
                     f"simulated gantry; {WATCHDOG_MS_MIN}..{WATCHDOG_MS_MAX} ms)")
    run.set_defaults(func=_run)

    status = _action(sub, "status", "device state and an interrupted plan")
    status.add_argument("--port", required=True)
    status.add_argument("--baud", type=BAUD, default=921600)
    status.set_defaults(func=_status)

    rec = _action(sub, "recover", "report an exam a crashed host left behind")
    rec.add_argument("dir", help="the interrupted exam's folder (or the --out folder of crescent acquire)")
    rec.add_argument("--port", default=None, help="the gantry's port (reads its exposure ledger and data channel)")
    rec.add_argument("--data-dir", default=None, metavar="DIR",
                     help="the gantry is gone: take in the frames left in its data directory (CRC checked)")
    rec.add_argument("--baud", type=BAUD, default=921600)
    rec.set_defaults(func=_recover)

    ver = _action(sub, "verify", "verify an exam folder's images and audit log")
    ver.add_argument("dir", help="an exam folder (or the --out folder of crescent acquire)")
    ver.set_defaults(func=_verify)


def exam_folder(path: str | Path) -> Path:
    """The exam folder of ``path``: itself, or ``path/exam`` when ``path`` is a ``crescent acquire --out``
    folder (which holds the host's exam folder under ``exam/``)."""
    p = Path(path)
    if not (p / "audit.jsonl").exists() and (p / "exam" / "audit.jsonl").exists():
        return p / "exam"
    return p


def _list(args: argparse.Namespace) -> int:
    from protocols.exams import list_standard_exams, load_standard_exam

    for name in list_standard_exams():
        exam = load_standard_exam(name)
        print(f"{name:16s} {exam.kind:6s} {exam.description.strip()}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from firmware_host.api import resolve_exam
    from protocols.exams import dump_exam_yaml, expand_exam, validate_exam
    from protocols.exams.models import AecTechnique

    try:
        exam = resolve_exam(args.exam)
    except (KeyError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(dump_exam_yaml(exam))
    if isinstance(exam.technique, AecTechnique):
        print("# technique: AEC (chosen after the scout); plan not shown")
    else:
        print("# planned exposures: index, angle deg, kVp, mAs, window ms")
        for p in expand_exam(exam):
            print(f"#   {p.index:2d} {p.planned_angle_deg:8.3f} {p.kvp:5.1f} {p.mas:7.3f} {p.window_ms:8.2f}")
    problems = validate_exam(exam)
    print("# validation: " + ("ok" if not problems else "; ".join(str(v) for v in problems)))
    return 0 if not problems else 1


def _schema(args: argparse.Namespace) -> int:
    from protocols.exams import exam_json_schema

    print(json.dumps(exam_json_schema(), indent=2))
    return 0


def _progress(phase: str, index: int, total: int) -> None:
    if total:
        print(f"  {phase:9s} {index:3d}/{total}", file=sys.stderr)
    elif phase != "image":
        print(f"{phase}", file=sys.stderr)


def _run(args: argparse.Namespace) -> int:
    from firmware_host.api import connect
    from firmware_host.errors import HostError
    from firmware_host.exam_plan import ExamOptions

    from firmware_host.api import resolve_exam

    try:  # the exam is read and checked before the port opens
        exam = resolve_exam(args.exam)
    except (KeyError, ValueError, OSError) as exc:
        print(f"error: exam {args.exam!r}: {describe_error(exc)}", file=sys.stderr)
        return 2
    try:
        options = ExamOptions(watchdog_timeout_ms=args.watchdog_ms) if args.watchdog_ms else ExamOptions()
        with connect(args.port, baudrate=args.baud, seed=args.seed, options=options) as gantry:
            s = gantry.session
            print(f"connected: firmware {s.firmware_version}, serial {s.serial_number}, state {s.state_at_connect}",
                  file=sys.stderr)
            result = gantry.run_exam(exam, args.out, progress=_progress,
                                     options=gantry.exam_options(args.image_timeout))
    except (HostError, KeyError, ValueError, OSError) as exc:
        print(f"error: {describe_error(exc)}", file=sys.stderr)
        return 2
    r = result.record
    if not r.complete:
        print(f"exam {r.status}: {r.reason}", file=sys.stderr)
    print(json.dumps({"status": r.status, "reason": r.reason, "fault": r.fault, "images": len(r.image_paths),
                      "planned": r.planned_count, "record": str(result.record_path), "audit": str(result.audit_path)},
                     indent=2))
    return 0 if r.complete else 1


def _status(args: argparse.Namespace) -> int:
    from firmware_host.api import connect
    from firmware_host.errors import HostError
    from firmware_host.recovery import device_state_text

    try:
        with connect(args.port, baudrate=args.baud) as gantry:
            st = gantry.status()
            out = {**gantry.session.summary(), "status": device_state_text(st)}
    except (HostError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0


def _recover(args: argparse.Namespace) -> int:
    from firmware_host.api import connect
    from firmware_host.errors import HostError

    if (args.port is None) == (args.data_dir is None):
        print("error: give --port (the gantry is there) or --data-dir (it is gone), not both", file=sys.stderr)
        return 2
    try:
        if args.data_dir is not None:
            from firmware_host.recovery import recover_offline

            record = recover_offline(exam_folder(args.dir), args.data_dir)
        else:
            with connect(args.port, baudrate=args.baud) as gantry:
                record = gantry.recover_exam(exam_folder(args.dir))
    except (HostError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"status": record.status, "reason": record.reason, "images": len(record.image_paths),
                      "missing_images": record.missing_images, "missing_reasons": record.missing_reasons,
                      "device_exposures": record.device_exposures, "released": record.released,
                      "warnings": record.warnings}, indent=2))
    return 0


def _verify(args: argparse.Namespace) -> int:
    from firmware_host.audit import read_audit_log
    from firmware_host.store import verify_exam_folder

    folder = exam_folder(args.dir)
    if folder != Path(args.dir):
        print(f"exam folder: {folder}")
    results = verify_exam_folder(folder)
    bad = [r for r in results if not r[1]]
    for path, ok, msg in results:
        print(f"{'ok ' if ok else 'BAD'} {path}" + ("" if ok else f": {msg}"))
    try:
        log = read_audit_log(folder / "audit.jsonl")
        print(f"audit log: {len(log.entries)} entries" + (", torn last line ignored" if log.torn_last_line else ""))
    except (OSError, ValueError) as exc:
        print(f"audit log: {exc}")
        return 1
    return 1 if bad else 0
