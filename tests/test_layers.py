"""The layers of DESIGN.md hold: imports point down only, and the contract that says so can fail.

Layers, bottom-up: protocols -> physics -> {simulator, reconstruction, firmware_host} -> hil -> crescent.
The contract lives in ``pyproject.toml`` (``[tool.importlinter]``) and is checked by import-linter's
``lint-imports``, which builds the import graph of the source (TYPE_CHECKING imports included).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crescent.cli import COMMANDS

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("protocols", "physics", "simulator", "reconstruction", "firmware_host", "hil", "crescent")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
                          cwd=tree, env=env, capture_output=True, text=True, timeout=300)


def _copy_tree(dst: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__", "*.npy", "data"))
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")
    return dst


def test_the_import_contract_holds() -> None:
    res = _lint(ROOT)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "broken" in res.stdout and " 0 broken" in res.stdout


@pytest.mark.parametrize("package, module, forbidden, contract", [
    ("firmware_host", "aec.py", "import simulator.gantry", "never import the simulated gantry"),
    ("physics", "spectra.py", "import firmware_host.api", "Layers"),
    ("protocols", "records.py", "import serial", "no pyserial"),
    ("hil", "capture.py", "import crescent.cli", "Layers"),
])
def test_an_injected_upward_import_breaks_the_contract(tmp_path: Path, package: str, module: str, forbidden: str,
                                                       contract: str) -> None:
    tree = _copy_tree(tmp_path)
    path = tree / package / module
    path.write_text(path.read_text(encoding="utf-8") + f"\n{forbidden}  # injected by the test\n", encoding="utf-8")
    res = _lint(tree)
    assert res.returncode != 0, res.stdout
    broken = [line for line in res.stdout.splitlines() if line.rstrip().endswith("BROKEN")]
    assert any(contract in line for line in broken) or contract in res.stdout.split("Broken contracts")[-1], res.stdout


def test_no_two_modules_or_folders_of_a_package_import_each_other() -> None:
    """No import circle: not between modules, nor between the sub-packages/modules of one package."""
    import grimp

    graph = grimp.build_graph(*PACKAGES)
    circles = []
    for top in PACKAGES:
        parts = sorted({".".join(m.split(".")[:2]) for m in graph.modules if m.startswith(top + ".")})
        for i, a in enumerate(parts):
            for b in parts[i + 1:]:
                if graph.chain_exists(a, b, as_packages=True) and graph.chain_exists(b, a, as_packages=True):
                    circles.append((a, b))
    assert circles == []


def _loaded_modules(args: list[str]) -> set[str]:
    """Every module a ``crescent`` command line has loaded when it exits (``sys.modules``, in a fresh process)."""
    probe = ("import sys\nfrom crescent.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
             "print('\\n'.join(sorted(sys.modules)), file=sys.stderr)")
    res = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    return set(res.stderr.split())


@pytest.mark.parametrize("args", [["--help"], *([c, "--help"] for c in COMMANDS), ["exam", "run", "--help"],
                                  ["exam", "show", "--help"], ["exam", "recover", "--help"], ["qc", "run", "--help"],
                                  ["qc", "report", "--help"], ["trial", "run", "--help"]])
def test_help_loads_no_heavy_or_simulator_module(args: list[str]) -> None:
    modules = _loaded_modules(args)
    assert "crescent.cli" in modules
    if args[0] in COMMANDS:  # the command's own parser was really built
        assert COMMANDS[args[0]][0] in modules
    heavy = sorted(m for m in modules if m.split(".")[0] in ("numba", "scipy", "matplotlib", "simulator", "llvmlite"))
    assert heavy == [], heavy


def test_the_help_check_can_fail(tmp_path: Path) -> None:
    """The check above sees a command module that loads numba at import (a copy of the app with one)."""
    shutil.copytree(ROOT / "crescent", tmp_path / "crescent", ignore=shutil.ignore_patterns("__pycache__"))
    cmd = tmp_path / "crescent" / "capture" / "command.py"
    cmd.write_text(cmd.read_text(encoding="utf-8") + "\nimport numba  # injected by the test\n", encoding="utf-8")
    probe = "import sys, crescent.cli as c\nassert c.__file__.startswith(sys.argv[1])\ntry:\n    c.main(['timing', '--help'])\n" \
            "except SystemExit:\n    pass\nprint('numba' in sys.modules)"
    res = subprocess.run([sys.executable, "-c", probe, str(tmp_path)], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(tmp_path)}, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-2000:]
    assert res.stdout.split()[-1] == "True"
    assert "numba" not in _loaded_modules(["timing", "--help"])
