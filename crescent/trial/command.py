"""``crescent trial``: virtual clinical trials on dask (:mod:`crescent.trial`).

* ``crescent trial run FILE --out DIR [--scheduler tcp://HOST:PORT] [--workers N] [--cases N] [--dicom DIR]
  [--dashboard :PORT]`` - a rich progress bar, and the dask dashboard's address printed (served when
  bokeh>=3.1 is installed: ``pip install crescent[dashboard]``);
* ``crescent trial check FILE`` - validate a trial file (and its exams) and print its hash;
* ``crescent trial schema`` - the JSON Schema of trial files;
* ``crescent trial examples`` - the shipped example trials.

Exit status: 0 done, 1 a case failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from crescent.exit_codes import EXIT_FAILED, EXIT_INPUT, EXIT_OK

EXAMPLES_DIR = Path(__file__).with_name("examples")


def _trial_path(ref: str) -> Path:
    p = Path(ref)
    if not p.exists() and (EXAMPLES_DIR / f"{ref}.yaml").exists():
        return EXAMPLES_DIR / f"{ref}.yaml"
    return p


def _load(ref: str):  # type: ignore[no-untyped-def]
    from crescent.trial.model import TrialFileError, load_trial

    try:
        return load_trial(_trial_path(ref))
    except TrialFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return None


def _run(args: argparse.Namespace) -> int:
    import time

    spec = _load(args.trial)
    if spec is None:
        return EXIT_INPUT
    if args.cases is not None:
        if args.cases < 1:
            print(f"error: --cases {args.cases} must be >= 1", file=sys.stderr)
            return EXIT_INPUT
        spec = spec.model_copy(update={"cohort": spec.cohort.model_copy(update={"n_cases": args.cases})})
    if args.workers is not None and args.workers < 1:
        print(f"error: --workers {args.workers} must be >= 1", file=sys.stderr)
        return EXIT_INPUT
    if args.scheduler and not args.scheduler.startswith(("tcp://", "tls://", "inproc://", "ucx://")):
        print(f"error: --scheduler {args.scheduler!r} must be an address like tcp://HOST:PORT", file=sys.stderr)
        return EXIT_INPUT
    if (not re.fullmatch(r"[\w.\-\[\]:]*:\d{1,5}", args.dashboard or "")
            or int(args.dashboard.rsplit(":", 1)[1]) > 65535):
        print(f"error: --dashboard {args.dashboard!r} must be an address like :8787 or 127.0.0.1:8787 (:0 any free port)",
              file=sys.stderr)
        return EXIT_INPUT
    if args.dicom and Path(args.dicom).exists() and not Path(args.dicom).is_dir():
        print(f"error: --dicom {args.dicom!r} exists and is not a folder", file=sys.stderr)
        return EXIT_INPUT
    from crescent.trial.results import write_outputs
    from crescent.trial.runner import run_trial

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    try:
        run = run_trial(spec, out, scheduler=args.scheduler, workers=args.workers,
                        base_dir=_trial_path(args.trial).parent, progress=not args.no_progress,
                        dicom=Path(args.dicom) if args.dicom else None, dashboard=args.dashboard)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    info = {"trial": spec.name, "trial_hash": run.trial_hash, "cases": run.n_cases, "arms": len(spec.arms),
            "cases_run_now": run.submitted, "cases_reused": run.skipped, "workers": run.workers,
            "imaging_wall_s": round(run.wall_s, 1),
            "cases_per_hour": round(3600 * run.submitted / run.wall_s, 1) if run.submitted else None,
            "cases_over_wire": sum(1 for r in run.rows if r.get("imaging_path") == "gantry"),
            "store": str(run.store), "dashboard": run.dashboard,
            "dicom": str(Path(args.dicom).resolve()) if args.dicom else None}
    summary, files = write_outputs(spec, out, run.rows, run.rois, info, run.rois_direct)
    info["total_wall_s"] = round(time.perf_counter() - t0, 1)
    (out / "run.json").write_text(json.dumps(info, indent=2, default=str))
    print(f"{'arm':<12}{'lesion':<24}{'observer':<11}{'n1/n0':>9}{'MGD mGy':>9}  {'d-prime [95% CI]':<22}{'AUC [95% CI]'}")
    for s in summary:
        dp = f"{s['dprime']:.2f} [{s['dprime_lo']:.2f}, {s['dprime_hi']:.2f}]"
        au = f"{s['auc']:.3f} [{s['auc_lo']:.3f}, {s['auc_hi']:.3f}]"
        print(f"{s['arm']:<12}{s['lesion_type']:<24}{s['observer']:<11}{s['n_present']:>4}/{s['n_absent']:<4}"
              f"{s['mean_mgd_mgy']:>9.3f}  {dp:<22}{au}")
    xc = out / "gantry_crosscheck.csv"
    if any(p == xc for p in files):
        import csv

        from crescent.trial.results import CROSSCHECK_TOLERANCE_SD

        with open(xc, newline="") as fh:
            for c in csv.DictReader(fh):
                verdict = "within" if c["within_tolerance"] == "True" else "OUTSIDE"
                print(f"over the wire vs direct path, {c['arm']} {c['lesion_type']} {c['observer']}: {c['n_cases']} cases, "
                      f"rating difference rms {c['rms_delta_sd']} / max {c['max_abs_delta_sd']} SD of the absent "
                      f"ratings ({verdict} the {CROSSCHECK_TOLERANCE_SD:g} SD tolerance)")
    print(f"wall time {info['total_wall_s']} s; outputs in {out}: " + ", ".join(p.name for p in files))
    return EXIT_OK


def _check(args: argparse.Namespace) -> int:
    spec = _load(args.trial)
    if spec is None:
        return EXIT_INPUT
    from crescent.trial.runner import exams_json, full_hash

    exams = exams_json(spec, _trial_path(args.trial).parent)
    print(f"{spec.name}: valid; {spec.cohort.n_cases} cases, arms {', '.join(a.name for a in spec.arms)}; "
          f"trial hash {full_hash(spec, exams)}")
    return EXIT_OK


def _schema(args: argparse.Namespace) -> int:
    from crescent.trial.model import trial_json_schema

    print(json.dumps(trial_json_schema(), indent=2))
    return EXIT_OK


def _examples(args: argparse.Namespace) -> int:
    for p in sorted(EXAMPLES_DIR.glob("*.yaml")):
        print(f"{p.stem}: {p}")
    return EXIT_OK


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``crescent trial`` to the ``crescent`` parser."""
    p = subparsers.add_parser("trial", help="virtual clinical trials: cohort x arms on dask, model observers",
                              description="Run a virtual clinical trial: every case imaged in every arm through the "
                              "simulator's physics, scored by model observers (CHO, NPW).")
    sub = p.add_subparsers(dest="trial_cmd", metavar="ACTION", required=True)
    r = sub.add_parser("run", help="run (or resume) a trial and write its outputs",
                       description="Run a virtual clinical trial (cohort x arms) on Dask, or resume it from its folder, and write the per-case CSV, the summary, the HTML report and the iMRMC input.")
    r.add_argument("trial", help="trial YAML file, or the name of a shipped example (e.g. ffdm-vs-dbt)")
    r.add_argument("--out", required=True, help="output folder (the case store lives in OUT/cases/)")
    r.add_argument("--scheduler", metavar="tcp://HOST:PORT", help="existing dask scheduler (default: a LocalCluster)")
    r.add_argument("--workers", type=int, help="LocalCluster worker processes (default: one per core)")
    r.add_argument("--cases", type=int, help="override cohort.n_cases (the first N cases; hash unchanged)")
    r.add_argument("--dicom", metavar="DIR", help="also write every case's images as DICOM in DIR/case-NNNNN/ARM/ "
                   "(written by the workers as each case is imaged; cases stored earlier are imaged again for it)")
    r.add_argument("--dashboard", metavar=":PORT", default=":8787",
                   help="where the LocalCluster serves the dask dashboard (default :8787, a free port if busy; "
                   "needs bokeh>=3.1; with --scheduler the scheduler's own dashboard is reported instead)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=_run)
    c = sub.add_parser("check", help="validate a trial file and its exams; print the trial hash",
                       description="Validate a trial file and each arm's exam against the gantry's limits; print the trial hash that a resumed run must match.")
    c.add_argument("trial")
    c.set_defaults(func=_check)
    s = sub.add_parser("schema", help="print the JSON Schema of trial files",
                       description="Print the JSON Schema of trial files (for editors and CI).")
    s.set_defaults(func=_schema)
    e = sub.add_parser("examples", help="list the shipped example trials",
                       description="List the example trials shipped with Crescent.")
    e.set_defaults(func=_examples)
