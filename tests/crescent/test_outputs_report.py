"""The HTML report: every figure exists and decodes with content, tables present and right, lesions marked."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from crescent.outputs import DoseRow, Lesion, MtfCurve, ReportData, SliceStack, Timeline, write_report
from crescent.outputs.figures import choose_slices
from crescent.outputs.report import frequency_at

VOXEL, X0, Y0 = 0.5, -14.75, 0.25  # 60 x 40 voxels: x -14.75 .. 14.75, y 0.25 .. 19.75 mm
Z = [21.0 + 2.0 * k for k in range(10)]
LESIONS = [Lesion(-5.0, 8.0, 27.2, "mass", 4.0, 6.5), Lesion(6.0, 12.0, 35.0, "calcification", 0.3, None)]
ANGLES = np.linspace(-10.0, 10.0, 5)


def make_data() -> ReportData:
    rng = np.random.default_rng(0)
    vol = rng.normal(0.05, 0.002, (len(Z), 40, 60)).astype(np.float32)
    yy, xx = np.mgrid[0:40, 0:60]
    for les in LESIONS:
        c, r = (les.x_mm - X0) / VOXEL, (les.y_mm - Y0) / VOXEL
        k = int(np.argmin(np.abs(np.asarray(Z) - les.z_mm)))
        vol[k][(xx - c) ** 2 + (yy - r) ** 2 <= max(les.diameter_mm / 2 / VOXEL, 1.0) ** 2] += 0.02
    t = np.linspace(0.0, 4.0, 401)
    windows = [(1.0 + 0.5 * k, 1.05 + 0.5 * k) for k in range(5)]
    on = np.zeros(t.shape, bool)
    for a, b in windows:
        on |= (t >= a) & (t < b)
    angle = np.clip(-10.0 + 10.0 * (t - 1.0), -10.0, 10.0)
    tl = Timeline(t, angle, np.gradient(angle, t), np.where(on, 29.0, 0.0), np.where(on, 25.0, 0.0),
                  np.minimum(110.0, 200.0 * t), windows)
    projs = [rng.integers(1000, 5000, size=(30, 45)).astype(np.uint16) for _ in ANGLES]
    f = np.linspace(0.0, 12.0, 121)
    dose = [DoseRow(float(a), 29.0, 1.25, 0.3 + 0.01 * i, 0.08 + 0.001 * i) for i, a in enumerate(ANGLES)]
    return ReportData(exam="dbt-standard", timeline=tl, projections=projs, projection_angles_deg=list(ANGLES),
                      slices=SliceStack(vol, VOXEL, X0, Y0, Z), lesions=LESIONS,
                      mtf=MtfCurve(f, np.abs(np.sinc(f * 0.05)) * np.exp(-f / 20.0), 0.05, 0.05), dose=dose,
                      thickness_mm=20.0, force_n=110.0, files=["projections.npy", "tomo.dcm"],
                      notes={"Seed": "7"})


class _Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.imgs: list[str] = []
        self.tables = 0
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.imgs.append(dict(attrs)["src"] or "")
        if tag == "table":
            self.tables += 1

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def report() -> tuple[Path, _Collect]:
    out = Path(tempfile.mkdtemp(prefix="crescent-report-"))
    path = write_report(out, make_data())
    parser = _Collect()
    parser.feed(path.read_text(encoding="utf-8"))
    yield path, parser
    shutil.rmtree(out, ignore_errors=True)


def test_every_image_exists_decodes_and_is_not_blank(report: tuple[Path, _Collect]) -> None:
    path, parser = report
    files = [s for s in parser.imgs if not s.startswith("data:image/png;base64,")]
    assert sorted(files) == ["lesions.png", "mtf.png", "projections.png", "slices.png", "timeline.png"]
    assert len(parser.imgs) - len(files) == 2  # the slice viewer and the cine: embedded (test_outputs_viewer.py)
    for src in files:
        assert not Path(src).is_absolute() and "/" not in src  # relative, next to report.html
        img = mpimg.imread(path.parent / src)
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
        gray = img[..., :3].mean(axis=2)
        assert gray.std() > 0.05, f"{src} looks blank"
        assert (gray < 0.5).mean() > 0.01, f"{src} has almost no dark content"


def test_tables_and_totals(report: tuple[Path, _Collect]) -> None:
    _, parser = report
    text = " ".join(parser.text)
    assert parser.tables == 3  # summary, dose, lesions
    for label in ("Summary", "Dose per projection", "Total mean glandular dose", "Compression force", "Files"):
        assert label in text
    assert f"{sum(0.08 + 0.001 * i for i in range(5)):.4f}" in text  # MGD total 0.4100 mGy
    assert "0.410 mGy" in text and "6.25" in text  # summary total MGD; 5 x 1.25 mAs in the total row
    assert "-10.00 to +10.00 deg" in text and "2.05 s" in text  # angles; scan time 1.0 .. 3.05 s
    assert "mass 4 mm: 6.50" in text


def test_lesions_marked_in_red_on_their_slice(report: tuple[Path, _Collect]) -> None:
    path, _ = report
    img = mpimg.imread(path.parent / "slices.png")[..., :3]
    red = (img[..., 0] > 0.8) & (img[..., 1] < 0.4) & (img[..., 2] < 0.4)
    assert red.sum() > 50
    stack = make_data().slices
    assert stack is not None
    # 27.2 mm lies nearest the 27 mm slice (index 3), 35 mm is slice 7: both must be shown
    assert stack.nearest_slice(27.2) == 3 and stack.nearest_slice(35.0) == 7
    assert {3, 7} <= set(choose_slices(stack, LESIONS, n_max=4))
    assert stack.pixel_of(-5.0, 8.0) == pytest.approx(((-5.0 - X0) / VOXEL, (8.0 - Y0) / VOXEL))


def test_report_without_figures_still_valid(tmp_path: Path) -> None:
    path = write_report(tmp_path, ReportData(exam="ffdm", dose=[DoseRow(0.0, 28.0, 50.0, 4.0, 1.2)]))
    parser = _Collect()
    parser.feed(path.read_text())
    assert parser.imgs == [] and parser.tables == 2
    assert "1.2000" in " ".join(parser.text)


def test_frequency_at_interpolates() -> None:
    f = np.linspace(0.0, 10.0, 11)
    assert frequency_at(f, 1.0 - f / 10.0, 0.5) == pytest.approx(5.0)
    assert frequency_at(f, 1.0 - f / 8.0, 0.5) == pytest.approx(4.0)
    assert frequency_at(f, np.ones(11), 0.5) is None


def test_timeline_rejects_mismatched_arrays() -> None:
    t = np.arange(5.0)
    with pytest.raises(ValueError, match="kvp"):
        Timeline(t, t, t, t[:4], t, t)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium not installed")
def test_report_renders_in_headless_chromium(report: tuple[Path, _Collect], tmp_path: Path) -> None:
    path, _ = report
    shot = tmp_path / "shot.png"
    cmd = ["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", f"--screenshot={shot}", "--window-size=1200,2400",
           path.resolve().as_uri()]
    subprocess.run(cmd, capture_output=True, timeout=90, check=False)
    img = mpimg.imread(shot)[..., :3]
    assert img.shape[:2] == (2400, 1200)
    gray = img.mean(axis=2)
    # the figures render: many dark pixels (plots, images), not just the page background
    assert (gray < 0.3).mean() > 0.02


def test_module_doctests() -> None:
    import doctest

    from crescent.outputs import report, study

    for module in (report, study):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
