"""One set of exam options for every entry point (issue 20).

The Python API (``connect``/``connect_virtual`` + ``run_exam``), the CLI and the pytest plugin give
a simulated device the same image timeout, and the image timeout is per image: each image's
arrival restarts it. An exam the timeout cuts short says so and names the option that would help.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import simpy

import firmware_host.api as api
from firmware_host import ExamOptions, connect_virtual
from firmware_host.exam_plan import SIMULATED_IMAGE_TIMEOUT_S
from simulator.gantry import start_virtual_gantry
from simulator.gantry.firmware import Gantry as Firmware
from tests.helpers.host_sim import fast_config


def _spy_options(monkeypatch: pytest.MonkeyPatch) -> list[ExamOptions]:
    seen: list[ExamOptions] = []
    real = api.exam_plan

    def spy(ctx: Any) -> Any:
        seen.append(ctx.options)
        return real(ctx)

    monkeypatch.setattr(api, "exam_plan", spy)
    return seen


def test_run_exam_without_options_gives_a_simulated_device_the_simulated_image_timeout(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's ``gantry.run_exam("dbt-standard", ...)``: no options given (was 3 s, the rig default)."""
    seen = _spy_options(monkeypatch)
    env = simpy.Environment()
    _, endpoint = start_virtual_gantry(env, fast_config(), seed=1, data_dir=tmp_path / "dev", event_log=None)
    with connect_virtual(env, endpoint, seed=1) as gantry:
        result = gantry.run_exam("ffdm-cc", tmp_path / "exam")
    assert result.record.complete
    assert [o.image_timeout_s for o in seen] == [SIMULATED_IMAGE_TIMEOUT_S]
    # the same rule as the CLI (crescent acquire / exam run call gantry.exam_options(None))
    assert seen[0] == gantry.exam_options(None)


def test_the_pytest_plugin_runner_uses_the_same_options(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hil.pytest_plugin import sim_config

    seen = _spy_options(monkeypatch)
    env = simpy.Environment()
    _, endpoint = start_virtual_gantry(env, sim_config(None), seed=0, data_dir=tmp_path / "dev", event_log=None)
    with connect_virtual(env, endpoint, seed=0) as gantry:  # what the plugin's ``gantry`` fixture does
        gantry.run_exam("ffdm-cc", tmp_path / "exam")  # what its ``exam_runner`` does
        assert seen == [gantry.exam_options(None)]
    assert seen[0].image_timeout_s == SIMULATED_IMAGE_TIMEOUT_S


def _slow_renderer(monkeypatch: pytest.MonkeyPatch, step_s: float) -> None:
    """Frame k (0 = the first readout of the exam) is read out ``k * step_s`` virtual seconds late,
    as a renderer that falls behind the sweep does (a real-time simulated gantry on a busy machine)."""
    real = Firmware._readout
    count = [0]

    def late(self: Any, record: Any, thickness_mm: float) -> Any:
        k = count[0]
        count[0] += 1
        yield self.env.timeout(k * step_s)
        return (yield from real(self, record, thickness_mm))

    monkeypatch.setattr(Firmware, "_readout", late)


def test_the_image_timeout_is_per_image_restarted_by_each_arrival(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Images 2 s apart after the sweep, a 3 s image timeout: every image waited for, each within 3 s of
    the one before (one budget counted from the last exposure stored only the first few)."""
    _slow_renderer(monkeypatch, 2.0)
    env = simpy.Environment()
    _, endpoint = start_virtual_gantry(env, fast_config(), seed=1, data_dir=tmp_path / "dev", event_log=None)
    with connect_virtual(env, endpoint, seed=1) as gantry:
        result = gantry.run_exam("dbt-standard", tmp_path / "exam", options=gantry.exam_options(3.0))
    rec = result.record
    assert rec.status == "complete", rec.reason
    assert len(rec.image_paths) == rec.planned_count == 15


def test_an_exam_cut_short_by_the_image_timeout_names_the_option(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """Images 5 s apart, a 3 s image timeout: incomplete, and the reason names --image-timeout."""
    _slow_renderer(monkeypatch, 0.0)
    env = simpy.Environment()
    _, endpoint = start_virtual_gantry(env, fast_config(), seed=1, data_dir=tmp_path / "dev", event_log=None)
    real = Firmware._readout
    count = [0]

    def later(self: Any, record: Any, thickness_mm: float) -> Any:
        count[0] += 1
        if count[0] > 1 + 4:  # scout and four projections on time, then a stall of 20 s
            yield self.env.timeout(20.0)
        return (yield from real(self, record, thickness_mm))

    monkeypatch.setattr(Firmware, "_readout", later)
    with connect_virtual(env, endpoint, seed=1) as gantry:
        result = gantry.run_exam("dbt-standard", tmp_path / "exam", options=gantry.exam_options(3.0))
    rec = result.record
    assert rec.status == "incomplete"
    assert "--image-timeout" in rec.reason and "image_timeout_s" in rec.reason, rec.reason


def test_every_device_gets_the_500_ms_watchdog_unless_one_is_chosen(tmp_path: Path) -> None:
    """SPEC's 500 ms watchdog for a simulated gantry as for a rig (an unsupervised device stops X-rays within
    half a second); the host's own patience is device_timeout_ms (2 s), so a briefly stalled simulated device
    is not abandoned. A chosen watchdog is what the device answers."""
    for options, want in ((None, 500), (ExamOptions(watchdog_timeout_ms=800), 800)):
        env = simpy.Environment()
        _, endpoint = start_virtual_gantry(env, fast_config(), seed=1, data_dir=tmp_path / f"d{want}", event_log=None)
        with connect_virtual(env, endpoint, seed=1, options=options) as gantry:
            assert gantry.options.watchdog_timeout_ms == want
            assert gantry.session.watchdog_timeout_ms == want  # what the device answered
            assert gantry.controller.link.config.peer_timeout_s == 2.0
            assert gantry.exam_options().watchdog_timeout_ms == want
