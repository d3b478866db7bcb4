"""The acquisition report: ``report.html`` plus its PNG figures in one folder.

The HTML is self-contained (inline CSS, a few lines of inline script, no network) apart from the
PNG figures beside it, referenced by relative ``<img src>``; it opens in any
browser from the file system. Content: a short header, the summary table
(exam, scan time, projections, angles, total MGD, lesion SDNR, thickness,
force), the timeline, projection and slice montages, a slice viewer (every slice at
full resolution, embedded, with a slider and lesion marks) and a projection cine
(:mod:`crescent.outputs.viewer`), the MTF, the per-projection dose table with totals,
the lesion table and the file list.

Example
-------
>>> import tempfile
>>> from crescent.outputs.report_data import DoseRow
>>> d = ReportData(exam="dbt-standard", dose=[DoseRow(0.0, 29.0, 1.0, 0.2, 0.05)])
>>> p = write_report(tempfile.mkdtemp(), d)
>>> p.name
'report.html'
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from crescent.outputs import figures, viewer
from crescent.outputs.report_data import ReportData

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 0; color: #1d2733;
       background: #f5f7fa; }
header { background: #1f4e79; color: white; padding: 18px 32px; }
header h1 { margin: 0 0 4px 0; font-size: 24px; }
header p { margin: 0; opacity: 0.85; font-size: 14px; }
main { max-width: 1120px; margin: 0 auto; padding: 8px 32px 40px 32px; }
section.warn { border-left: 6px solid #e9a23b; }
section { background: white; border-radius: 6px; padding: 12px 20px 16px 20px; margin: 18px 0;
          box-shadow: 0 1px 3px rgba(0,0,0,0.12); }
h2 { font-size: 18px; margin: 6px 0 10px 0; color: #1f4e79; }
table { border-collapse: collapse; font-size: 13px; }
th, td { padding: 4px 12px; border-bottom: 1px solid #e1e6ec; text-align: right; }
th { background: #eef2f7; }
td.l, th.l { text-align: left; }
tr.total td { font-weight: bold; border-top: 2px solid #1f4e79; }
img { max-width: 100%; height: auto; display: block; margin: 6px 0; }
p.cap { font-size: 13px; color: #4a5563; margin: 2px 0 6px 0; }
ul.files { columns: 2; font-family: monospace; font-size: 13px; }
"""


def _e(x: object) -> str:
    return html.escape(str(x))


def _table(head: list[str], rows: list[list[str]], left: int = 1, total: list[str] | None = None) -> str:
    """An HTML table; the first ``left`` columns are left-aligned; ``total`` is a bold last row."""
    def cells(vals: list[str], tag: str) -> str:
        cls = ' class="l"'
        return "".join(f"<{tag}{cls if i < left else ''}>{_e(v)}</{tag}>" for i, v in enumerate(vals))
    out = [f"<table><thead><tr>{cells(head, 'th')}</tr></thead><tbody>"]
    out += [f"<tr>{cells(r, 'td')}</tr>" for r in rows]
    if total is not None:
        out.append(f'<tr class="total">{cells(total, "td")}</tr>')
    out.append("</tbody></table>")
    return "\n".join(out)


def summary_rows(d: ReportData) -> list[list[str]]:
    """(label, value) rows of the summary table."""
    rows = [["Exam", d.exam]]
    scan = d.scan_time_s
    if scan is None and d.timeline is not None and len(d.timeline.exposure_windows_s):
        w = d.timeline.exposure_windows_s
        scan = max(t1 for _, t1 in w) - min(t0 for t0, _ in w)
    if scan is not None:
        rows.append(["Scan time (first X-ray on to last off of the sweep)", f"{scan:.2f} s"])
    angles = [r.angle_deg for r in d.dose] or list(d.projection_angles_deg)
    if angles:
        rows.append(["Projections", str(len(angles))])
        step = f", mean step {(max(angles) - min(angles)) / (len(angles) - 1):.2f} deg" if len(angles) > 1 else ""
        rows.append(["Arc angles (actual)", f"{min(angles):+.2f} to {max(angles):+.2f} deg{step}"])
    for sc in d.scout:
        rows.append(["AEC scout (not in the scan time)", f"{sc.kvp:.1f} kV, {sc.mas:.2f} mAs, MGD {sc.mgd_mgy:.4f} mGy"])
    if d.dose:
        rows.append(["Total incident air kerma", f"{total_kerma(d):.3f} mGy"])
        rows.append(["Total mean glandular dose (every exposure, scout included)", f"{total_mgd(d):.3f} mGy"])
    if d.thickness_mm is not None:
        rows.append(["Compressed thickness", f"{d.thickness_mm:.1f} mm"])
    if d.force_n is not None:
        rows.append(["Compression force", f"{d.force_n:.1f} N"])
    sd = [f"{l.kind} {l.diameter_mm:g} mm: {l.sdnr:.2f}" for l in d.lesions if l.sdnr is not None]
    if sd:
        rows.append(["Lesion SDNR (in-focus slice)", "; ".join(sd)])
    rows += [[k, v] for k, v in d.notes.items()]
    return rows


def total_mgd(d: ReportData) -> float:
    """The one total MGD of the report: every exposure made (projections and scout), mGy."""
    if d.exam_mgd_mgy is not None:
        return d.exam_mgd_mgy
    return sum(r.mgd_mgy for r in d.dose) + sum(r.mgd_mgy for r in d.scout)


def total_kerma(d: ReportData) -> float:
    return sum(r.incident_air_kerma_mgy for r in d.dose) + sum(r.incident_air_kerma_mgy for r in d.scout)


def frequency_at(freq_lp_mm: np.ndarray, mtf: np.ndarray, level: float) -> float | None:
    """First frequency (lp/mm) where the MTF falls to ``level``, linearly interpolated; None if it never does."""
    f, m = np.asarray(freq_lp_mm, dtype=float), np.asarray(mtf, dtype=float)
    idx = np.nonzero(m < level)[0]
    if idx.size == 0 or idx[0] == 0:
        return None
    i = int(idx[0])
    return float(f[i - 1] + (m[i - 1] - level) / (m[i - 1] - m[i]) * (f[i] - f[i - 1]))


def _figure(src: str, caption: str) -> str:
    return f'<img src="{_e(src)}" alt="{_e(caption)}">\n<p class="cap">{_e(caption)}</p>'


def write_report(out_dir: str | Path, data: ReportData) -> Path:
    """Write the figures (PNG) and ``report.html`` into ``out_dir``; returns the HTML path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    d = data
    parts: list[str] = []
    if d.warnings:
        items = "".join(f"<li>{_e(w)}</li>" for w in d.warnings)
        parts.append(f'<section class="warn"><h2>Warnings ({len(d.warnings)})</h2><ul>{items}</ul></section>')
    parts.append(f"<section><h2>Summary</h2>{_table(['Quantity', 'Value'], summary_rows(d), left=2)}</section>")
    if d.verdicts:
        vrows = [[v.name, v.value, v.limit, v.result, v.source] for v in d.verdicts]  # type: ignore[attr-defined]
        parts.append("<section><h2>Verdict</h2>" + _table(["Check", "Measured", "Limit", "Result", "Source"],
                                                           vrows, left=5) + "</section>")

    if d.timeline is not None:
        figures.timeline_figure(out / "timeline.png", d.timeline)
        parts.append("<section><h2>Timeline</h2>" + _figure(
            "timeline.png", "Arc angle, arc velocity, tube voltage, tube current and compression force against "
            "device time; the shaded bands are the X-ray windows.") + "</section>")
    if len(d.projections):
        figures.projection_montage(out / "projections.png", d.projections, d.projection_angles_deg)
        parts.append("<section><h2>Projections</h2>" + _figure(
            "projections.png", "Raw projections with their actual (window-mean) arc angles; chest wall at the "
            "top of each image, display window 1st-99th percentile.") + "</section>")
        parts.append('<section id="cine"><h2>Projection cine</h2>'
                     + viewer.cine_html(d.projections, d.projection_angles_deg) + "</section>")
    if d.slices is not None:
        figures.slice_montage(out / "slices.png", d.slices, d.lesions)
        cap = "Reconstructed slices; red circles mark each lesion's true position and diameter on the slice " \
              "nearest its true depth; the bar is 10 mm."
        sec = "<section><h2>Reconstructed slices</h2>" + _figure("slices.png", cap)
        if d.lesions:
            figures.lesion_crops(out / "lesions.png", d.slices, d.lesions)
            sec += _figure("lesions.png", "Full-resolution crops (one display pixel per voxel, no interpolation) "
                           "centred on each lesion in the slice nearest its depth; the bar is 2 mm.")
        parts.append(sec + "</section>")
        parts.append('<section id="viewer"><h2>Slice viewer</h2>' + viewer.viewer_html(d.slices, d.lesions)
                     + "</section>")
    if d.mtf is not None:
        figures.mtf_figure(out / "mtf.png", d.mtf)
        f50v = frequency_at(d.mtf.freq_lp_mm, d.mtf.mtf, 0.5)
        f50 = f"MTF 50 % at {f50v:.2f} lp/mm. " if f50v is not None else ""
        parts.append("<section><h2>Resolution</h2>" + _figure(
            "mtf.png", f"{f50}Dashed: the ideal sinc of a {d.mtf.aperture_mm * 1000:.0f} um del aperture.")
            + "</section>")
    if d.dose:
        rows = [["scout", f"{r.angle_deg:+.2f}", f"{r.kvp:.1f}", f"{r.mas:.2f}", f"{r.incident_air_kerma_mgy:.4f}",
                 f"{r.mgd_mgy:.4f}"] for r in d.scout]
        rows += [[str(i + 1), f"{r.angle_deg:+.2f}", f"{r.kvp:.1f}", f"{r.mas:.2f}", f"{r.incident_air_kerma_mgy:.4f}",
                  f"{r.mgd_mgy:.4f}"] for i, r in enumerate(d.dose)]
        total = ["Total", "", "", f"{sum(r.mas for r in (*d.scout, *d.dose)):.2f}",
                 f"{total_kerma(d):.4f}", f"{total_mgd(d):.4f}"]
        head = ["#", "Angle (deg)", "kVp", "mAs", "Incident air kerma (mGy)", "MGD (mGy)"]
        parts.append(f"<section><h2>Dose per projection</h2>{_table(head, rows, total=total)}</section>")
    if d.lesions:
        rows = []
        for l in d.lesions:
            shown = f"{d.slices.z_mm[d.slices.nearest_slice(l.z_mm)]:.1f}" if d.slices is not None else "-"
            rows.append([l.kind, f"{l.x_mm:.1f}", f"{l.y_mm:.1f}", f"{l.z_mm:.1f}", f"{l.diameter_mm:g}", shown,
                         "-" if l.sdnr is None else f"{l.sdnr:.2f}"])
        head = ["Lesion", "x (mm)", "y (mm)", "z (mm)", "Diameter (mm)", "Marked on slice z (mm)", "SDNR"]
        parts.append(f"<section><h2>Lesions (true positions, gantry frame)</h2>{_table(head, rows)}</section>")
    if d.files:
        items = "".join(f'<li><a href="{_e(f)}">{_e(f)}</a></li>' for f in d.files)
        parts.append(f'<section><h2>Files</h2><ul class="files">{items}</ul></section>')

    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{_e(d.title)}</title>
<style>{CSS}</style></head>
<body><header><h1>{_e(d.title)}</h1>
<p>Positions in the gantry frame: x along the chest wall (arc direction), y from the
chest wall into the breast, z up from the detector surface; angles are actual arc angles.</p></header>
<main>
{chr(10).join(parts)}
</main></body></html>
"""
    path = out / "report.html"
    path.write_text(doc, encoding="utf-8")
    return path
