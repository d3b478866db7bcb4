"""The pytest plugin: one test file runs against the in-process simulator and against a gantry on a pty."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

#: A user's test file: it knows nothing about where the gantry is.
GANTRY_TESTS = '''
import pytest
from firmware_host.plans import Command, WaitFor
from protocols.wire.catalogue import DeviceState
from protocols.wire.messages import Home, MoveArc


def test_connected_gantry_is_idle(gantry, controller, gantry_url):
    st = gantry.status()
    assert st.state == DeviceState.IDLE
    assert controller.mirror is gantry.mirror
    assert gantry.session.limits.arc_max_deg == 30.0


def test_home_and_move(gantry):
    def motion(message):
        mark = gantry.mirror.mark
        ack = yield Command(message)
        assert ack.NAME == "ACK"
        done = yield WaitFor(lambda m: m.events_since(mark, "MOTION_DONE"), 30.0, "MOTION_DONE")
        return done[-1].message

    assert gantry.run(motion(Home())).ok == 1
    assert gantry.status().homed
    end = gantry.run(motion(MoveArc(target_mdeg=5000, speed_mdeg_s=10000)))
    assert end.ok == 1 and abs(end.arc_mdeg - 5000) < 50
    assert abs(gantry.status().arc_mdeg - 5000) < 50


def test_exam(exam_runner, gantry_url):
    result = exam_runner("dbt-step")
    assert result.record.status == "complete"
    assert len(result.image_paths) == 9


@pytest.mark.rig
def test_only_on_a_real_rig(gantry):
    raise AssertionError("rig-only tests must be skipped without a real rig")
'''


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
    res = run_pytest(tmp_path, "--gantry", gantry_pty)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "3 passed, 1 skipped" in outcome(res)  # the exam too, over the pty; only the rig test skips


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
