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


def _imported_modules(args: list[str]) -> set[str]:
    """Every module a ``crescent`` command line imports, read from ``python -X importtime``."""
    res = subprocess.run([sys.executable, "-X", "importtime", "-m", "crescent", *args], capture_output=True,
                         text=True, timeout=120, cwd=ROOT)
    assert res.returncode == 0, res.stderr[-2000:]
    return {line.rsplit("|", 1)[-1].strip() for line in res.stderr.splitlines() if line.startswith("import time:")}


@pytest.mark.parametrize("args", [["--help"], ["acquire", "--help"], ["exam", "--help"], ["exam", "run", "--help"],
                                  ["validate", "--help"], ["gantry", "--help"], ["conformance", "--help"],
                                  ["replay", "--help"], ["demo", "--help"], ["trial", "--help"],
                                  ["trial", "run", "--help"]])
def test_help_loads_no_heavy_or_simulator_module(args: list[str]) -> None:
    modules = _imported_modules(args)
    assert "crescent.cli" in modules  # the measurement sees our own imports
    heavy = sorted(m for m in modules if m.split(".")[0] in ("numba", "scipy", "matplotlib", "simulator", "llvmlite"))
    assert heavy == [], heavy
