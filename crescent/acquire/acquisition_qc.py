"""Per-exam acquisition QC, run by ``crescent acquire`` on every exam (the seed's "AI QC", rule-based here).

Checks, each a :class:`crescent.outputs.verdict.Verdict` (PASS / FAIL / INFO) that goes into summary.json,
the report's verdict table and the exam's warnings when it fails (never silent):

* exposure consistency across projections: spread of the delivered kV and coefficient of variation of the
  delivered mAs of the sweep;
* arm motion residual: the largest difference between an exposure's measured and planned angle against
  the exam's tolerance;
* detector artefacts: defective (dead or stuck) lines in the mean projection;
* chest-wall coverage: tissue reaches the chest-wall edge of the image;
* AEC plausibility: the projections' signal in the AEC region against the AEC's target, and no clamp.

* patient motion between projections (:func:`motion_track`): each projection is registered to the next
  (phase correlation of the band-passed log images, the breast's outline and structure being the
  high-contrast features); the steps are fitted with the parallax track a still object has in this
  geometry, and the displacement off that track is the motion. The projections displaced are named.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crescent.outputs.verdict import Verdict

#: Largest kV spread over a sweep's projections, kV (EUREF-2D 2.1.2: kV accuracy +-1 kV).
KV_SPREAD_MAX = 1.0
#: Largest coefficient of variation of the delivered mAs of projections planned alike, % (project: the
#: simulated mAs meter's noise is 0.5 % rms; EUREF-2D 2.1.4 asks output reproducibility within 5 %).
MAS_CV_MAX = 5.0
#: AEC: projection signal / target signal, accepted range (project: a factor 2 either way means the AEC
#: did not do its job; the calibrated simulated AEC lands within 4 % on PMMA 20-70 mm and at 0.98 on the default
#: `crescent acquire` exam, README "MGD vs PMMA thickness").
AEC_RATIO = (0.5, 2.0)
#: Chest wall: share of the columns covered by tissue in the first 2 mm, relative to 10-20 mm from the chest
#: wall (project: the breast must reach the detector edge; less than 80 % means tissue was missed).
COVERAGE_MIN = 0.8
#: Patient motion: largest displacement of a projection off the still-object parallax track (registered
#: neighbour steps, :func:`motion_track`), mm at the detector. Project limit: no published figure exists for a per-exam motion check (EUREF and EFOMP
#: DBT protocols test equipment, not exams); 0.5 mm is the size of the calcifications a DBT exam must show,
#: and the still exams of the simulated gantry stay under 0.1 mm (tests/crescent/test_qc_motion.py).
MOTION_RESIDUAL_MAX_MM = 0.5
#: Registration grid pitch, mm: projections are binned to about this before registration (speed, noise).
MOTION_GRID_MM = 0.4
#: Below this significance of the phase-correlation peak (peak over the standard deviation of the correlation
#: surface; pure noise gives about 4-5) a pair of projections has no trackable structure.
MOTION_MIN_SIGNIFICANCE = 10.0


def defective_lines(img: np.ndarray, threshold: float = 0.2) -> int:
    """Columns and rows whose mean differs, in the same direction, by more than ``threshold`` (fraction of the
    neighbours' mean) from both neighbours: a dead or stuck line, not the edge of an object (a step)."""
    n = 0
    for prof in (img.mean(axis=0), img.mean(axis=1)):
        if prof.size < 3:
            continue
        p = np.pad(prof, 1, mode="edge")
        left, mid, right = p[:-2], p[1:-1], p[2:]
        dl, dr = mid - left, mid - right
        ref = np.maximum(np.abs(0.5 * (left + right)), 1e-9)
        n += int(np.sum((np.sign(dl) == np.sign(dr)) & (np.minimum(np.abs(dl), np.abs(dr)) > threshold * ref)))
    return n


def _minus_dark(frame: np.ndarray, dark_adu: float) -> np.ndarray:
    """``frame - dark_adu`` in float64, one full-frame array (not two: 230 MB each at full resolution)."""
    out = np.array(frame, dtype=np.float64)
    out -= dark_adu
    return out


def _bin(img: np.ndarray, f: int) -> np.ndarray:
    r, c = (img.shape[0] // f) * f, (img.shape[1] // f) * f
    return img[:r, :c].reshape(r // f, f, c // f, f).mean(axis=(1, 3))


def _band_pass(img: np.ndarray) -> np.ndarray:
    """Difference of Gaussians (sigma 1 and 4 grid pixels) of ``img``, Hann-windowed, for registration."""
    from scipy.ndimage import gaussian_filter

    d = gaussian_filter(img, 1.0) - gaussian_filter(img, 4.0)
    win = np.outer(np.hanning(img.shape[0]), np.hanning(img.shape[1]))
    return d * win


def phase_shift(ref: np.ndarray, img: np.ndarray) -> tuple[float, float, float]:
    """Shift ``(rows, cols)`` in pixels that moves ``ref`` onto ``img`` (img[i] ~ ref[i - shift]), sub-pixel by a
    parabola through the peak, and the peak's significance (its height over the standard deviation of the
    correlation surface)."""
    f = np.fft.fft2(img) * np.conj(np.fft.fft2(ref))
    r = np.real(np.fft.ifft2(f / np.maximum(np.abs(f), 1e-12)))
    i, j = np.unravel_index(int(np.argmax(r)), r.shape)
    out = []
    for axis, k in ((0, i), (1, j)):
        n = r.shape[axis]
        idx = [i, j]
        idx[axis] = (k - 1) % n
        a = r[tuple(idx)]
        idx[axis] = (k + 1) % n
        b = r[tuple(idx)]
        c = r[i, j]
        den = a - 2.0 * c + b
        sub = 0.5 * (a - b) / den if den != 0 else 0.0
        kk = k if k <= n // 2 else k - n
        out.append(kk + float(np.clip(sub, -0.5, 0.5)))
    return out[0], out[1], float(r[i, j] / max(float(r.std()), 1e-12))


def motion_track(raw: np.ndarray | list[np.ndarray], dark_adu: float, angles_deg: list[float], geometry: Any
                 ) -> dict[str, Any] | None:
    """Track a sweep's projections against each other and against the parallax track of a still object.

    Each projection is registered to the next (phase correlation of the band-passed log images: the breast's
    outline and structure are the high-contrast features; neighbours differ by one angular step, so the same
    structures dominate both). A still point at height ``h`` above the detector, imaged from a source at
    ``(sx, 0, sz)``, lands at ``x' = x + (x - sx) h / (sz - h)``, ``y' = y sz / (sz - h)``: to first order in
    ``h / sz`` the step between neighbours is linear in ``d(sx / sz)`` and ``d(1 / sz)`` (x) and in ``d(1 / sz)``
    (y). The steps (mm at the detector) are fitted with those terms by least squares, the worst step dropped
    and the fit repeated while a step is off by more than :data:`MOTION_RESIDUAL_MAX_MM` (at most a third of
    them), so a jump does not bend the track. The residuals of the steps, summed from the first projection,
    are each projection's displacement off the still track: a rigid motion of the breast is a jump in it.
    (A steady drift along x in every step is the parallax of another height and cannot be told from it.)

    Returns ``None`` when the sweep has fewer than 3 projections or no trackable structure, else a dict:
    ``step_mm`` (n-1, 2) x, y; ``offset_mm`` (n, 2) displacement off the track; ``worst_mm`` (largest length
    of ``offset_mm``); ``peak`` (the weakest registration's significance); ``moved`` (1-based projections displaced by
    more than the limit).
    """
    n = len(angles_deg)
    if n < 3:
        return None
    det = geometry.detector
    f = max(1, int(round(MOTION_GRID_MM / det.pitch_mm)))
    grid = det.pitch_mm * f
    logs = [_band_pass(-np.log(np.maximum(_bin(_minus_dark(p, dark_adu), f), 1.0))) for p in raw]
    steps, peaks = np.zeros((n - 1, 2)), np.zeros(n - 1)
    for k in range(n - 1):
        dr, dc, peaks[k] = phase_shift(logs[k], logs[k + 1])
        steps[k] = (dc * grid, dr * grid)  # x = columns, y = rows
    if float(peaks.min()) < MOTION_MIN_SIGNIFICANCE:
        return None
    src = geometry.source_positions(np.asarray(angles_deg))
    u, w = np.diff(src[:, 0] / src[:, 2]), np.diff(1.0 / src[:, 2])
    design = (np.column_stack([u, w]), w[:, None])
    inlier = np.ones(n - 1, bool)
    res = np.zeros((n - 1, 2))
    for _ in range(max(1, (n - 1) // 3) + 1):
        for col, a in enumerate(design):
            coef, *_ = np.linalg.lstsq(a[inlier], steps[inlier, col], rcond=None)
            res[:, col] = steps[:, col] - a @ coef
        length = np.where(inlier, np.hypot(res[:, 0], res[:, 1]), -1.0)
        worst = int(np.argmax(length))
        if length[worst] <= MOTION_RESIDUAL_MAX_MM or inlier.sum() <= 2 * (n - 1) // 3:
            break
        inlier[worst] = False
    offset = np.vstack([[0.0, 0.0], np.cumsum(res, axis=0)])
    size = np.hypot(offset[:, 0], offset[:, 1])
    return {"step_mm": steps, "offset_mm": offset, "worst_mm": float(size.max()), "peak": float(peaks.min()),
            "moved": tuple(int(k) + 1 for k in np.flatnonzero(size > MOTION_RESIDUAL_MAX_MM))}


def motion_verdict(raw: np.ndarray, dark_adu: float, exposures: list[Any], geometry: Any) -> Verdict:
    """The patient-motion check of one sweep (:func:`motion_track`) as a verdict; INFO when it cannot be made."""
    keep = [k for k, e in enumerate(exposures) if not e.is_scout]  # frame numbers count the sweep only
    sweep = [exposures[k] for k in keep]
    name = "Patient motion between projections"
    source = ("project: no published per-exam limit (EUREF / EFOMP DBT protocols test equipment); 0.5 mm = the "
              "calcification size a DBT exam must resolve")
    if len({round(e.mean_angle_deg, 2) for e in sweep}) < 3:
        return Verdict(name, "not a sweep (fewer than 3 angles)", "-", "INFO", source)
    frames = [raw[k] for k in keep]  # views: no copy of the stack
    t = motion_track(frames, dark_adu, [e.mean_angle_deg for e in sweep], geometry)
    if t is None:
        return Verdict(name, "no trackable structure in the projections", "-", "INFO", source)
    where = f"; projections {', '.join(map(str, t['moved']))} off the track" if t["moved"] else ""
    return Verdict(name, f"largest displacement {t['worst_mm']:.2f} mm off the still-object parallax track{where}",
                   f"<= {MOTION_RESIDUAL_MAX_MM:g} mm", "FAIL" if t["moved"] else "PASS", source, frames=t["moved"])


def acquisition_qc(record: Any, header: Any, exposures: list[Any], raw: np.ndarray, dark_adu: float) -> list[Verdict]:
    """The checks of one exam (module docstring). ``raw``: the stored projections, ADU, ``[n, rows, cols]``."""
    out: list[Verdict] = []
    sweep = [e for e in exposures if not e.is_scout]
    kv = np.array([e.kvp for e in sweep])
    mas = np.array([e.mas for e in sweep])
    if kv.size:
        spread = float(kv.max() - kv.min())
        cv = 100.0 * float(mas.std() / mas.mean()) if mas.size > 1 and mas.mean() > 0 else 0.0
        ok = spread <= KV_SPREAD_MAX and cv <= MAS_CV_MAX
        out.append(Verdict("Exposure consistency across projections", f"kV spread {spread:.2f} kV, mAs CV {cv:.2f} %",
                           f"kV spread <= {KV_SPREAD_MAX:g} kV, mAs CV <= {MAS_CV_MAX:g} %", "PASS" if ok else "FAIL",
                           "EUREF-2D 2.1.2 (kV +-1 kV), 2.1.4 (output reproducibility 5 %)"))
    if record.checks:
        worst = max(abs(c.actual_angle_deg - c.planned_angle_deg) for c in record.checks)
        tol = float(record.angle_tolerance_deg)
        out.append(Verdict("Arm motion residual", f"{worst:.3f} deg", f"<= {tol:g} deg (the exam's tolerance)",
                           "PASS" if worst <= tol else "FAIL", "project: exam angle tolerance (the tube's "
                           "motion; the patient's is the next check)"))
    if kv.size:
        out.append(motion_verdict(raw, dark_adu, exposures, header.geometry))
    img = raw.mean(axis=0, dtype=np.float64)  # no float64 copy of the stack (230 MB a full-resolution frame)
    img -= dark_adu
    lines = defective_lines(img)
    out.append(Verdict("Detector artefacts (defective lines)", str(lines), "0", "PASS" if lines == 0 else "FAIL",
                       "project: EUREF-2D 2.4.7 no uncorrected defective lines"))
    pitch = header.geometry.detector.pitch_mm
    open_level = float(np.percentile(img, 99.5))
    tissue = img < 0.9 * open_level
    edge = tissue[: max(1, int(round(2.0 / pitch)))].mean(axis=0) > 0.5
    ref = tissue[int(round(10.0 / pitch)): int(round(20.0 / pitch))]
    ref_cols = ref.mean(axis=0) > 0.5 if ref.size else np.zeros(img.shape[1], bool)
    if ref_cols.sum() == 0:
        out.append(Verdict("Chest-wall coverage", "no tissue 10-20 mm from the chest wall", "-", "INFO", "project"))
    else:
        share = float((edge & ref_cols).sum() / ref_cols.sum())
        out.append(Verdict("Chest-wall coverage", f"{100 * share:.0f} % of the tissue columns reach the edge",
                           f">= {100 * COVERAGE_MIN:.0f} %", "PASS" if share >= COVERAGE_MIN else "FAIL",
                           "project: tissue at 10-20 mm must reach the chest-wall edge (missed tissue)"))
    if record.aec is not None:
        from firmware_host.aec import aec_roi

        det = header.geometry.detector
        roi = aec_roi(det.rows, det.cols, pitch)
        region = raw[:, roi.r0:roi.r1, roi.c0:roi.c1].astype(np.float64)
        signal = float(region.mean()) - dark_adu
        ratio = signal / 65535.0 / record.aec.target_signal_fraction
        clamped = record.aec.note
        ok = AEC_RATIO[0] <= ratio <= AEC_RATIO[1] and not clamped
        out.append(Verdict("AEC plausibility", f"signal / target {ratio:.2f}" + (f"; {clamped}" if clamped else ""),
                           f"{AEC_RATIO[0]:g} .. {AEC_RATIO[1]:g}, technique not clamped", "PASS" if ok else "FAIL",
                           "project: the AEC reached its own target"))
    return out
