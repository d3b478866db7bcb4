"""``crescent acquire``: a whole DBT exam in one command (see :mod:`crescent.acquire.pipeline`)."""

from __future__ import annotations

import argparse
import resource
from pathlib import Path

from typing import TYPE_CHECKING, Any

from crescent.acquire.defaults import DEFAULT_BINNING, STEREO_BINNING

if TYPE_CHECKING:
    from crescent.acquire.result import AcquireResult

#: Exam phases in the order the progress bar shows them.
PHASES = ("connect", "home", "position", "compress", "scout", "arm", "sweep", "readout", "release", "done")


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
    t.add_row("outputs", str(acq.out))
    t.add_row("report", s["report"])
    t.add_row("UIDs", s["uids"])
    for w in s["warnings"]:
        t.add_row("[yellow]warning[/]", w)
    return t


def _cmd(args: argparse.Namespace) -> int:
    from pydantic import ValidationError
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from crescent.acquire.options import AcquireOptions

    console = Console(stderr=False)
    if args.accession and not args.worklist:
        console.print("[red]crescent acquire:[/] --accession chooses a worklist entry: it needs --worklist")
        return 2
    try:
        opts = AcquireOptions(exam=args.exam, phantom=args.phantom, seed=args.seed, port=args.port, out=Path(args.out),
                              virtual_time=args.virtual_time, gantry_config=args.gantry_config, binning=args.binning,
                              image_timeout_s=args.image_timeout, watchdog_ms=args.watchdog_ms,
                              send=args.send, worklist=args.worklist, mpps=args.mpps, calling_ae=args.calling_ae,
                              accession=args.accession, send_retries=args.send_retries,
                              projection_sop=args.projection_sop, scatter=args.scatter, grid=args.grid,
                              grid_primary_transmission=args.grid_primary_transmission,
                              grid_scatter_transmission=args.grid_scatter_transmission)
    except ValidationError as exc:
        for err in exc.errors():
            console.print(f"[red]crescent acquire:[/] --{'.'.join(map(str, err['loc'])).replace('_', '-')}: "
                          f"{err['msg'].removeprefix('Value error, ')}", highlight=False)
        return 2
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
    from crescent.acquire.pipeline import run_acquire  # after the worklist: a RIS that is down fails fast

    where = args.port or ("simulated gantry, virtual time" if args.virtual_time else "simulated gantry on a pty")
    console.print(f"[bold]crescent acquire[/] {opts.exam} on {where}, phantom {opts.phantom}, seed {opts.seed}")
    with Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False, disable=args.no_progress) as bars:
        phase_bar = bars.add_task("exam phases", total=len(PHASES))
        proj_bar = bars.add_task("projections", total=None)
        recon_bar = bars.add_task("reconstruction", total=3, start=False)  # its clock starts with the work

        def progress(stage: str, index: int, total: int) -> None:
            if stage in ("sweep", "readout", "image"):
                bars.update(proj_bar, total=total, completed=index, description=f"projections ({stage})")
            elif stage == "reconstruction":
                if index == 0:
                    bars.start_task(recon_bar)
                bars.update(recon_bar, completed=index)
            if stage in PHASES:
                bars.update(phase_bar, completed=PHASES.index(stage) + 1, description=f"exam: {stage}")

        try:
            acq = run_acquire(opts, progress)
        except Exception as exc:  # a clear message, not a traceback, for the operator
            console.print(f"[red]acquire failed:[/] {type(exc).__name__}: {exc}")
            if net is not None:
                net.after(opts.out, error=exc)
            return 1
        bars.update(phase_bar, completed=len(PHASES))
    console.print(_summary_table(acq))
    if net is not None:
        net.after(acq.out, acq.exam.record)
    if net is not None and net.failures:
        console.print(f"[red]network:[/] {len(net.failures)} step(s) failed (above); the outputs are in {acq.out}",
                      highlight=False)
    if acq.exam.record.status != "complete":
        return 2
    return 1 if net is not None and net.failures else 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``crescent acquire``."""
    p = sub.add_parser("acquire", help="run a whole DBT exam (simulated gantry by default) and write every output",
                       description="Run a whole DBT exam: compress, AEC scout, sweep, read out, reconstruct, measure "
                       "dose and image quality, write DICOM, report and capture. Without --port it starts the "
                       "simulated gantry behind a pseudo-terminal (or in virtual time with --virtual-time).")
    p.add_argument("--exam", default="dbt-standard", help="standard exam name or exam YAML (default dbt-standard)")
    p.add_argument("--phantom", default="breast", help="phantom of the simulated gantry (default breast)")
    p.add_argument("--seed", type=int, default=1, help="seed of phantom, noise and everything random (default 1)")
    p.add_argument("--port", default=None, help="pyserial URL of a gantry (default: start the simulated one)")
    p.add_argument("--out", default="out", help="output folder (default ./out)")
    p.add_argument("--virtual-time", action="store_true", help="simulated gantry in virtual time (fast path)")
    p.add_argument("--gantry-config", default=None, help="simulated gantry config name or YAML")
    p.add_argument("--binning", type=int, default=None, choices=range(1, 9), metavar="1..8",
                   help=f"read-out binning of the simulated 50 um panel (default {DEFAULT_BINNING} = 200 um; "
                   f"{STEREO_BINNING} for stereotactic exams)")
    p.add_argument("--image-timeout", type=float, default=None, metavar="S",
                   help="wait this long for each image (default: 3 s on a rig, 60 s on a simulated gantry)")
    p.add_argument("--watchdog-ms", type=int, default=None, metavar="MS",
                   help="device watchdog to ask for with --port (default 500 ms)")
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
    p.add_argument("--no-progress", action="store_true", help="no progress bars (logs, CI)")
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
    net.add_argument("--send-retries", type=int, default=2, metavar="N",
                     help="new associations for objects that failed transiently (default 2)")
    p.set_defaults(func=_cmd)

