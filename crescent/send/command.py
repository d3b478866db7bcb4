"""``crescent send DIR --to AE@HOST:PORT``: C-STORE every DICOM object under DIR to a PACS.

Prints one line per object (stored / failed, SOP class, status, attempts) and
a summary. Exit status: 0 every object stored; 1 some (or all) not stored,
including a PACS that is down or refuses the association (the message names
the AE title, host, port and reason; the files stay where they are); 2 bad
input (no such folder, no DICOM file in it, an address that is not
``AE@HOST:PORT``, a bad AE title or retry count).
"""

from __future__ import annotations

import argparse
import sys

from crescent.exit_codes import EXIT_FAILED, EXIT_INPUT, EXIT_OK


def _cmd(args: argparse.Namespace) -> int:
    from pathlib import Path

    from crescent.pacs.address import check_ae_title, parse_address
    from crescent.pacs.association import PacsError
    from crescent.pacs.store import StoreResult, find_dicom_files, send_files

    def fail(msg: str) -> int:
        print(f"crescent send: {msg}", file=sys.stderr)
        return EXIT_INPUT

    try:
        address = parse_address(args.to, "--to")
        calling = check_ae_title(args.calling_ae, "--calling-ae")
    except ValueError as exc:
        return fail(str(exc))
    if args.retries < 0 or args.retries > 20:
        return fail(f"--retries {args.retries}: must be 0..20")
    if args.backoff < 0 or args.backoff > 600:
        return fail(f"--backoff {args.backoff:g} s: must be 0..600 s")
    if not 0 < args.timeout <= 600:
        return fail(f"--timeout {args.timeout:g} s: must be in (0, 600] s")
    folder = Path(args.dir)
    try:
        files = find_dicom_files(folder)
    except ValueError as exc:
        return fail(str(exc))
    if not files:
        return fail(f"{folder}: no DICOM file (Part 10, 'DICM' at byte 128) in it")
    print(f"crescent send: {len(files)} object(s) from {folder} to {address} as {calling}")

    def show(r: StoreResult) -> None:
        rel = r.path.relative_to(folder) if folder.is_dir() and r.path.is_relative_to(folder) else r.path.name
        status = "-" if r.status is None else f"0x{r.status:04X}"
        tries = f", {r.attempts} attempts" if r.attempts > 1 else ""
        print(f"  {'stored' if r.stored else 'FAILED'}  {rel}  {r.sop_class_name}  status {status}{tries}"
              + ("" if r.stored and r.message == "stored" else f"  {r.message}"), flush=True)

    try:
        report = send_files(files, address, calling, retries=args.retries, backoff_s=args.backoff,
                            timeout_s=args.timeout, on_result=show)
    except ValueError as exc:  # more SOP classes than one association can carry
        return fail(str(exc))
    except PacsError as exc:
        print(f"crescent send: {exc}", file=sys.stderr)
        print(f"crescent send: 0 of {len(files)} stored; the files are still in {folder}", file=sys.stderr)
        return EXIT_FAILED
    print(f"crescent send: {report.stored} of {len(report.results)} stored on {address} in {report.seconds:.1f} s"
          + (f"; {report.failed} failed (files kept in {folder})" if report.failed else ""))
    return EXIT_OK if report.ok else EXIT_FAILED


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``crescent send``."""
    p = sub.add_parser("send", help="store a folder of DICOM objects on a PACS (C-STORE)",
                       description="Store every DICOM file under DIR (e.g. an acquire output folder) on a PACS "
                       "over DICOM C-STORE, with a presentation context for each SOP class. Prints one line per "
                       "object and a summary; exit 0 all stored, 1 some not stored (or the PACS down), 2 bad "
                       "input. Files are never moved or deleted.")
    p.add_argument("dir", metavar="DIR", help="folder (searched recursively) or one DICOM file")
    p.add_argument("--to", required=True, metavar="AE@HOST:PORT", help="the PACS, e.g. ORTHANC@127.0.0.1:4242")
    p.add_argument("--calling-ae", default="CRESCENT", metavar="AE", help="our AE title (default CRESCENT)")
    p.add_argument("--retries", type=int, default=2, metavar="N",
                   help="new associations for objects that failed for a transient reason (default 2)")
    p.add_argument("--backoff", type=float, default=1.0, metavar="S",
                   help="wait before the first retry, doubled each time (default 1 s)")
    p.add_argument("--timeout", type=float, default=10.0, metavar="S",
                   help="connection, association and response time-out (default 10 s)")
    p.set_defaults(func=_cmd)
