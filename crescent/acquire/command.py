"""``crescent acquire``: a whole DBT exam in one command (see :mod:`crescent.acquire.pipeline`)."""

from __future__ import annotations

import argparse
import resource
import sys
from pathlib import Path

from typing import TYPE_CHECKING, Any

from crescent.acquire.defaults import DEFAULT_BINNING, DEFAULT_PHANTOM_VOXEL_MM, QUICK_BINNING, QUICK_PHANTOM_VOXEL_MM, STEREO_BINNING
from crescent.cli_types import describe_error, float_in, int_in
from protocols.option_bounds import IMAGE_TIMEOUT_S_MAX, WATCHDOG_MS_MAX, WATCHDOG_MS_MIN

if TYPE_CHECKING:
    from crescent.acquire.result import AcquireResult

#: Every phase of ``crescent acquire`` in the order it runs: the exam plan's phases
#: (:data:`firmware_host.exam_plan.EXAM_PHASES` without its final ``done``; tests check they agree),
#: then the pipeline's. The phase counter only moves forward through this list; the exam's own end
#: (``done``, ``aborted``, ``incomplete``) is a label, the run ends at ``finished``.
PHASES = ("prepare", "home", "compress", "scout", "position", "arm", "sweep", "readout", "release",
          "reconstruction", "dose", "outputs", "finished")
#: What the per-phase counter counts.
UNITS = {"scout": "scout exposure", "sweep": "exposures", "readout": "images", "image": "images stored",
         "reconstruction": "slices", "dose": "steps", "outputs": "files"}
#: Exit statuses: 0 complete, 1 failed, 2 bad option or incomplete exam, 128 + signal when stopped by one.
EXIT_SIGINT, EXIT_SIGTERM = 130, 143


class PhaseProgress:
    """Turns ``progress(stage, index, total)`` calls into a phase counter that never goes backwards.

    ``phase`` is the furthest phase reached in :data:`PHASES` (1-based ``position``); ``detail`` the
    current phase's ``index/total`` and unit. Stages outside the list (``image``, ``abort``, the
    final ``aborted``/``incomplete``) update the detail or the label without moving the counter back.
    """

    def __init__(self) -> None:
        self.position = 0
        self.phase = "connect"
        self.detail = ""
        self.images = 0

    def update(self, stage: str, index: int, total: int) -> bool:
        """Feed one progress call; True when something shown changed."""
        before = (self.position, self.phase, self.detail, self.images)
        if stage in PHASES:
            pos = PHASES.index(stage) + 1
            if pos >= self.position:
                self.position, self.phase = pos, stage
        elif stage in ("abort", "aborted", "incomplete", "done"):
            self.phase = "exam done" if stage == "done" else stage
        if stage == "image":
            self.images = max(self.images, index)
        elif total:
            self.detail = f"{stage} {index}/{total} {UNITS.get(stage, '')}".rstrip()
        return (self.position, self.phase, self.detail, self.images) != before

    def line(self) -> str:
        """One plain-text line (``--no-progress`` logs): ``[k/N] phase  detail  images``."""
        images = f"  images stored {self.images}" if self.images else ""
        detail = f"  {self.detail}" if self.detail else ""
        return f"[{self.position}/{len(PHASES)}] {self.phase}{detail}{images}"


def _summary_table(acq: "AcquireResult") -> Any:
    from rich.table import Table

    s = acq.summary()
    status = s["status"] + (f": {s['reason']}" if s["reason"] else "")
    if s["warnings"] and s["status"] == "complete":
        status += f", {len(s['warnings'])} warning(s)"
    t = Table(title=f"Crescent acquire: {s['exam']} ({status})", show_header=False)
    t.add_column("what", style="bold")
    t.add_column("value")
    t.add_row("projections", f"{s['projections']} at {s['angles_deg'][0]:+.2f} .. {s['angles_deg'][-1]:+.2f} deg"
              if s["angles_deg"] else "0")
    t.add_row("largest angle error", f"{s['max_angle_error_deg']:.3f} deg")
    t.add_row("scan time", f"{s['scan_time_s']:.2f} s (first X-ray on to last off of the sweep)")
    for sc in s["scout"]:
        t.add_row("AEC scout", f"{sc['kvp']:.1f} kV, {sc['mas']:.2f} mAs (not part of the scan time)")
    if s["technique"]:
        tq = s["technique"]
        t.add_row("technique", f"{tq['anode_filter']} {tq['kvp']:.1f} kV, {tq['mas']:.2f} mAs per projection")
    t.add_row("compression", f"{s['thickness_mm']:.1f} mm at {s['force_n']:.0f} N")
    t.add_row("dose", f"MGD {s['total_mgd_mgy']:.3f} mGy (scout {s['scout_mgd_mgy']:.3f}); projections' air "
              f"kerma {s['total_air_kerma_mgy']:.3f} mGy (HVL {s['hvl_mm_al']:.3f} mm Al)")
    for les in s["lesions"]:
        seen = "" if les["resolvable"] else " (below the pixel size: not judged)"
        t.add_row(f"{les['kind']} {les['diameter_mm']:.2f} mm",
                  f"true z {les['true_z_mm']:.1f} mm, in focus at {les['focus_z_mm']:.1f} mm, SDNR {les['sdnr']:.1f}{seen}")
    for st in s["stereo_localisation"]:
        x, y, z = st["localised_mm"]
        t.add_row(f"stereo: {st['kind']} {st['diameter_mm']:.2f} mm",
                  f"at ({x:.2f}, {y:.2f}, {z:.2f}) mm, error {st['error_mm']:.2f} mm "
                  f"(parallel-beam z {st['parallel_beam_mm'][2]:.1f} mm)")
    t.add_row("run time", ", ".join(f"{k} {v:.1f} s" for k, v in s["timings_s"].items()))
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    child_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the gantry and its render worker
    t.add_row("peak memory", f"host {peak_mb:.0f} MB" + (f", simulated gantry {child_mb:.0f} MB" if child_mb else ""))
    t.add_row("verdict", s["verdict"] + "".join(f"; {v['name']}: {v['result']}" for v in s["verdicts"]))
    if s["status"] != "complete":
        t.add_row("[red]incomplete[/]", f"{s['status']}: {s['reason'] or 'no reason given'}")
    t.add_row("outputs", str(acq.out))
    t.add_row("report", s["report"])
    t.add_row("UIDs", s["uids"])
    for w in s["warnings"]:
        t.add_row("[yellow]warning[/]", w)
    return t


#: AcquireOptions field -> the option as the user types it (messages name the option, not the field).
OPTION_NAMES = {"image_timeout_s": "--image-timeout", "watchdog_ms": "--watchdog-ms", "gantry_config": "--gantry-config",
                "virtual_time": "--virtual-time"}


def _cmd(args: argparse.Namespace) -> int:
    import signal

    from pydantic import ValidationError
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from crescent.acquire.options import AcquireOptions

    console = Console(stderr=False)
    if args.accession and not args.worklist:
        console.print("[red]crescent acquire:[/] --accession chooses a worklist entry: it needs --worklist")
        return 2
    virtual = args.virtual_time or args.quick
    binning = args.binning if args.binning is not None else (QUICK_BINNING if args.quick else None)
    try:
        opts = AcquireOptions(exam=args.exam, phantom=args.phantom, seed=args.seed, port=args.port, out=Path(args.out),
                              virtual_time=virtual, gantry_config=args.gantry_config, binning=binning,
                              image_timeout_s=args.image_timeout, watchdog_ms=args.watchdog_ms,
                              phantom_voxel_mm=QUICK_PHANTOM_VOXEL_MM if args.quick else DEFAULT_PHANTOM_VOXEL_MM,
                              send=args.send, worklist=args.worklist, mpps=args.mpps, calling_ae=args.calling_ae,
                              accession=args.accession, send_retries=args.send_retries,
                              projection_sop=args.projection_sop, scatter=args.scatter, grid=args.grid,
                              grid_primary_transmission=args.grid_primary_transmission,
                              grid_scatter_transmission=args.grid_scatter_transmission)
    except ValidationError as exc:
        for err in exc.errors():
            field = str(err["loc"][0]) if err["loc"] else "?"
            console.print(f"[red]crescent acquire:[/] {OPTION_NAMES.get(field, '--' + field.replace('_', '-'))}: "
                          f"{err['msg'].removeprefix('Value error, ')}", markup=True, highlight=False)
        return 2
    if args.port and virtual:
        console.print("[red]crescent acquire:[/] --virtual-time/--quick run the simulated gantry; not with --port")
        return 2
    from firmware_host.api import resolve_exam

    try:  # the exam is read and checked before any port opens or gantry starts
        resolve_exam(opts.exam)
    except (KeyError, ValueError, OSError) as exc:
        console.print(f"[red]crescent acquire:[/] --exam {opts.exam}: {describe_error(exc)}", highlight=False)
        return 2
    from crescent.acquire.pipeline import AcquireInterrupted, run_acquire

    net = None
    if opts.send or opts.worklist or opts.mpps:  # DICOM network steps around the exam (crescent.acquire.network)
        from crescent.acquire.network import ExamNetwork, WorklistError

        net = ExamNetwork(opts, lambda msg: console.print(msg, markup=False, highlight=False, soft_wrap=True))
        try:
            opts = net.before()
        except WorklistError as exc:
            from rich.markup import escape

            console.print(f"[red]crescent acquire: worklist:[/] {escape(str(exc))}; no exam was run", highlight=False)
            return 2
    stopped: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        """SIGINT/SIGTERM: the exam goes through the safe stop (ABORT, release), writes its record, and the
        run ends; a second signal while stopping ends it at once."""
        stopped.append(signum)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}

    def interrupted() -> str | None:
        return signal.Signals(stopped[0]).name if stopped else None

    where = args.port or ("simulated gantry, virtual time" if virtual else "simulated gantry on a pty")
    console.print(f"[bold]crescent acquire[/] {opts.exam} on {where}, phantom {opts.phantom}, seed {opts.seed}"
                  + (f", binning {opts.binning}" if opts.binning else ""))
    state = PhaseProgress()
    try:
        with Progress(TextColumn("{task.description:<34}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console, transient=False, disable=args.no_progress) as bars:
            phase_bar = bars.add_task("exam: connect", total=len(PHASES))
            detail_bar = bars.add_task("", total=None)
            image_bar = bars.add_task("images stored", total=None)

            def progress(stage: str, index: int, total: int) -> None:
                if not state.update(stage, index, total):
                    return
                bars.update(phase_bar, completed=state.position, description=f"exam: {state.phase}")
                if stage == "image":
                    bars.update(image_bar, completed=index, total=total)
                elif total:
                    bars.update(detail_bar, completed=index, total=total, description=f"{stage} ({UNITS.get(stage, '')})")
                if args.no_progress:
                    print(state.line(), file=sys.stderr, flush=True)

            try:
                acq = run_acquire(opts, progress, interrupted)
            except (AcquireInterrupted, KeyboardInterrupt) as exc:
                code = EXIT_SIGTERM if stopped and stopped[0] == signal.SIGTERM else EXIT_SIGINT
                name = interrupted() or "SIGINT"
                why = (f"; exam {exc.record.status}: {exc.record.reason}" if isinstance(exc, AcquireInterrupted)
                       and exc.record is not None else "")
                console.print(f"[red]crescent acquire: stopped by {name}[/]{why}. Record, audit log and capture "
                              f"are in {opts.out}; exit {code}", highlight=False)
                rec = getattr(exc, "record", None)
                if rec is not None and rec.missing_images:
                    console.print(f"images not stored for exposures {rec.missing_images}: {opts.out / 'summary.json'} "
                                  "says why (and how to take in those the device wrote after the stop)",
                                  highlight=False, markup=False)
                if net is not None:  # MPPS DISCONTINUED; nothing is sent to the PACS
                    net.after(opts.out, getattr(exc, "record", None), error=exc)
                return code
            except Exception as exc:  # a clear message, not a traceback, for the operator
                console.print(f"[red]acquire failed:[/] {type(exc).__name__}: {describe_error(exc)}", highlight=False)
                if net is not None:
                    net.after(opts.out, error=exc)
                return 1
            progress("finished", 0, 0)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    console.print(_summary_table(acq))
    rec = acq.exam.record
    if rec.status != "complete":
        console.print(f"[red]exam {rec.status}:[/] {rec.reason or 'no reason given'}", highlight=False)
    console.print(f"report: {acq.out / 'report.html'}  verdict: {acq.verdict}", highlight=False)
    if net is not None:
        net.after(acq.out, rec)
        if net.failures:
            console.print(f"[red]network:[/] {len(net.failures)} step(s) failed (above); the outputs are in "
                          f"{acq.out}", highlight=False)
    if rec.status != "complete":
        return 2
    return 1 if net is not None and net.failures else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``crescent acquire``."""
    p = sub.add_parser("acquire", help="run a whole DBT exam (simulated gantry by default) and write every output",
                       description="Run a whole DBT exam: compress, AEC scout, sweep, read out, reconstruct, measure "
                       "dose and image quality, write DICOM, report and capture. Without --port it starts the "
                       "simulated gantry behind a pseudo-terminal (or in virtual time with --virtual-time).",
                       epilog="Exit status: 0 complete; 1 failed; 2 bad option or exam incomplete/aborted; "
                       f"{EXIT_SIGINT} stopped by SIGINT (Ctrl-C), {EXIT_SIGTERM} by SIGTERM (the exam goes "
                       "through the safe stop and its record, audit log and capture are written first).")
    p.add_argument("--exam", default="dbt-standard", help="standard exam name or exam YAML (default dbt-standard)")
    p.add_argument("--phantom", default="breast", help="phantom of the simulated gantry (default breast)")
    p.add_argument("--seed", type=int_in(0, 2**31 - 1), default=1,
                   help="seed of phantom, noise and everything random (default 1)")
    p.add_argument("--port", default=None, help="pyserial URL of a gantry (default: start the simulated one)")
    p.add_argument("--out", default="out", help="output folder (default ./out)")
    p.add_argument("--virtual-time", action="store_true", help="simulated gantry in virtual time (fast path)")
    p.add_argument("--quick", action="store_true",
                   help=f"quick start: --virtual-time at binning {QUICK_BINNING} (400 um images), phantom voxel "
                   f"{QUICK_PHANTOM_VOXEL_MM} mm; a whole exam in well under a minute")
    p.add_argument("--gantry-config", default=None, help="simulated gantry config name or YAML")
    p.add_argument("--binning", type=int_in(1, 8), default=None, metavar="1..8",
                   help=f"read-out binning of the simulated 50 um panel (default {DEFAULT_BINNING} = 200 um; "
                   f"{STEREO_BINNING} for stereotactic exams; {QUICK_BINNING} with --quick)")
    p.add_argument("--image-timeout", type=float_in(0.0, IMAGE_TIMEOUT_S_MAX, " s"), default=None, metavar="S",
                   help="wait this long for each image, restarted by each image's arrival (default: 3 s on a rig, "
                   f"60 s on a simulated gantry; at most {IMAGE_TIMEOUT_S_MAX:g} s)")
    p.add_argument("--watchdog-ms", type=int_in(WATCHDOG_MS_MIN, WATCHDOG_MS_MAX, " ms"), default=None, metavar="MS",
                   help=f"device watchdog to ask for (default 500 ms, SPEC's default, on a rig as on the simulated "
                   f"gantry; {WATCHDOG_MS_MIN}..{WATCHDOG_MS_MAX} ms)")
    p.add_argument("--projection-sop", default="breast-projection", choices=("breast-projection", "digital-mammography"),
                   help="DICOM object of the tomosynthesis projections: breast-projection (default: one multi-frame "
                   "Breast Projection X-Ray Image For Processing + one For Presentation) or digital-mammography (one "
                   "Digital Mammography X-Ray Image For Processing per projection, for older archives)")
    p.add_argument("--scatter", action=argparse.BooleanOptionalAction, default=None,
                   help="scatter from the breast in the simulated images (default on: Monte Carlo kernels)")
    p.add_argument("--grid", action=argparse.BooleanOptionalAction, default=None,
                   help="anti-scatter grid on the simulated panel (default none, as DBT systems run; 2D systems "
                   "use one)")
    p.add_argument("--grid-primary-transmission", type=float, default=None, metavar="F",
                   help="primary transmission of the grid, 0.5-1.0 (default 0.73, Xia et al. SPIE 5745, 2005)")
    p.add_argument("--grid-scatter-transmission", type=float, default=None, metavar="F",
                   help="scatter transmission of the grid, 0-1 and at most the primary's (default 0.13)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bars: one plain progress line per change on stderr instead (logs, CI)")
    net = p.add_argument_group("DICOM network", "AE@HOST:PORT of each peer, e.g. ORTHANC@127.0.0.1:4242. A worklist "
                               "that is down or has no single match stops the command before any exposure (exit 2); "
                               "an MPPS or PACS failure is reported after the exam, the files stay in OUT/dicom "
                               "(exit 1). MPPS is sent only with --mpps.")
    net.add_argument("--send", default=None, metavar="AE@HOST:PORT", help="C-STORE every DICOM object to this PACS")
    net.add_argument("--worklist", default=None, metavar="AE@HOST:PORT",
                     help="take patient and procedure from this Modality Worklist (modality MG)")
    net.add_argument("--accession", default=None, metavar="ACC",
                     help="the worklist entry to use when several are scheduled")
    net.add_argument("--mpps", default=None, metavar="AE@HOST:PORT",
                     help="report the exam IN PROGRESS, then COMPLETED or DISCONTINUED, to this MPPS SCP")
    net.add_argument("--calling-ae", default="CRESCENT", metavar="AE", help="our AE title (default CRESCENT)")
    net.add_argument("--send-retries", type=int_in(0, 10), default=2, metavar="N",
                     help="new associations for objects that failed transiently (default 2)")
    p.set_defaults(func=_cmd)
