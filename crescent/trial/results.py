"""Score a finished trial with the model observers and write its outputs.

Per arm and lesion type, the observer sees the ROIs of that type's cases: *present* = the lesion-site
ROI of cases with a lesion; *absent* = the lesion-site ROI of cases without one plus the control-site
ROI of every case (same patient, no lesion). Templates are cross-validated over two folds by case
patient (alternating among present and among absent patients; a control ROI stays with its
patient), so a patient's ROIs never train the template that rates them
(:func:`reconstruction.analysis.observers.evaluate`). Channels: LG width and Gabor bands from the
group's median lesion size (mass diameter; cluster extent).

Outputs (in ``out``):

* ``cases.csv`` (``cases.parquet`` too when pyarrow is installed): one row per (case, arm): the
  draw, the technique, MGD (mGy) and every observer's rating of the lesion-site and control ROIs;
* ``summary.csv``: arm, lesion type, observer, counts, d' and AUC with bootstrap 95 % intervals,
  mean MGD;
* ``auc_vs_mgd.png``: AUC and d' against mean MGD per arm, one panel column per lesion type;
* ``gantry_crosscheck.csv`` (trials with a ``gantry_subset``): per arm, lesion type and observer, the
  differences between the ratings of the cases imaged over the wire and of the same cases' direct-path ROIs
  (rated with the same template; ``rating_<obs>_direct`` in ``cases.csv``), in standard deviations of the
  observer's lesion-absent ratings, and whether every one is within :data:`CROSSCHECK_TOLERANCE_SD`;
* ``imrmc-<lesion type>.imrmc``: the ratings in iMRMC's input format (readers = observers,
  modalities = arms, cases = ROIs, truth rows with reader -1);
* ``report.html``: the page gathering the above (with the run facts: the dask dashboard address and the
  DICOM folder, if any). DICOM per case is written by the workers, on request (``--dicom DIR``,
  :mod:`crescent.trial.dicom`), not here.
"""

from __future__ import annotations

import csv
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from crescent.trial.model import TrialSpec


def _groups(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({r["lesion_type"] for r in rows})


def score(spec: TrialSpec, rows: list[dict[str, Any]], rois: dict[tuple[int, str], np.ndarray],
          seed: int = 0, rois_direct: dict[tuple[int, str], np.ndarray] | None = None,
          crosscheck: list[dict[str, Any]] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(summary rows, per-case rows with ratings) for every arm x lesion type x observer.

    ``rois_direct``: the direct path's ROIs of the (case, arm)s imaged over the wire; each is rated with
    the template that rated the case's own ROIs (``rating_<obs>_direct``, ``rating_<obs>_control_direct``),
    and one row per arm x lesion type x observer is appended to ``crosscheck`` (:func:`crosscheck_row`).
    """
    from reconstruction.analysis import observers as ob

    pitch = spec.imaging.pitch_mm
    by_key = {(r["index"], r["arm"]): dict(r) for r in rows}
    summary = []
    for arm in [a.name for a in spec.arms]:
        for kind in _groups(rows):
            cases = sorted(r["index"] for r in rows if r["arm"] == arm and r["lesion_type"] == kind)
            if not cases:
                continue
            pres_idx = [i for i in cases if by_key[(i, arm)]["lesion_present"]]
            abs_idx = [i for i in cases if not by_key[(i, arm)]["lesion_present"]]
            present = np.array([rois[(i, arm)][0] for i in pres_idx])
            absent = np.array([rois[(i, arm)][0] for i in abs_idx] + [rois[(i, arm)][1] for i in cases])
            # folds by patient: alternate among the present patients and among the absent ones, and a
            # control ROI stays in its patient's fold (balanced folds; no patient on both sides)
            fold = {i: k % 2 for k, i in enumerate(pres_idx)} | {i: k % 2 for k, i in enumerate(abs_idx)}
            f1 = np.array([fold[i] for i in pres_idx], dtype=int)
            f0 = np.array([fold[i] for i in abs_idx + cases], dtype=int)
            size = float(np.median([by_key[(i, arm)]["lesion_diameter_mm" if kind == "mass" else "lesion_extent_mm"]
                                    for i in cases]))
            mgd = [by_key[(i, arm)]["mgd_mgy"] for i in cases]
            for obs in spec.observers:
                base = {"arm": arm, "lesion_type": kind, "observer": obs, "n_present": len(pres_idx),
                        "n_absent": len(abs_idx) + len(cases), "mean_mgd_mgy": round(float(np.mean(mgd)), 4),
                        "sd_mgd_mgy": round(float(np.std(mgd)), 4)}
                if min(np.bincount(f1, minlength=2).min(), np.bincount(f0, minlength=2).min()) < 2:
                    summary.append({**base, "dprime": math.nan, "dprime_lo": math.nan, "dprime_hi": math.nan,
                                    "auc": math.nan, "auc_lo": math.nan, "auc_hi": math.nan})
                    continue
                chans = ob.channels_for(obs, present.shape[1:], pitch, size)
                res = ob.evaluate(present, absent, obs, channels=chans, n_boot=spec.bootstrap, seed=seed,
                                  folds_present=f1, folds_absent=f0)
                summary.append({**base, "dprime": round(res.dprime, 4), "dprime_lo": round(res.dprime_ci[0], 4),
                                "dprime_hi": round(res.dprime_ci[1], 4), "auc": round(res.auc, 4),
                                "auc_lo": round(res.auc_ci[0], 4), "auc_hi": round(res.auc_ci[1], 4)})
                t0 = res.ratings_absent
                for i, t in zip(pres_idx, res.ratings_present):
                    by_key[(i, arm)][f"rating_{obs}"] = float(t)
                for i, t in zip(abs_idx, t0[: len(abs_idx)]):
                    by_key[(i, arm)][f"rating_{obs}"] = float(t)
                for i, t in zip(cases, t0[len(abs_idx):]):
                    by_key[(i, arm)][f"rating_{obs}_control"] = float(t)
                wired = [i for i in cases if rois_direct and (i, arm) in rois_direct]
                if wired:
                    templates = ob.fold_templates(present, absent, obs, chans, f1, f0)
                    for i in wired:
                        d = ob.rate(rois_direct[(i, arm)], templates[fold[i]], chans)
                        by_key[(i, arm)][f"rating_{obs}_direct"] = float(d[0])
                        by_key[(i, arm)][f"rating_{obs}_control_direct"] = float(d[1])
                    if crosscheck is not None:
                        crosscheck.append({**{k: base[k] for k in ("arm", "lesion_type", "observer")},
                                           **crosscheck_row([by_key[(i, arm)] for i in wired], obs, t0)})
    return summary, [by_key[(r["index"], r["arm"])] for r in rows]


#: The stated agreement of a wire case's ratings with the direct path's (README, "virtual clinical trial"):
#: |rating over the wire - rating through the direct path| at most this many standard deviations of the
#: observer's lesion-absent ratings, for every rated ROI. Statistical, not exact: the wire's frames carry
#: another quantum-noise draw and the measured kV / the AEC's mAs (crescent.trial.gantry). Measured with
#: every case over the wire: largest 0.36-0.38 SD at 100 um (rms up to 0.15), 0.22 SD at 400 um.
CROSSCHECK_TOLERANCE_SD = 1.0


def crosscheck_row(case_rows: list[dict[str, Any]], observer: str, absent_ratings: np.ndarray) -> dict[str, Any]:
    """Wire minus direct ratings of the wire cases (lesion site and control site), in SDs of the absent ratings."""
    sd = float(np.std(absent_ratings, ddof=1))
    delta = np.array([r[f"rating_{observer}{s}"] - r[f"rating_{observer}{s}_direct"]
                      for r in case_rows for s in ("", "_control")]) / sd
    return {"n_cases": len(case_rows), "n_rois": int(delta.size), "absent_rating_sd": round(sd, 6),
            "mean_delta_sd": round(float(delta.mean()), 4),
            "rms_delta_sd": round(float(np.sqrt(np.mean(delta**2))), 4),
            "max_abs_delta_sd": round(float(np.abs(delta).max()), 4),
            "within_tolerance": bool(np.abs(delta).max() <= CROSSCHECK_TOLERANCE_SD)}


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    """Rows as CSV (columns: union of keys in first-seen order)."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for r in rows:
            w.writerow({k: ("" if v is None else v) for k, v in r.items()})
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path | None:
    """Rows as Parquet when pyarrow is installed, else None."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return None
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def write_imrmc(out: Path, spec: TrialSpec, case_rows: list[dict[str, Any]]) -> list[Path]:
    """One iMRMC input file per scored lesion type (case id 2i+1: lesion site of case i, 2i+2: its control site)."""
    paths = []
    arms = [a.name for a in spec.arms]
    for kind in _groups(case_rows):
        rows = [r for r in case_rows if r["lesion_type"] == kind]
        truth: dict[int, int] = {}
        scores: list[str] = []
        for r in rows:
            site, ctl = 2 * r["index"] + 1, 2 * r["index"] + 2
            truth[site] = int(bool(r["lesion_present"]))
            truth[ctl] = 0
            for obs in spec.observers:
                if f"rating_{obs}" in r:
                    scores.append(f"{obs},{site},{r['arm']},{r[f'rating_{obs}']:.8g}")
                    scores.append(f"{obs},{ctl},{r['arm']},{r[f'rating_{obs}_control']:.8g}")
        if not scores:  # the group was too small to score (see score())
            continue
        n1 = sum(truth.values())
        lines = [f"Crescent virtual clinical trial {spec.name}: lesion type {kind}",
                 "Readers are model observers, modalities are trial arms, cases are ROIs "
                 "(2i+1: lesion site of case i, 2i+2: control site).", "",
                 f"NR: {len(spec.observers)}", f"N0: {len(truth) - n1}", f"N1: {n1}", f"NM: {len(arms)}", "",
                 "BEGIN DATA:"]
        lines += [f"-1,{c},0,{t}" for c, t in sorted(truth.items())]
        lines += scores
        p = out / f"imrmc-{kind}.imrmc"
        p.write_text("\n".join(lines) + "\n")
        paths.append(p)
    return paths


def figure(out: Path, summary: list[dict[str, Any]]) -> Path:
    """AUC and d' against mean MGD per arm with 95 % bootstrap intervals (one column per lesion type)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({s["lesion_type"] for s in summary})
    observers = list(dict.fromkeys(s["observer"] for s in summary))
    arms = list(dict.fromkeys(s["arm"] for s in summary))
    fig, axes = plt.subplots(2, len(kinds), figsize=(4.5 * len(kinds), 7), squeeze=False)
    markers = "osD^v"
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for j, kind in enumerate(kinds):
        for k, (metric, label) in enumerate((("auc", "AUC"), ("dprime", "d'"))):
            ax = axes[k, j]
            for m, obs in enumerate(observers):
                pts = [s for s in summary if s["lesion_type"] == kind and s["observer"] == obs]
                for s in pts:
                    a = arms.index(s["arm"])
                    y, lo, hi = s[metric], s[f"{metric}_lo"], s[f"{metric}_hi"]
                    ax.errorbar(s["mean_mgd_mgy"], y, yerr=[[max(y - lo, 0)], [max(hi - y, 0)]],
                                xerr=s["sd_mgd_mgy"], fmt=markers[m % 5], color=colours[a % len(colours)],
                                capsize=3, label=f"{s['arm']} / {obs}")
            ax.set_xlabel("mean glandular dose (mGy)")
            ax.set_ylabel(label)
            ax.set_title(f"{kind}: {label} vs MGD")
            if metric == "auc":
                ax.axhline(0.5, color="grey", lw=0.5, ls=":")
            ax.grid(alpha=0.3)
            if j == 0 and k == 0:
                ax.legend(fontsize=7)
    fig.tight_layout()
    p = out / "auc_vs_mgd.png"
    fig.savefig(p, dpi=110)
    plt.close(fig)
    return p


def write_html(out: Path, spec: TrialSpec, summary: list[dict[str, Any]], info: dict[str, Any],
               files: list[Path], crosscheck: list[dict[str, Any]] | None = None) -> Path:
    """A self-contained page: run facts, the summary table, the figure, the wire cross-check, links to the files."""
    cols = ["arm", "lesion_type", "observer", "n_present", "n_absent", "mean_mgd_mgy", "dprime", "dprime_lo",
            "dprime_hi", "auc", "auc_lo", "auc_hi"]
    head = "".join(f"<th>{c}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(s[c]))}</td>" for c in cols) + "</tr>" for s in summary)
    facts = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in info.items())
    links = "".join(f'<li><a href="{html.escape(p.name)}">{html.escape(p.name)}</a></li>' for p in files)
    wire = ""
    if crosscheck:
        xcols = list(crosscheck[0])
        wire = (f"<h2>Over the wire against the direct path (rating differences in SD of the absent ratings; "
                f"tolerance {CROSSCHECK_TOLERANCE_SD:g})</h2><table><tr>"
                + "".join(f"<th>{html.escape(c)}</th>" for c in xcols) + "</tr>"
                + "".join("<tr>" + "".join(f"<td>{html.escape(str(x[c]))}</td>" for c in xcols) + "</tr>"
                          for x in crosscheck) + "</table>")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>Trial {html.escape(spec.name)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}</style></head><body>
<h1>Virtual clinical trial: {html.escape(spec.name)}</h1><p>{html.escape(spec.description)}</p>
<ul>{facts}</ul><h2>Detectability per arm, lesion type and observer (95 % bootstrap intervals)</h2>
<table><tr>{head}</tr>{body}</table><h2>AUC and d' versus mean glandular dose</h2>
<img src="auc_vs_mgd.png" style="max-width:100%">{wire}<h2>Files</h2><ul>{links}</ul>
<h2>Trial file</h2><pre>{html.escape(json.dumps(spec.model_dump(mode="json"), indent=1))}</pre></body></html>"""
    p = out / "report.html"
    p.write_text(page)
    return p


def write_outputs(spec: TrialSpec, out: Path, rows: list[dict[str, Any]], rois: dict[tuple[int, str], np.ndarray],
                  info: dict[str, Any], rois_direct: dict[tuple[int, str], np.ndarray] | None = None
                  ) -> tuple[list[dict[str, Any]], list[Path]]:
    """Score and write every output; returns (summary rows, files written).

    ``rois_direct`` (the wire cases' cross-check, :attr:`crescent.trial.runner.RunInfo.rois_direct`): also
    writes ``gantry_crosscheck.csv`` when some were scored.
    """
    crosscheck: list[dict[str, Any]] = []
    summary, case_rows = score(spec, rows, rois, seed=spec.cohort.seed, rois_direct=rois_direct,
                               crosscheck=crosscheck)
    files = [write_csv(out / "cases.csv", case_rows), write_csv(out / "summary.csv", summary)]
    if crosscheck:
        files.append(write_csv(out / "gantry_crosscheck.csv", crosscheck))
    pq = write_parquet(out / "cases.parquet", case_rows)
    if pq is not None:
        files.append(pq)
    files += write_imrmc(out, spec, case_rows)
    files.append(figure(out, summary))
    (out / "run.json").write_text(json.dumps(info, indent=2, default=str))
    files.append(out / "run.json")
    files.append(write_html(out, spec, summary, info, files, crosscheck))
    return summary, files
