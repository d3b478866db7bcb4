"""Exam files: the shipped library, YAML round trips, readable file errors, and the JSON Schema in sync."""

import json

import pytest
import yaml

from protocols.exams import (
    ExamFileError,
    dump_exam_yaml,
    exam_json_schema,
    list_standard_exams,
    load_exam,
    load_standard_exam,
    parse_exam_yaml,
    save_exam,
)
from protocols.exams.io import SCHEMA_PATH, exam_json_schema_text
from protocols.exams.standard import standard_exam_yaml

EXPECTED_LIBRARY = {"dbt-standard", "dbt-wide", "dbt-narrow", "dbt-step", "ffdm-cc", "ffdm-mlo", "stereo-biopsy"}

GOOD = """\
kind: ffdm
name: cc
view: CC
technique: {mode: manual, anode_filter: W/Rh, kvp: 29, mas_per_projection: 80}
compression: {target_force_n: 100}
"""


def test_library_holds_the_standard_exams():
    assert set(list_standard_exams()) == EXPECTED_LIBRARY


@pytest.mark.parametrize("name", sorted(EXPECTED_LIBRARY))
def test_standard_exam_loads_by_name_and_round_trips(name, tmp_path):
    exam = load_standard_exam(name)
    assert exam.name == name
    assert parse_exam_yaml(dump_exam_yaml(exam)) == exam
    save_exam(exam, tmp_path / "x.yaml")
    assert load_exam(tmp_path / "x.yaml") == exam


def test_reference_system_shapes():
    std = load_standard_exam("dbt-standard")
    assert (std.kind, std.arc.start_deg, std.arc.stop_deg, std.arc.count, std.motion.mode) == (
        "dbt", -12.5, 12.5, 15, "continuous")
    wide, narrow, step = (load_standard_exam(n) for n in ("dbt-wide", "dbt-narrow", "dbt-step"))
    assert (wide.arc.stop_deg - wide.arc.start_deg, wide.arc.count) == (50.0, 25)  # Siemens
    assert (narrow.arc.stop_deg - narrow.arc.start_deg, narrow.arc.count, narrow.motion.sweep_time_s) == (
        15.0, 15, 3.7)  # Hologic
    assert (step.arc.stop_deg - step.arc.start_deg, step.arc.count, step.motion.mode) == (
        25.0, 9, "step_and_shoot")  # GE
    stereo = load_standard_exam("stereo-biopsy")
    assert (stereo.offset_deg, stereo.compression.release) == (15.0, "hold")


def test_unknown_standard_exam_lists_known_names():
    with pytest.raises(KeyError, match="dbt-standard"):
        load_standard_exam("dbt-huge")


def test_file_error_names_file_field_value_and_rule(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("kvp: 29", "kvp: -3").replace("view: CC", "view: CC\nlaterality: X"))
    with pytest.raises(ExamFileError) as err:
        load_exam(path)
    text = str(err.value)
    assert str(path) in text and "2 problem(s)" in text
    assert "technique.kvp = -3: Input should be greater than 0" in text
    assert "laterality = 'X'" in text
    assert {v.field for v in err.value.violations} == {"technique.kvp", "laterality"}


def test_duplicate_keys_are_rejected_with_their_line():
    with pytest.raises(ExamFileError, match=r"duplicate key 'view' \(line 4"):
        parse_exam_yaml(GOOD.replace("technique:", "view: MLO\ntechnique:"), "dup.yaml")


@pytest.mark.parametrize(
    "text, words",
    [("kind: [unclosed", "invalid YAML"), ("- a\n- b\n", "must be a mapping"), ("", "got NoneType")],
)
def test_unreadable_documents(text, words):
    with pytest.raises(ExamFileError, match=words) as err:
        parse_exam_yaml(text, "doc.yaml")
    assert str(err.value).startswith("doc.yaml: cannot read exam")


def test_missing_file(tmp_path):
    with pytest.raises(ExamFileError, match="nope.yaml: cannot read exam\n  exam file not found"):
        load_exam(tmp_path / "nope.yaml")


def test_shipped_schema_is_in_sync():
    assert SCHEMA_PATH.read_text(encoding="utf-8") == exam_json_schema_text(), (
        "exam.schema.json is stale: run "
        'python -c "from protocols.exams.io import write_exam_json_schema as w; w()"'
    )


def test_schema_describes_the_discriminated_union():
    schema = exam_json_schema()
    assert schema["discriminator"]["propertyName"] == "kind"
    assert set(schema["discriminator"]["mapping"]) == {"dbt", "ffdm", "stereo"}
    defs = schema["$defs"]
    for model in ("DbtExam", "FfdmExam", "StereoExam", "Arc", "Compression", "AecTechnique", "ManualTechnique"):
        assert defs[model]["additionalProperties"] is False, model
    assert set(defs["DbtExam"]["required"]) >= {"name", "view", "arc", "motion", "technique", "compression"}
    json.dumps(schema)  # serialisable


def test_library_files_use_only_schema_properties():
    """Every key in the shipped YAML is a property the schema declares (no drift between files and schema)."""
    defs = exam_json_schema()["$defs"]
    kinds = {"dbt": "DbtExam", "ffdm": "FfdmExam", "stereo": "StereoExam"}
    for name in list_standard_exams():
        data = yaml.safe_load(standard_exam_yaml(name))
        assert set(data) <= set(defs[kinds[data["kind"]]]["properties"]), name
        tech = "AecTechnique" if data["technique"]["mode"] == "aec" else "ManualTechnique"
        assert set(data["technique"]) <= set(defs[tech]["properties"]), name
