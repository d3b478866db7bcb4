"""Every option error names the option as typed and its range; no traceback or raw pydantic dump reaches
a user; one watchdog range everywhere; the exam is checked before a port opens; ``--help`` is plain
text with a description for every command (issue 20)."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from crescent.cli import COMMANDS, build_parser, main

ROOT = Path(__file__).resolve().parents[2]
#: What a raw pydantic ValidationError dump looks like.
PYDANTIC_DUMP = re.compile(r"validation error for|errors\.pydantic\.dev|input_value=|type=\w+_\w+")


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    if argv[0] == "gantry":  # a gantry that accepted its options would serve forever: a bounded child process
        res = subprocess.run([sys.executable, "-m", "crescent", *argv], capture_output=True, text=True, timeout=120,
                             cwd=ROOT)
        return res.returncode, res.stdout + res.stderr
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize("argv, option, allowed", [
    (["gantry", "--tcp", "99999"], "--tcp", "0..65535"),
    (["gantry", "--data-port", "-3"], "--data-port", "0..65535"),
    (["acquire", "--watchdog-ms", "20000"], "--watchdog-ms", "100..10000 ms"),
    (["acquire", "--watchdog-ms", "50"], "--watchdog-ms", "100..10000 ms"),
    (["exam", "run", "dbt-standard", "--port", "/dev/null", "--watchdog-ms", "-1"], "--watchdog-ms", "100..10000 ms"),
    (["exam", "run", "dbt-standard", "--port", "/dev/null", "--watchdog-ms", "50"], "--watchdog-ms", "100..10000 ms"),
    (["acquire", "--image-timeout", "0"], "--image-timeout", "(0, 600] s"),
    (["exam", "run", "dbt-standard", "--port", "/dev/null", "--image-timeout", "nan"], "--image-timeout", "(0, 600] s"),
    (["acquire", "--binning", "9"], "--binning", "1..8"),
])
def test_option_errors_name_the_option_as_typed_and_the_range(argv: list[str], option: str, allowed: str,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(argv, capsys)
    assert code == 2
    assert f"argument {option}: " in text and allowed in text, text
    assert not re.search(r"--[a-z]+_[a-z_]+", text), text  # never an internal field name (--watchdog_ms)
    assert "Traceback" not in text and not PYDANTIC_DUMP.search(text), text


def test_one_watchdog_range_for_every_entry_point() -> None:
    from pydantic import ValidationError

    from crescent.acquire.options import AcquireOptions
    from firmware_host.exam_plan import ExamOptions
    from protocols.option_bounds import WATCHDOG_MS_MAX, WATCHDOG_MS_MIN

    for bad in (WATCHDOG_MS_MIN - 1, WATCHDOG_MS_MAX + 1):
        with pytest.raises(ValidationError):
            ExamOptions(watchdog_timeout_ms=bad)
        with pytest.raises(ValidationError):
            AcquireOptions(watchdog_ms=bad)
    for good in (WATCHDOG_MS_MIN, WATCHDOG_MS_MAX):
        assert ExamOptions(watchdog_timeout_ms=good).watchdog_timeout_ms == AcquireOptions(watchdog_ms=good).watchdog_ms


def test_a_bad_faults_file_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "faults.yaml"
    bad.write_text("faults:\n  - {at_s: abc, fault: NOPE}\n")
    code, text = _run(["gantry", "--faults", str(bad)], capsys)
    assert code == 2 and str(bad) in text and "faults.0" in text
    assert "Traceback" not in text and not PYDANTIC_DUMP.search(text), text
    bad.write_text("a: [\n")
    code, text = _run(["gantry", "--faults", str(bad)], capsys)
    assert code == 2 and "invalid YAML" in text and "line 2" in text and "Traceback" not in text


@pytest.mark.parametrize("argv", [
    ["exam", "run", "no-such-exam", "--port", "/dev/crescent-no-such-port"],
    ["acquire", "--exam", "no-such-exam", "--port", "/dev/crescent-no-such-port"],
])
def test_a_missing_exam_is_refused_before_the_port_opens(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    code, text = _run(argv, capsys)
    assert code == 2
    assert "no-such-exam" in text and "no shipped exam of that name" in text and "dbt-standard" in text, text
    assert "crescent-no-such-port" not in text  # the port was never tried


def test_gantry_tcp_out_of_range_prints_no_traceback_as_a_process() -> None:
    res = subprocess.run([sys.executable, "-m", "crescent", "gantry", "--tcp", "99999"], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 2 and "Traceback" not in res.stderr and "--tcp" in res.stderr


def _walk(parser: argparse.ArgumentParser, path: list[str]):  # type: ignore[no-untyped-def]
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _walk(sub, path + [name])


@pytest.mark.parametrize("command", list(COMMANDS))
def test_help_is_plain_text_with_a_description(command: str) -> None:
    seen = 0
    for path, parser in _walk(build_parser(command), []):
        if not path or path[0] != command:
            continue
        seen += 1
        text = parser.format_help()
        assert parser.description and parser.description.strip(), f"crescent {' '.join(path)} has no description"
        assert not re.search(r"``|:mod:|:class:|:func:|:data:|:meth:", text), f"markup in crescent {' '.join(path)}"
    assert seen


def test_exam_verify_accepts_the_acquire_out_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``crescent exam verify OUT`` on an ``acquire --out OUT`` folder verifies OUT/exam."""
    from host_sim import run_virtual

    run_virtual("ffdm-cc", tmp_path)  # writes tmp_path/exam, as acquire --out tmp_path does
    code, text = _run(["exam", "verify", str(tmp_path)], capsys)
    assert code == 0, text
    assert f"exam folder: {tmp_path / 'exam'}" in text and "audit log:" in text
