"""The README's recipes work as written: its exam example is valid and every command it names exists."""

from __future__ import annotations

import re
from pathlib import Path

from crescent.cli import build_parser
from protocols.exams import parse_exam_yaml, validate_exam

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_readme_exam_example_is_valid_and_safe() -> None:
    block = re.search(r"```yaml\n(kind: dbt.*?)```", README, re.S)
    assert block, "README has a DBT exam example"
    exam = parse_exam_yaml(block.group(1), source="README.md")
    assert exam.name == "my-sweep"
    assert validate_exam(exam) == []


def test_every_crescent_command_in_the_readme_exists() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    named = set(re.findall(r"crescent (\w[\w-]*)", README))
    assert {"acquire", "exam", "gantry", "validate", "conformance"} <= named
    assert named <= set(sub.choices), named - set(sub.choices)


def test_the_two_setup_commands_are_the_make_targets() -> None:
    assert "make run" in README and "make test" in README
    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    assert re.search(r"^run:", makefile, re.M) and re.search(r"^test:", makefile, re.M)
    ci = (Path(__file__).resolve().parents[1] / ".ci" / "run").read_text()
    assert "make test" in ci
