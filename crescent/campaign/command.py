"""``crescent campaign``: the seeded fault campaign on the virtual-time gantry (safety verification evidence).

N exams, each from its seed: an exam (``--exam``, library names or YAML files; default the whole
shipped library), a fault drawn from the gantry's whole fault catalogue (plus dead lines around
the retry budget and beyond the watchdog, host stalls, device resets) at a random moment of a
random phase. Invariants (a)-(g) are checked from the device's event log, the capture and the
record, independently of the controller's verdict (:mod:`crescent.campaign.invariants`).

Exams run on Dask: a LocalCluster of ``--workers`` processes, or ``--scheduler tcp://HOST:PORT``.
Results go to ``--results`` (JSON lines keyed by seed; a rerun resumes it), the table and the
violations to stdout, ``--junit`` and ``--html`` files next to it. Exit status: 0 no violation,
1 a violation, 2 bad input.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path
from typing import Any

from crescent.exit_codes import EXIT_FAILED, EXIT_INPUT, EXIT_OK


def _seed_list(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            a, b = part.split("-", 1)
            out += list(range(int(a), int(b) + 1))
        else:
            out.append(int(part))
    return out


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("campaign", help="seeded fault campaign on the virtual-time gantry",
                              description=re.sub(r":\w+:`([^`]*)`", r"\1", __doc__).replace("``", ""), formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--exams", type=int, default=100, metavar="N", help="number of exams (seeds FIRST..FIRST+N-1)")
    p.add_argument("--first-seed", type=int, default=1, metavar="FIRST")
    p.add_argument("--seeds", default=None, help="explicit seeds instead, e.g. '7,12,40-45' (reproduce a violation)")
    p.add_argument("--exam", action="append", default=None, metavar="NAME|FILE",
                   help="exam to draw from (repeatable; default: every exam of the shipped library)")
    p.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes (default 2)")
    p.add_argument("--scheduler", default=None, metavar="tcp://HOST:PORT", help="use an existing Dask scheduler")
    p.add_argument("--out", default="campaign", help="output folder (default ./campaign)")
    p.add_argument("--results", default=None, help="results file, JSON lines keyed by seed (default OUT/results.jsonl)")
    p.add_argument("--junit", default=None, help="JUnit XML path (default OUT/junit.xml)")
    p.add_argument("--html", default=None, help="HTML page path (default OUT/campaign.html)")
    p.add_argument("--keep", default=None, metavar="DIR", help="keep every exam's folders (device data, exam) in DIR")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from crescent.campaign.cases import LIBRARY

    exams = args.exam or list(LIBRARY)
    try:
        seeds = _seed_list(args.seeds) if args.seeds else list(range(args.first_seed, args.first_seed + args.exams))
    except ValueError:
        print(f"error: --seeds {args.seeds!r}: expected numbers and ranges like '7,12,40-45'", file=sys.stderr)
        return EXIT_INPUT
    if not seeds or args.exams < 0 or args.workers < 1:
        print("error: --exams and --workers must be positive", file=sys.stderr)
        return EXIT_INPUT
    from crescent.campaign.exam_run import resolve_exam_model

    for e in exams:
        try:
            resolve_exam_model(e)
        except Exception as exc:  # noqa: BLE001 - any unreadable exam is bad input
            print(f"error: exam {e!r}: {exc}", file=sys.stderr)
            return EXIT_INPUT
    from crescent.campaign.report import text_report, write_html, write_junit
    from crescent.campaign.runner import run_campaign

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results_path = Path(args.results) if args.results else out / "results.jsonl"
    count = [0]

    def tick(r: dict[str, Any]) -> None:
        count[0] += 1
        if r["violations"]:
            print(f"  seed {r['seed']}: {len(r['violations'])} violation(s): {r['label']}", file=sys.stderr, flush=True)
        elif count[0] % 50 == 0:
            print(f"  {count[0]} exams run", file=sys.stderr, flush=True)

    t0 = time.perf_counter()
    results = run_campaign(seeds, exams, results_path, workers=args.workers, scheduler=args.scheduler,
                           keep_root=args.keep, on_result=tick)
    wall = time.perf_counter() - t0
    print(text_report(results, exams, wall if count[0] == len(results) else None))
    junit = Path(args.junit) if args.junit else out / "junit.xml"
    html_path = Path(args.html) if args.html else out / "campaign.html"
    write_junit(junit, results)
    write_html(html_path, results, exams, wall if count[0] == len(results) else None)
    print(f"results {results_path}, JUnit {junit}, HTML {html_path}")
    return EXIT_FAILED if any(r["violations"] for r in results) else EXIT_OK
