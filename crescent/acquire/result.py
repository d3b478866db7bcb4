"""The result of ``crescent acquire``: everything the summary shows, and where the files are."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crescent.acquire import analysis
from firmware_host.api import ExamResult
from protocols.records import AcquisitionHeader, ExposureRecord

@dataclass
class AcquireResult:
    """Everything the summary shows, plus where the files are."""

    out: Path
    exam: ExamResult
    header: AcquisitionHeader
    exposures: list[ExposureRecord]
    findings: list[analysis.LesionFinding]
    dose: analysis.DoseSummary
    recon: analysis.Reconstruction | None
    mtf: tuple[np.ndarray, np.ndarray] | None
    stereo: list[analysis.StereoFinding] = field(default_factory=list)
    exam_mgd_mgy: float = 0.0  # every exposure made, AEC scout and images lost included
    scout_mgd_mgy: float = 0.0
    timings_s: dict[str, float] = field(default_factory=dict)
    files: list[Path] = field(default_factory=list)
    normalisation: str = ""  # how raw counts became line integrals (flat fields, or open field on a rig)

    @property
    def scan_time_s(self) -> float:
        if not self.exposures:
            return 0.0
        return self.exposures[-1].window_end_s - self.exposures[0].window_start_s

    def summary(self) -> dict[str, Any]:
        rec = self.exam.record
        return {
            "exam": rec.exam_name,
            "status": rec.status,
            "reason": rec.reason,
            "projections": len(self.exposures),
            "angles_deg": [round(e.mean_angle_deg, 3) for e in self.exposures],
            "max_angle_error_deg": max((abs(c.angle_error_deg) for c in rec.checks), default=0.0),
            "scan_time_s": round(self.scan_time_s, 3),
            "technique": rec.technique.model_dump() if rec.technique else None,
            "thickness_mm": self.header.compressed_thickness_mm,
            "force_n": self.header.compression_force_n,
            "hvl_mm_al": round(self.dose.hvl_mm_al, 3),
            "total_air_kerma_mgy": round(float(sum(self.dose.air_kerma_mgy)), 4),
            "total_mgd_mgy": round(self.exam_mgd_mgy, 4),
            "projections_mgd_mgy": round(self.dose.total_mgd_mgy, 4),
            "scout_mgd_mgy": round(self.scout_mgd_mgy, 4),
            "normalisation": self.normalisation,
            "lesions": [
                {"kind": f.truth.kind, "x_mm": round(f.truth.x_mm, 3), "y_mm": round(f.truth.y_mm, 3),
                 "true_z_mm": round(f.truth.z_mm, 3), "diameter_mm": round(f.truth.diameter_mm, 3),
                 "focus_z_mm": f.focus_z_mm, "depth_error_mm": round(f.depth_error_mm, 3), "sdnr": round(f.sdnr, 2),
                 "resolvable": analysis.resolvable(f.truth.diameter_mm, self.header.geometry.detector.pitch_mm)}
                for f in self.findings
            ],
            "stereo_localisation": [
                {"kind": f.truth.kind, "diameter_mm": round(f.truth.diameter_mm, 3),
                 "true_mm": [round(v, 3) for v in (f.truth.x_mm, f.truth.y_mm, f.truth.z_mm)],
                 "localised_mm": [round(v, 3) for v in f.position_mm],
                 "parallel_beam_mm": [round(v, 3) for v in f.parallel_mm],
                 "error_mm": round(f.error_mm, 3), "ray_miss_mm": round(f.miss_mm, 3)}
                for f in self.stereo
            ],
            "timings_s": {k: round(v, 2) for k, v in self.timings_s.items()},
        }
