"""Campaign outputs: the fault-kind x phase table, the violation list with one-line reproducers,
JUnit XML (one test case per exam, :mod:`hil.junit`) and a self-contained HTML page."""

from __future__ import annotations

import html
import shlex
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from crescent.campaign.cases import FAULT_KINDS, PHASES
from crescent.campaign.invariants import INVARIANTS


def reproduce_command(result: dict[str, Any], exams: list[str]) -> str:
    """One line that re-runs this exam alone (same seed, same exam list, kept folder)."""
    args = ["python", "-m", "crescent", "campaign", "--seeds", str(result["seed"]), "--workers", "1",
            "--results", f"repro-{result['seed']}.jsonl", "--keep", f"repro-{result['seed']}"]
    for e in exams:
        args += ["--exam", e]
    return " ".join(shlex.quote(a) for a in args)


def table(results: list[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Rows: fault kind; columns: phase; cell 'exams/violating exams'; plus totals per invariant."""
    cells: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
    for r in results:
        c = r["case"]
        cell = cells[(c["fault"], c["phase"])]
        cell[0] += 1
        cell[1] += bool(r["violations"])
    header = ["fault \\ phase", *PHASES, "total"]
    rows = []
    for f in FAULT_KINDS:
        row = [f]
        tot = [0, 0]
        for p in PHASES:
            n, bad = cells.get((f, p), [0, 0])
            tot[0] += n
            tot[1] += bad
            row.append(f"{n}/{bad}" if n else "-")
        row.append(f"{tot[0]}/{tot[1]}")
        rows.append(row)
    return header, rows


def invariant_counts(results: list[dict[str, Any]]) -> Counter[str]:
    return Counter(v["invariant"] for r in results for v in r["violations"])


def text_report(results: list[dict[str, Any]], exams: list[str], wall_s: float | None = None) -> str:
    header, rows = table(results)
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = ["cell = exams / exams with a violation", fmt.format(*header), fmt.format(*("-" * w for w in widths))]
    lines += [fmt.format(*row) for row in rows]
    counts = invariant_counts(results)
    lines.append("")
    lines.append("invariant violations: " + ", ".join(f"({k}) {counts.get(k, 0)}" for k in INVARIANTS))
    bad = [r for r in results if r["violations"]]
    status = Counter(r["status"] for r in results)
    lines.append(f"{len(results)} exams: " + ", ".join(f"{k} {v}" for k, v in sorted(status.items(), key=str))
                 + f"; {len(bad)} with violations; {sum(r['device_exposures'] for r in results)} exposures")
    if wall_s is not None and results:
        lines.append(f"wall time {wall_s:.1f} s, {60.0 * len(results) / wall_s:.1f} exams/min "
                     "(virtual-time gantry, no image formation)")
    for r in bad:
        lines.append("")
        lines.append(f"seed {r['seed']}: {r['label']} -> {r['status']}: {r['reason']}")
        for v in r["violations"]:
            lines.append(f"  ({v['invariant']}) {v['message']}")
        lines.append(f"  reproduce: {reproduce_command(r, exams)}")
    return "\n".join(lines)


def junit_results(results: list[dict[str, Any]]) -> list[Any]:
    from hil.junit import FAIL, PASS, CaseResult

    out = []
    for r in results:
        c = r["case"]
        msg = "; ".join(f"({v['invariant']}) {v['message']}" for v in r["violations"])
        out.append(CaseResult(name=f"seed {r['seed']}: {r['label']}", status=FAIL if r["violations"] else PASS,
                              message=msg or f"{r['status']}: {r['reason'] or 'ok'}", time_s=float(r["wall_s"]),
                              classname=f"campaign.{c['fault']}.{c['phase']}"))
    return out


def write_junit(path: Path, results: list[dict[str, Any]]) -> None:
    from hil.junit import write_junit as _write

    _write(path, "crescent campaign", junit_results(results), {"exams": str(len(results))})


def write_html(path: Path, results: list[dict[str, Any]], exams: list[str], wall_s: float | None = None) -> None:
    header, rows = table(results)
    counts = invariant_counts(results)
    e = html.escape
    parts = ["<!doctype html><html><head><meta charset='utf-8'><title>crescent campaign</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #999;padding:3px 8px;text-align:center}.bad{background:#f8c0c0}"
             ".ok{background:#d8f0d8}code{font-size:90%}</style></head><body>",
             f"<h1>Fault campaign: {len(results)} exams</h1>"]
    if wall_s:
        parts.append(f"<p>wall time {wall_s:.1f} s, {60 * len(results) / wall_s:.1f} exams/min "
                     "(virtual-time gantry, no image formation)</p>")
    parts.append("<h2>Invariants</h2><table><tr><th>invariant</th><th>meaning</th><th>violations</th></tr>")
    for k, meaning in INVARIANTS.items():
        n = counts.get(k, 0)
        parts.append(f"<tr class='{'bad' if n else 'ok'}'><td>({k})</td><td>{e(meaning)}</td><td>{n}</td></tr>")
    parts.append("</table><h2>Exams per fault kind and phase (exams / with a violation)</h2><table><tr>")
    parts += [f"<th>{e(h)}</th>" for h in header]
    parts.append("</tr>")
    for row in rows:
        cls = lambda c: "bad" if "/" in c and not c.endswith("/0") else ("ok" if "/" in c else "")  # noqa: E731
        parts.append("<tr>" + "".join(f"<td class='{cls(c)}'>{e(c)}</td>" for c in row) + "</tr>")
    parts.append("</table><h2>Violations</h2>")
    bad = [r for r in results if r["violations"]]
    if not bad:
        parts.append("<p>None.</p>")
    for r in bad:
        parts.append(f"<h3>seed {r['seed']}: {e(r['label'])}</h3><p>{e(str(r['status']))}: {e(str(r['reason']))}</p><ul>")
        parts += [f"<li>({v['invariant']}) {e(v['message'])}</li>" for v in r["violations"]]
        parts.append(f"</ul><p><code>{e(reproduce_command(r, exams))}</code></p>")
    parts.append("</body></html>")
    path.write_text("".join(parts), encoding="utf-8")
