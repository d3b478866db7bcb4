"""The result of ``crescent acquire``: everything the summary shows, and where the files are."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crescent.acquire import analysis
from firmware_host.api import ExamResult
from protocols.records import AcquisitionHeader, ExposureRecord

def exam_warnings(rec: Any) -> list[str]:
    """Every warning of an exam record, in words: record warnings, images never received, fault, abort."""
    out = [str(w) for w in (getattr(rec, "warnings", None) or [])]
    missing = list(getattr(rec, "missing_images", None) or [])
    if missing:
        out.append(f"{len(missing)} image(s) never received: {missing[:8]}{' ...' if len(missing) > 8 else ''}")
    fault = getattr(rec, "fault", None)
    if fault:
        out.append(f"device fault: {fault}")
    if rec.status != "complete":
        out.append(f"exam {rec.status} in phase {getattr(rec, 'phase', '?')}: {rec.reason or 'no reason given'}")
    return out


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
    dose_all: analysis.DoseSummary | None = None  # every exposure made, in exam-record order (scout included)
    study: Any = None  # the StudyInfo the outputs were written with
    forces_n: list[float] = field(default_factory=list)  # force during each stored exposure's window, N
    line_integrals: np.ndarray | None = None  # ln(I0 / (I - dark)) of each projection (tomosynthesis sweeps)
    acquisition_qc: list[Any] = field(default_factory=list)  # crescent.acquire.acquisition_qc verdicts of this exam
    verdicts: list[Any] = field(default_factory=list)  # crescent.outputs.verdict.Verdict, as in the report

    @property
    def verdict(self) -> str:
        """FAIL if any checked figure failed, else PASS (INFO rows do not count); INCOMPLETE for an unfinished exam."""
        if self.exam.record.status != "complete":
            return "INCOMPLETE"
        return "FAIL" if any(v.result == "FAIL" for v in self.verdicts) else "PASS"

    @property
    def scan_time_s(self) -> float:
        """First X-ray on to last X-ray off of the sweep (the stored projections; the AEC scout is not in it), s."""
        sweep = [e for e in self.exposures if not e.is_scout]
        if not sweep:
            return 0.0
        return max(e.window_end_s for e in sweep) - min(e.window_start_s for e in sweep)

    @property
    def warnings(self) -> list[str]:
        return exam_warnings(self.exam.record) + [f"acquisition QC failed: {v.name}: {v.value} (limit {v.limit})"
                                                  for v in self.acquisition_qc if v.result == "FAIL"]

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
            "scan_time_definition": "first X-ray on to last X-ray off of the sweep (AEC scout excluded)",
            "scout": [{"kvp": e.kvp, "mas": e.mas, "window_start_s": e.window_start_s,
                       "window_end_s": e.window_end_s} for e in rec.exposures if e.is_scout],
            "warnings": self.warnings,
            "acquisition_qc": [{"check": v.name, "value": v.value, "limit": v.limit, "verdict": v.result,
                                "source": v.source} for v in self.acquisition_qc],
            "report": str(self.out / "report.html"),
            "verdict": self.verdict,
            "verdicts": [{"name": v.name, "value": v.value, "limit": v.limit, "result": v.result} for v in self.verdicts],
            "note": (f"INCOMPLETE: exam {rec.status}: {rec.reason or 'no reason given'}"
                     if rec.status != "complete" else ""),
            "uids": ("derived from the exam and seed, fixed date (reproducible virtual-time run)"
                     if self.study is not None and self.study.reproducibility_note else "fresh (random) per acquisition"),
            "determinism": ("bit for bit: same seed, same arrays, files and UIDs" if self.study is not None
                            and self.study.reproducibility_note else
                            "real time: the noise and phantom of exposure k depend only on (seed, k); timing "
                            "(positions, force, thickness) and so dose may differ run to run"),
            "compression_force_during_exposures_n": [round(f, 2) for f in self.forces_n],
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
