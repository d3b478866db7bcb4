"""The README's recipes work as written: its exam example is valid and every command it names exists."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from crescent.cli import build_parser
from protocols.exams import parse_exam_yaml, validate_exam

README = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")


def test_readme_exam_example_is_valid_and_safe() -> None:
    block = re.search(r"```sh\ncat > my-sweep.yaml <<'EOF'\n(kind: dbt.*?)EOF\n```", README, re.S)
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


# ------------------------------------------------------------------------------------------------
# The README is executable: every ``sh`` and ``python`` block of README.md and of the package READMEs
# that give recipes is run as written. Rules (stated in the READMEs too):
#   * a block right after ``<!-- not run in CI: reason -->`` is not run (the reason is required);
#   * a block right after ``<!-- CI expects output: TEXT -->`` must print TEXT;
#   * ``sh`` blocks run under ``bash -eu -o pipefail`` (any failing command fails the block), ``python``
#     blocks with this interpreter; commands run as if the virtual environment were active
#     (``crescent``, ``pytest`` and ``python`` on PATH), in a scratch folder that links the project's
#     top-level entries (outputs land there, not in the tree); the blocks of one section -- a heading or a
#     bold lead "**Title.**" -- run in order, on one worker of a parallel run (``make test``); sections run
#     longest first (tests/conftest.py), maybe on different workers, each with a scratch folder of its own;
#   * ``PORT`` (the recipes' ``$PORT``) is a simulated gantry on a pty (``crescent gantry --pty``
#     with the fast test configuration, tests/helpers/host_pty.py).

import os
import subprocess
import sys
from dataclasses import dataclass

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE_FILES = ("README.md", "hil/README.md")
_FENCE = re.compile(r"^```(\w*)[ \t]*\n(.*?)^```[ \t]*$", re.S | re.M)
_SKIP = re.compile(r"<!--\s*not run in CI:\s*(.*?)\s*-->")
_EXPECT = re.compile(r"<!--\s*CI expects output:\s*(.*?)\s*-->")
#: Time allowed to one block (a generous bound against hangs, not a performance check).
BLOCK_TIMEOUT_S = 900


@dataclass(frozen=True)
class Block:
    source: str
    line: int
    lang: str
    code: str
    skip: str | None
    expect: str | None
    section: str = ""  # the heading or bold lead ("**Title.**") the block is under

    @property
    def id(self) -> str:
        return f"{self.source}:{self.line}"


#: A section title: a markdown heading, or a paragraph that opens with a bold lead ("**Run a trial.**").
_TITLE = re.compile(r"^(?:#{1,6} +(.+)|\*\*(.+?)\*\*)")


def extract_blocks(text: str, source: str) -> list[Block]:
    """Every fenced block of ``text`` with the marker comment on the last non-blank line before it, and the
    title of the section it is in (titles inside fenced blocks do not count)."""
    blocks = []
    prose = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)  # same line numbers, no fenced lines
    titles = [(n, t.group(1) or t.group(2)) for n, t in enumerate(map(_TITLE.match, prose.splitlines()), 1) if t]
    for m in _FENCE.finditer(text):
        before = [ln for ln in text[: m.start()].splitlines() if ln.strip()]
        marker = before[-1] if before else ""
        skip = _SKIP.search(marker)
        expect = _EXPECT.search(marker)
        line = text[: m.start()].count("\n") + 1
        section = [title for n, title in titles if n < line]
        blocks.append(Block(source, line, m.group(1), m.group(2), skip.group(1) if skip else None,
                            expect.group(1) if expect else None, section[-1] if section else ""))
    return blocks


def runnable(blocks: list[Block]) -> list[Block]:
    return [b for b in blocks if b.lang in ("sh", "python") and b.skip is None]


def _all_blocks() -> list[Block]:
    return [b for f in RECIPE_FILES for b in extract_blocks((ROOT / f).read_text(encoding="utf-8"), f)]


def run_block(block: Block, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run one block exactly as written (see the rules above)."""
    cmd = (["bash", "-eu", "-o", "pipefail", "-c", block.code] if block.lang == "sh"
           else [sys.executable, "-c", block.code])
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)


class RecipeEnv:
    """The recipes' environment; ``PORT`` (a ``crescent gantry --pty``) is started for the first block that
    names it and stopped with the module (an idle real-time gantry still costs 5-10 % of a core)."""

    def __init__(self, base: Path, env: dict[str, str]) -> None:
        self.base, self._env, self.gantry = base, env, None

    def env_for(self, block: Block) -> dict[str, str]:
        from host_pty import PtyGantry

        if "PORT" in block.code and self.gantry is None:
            self.gantry = PtyGantry(self.base)
            self._env["PORT"] = self.gantry.path
        return self._env

    def stop(self) -> None:
        if self.gantry is not None:
            self.gantry.stop()


@pytest.fixture(scope="module")
def recipe_env(tmp_path_factory: pytest.TempPathFactory) -> Any:
    base = tmp_path_factory.mktemp("readme")
    work = base / "work"
    work.mkdir()
    for entry in ROOT.iterdir():  # the project as a user's checkout sees it; outputs stay in ``work``
        if entry.name not in (".git", ".venv", "out") and not entry.name.startswith(".pytest"):
            (work / entry.name).symlink_to(entry)
    bin_dir = base / "bin"
    bin_dir.mkdir()
    for name, target in (("crescent", "-m crescent"), ("pytest", "-m pytest"), ("python", "")):
        shim = bin_dir / name
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" {target} "$@"\n')
        shim.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT)}
    env.pop("PYTEST_ADDOPTS", None)
    recipes = RecipeEnv(base, env)
    try:
        yield work, recipes
    finally:
        recipes.stop()


def test_every_block_is_run_or_says_why_not() -> None:
    blocks = _all_blocks()
    shell_like = [b for b in blocks if b.lang in ("sh", "bash", "shell", "console", "python", "py")]
    assert all(b.lang in ("sh", "python") for b in shell_like), "use ```sh or ```python for recipes"
    for b in shell_like:
        assert b.skip is None or b.skip.strip(), f"{b.id}: 'not run in CI' needs a reason"
    run = runnable(blocks)
    assert {b.source for b in run} == set(RECIPE_FILES)
    assert any("crescent acquire --quick" in b.code for b in run)
    assert any(b.lang == "python" and "run_exam" in b.code for b in run)
    assert any("pytest hil/examples --gantry sim" in b.code for b in run)


#: Recipes given in README.md prose that must also be in a block the suite runs (issue 20).
RUN_RECIPES = (
    "crescent acquire --quick", "crescent acquire --port", "crescent exam run", "crescent exam verify",
    "crescent exam list", "crescent exam show", "crescent exam schema", "crescent validate my-sweep.yaml",
    "crescent campaign --exams", "crescent conformance --port", "crescent qc run --suite constancy",
    "crescent qc report", "python -m crescent.qc.mgd_table", "crescent trial examples",
    "crescent trial check", "crescent trial schema", "crescent trial run ffdm-vs-dbt", "crescent trial run wire-check",
    "pytest hil/examples --gantry sim",
)


def commands_outside_blocks(text: str, source: str) -> set[str]:
    """``crescent <cmd>`` / ``python -m <module>`` named in ``text`` but in no sh or python block."""
    def named(t: str) -> set[str]:
        return set(re.findall(r"crescent (?:[a-z][\w-]*)(?: (?:run|report|list|show|schema|check|examples|verify|recover))?"
                              r"|python -m [\w.]+", t))
    in_blocks: set[str] = set()
    for b in extract_blocks(text, source):
        if b.lang in ("sh", "python"):
            in_blocks |= named(b.code)
    return named(text) - in_blocks


def test_every_command_the_readme_names_is_in_a_block() -> None:
    """A command a user would type is in a sh block: run as written, or marked with the reason it is not."""
    assert commands_outside_blocks(README, "README.md") == set()
    assert recipes_not_run(README) == []


def recipes_not_run(text: str) -> list[str]:
    run = "\n".join(b.code for b in runnable(extract_blocks(text, "README.md")))
    return [r for r in RUN_RECIPES if r not in run]


def test_a_command_only_in_prose_is_caught() -> None:
    assert commands_outside_blocks(README + "\nTry `crescent timing x.pcap`.\n", "README.md") == {"crescent timing"}
    block = "```sh\ncrescent campaign --exams 10\n```"
    assert block in README
    assert recipes_not_run(README.replace(block, "`crescent campaign --exams 10`")) == ["crescent campaign --exams"]
    marked = README.replace(block, "<!-- not run in CI: slow -->\n" + block)
    assert recipes_not_run(marked) == ["crescent campaign --exams"]


def test_a_block_that_uses_a_file_of_an_earlier_one_is_in_its_section() -> None:
    """In a parallel run each section's blocks run on one worker, in order: a block that reads what an earlier
    block wrote must be in the same section. Titles in fenced blocks (shell comments) are not sections."""
    blocks = runnable(_all_blocks())
    writes = {m.group(1): b for b in blocks for m in re.finditer(r"(?:cat > |--out )(\S+)", b.code)}
    checked = 0
    for b in blocks:
        for name, writer in writes.items():
            if writer is not b and writer.source == b.source and writer.line < b.line and re.search(
                    rf"(?<![\w-]){re.escape(name)}(?![\w-])", b.code):
                assert writer.section == b.section, f"{b.id} uses {name} of {writer.id}: another section"
                checked += 1
    assert checked >= 1  # my-sweep.yaml, written in one block and validated in the next
    text = "**A.** x\n```sh\n# **B.** a comment\necho\n```\n"
    assert [blk.section for blk in extract_blocks(text, "x.md")] == ["A."]


def section_of_block(block_id: str) -> str:
    """The parallel-run group of the block ``block_id`` (``README.md:289``): its file and section. The blocks of
    one section run on one worker, in order (a later block may use what an earlier one wrote, e.g.
    ``my-sweep.yaml``); tests/conftest.py schedules by it."""
    block = next((b for b in _all_blocks() if b.id == block_id), None)
    return f"{block.source}: {block.section}" if block is not None else block_id


@pytest.mark.slow
@pytest.mark.parametrize("block", runnable(_all_blocks()), ids=lambda b: b.id)
def test_readme_block_runs_as_written(block: Block, recipe_env: Any) -> None:
    work, recipes = recipe_env
    res = run_block(block, work, recipes.env_for(block))
    assert res.returncode == 0, f"{block.id} failed ({res.returncode}):\n{block.code}\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    assert "Traceback" not in res.stderr, res.stderr[-3000:]
    if block.expect:
        assert block.expect in res.stdout, res.stdout[-2000:]


@pytest.mark.parametrize("old, new", [
    ("crescent acquire --quick", "crescent acquire --quik"),  # a misspelt option
    ('--exam dbt-standard --out exam1', '--exam dbt-standrd --out exam1'),  # first line of a block: -e stops it
    ('gantry.run_exam("dbt-standard"', 'gantry.run_exm("dbt-standard"'),  # the Python snippet
])
def test_a_broken_command_in_the_readme_fails_its_block(old: str, new: str, recipe_env: Any) -> None:
    """The extractor and runner on a modified copy of README.md: the edited block fails."""
    work, recipes = recipe_env
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert old in text
    broken = [b for b in runnable(extract_blocks(text.replace(old, new), "README.md")) if new in b.code]
    assert len(broken) == 1
    res = run_block(broken[0], work, recipes.env_for(broken[0]))
    assert res.returncode != 0, res.stdout[-1000:]
