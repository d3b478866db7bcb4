"""The pytest plugin: one test file runs against the in-process simulator and against a gantry on a pty."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: The shipped example of a hardware-facing test file (README: ``pytest hil/examples --gantry sim``).
EXAMPLE = Path(__file__).resolve().parents[2] / "hil" / "examples" / "test_gantry.py"
GANTRY_TESTS = EXAMPLE.read_text(encoding="utf-8")


def run_pytest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_user_gantry.py").write_text(GANTRY_TESTS)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path / "test_user_gantry.py"), *args],
        capture_output=True, text=True, timeout=300, cwd=tmp_path,
    )


def outcome(res: subprocess.CompletedProcess[str]) -> str:
    return res.stdout.strip().splitlines()[-1] if res.stdout.strip() else res.stderr


def test_same_file_against_the_simulator(tmp_path: Path) -> None:
    res = run_pytest(tmp_path, "--gantry", "sim")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 passed, 1 skipped" in outcome(res)
    assert "rig-only test" in res.stdout


def test_same_file_against_a_gantry_on_a_pty(tmp_path: Path, gantry_pty: str) -> None:
    """The example file over a pty, its session asking for the 2000 ms watchdog of a rig file: the test's pytest
    runs beside the other tests of a parallel run, and a host stalled 500 ms on a loaded 2-core machine is a
    SAFE_HOLD mid-sweep. The product's 500 ms session over a pty is the README's recipe
    (``pytest hil/examples --gantry "$PORT" -q``, tests/test_readme.py)."""
    rig = _rig_file(tmp_path, watchdog_timeout_ms=2000)
    res = run_pytest(tmp_path, "--gantry", gantry_pty, "--rig", rig)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 passed, 1 skipped" in outcome(res)  # the exam too, over the pty; only the rig test skips


def _rig_file(tmp_path: Path, **timeouts: float) -> str:
    import yaml

    data = yaml.safe_load((EXAMPLE.parents[1] / "rigs" / "sim-pty.yaml").read_text(encoding="utf-8"))
    data["timeouts"].update(timeouts)
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_the_rig_files_heartbeat_and_watchdog_are_what_the_session_asks_for(tmp_path: Path, gantry_pty: str) -> None:
    """``--rig FILE``: the gantry fixture's HELLO asks for the rig's heartbeat period and watchdog timeout, and the
    device answers with them (HELLO_REPLY); without a rig file, the product's 100 ms and 500 ms."""
    probe = (
        "def test_probe(gantry):\n"
        "    o = gantry.options\n"
        "    print('ASKED', o.heartbeat_period_ms, o.watchdog_timeout_ms, 'GRANTED', gantry.session.watchdog_timeout_ms)\n"
    )
    rig = _rig_file(tmp_path, heartbeat_period_ms=50, watchdog_timeout_ms=1500)
    res = _run_file(tmp_path, "test_probe.py", probe, "-s", "--gantry", gantry_pty, "--rig", rig)
    assert res.returncode == 0 and "ASKED 50 1500 GRANTED 1500" in res.stdout, res.stdout + res.stderr
    res = _run_file(tmp_path, "test_probe.py", probe, "-s", "--gantry", gantry_pty)
    assert res.returncode == 0 and "ASKED 100 500 GRANTED 500" in res.stdout, res.stdout + res.stderr


def _run_file(tmp_path: Path, name: str, text: str, *args: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / name).write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-rs", str(tmp_path / name), *args],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )


def test_plugin_is_inert_without_the_option(tmp_path: Path) -> None:
    res = _run_file(tmp_path, "test_plain.py", "def test_plain():\n    assert True\n")
    assert res.returncode == 0 and "1 passed" in res.stdout
    assert "crescent gantry under test" not in res.stdout
    res = _run_file(tmp_path, "test_plain.py", "def test_plain():\n    assert True\n", "--gantry", "sim")
    assert "crescent gantry under test: sim" in res.stdout  # the header shows when the option is given
    # importing the plugin pulls in nothing heavy
    out = subprocess.run(
        [sys.executable, "-c", "import sys, hil.pytest_plugin; "
         "print(sorted(m for m in ('simpy', 'numpy', 'firmware_host', 'simulator') if m in sys.modules))"],
        capture_output=True, text=True, timeout=60,
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_rig_marker_runs_only_with_a_real_rig_file(tmp_path: Path) -> None:
    rig = tmp_path / "rig.yaml"
    rig.write_text("name: bench\nport: /dev/ttyUSB0\nreal_hardware: true\n")
    body = "import pytest\n\n@pytest.mark.rig\ndef test_rig():\n    assert True\n"
    res = _run_file(tmp_path, "test_rig.py", body, "--gantry", "/dev/ttyUSB0", "--rig", str(rig))
    assert "1 passed" in res.stdout, res.stdout
    res = _run_file(tmp_path, "test_rig.py", body, "--gantry", "sim", "--rig", str(rig))
    assert "1 skipped" in res.stdout, res.stdout


def test_gantry_without_a_test_path_at_the_root_is_refused_not_the_whole_suite() -> None:
    """`pytest --gantry sim` at the project root used to collect the whole suite (testpaths)."""
    root = EXAMPLE.parents[2]
    res = subprocess.run([sys.executable, "-m", "pytest", "--gantry", "sim", "--collect-only", "-q", "-p",
                          "no:cacheprovider"], capture_output=True, text=True, timeout=120, cwd=root)
    assert res.returncode == 4, res.stdout[-500:] + res.stderr[-500:]  # pytest's usage-error status
    assert "pytest hil/examples --gantry sim" in res.stderr
    assert "collected" not in res.stdout


def test_the_shipped_example_runs_as_the_readme_says() -> None:
    """`pytest hil/examples --gantry sim` from the project root: the example passes, the rig test skips."""
    root = EXAMPLE.parents[2]
    res = subprocess.run([sys.executable, "-m", "pytest", "hil/examples", "--gantry", "sim", "-q", "-p",
                          "no:cacheprovider", "-rs"], capture_output=True, text=True, timeout=300, cwd=root)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    assert "3 passed, 1 skipped" in outcome(res)
