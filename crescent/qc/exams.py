"""The exams QC runs, built in code (each a valid exam model, so a rig runs exactly the same file).

Every QC exam holds compression with a light force (a phantom, not a breast), a 5 mm lowest thickness
(PMMA plates start at 20 mm, open-field and edge exposures have only the paddle) and releases after
the exam. Units: kV, mAs, ms, s, deg, N, mm.
"""

from __future__ import annotations

from typing import Any

from protocols.exams.models import ExamModel

_COMPRESSION: dict[str, Any] = {"target_force_n": 60.0, "settle_time_s": 1.0, "min_thickness_mm": 5.0,
                                "max_thickness_mm": 110.0, "release": "after_exam"}

def _library_part(exam: str, part: str) -> dict[str, Any]:
    """A part (``arc``, ``motion``, ``technique``) of a shipped library exam, as exam-file data."""
    from protocols.exams import load_standard_exam

    return getattr(load_standard_exam(exam), part).model_dump(mode="json", exclude_none=True)


#: The shipped standard DBT exam's arc and sweep, read from the exam library (protocols/exams/library/
#: dbt-standard.yaml, the one place they are set) so the QC exams can vary the technique only.
DBT_ARC: dict[str, Any] = _library_part("dbt-standard", "arc")
DBT_MOTION: dict[str, Any] = _library_part("dbt-standard", "motion")
#: The AEC of the shipped ``dbt-standard`` exam (its target and ceiling are set in the library file only).
DBT_AEC: dict[str, Any] = _library_part("dbt-standard", "technique")


def _model(data: dict[str, Any]) -> ExamModel:
    from pydantic import TypeAdapter

    return TypeAdapter(ExamModel).validate_python(data)


def ffdm_manual(name: str, kvp: float, mas: float, anode_filter: str = "W/Rh", focal_spot_mm: float = 0.3) -> ExamModel:
    """One 0-degree exposure with a fixed technique (detector and tube tests)."""
    return _model({"kind": "ffdm", "name": name, "view": "CC", "angle_deg": 0.0,
                   "technique": {"mode": "manual", "anode_filter": anode_filter, "kvp": kvp,
                                 "mas_per_projection": mas, "focal_spot_mm": focal_spot_mm},
                   "compression": _COMPRESSION})


def dbt_manual(name: str, kvp: float = 28.0, mas: float = 2.0, count: int = 15) -> ExamModel:
    """The standard DBT sweep (+-12.5 deg, continuous, 7 s, 60 ms pulses) with a fixed technique."""
    return _model({"kind": "dbt", "name": name, "view": "CC", "arc": {**DBT_ARC, "count": count},
                   "motion": DBT_MOTION,
                   "technique": {"mode": "manual", "anode_filter": "W/Rh", "kvp": kvp, "mas_per_projection": mas},
                   "compression": _COMPRESSION})


def dbt_aec(name: str = "qc-dbt-aec", count: int = 15) -> ExamModel:
    """The standard DBT sweep with the shipped exam's AEC (the clinical technique the AEC test checks)."""
    return _model({"kind": "dbt", "name": name, "view": "CC", "arc": {**DBT_ARC, "count": count},
                   "motion": DBT_MOTION, "technique": DBT_AEC, "compression": _COMPRESSION})


def ghost_pair(name: str, kvp: float = 28.0, mas: float = 5.0) -> ExamModel:
    """Two projections at -1 and +1 deg, a continuous 7 s sweep, a fixed technique: the inter-projection
    ghost test moves its phantom between them (nearly normal incidence, like the EUREF test's 0-degree views)."""
    return _model({"kind": "dbt", "name": name, "view": "CC", "arc": {"start_deg": -1.0, "stop_deg": 1.0, "count": 2},
                   "motion": DBT_MOTION,
                   "technique": {"mode": "manual", "anode_filter": "W/Rh", "kvp": kvp, "mas_per_projection": mas},
                   "compression": _COMPRESSION})
