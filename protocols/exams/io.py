"""Exam files: YAML load/dump with readable errors, and the JSON Schema.

Errors name the file, the field path, the value and the rule, e.g.::

    exam.yaml: 2 problems
      - technique.kvp = 'high': Input should be a valid number ...
      - arc: give either start_deg/stop_deg/count or angles_deg, not both (also given: count)

YAML is read through :mod:`protocols.yamlsafe`: files over
:data:`MAX_EXAM_BYTES` are refused before they are read, as are binary and
non-UTF-8 files, anchors/aliases (alias bombs), floods of nodes and
duplicate keys (PyYAML would silently keep the last one, which is no way to
treat a safety-relevant file). :func:`resolve_exam_source` turns an exam
argument, a shipped library name or a path, into its text and its name.

The text functions (:func:`parse_exam_yaml`, :func:`dump_exam_yaml`) do no
I/O; :func:`load_exam` and :func:`save_exam` are the thin file wrappers.
:func:`write_exam_json_schema` rewrites the shipped ``exam.schema.json``
(a test fails when it is out of date)::

    python -c "from protocols.exams.io import write_exam_json_schema as w; w()"
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError

from protocols import yamlsafe

from protocols.exams.models import Exam, ExamModel
from protocols.exams.violations import Violation, violations_from_error

SCHEMA_PATH = Path(__file__).with_name("exam.schema.json")
SCHEMA_ID = "https://crescent.invalid/schemas/exam.schema.json"

_ADAPTER: TypeAdapter[Any] = TypeAdapter(Exam)

#: Largest exam file accepted (bytes); a shipped exam is about 1 kB.
MAX_EXAM_BYTES = yamlsafe.MAX_YAML_BYTES
#: Most problems listed in an :class:`ExamFileError` message (all are kept in ``violations``).
MAX_LISTED_PROBLEMS = 20


class ExamFileError(ValueError):
    """An exam document that cannot be read or does not match the exam model.

    ``source`` names the file; ``violations`` lists each problem (schema
    violations carry the field path and value).
    """

    def __init__(self, source: str, violations: list[Violation] | None = None, detail: str | None = None) -> None:
        self.source = source
        self.violations = violations or []
        self.detail = detail
        lines = [detail] if detail else [f"- {v.message}" for v in self.violations[:MAX_LISTED_PROBLEMS]]
        if not detail and len(self.violations) > MAX_LISTED_PROBLEMS:
            lines.append(f"- ... and {len(self.violations) - MAX_LISTED_PROBLEMS} more")
        head = f"{source}: " + (f"{len(self.violations)} problem(s)" if not detail else "cannot read exam")
        super().__init__("\n  ".join([head, *lines]))


def exam_from_data(data: Any, source: str = "<data>") -> ExamModel:
    """Validate plain data (a mapping) into an exam; raises :class:`ExamFileError`."""
    if not isinstance(data, dict):
        raise ExamFileError(source, detail=f"the document must be a mapping of exam fields, got {type(data).__name__}")
    try:
        return _ADAPTER.validate_python(data)
    except ValidationError as err:
        raise ExamFileError(source, violations_from_error(err)) from None


def parse_exam_yaml(text: str, source: str = "<string>") -> ExamModel:
    """Parse one exam from YAML text; ``source`` names it in errors. Raises :class:`ExamFileError`."""
    return exam_from_data(parse_exam_data(text, source), source)


def parse_exam_data(text: str, source: str = "<string>") -> Any:
    """The plain data of exam YAML text (not yet checked against the model); raises :class:`ExamFileError`."""
    try:
        return yamlsafe.load_yaml_text(text, source, max_bytes=MAX_EXAM_BYTES)
    except yamlsafe.YamlInputError as err:
        raise ExamFileError(source, detail=err.reason) from None


def read_exam_text(path: str | Path) -> str:
    """Text of an exam file, size-capped and UTF-8 checked; raises :class:`ExamFileError` naming the file."""
    try:
        return yamlsafe.read_text_capped(path, MAX_EXAM_BYTES, what="exam file")
    except yamlsafe.YamlInputError as err:
        raise ExamFileError(str(path), detail=err.reason) from None


def load_exam(path: str | Path) -> ExamModel:
    """Read and validate an exam YAML file; raises :class:`ExamFileError` naming the file."""
    return parse_exam_yaml(read_exam_text(path), str(path))


def exam_to_data(exam: ExamModel) -> dict[str, Any]:
    """Plain data of an exam (JSON types, unset optional fields left out); parses back to an equal exam."""
    return exam.model_dump(mode="json", exclude_none=True)


def dump_exam_yaml(exam: ExamModel) -> str:
    """YAML text of an exam, fields in model order."""
    return yaml.safe_dump(exam_to_data(exam), sort_keys=False, allow_unicode=True)


def save_exam(exam: ExamModel, path: str | Path) -> None:
    """Write an exam as YAML."""
    Path(path).write_text(dump_exam_yaml(exam), encoding="utf-8")


def exam_json_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of an exam document."""
    schema = _ADAPTER.json_schema()
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "Crescent exam protocol",
        "description": "A DBT sweep, 2D view (FFDM) or stereotactic pair, discriminated by 'kind'.",
        **schema,
    }


def exam_json_schema_text() -> str:
    """The canonical text of ``exam.schema.json`` (2-space indent, trailing newline)."""
    return json.dumps(exam_json_schema(), indent=2) + "\n"


def write_exam_json_schema(path: str | Path = SCHEMA_PATH) -> Path:
    """Write :func:`exam_json_schema_text` to ``path`` (default: the shipped schema file)."""
    path = Path(path)
    path.write_text(exam_json_schema_text(), encoding="utf-8")
    return path
