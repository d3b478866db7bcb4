"""Exam protocols: declarative acquisition definitions as validated data.

* :mod:`protocols.exams.models` - the pydantic models (``Exam`` union on ``kind``);
* :mod:`protocols.exams.plan` - expansion into planned exposures, motion needs;
* :mod:`protocols.exams.validate` - static validation against ``DeviceLimits``;
* :mod:`protocols.exams.io` - YAML files, readable errors, JSON Schema;
* :mod:`protocols.exams.standard` - the shipped library of standard exams.
"""

from protocols.exams.io import (
    ExamFileError,
    dump_exam_yaml,
    exam_from_data,
    exam_json_schema,
    load_exam,
    parse_exam_yaml,
    save_exam,
)
from protocols.exams.models import (
    AecTechnique,
    Arc,
    Compression,
    Continuous,
    DbtExam,
    Exam,
    ExamModel,
    FfdmExam,
    ManualTechnique,
    StepAndShoot,
    StereoExam,
)
from protocols.exams.plan import (
    PlanError,
    PlannedExposure,
    ProjectionTechnique,
    aec_scout_exposure,
    arc_travel_deg,
    expand_exam,
    planned_angles_deg,
    scan_time_s,
    sweep_speed_deg_s,
)
from protocols.exams.standard import list_standard_exams, load_standard_exam
from protocols.exams.validate import validate_exam, validate_exam_data
from protocols.exams.violations import Code, Violation

__all__ = [
    "AecTechnique", "Arc", "Code", "Compression", "Continuous", "DbtExam", "Exam", "ExamFileError", "ExamModel",
    "FfdmExam", "ManualTechnique", "PlanError", "PlannedExposure", "ProjectionTechnique", "StepAndShoot",
    "StereoExam", "Violation", "aec_scout_exposure", "arc_travel_deg", "dump_exam_yaml", "exam_from_data",
    "exam_json_schema", "expand_exam", "list_standard_exams", "load_exam", "load_standard_exam",
    "parse_exam_yaml", "planned_angles_deg", "save_exam", "scan_time_s", "sweep_speed_deg_s", "validate_exam",
    "validate_exam_data",
]
