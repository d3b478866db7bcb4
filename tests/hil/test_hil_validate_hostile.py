"""Hostile files through ``crescent validate`` and every other YAML input (gantry config, fault file, rig file).

Issue 20: ``--static-only`` accepted a duplicate key the full validation refused; a non-UTF-8 file stopped
a multi-file run without naming the file and no JUnit was written; ``validate dbt-standard`` said
"FAIL read: No such file ... UNSAFE". Each file gets its own verdict naming it; static and full read alike.
"""

from __future__ import annotations

import tracemalloc
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from hil.junit import JUNIT_XSD
from hil.rig import load_rig
from hil.validate_exam import validate_file
from protocols.exams.standard import standard_exam_yaml
from simulator.gantry.config import load_config
from simulator.gantry.faults import load_faults

MIB = 1 << 20
GOOD = standard_exam_yaml("ffdm-cc")
DUPLICATE = GOOD.replace("view: CC", "view: CC\nview: MLO")
BOMB = 'a0: &a0 "lol"\n' + "".join(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]\n" for i in range(1, 10))


@pytest.mark.parametrize("dry", [False, True], ids=["static-only", "full"])
def test_duplicate_key_refused_in_both_modes(tmp_path: Path, dry: bool) -> None:
    path = tmp_path / "dup.yaml"
    path.write_text(DUPLICATE)
    report = validate_file(path, dry=dry)
    assert not report.ok and not report.runs  # refused before any dry run
    assert report.input_error == f"{path}: invalid YAML: duplicate key 'view' (line 6, column 1)"
    assert report.text().endswith(f"ERROR: {report.input_error}") and "UNSAFE" not in report.text()


def test_library_name_is_validated_like_a_file() -> None:
    report = validate_file("ffdm-cc", dry=False)
    assert report.ok and report.exam_name == "ffdm-cc", report.text()
    assert report.text().endswith("SAFE")


@pytest.mark.parametrize("arg, what", [("dbt-standrad", "not found: no exam file and no shipped exam of that name"),
                                       ("exams/missing.yaml", "exam file not found")])
def test_missing_exam_is_not_found_with_the_library_location(arg: str, what: str) -> None:
    report = validate_file(arg, dry=False)
    assert report.input_error is not None and report.input_error.startswith(f"{arg}: {what}; shipped exams are in ")
    assert "protocols/exams/library" in report.input_error and "dbt-standard" in report.input_error
    assert "UNSAFE" not in report.text()


def test_every_file_of_a_multi_file_run_gets_a_verdict_and_the_junit_is_written(tmp_path: Path, capsys) -> None:
    from crescent.cli import main as crescent_main

    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(GOOD.replace("Full-field", "Full-fi\xe9ld").encode("latin-1"))
    big = tmp_path / "big.yaml"
    with open(big, "w") as f:
        f.write(GOOD + "#" + "x" * (50 * MIB) + "\n")
    good = tmp_path / "good.yaml"
    good.write_text(GOOD)
    files = [latin1, big, good, "ffdm-mlo"]
    junit = tmp_path / "validate.xml"
    rc = crescent_main(["validate", "--static-only", *map(str, files), "--junit", str(junit)])
    out = capsys.readouterr().out
    assert rc == 1
    assert f"ERROR: {latin1}: not UTF-8 text: byte 0xe9" in out
    assert f"ERROR: {big}: file too large: {big.stat().st_size} bytes, limit {MIB} bytes" in out
    assert out.count("\nSAFE") == 2 and "Traceback" not in out
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(junit))
    cases = ET.parse(junit).getroot().iter("testcase")
    assert {c.get("classname") for c in cases} == set(map(str, files))


# ------------------------------------------------------------------------------------ every YAML input
LOADERS = {
    "gantry config": lambda p: load_config(p),
    "fault file": lambda p: load_faults(p),
    "rig file": lambda p: load_rig(p),
}
HOSTILE = {
    "alias bomb": (BOMB.encode(), "YAML anchors and aliases are not accepted (anchor '&a0' at line 1, column 5)"),
    "duplicate key": (b"name: a\nname: b\n", "duplicate key 'name' (line 2, column 1)"),
    "binary": (b"\x7fELF\x02\x01\x01\x00" + bytes(64), "binary data, not YAML text (NUL byte at offset 7)"),
    "latin-1": (b"name: caf\xe9\n", "not UTF-8 text: byte 0xe9 at offset 9 (line 1)"),
    "oversized": (b"# " + b"x" * (2 * MIB) + b"\n", f"file too large: {2 * MIB + 3} bytes, limit {MIB} bytes"),
}


@pytest.mark.parametrize("hostile", list(HOSTILE))
@pytest.mark.parametrize("loader", list(LOADERS))
def test_every_yaml_input_refuses_hostile_files(tmp_path: Path, loader: str, hostile: str) -> None:
    data, reason = HOSTILE[hostile]
    path = tmp_path / "input.yaml"
    path.write_bytes(data)
    tracemalloc.start()
    try:
        with pytest.raises(ValueError) as err:
            LOADERS[loader](path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert str(err.value) == f"{path}: {reason}" or str(err.value) == f"{path}: invalid YAML: {reason}"
    assert peak < 200 * MIB


def test_gantry_config_errors_name_field_and_truncated_value(tmp_path: Path) -> None:
    path = tmp_path / "gantry.yaml"
    path.write_text("limits:\n  kvp_max_kv: " + "9" * 500 + "x\n")
    with pytest.raises(ValueError) as err:
        load_config(path)
    msg = str(err.value)
    assert msg.startswith(f"{path}: limits.kvp_max_kv = '99999") and "..." in msg
    assert len(msg) < len(str(path)) + 250 and "pydantic" not in msg and "For further information" not in msg
