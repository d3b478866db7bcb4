"""What the report shows: plain dataclasses the acquire command fills (no I/O, no plotting).

Coordinates are in the gantry frame of :mod:`protocols.geometry` (mm): ``x``
along the chest wall / arc, ``y`` from the chest wall into the breast, ``z``
up from the detector surface. Times are seconds on the device clock.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Timeline:
    """Sampled machine state against time (all arrays of the same length ``n``).

    t_s: time, s; angle_deg: arc angle, degrees; velocity_deg_s: arc velocity, degrees/s;
    kvp: tube voltage, kV (0 when off); tube_current_ma: mA (0 when off); force_n: compression
    force, N; exposure_windows_s: ``[(t_on, t_off), ...]`` X-ray windows, s.
    """

    t_s: np.ndarray
    angle_deg: np.ndarray
    velocity_deg_s: np.ndarray
    kvp: np.ndarray
    tube_current_ma: np.ndarray
    force_n: np.ndarray
    exposure_windows_s: Sequence[tuple[float, float]] = ()
    device_clock_epoch_s: float | None = None

    def mean_in(self, name: str, t0_s: float, t1_s: float) -> float | None:
        """Mean of trace ``name`` (e.g. ``"force_n"``) over the samples in ``[t0_s, t1_s]``.

        With no sample inside (a window shorter than the telemetry period) the value is linearly
        interpolated at the window's middle; None if the timeline is empty.
        """
        t = np.asarray(self.t_s, dtype=np.float64)
        y = np.asarray(getattr(self, name), dtype=np.float64)
        if t.size == 0:
            return None
        inside = (t >= t0_s) & (t <= t1_s)
        if inside.any():
            return float(y[inside].mean())
        return float(np.interp(0.5 * (t0_s + t1_s), t, y))

    def __post_init__(self) -> None:
        n = np.asarray(self.t_s).shape
        for name in ("angle_deg", "velocity_deg_s", "kvp", "tube_current_ma", "force_n"):
            if np.asarray(getattr(self, name)).shape != n:
                raise ValueError(f"timeline {name} has shape {np.asarray(getattr(self, name)).shape}, t_s has {n}")


@dataclass(frozen=True)
class Lesion:
    """A lesion of the phantom: true centre (mm, gantry frame), kind, diameter (mm), measured SDNR or None."""

    x_mm: float
    y_mm: float
    z_mm: float
    kind: str
    diameter_mm: float
    sdnr: float | None = None


@dataclass(frozen=True)
class SliceStack:
    """Reconstructed slices ``(nz, ny, nx)`` (1/mm) on their grid.

    voxel_mm: in-plane voxel size; x0_mm, y0_mm: centre of voxel ``[:, 0, 0]``; z_mm: slice heights.
    Row ``r`` of a slice is at ``y0 + r * voxel``, column ``c`` at ``x0 + c * voxel``.
    """

    volume: np.ndarray
    voxel_mm: float
    x0_mm: float
    y0_mm: float
    z_mm: Sequence[float]

    def __post_init__(self) -> None:
        if np.asarray(self.volume).ndim != 3 or np.asarray(self.volume).shape[0] != len(self.z_mm):
            raise ValueError(f"volume shape {np.shape(self.volume)} does not match {len(self.z_mm)} slice heights")

    def pixel_of(self, x_mm: float, y_mm: float) -> tuple[float, float]:
        """(column, row) fractional indices of a gantry-frame point."""
        return (x_mm - self.x0_mm) / self.voxel_mm, (y_mm - self.y0_mm) / self.voxel_mm

    def nearest_slice(self, z_mm: float) -> int:
        """Index of the slice whose height is nearest ``z_mm``."""
        return int(np.argmin(np.abs(np.asarray(self.z_mm) - z_mm)))


@dataclass(frozen=True)
class MtfCurve:
    """A measured presampled MTF (``freq_lp_mm`` lp/mm, ``mtf`` unitless) and the detector's del aperture (mm).

    The ideal reference is the aperture sinc ``|sinc(f * aperture_mm)|``; Nyquist is ``1 / (2 pitch_mm)``.
    """

    freq_lp_mm: np.ndarray
    mtf: np.ndarray
    aperture_mm: float
    pitch_mm: float
    label: str = "measured (slanted edge)"


@dataclass(frozen=True)
class DoseRow:
    """Dose of one projection: actual arc angle (deg), kVp, mAs, incident air kerma (mGy), MGD (mGy)."""

    angle_deg: float
    kvp: float
    mas: float
    incident_air_kerma_mgy: float
    mgd_mgy: float


@dataclass
class ReportData:
    """Everything ``report.html`` shows.

    exam: exam name (e.g. ``"dbt-standard"``); title: page heading; projections: images to show
    ``(rows, cols)`` (a few or all) with projection_angles_deg of each; slices: the reconstruction;
    lesions: true lesion positions marked on the slice nearest their depth; mtf: optional MTF curve;
    dose: one row per projection; thickness_mm / force_n: compressed thickness (mm) and force (N);
    scan_time_s: first X-ray on to last X-ray off (s), taken from the timeline windows if None;
    files: output files (paths relative to the report's folder); notes: extra summary rows
    (label -> text), e.g. seed, anode/filter, run time; scout: the AEC pre-exposure(s), listed on
    their own (not in the scan time); exam_mgd_mgy: MGD of every exposure made (the one total MGD
    row; default the sum of ``dose`` and ``scout``); warnings: every exam-record warning;
    verdicts: :class:`crescent.outputs.verdict.Verdict` items.
    """

    exam: str
    title: str = "Crescent acquisition report"
    timeline: Timeline | None = None
    projections: Sequence[np.ndarray] = ()
    projection_angles_deg: Sequence[float] = ()
    slices: SliceStack | None = None
    lesions: Sequence[Lesion] = ()
    mtf: MtfCurve | None = None
    dose: Sequence[DoseRow] = ()
    thickness_mm: float | None = None
    force_n: float | None = None
    scan_time_s: float | None = None
    files: Sequence[str] = ()
    notes: dict[str, str] = field(default_factory=dict)
    scout: Sequence[DoseRow] = ()
    exam_mgd_mgy: float | None = None
    warnings: Sequence[str] = ()
    verdicts: Sequence[object] = ()
