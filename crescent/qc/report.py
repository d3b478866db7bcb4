"""HTML report of the QC history: the latest run's verdicts and each figure's trend against its baseline."""

from __future__ import annotations

import html
from collections import OrderedDict
from pathlib import Path

from crescent.qc.history import Row


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def write_report(rows: list[Row], out: Path, results: list | None = None) -> Path:
    """Write ``out/qc_report.html`` and one trend PNG per figure; returns the HTML path.

    ``results`` (the latest run's :class:`crescent.qc.procedures.QcResult`) adds each test's curves
    (first series = x, the others = y: MTF, response, AEC per thickness, angle errors).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if not rows:
        raise ValueError("QC history is empty: nothing to report")
    runs = list(OrderedDict.fromkeys(r.run_id for r in rows))
    last = runs[-1]
    latest = [r for r in rows if r.run_id == last]
    series: OrderedDict[tuple[str, str, str], list[Row]] = OrderedDict()
    for r in rows:
        series.setdefault((r.device_serial, r.test, r.figure), []).append(r)
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>Crescent QC report</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #aaa;padding:3px 6px;font-size:90%}.fail{background:#fcc}.pass{background:#cfc}"
             "</style></head><body>",
             f"<h1>Crescent QC report</h1><p>{len(runs)} run(s) in the history; latest run <code>{html.escape(last)}"
             f"</code> ({html.escape(latest[0].timestamp)}, suite {html.escape(latest[0].suite)}, "
             f"{html.escape(latest[0].site)} device {html.escape(latest[0].device_serial)}).</p>"]
    tests = list(OrderedDict.fromkeys(r.test for r in latest))
    verdicts = {t: next(r.test_passed for r in latest if r.test == t) for t in tests}
    overall = all(verdicts.values())
    parts.append(f"<h2>Verdict: {'PASS' if overall else 'FAIL'}</h2><table><tr><th>test</th><th>verdict</th>"
                 "<th>figure</th><th>value</th><th>baseline</th><th>limit</th><th>unit</th><th>source</th></tr>")
    for r in latest:
        base = series[(r.device_serial, r.test, r.figure)][0].value
        lim = ("recorded" if r.limit_lo is None and r.limit_hi is None else
               f"{_fmt(r.limit_lo) if r.limit_lo is not None else ''} .. {_fmt(r.limit_hi) if r.limit_hi is not None else ''}")
        cls = "pass" if r.passed else "fail"
        parts.append(f"<tr class='{cls}'><td>{html.escape(r.test)}</td><td>{'pass' if r.test_passed else 'FAIL'}</td>"
                     f"<td>{html.escape(r.figure)}</td><td>{_fmt(r.value)}</td><td>{_fmt(base)}</td>"
                     f"<td>{lim}</td><td>{html.escape(r.unit)}</td><td>{html.escape(r.source)}</td></tr>")
    parts.append("</table>")
    curves = [r for r in (results or []) if len(r.series) >= 2]
    if curves:
        parts.append("<h2>Curves of this run</h2>")
    for r in curves:
        keys = list(r.series)
        # each y is plotted against the first series; a y of another length against the series just
        # before it (which then serves as that x only, e.g. the NNPS frequencies after the dose curves)
        pairs: list[tuple[str, str]] = []
        for i, k in enumerate(keys[1:], 1):
            if len(r.series[k]) == len(r.series[keys[0]]):
                pairs.append((keys[0], k))
            elif len(r.series[keys[i - 1]]) == len(r.series[k]) and (keys[i - 1], k) not in pairs:
                pairs = [p for p in pairs if p[1] != keys[i - 1]] + [(keys[i - 1], k)]
        fig, axes = plt.subplots(1, len(pairs), figsize=(3.2 * len(pairs), 2.6), squeeze=False)
        for ax, (xk, k) in zip(axes[0], pairs):
            ax.plot(r.series[xk], r.series[k], "o-", ms=3)
            ax.set_xlabel(xk, fontsize=7)
            ax.set_ylabel(k, fontsize=7)
            ax.tick_params(labelsize=6)
        fig.suptitle(r.title, fontsize=8)
        fig.tight_layout()
        png = f"qc_curve_{r.test}.png"
        fig.savefig(out / png, dpi=80)
        plt.close(fig)
        parts.append(f"<img src='{png}' alt='{html.escape(r.title)}'>")
    parts.append("<h2>Trends against the baseline (first run of the device)</h2>")
    for i, ((serial, test, figure), rs) in enumerate(series.items()):
        if not any(r.run_id == last for r in rs):
            continue
        fig, ax = plt.subplots(figsize=(5, 2.6))
        xs = list(range(1, len(rs) + 1))
        ax.plot(xs, [r.value if r.value is not None else float("nan") for r in rs], "o-")
        if rs[0].value is not None:
            ax.axhline(rs[0].value, color="grey", ls=":", label="baseline")
        for lim, name in ((rs[-1].limit_lo, "lower limit"), (rs[-1].limit_hi, "upper limit")):
            if lim is not None:
                ax.axhline(lim, color="red", ls="--", label=name)
        ax.set_xlabel("run")
        ax.set_ylabel(rs[-1].unit or "value")
        ax.set_title(f"{test}: {figure}", fontsize=8)
        ax.legend(fontsize=6)
        fig.tight_layout()
        png = f"qc_trend_{i:03d}.png"
        fig.savefig(out / png, dpi=80)
        plt.close(fig)
        parts.append(f"<img src='{png}' alt='{html.escape(test)} {html.escape(figure)}'>")
    parts.append("</body></html>")
    path = out / "qc_report.html"
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
