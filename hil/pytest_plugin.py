"""pytest plugin ``crescent_gantry`` (registered through the ``pytest11`` entry point).

Options::

    pytest hil/examples --gantry sim            # in-process simulated gantry, SimPy virtual time (the default)
    pytest hil/examples --gantry /dev/pts/5     # any pyserial URL: a gantry in another process, or a rig
    pytest --gantry sim --gantry-config ge-like    # simulated gantry preset or YAML file
    pytest --gantry /dev/ttyUSB0 --rig rig.yaml    # a real rig (rig-only tests run if real_hardware: true)

Fixtures (function scope; each test gets a fresh session):

* ``gantry_url`` - ``"sim"`` or the URL under test;
* ``gantry`` - a connected :class:`firmware_host.api.Gantry` (HELLO done, DEVICE_INFO read; with ``--rig`` at
  the rig's baud rate, asking for its ``timeouts.heartbeat_period_ms`` and ``timeouts.watchdog_timeout_ms``);
* ``controller`` - its sans-IO :class:`firmware_host.controller.Controller`;
* ``exam_runner`` - ``run(exam, out_dir=None) -> ExamResult`` on that gantry (``exam``: a standard
  exam name, a YAML path or a model; images go under ``tmp_path`` by default).

Marker ``@pytest.mark.rig``: the test needs a real rig; skipped unless ``--rig FILE`` describes one
with ``real_hardware: true`` and ``--gantry URL`` is given.

This module is loaded by every pytest run of the project: it imports nothing heavy at import time
and does nothing unless ``--gantry`` is given or one of its fixtures is used. ``--gantry`` needs a test
path: at the project root, ``pytest --gantry sim`` alone would collect the whole suite (``testpaths``), so
it is refused with a usage error naming ``pytest hil/examples --gantry sim``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

SIM = "sim"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crescent-gantry", "Crescent gantry under test")
    group.addoption(
        "--gantry",
        action="store",
        default=None,
        metavar="sim|URL",
        help="gantry to test against: 'sim' (in-process, virtual time; default) or a pyserial URL such as /dev/pts/5",
    )
    group.addoption(
        "--gantry-config", action="store", default=None, metavar="NAME|FILE",
        help="simulated gantry config for --gantry sim (preset or YAML; default: 'default' with a small detector)",
    )
    group.addoption("--rig", action="store", default=None, metavar="FILE", help="rig description YAML (hil/rig.py)")


#: What to run instead of the whole suite when ``--gantry`` comes without a test path.
GANTRY_USAGE = ("--gantry runs hardware-facing test files; name them, e.g. `pytest hil/examples --gantry sim` "
                "(the shipped example) or `pytest path/to/your_tests --gantry URL`")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rig: needs a real gantry given with --gantry URL (and --rig FILE)")
    # ``pytest --gantry sim`` with no path would collect the project's whole suite (testpaths): refuse it
    if config.getoption("--gantry") and getattr(config, "args_source", None) == pytest.Config.ArgsSource.TESTPATHS:
        raise pytest.UsageError(GANTRY_USAGE)


def _real_rig(config: pytest.Config) -> bool:
    rig_file = config.getoption("--rig")
    target = config.getoption("--gantry")
    if not rig_file or not target or target == SIM:
        return False
    from hil.rig import load_rig

    return load_rig(rig_file).real_hardware


def pytest_collection_modifyitems(config: pytest.Config, items: list[Any]) -> None:
    if not any(item.get_closest_marker("rig") for item in items):
        return
    if _real_rig(config):
        return
    skip = pytest.mark.skip(reason="rig-only test: give --gantry URL --rig FILE with real_hardware: true")
    for item in items:
        if item.get_closest_marker("rig"):
            item.add_marker(skip)


def pytest_report_header(config: pytest.Config) -> str | None:
    target = config.getoption("--gantry")
    return f"crescent gantry under test: {target}" if target else None


@pytest.fixture
def gantry_url(request: pytest.FixtureRequest) -> str:
    """``"sim"`` or the pyserial URL given with ``--gantry``."""
    return str(request.config.getoption("--gantry") or SIM)


def sim_config(name: str | None) -> Any:
    """The simulated gantry's config for tests: a preset/YAML, or the default with a small noise-free detector.

    The host releases compression as each exam says (no automatic release after a plan).
    """
    from simulator.gantry.config import load_config, small_detector

    if name:
        return load_config(name)
    return load_config("default").with_overrides(
        detector={"noise": False},
        geometry={"detector": small_detector().model_dump()},
        paddle={"release_after_exam": False},
        phantom={"name": "pmma"},  # a uniform slab: built in milliseconds, so a real-time gantry never stalls
    )


def _ready_after_a_lost_session(g: Any) -> None:
    """A gantry on a port that the previous test's host left is in SAFE_HOLD (its watchdog saw that host
    go): each test starts from IDLE, so ask for RESET_FAULT. A device that refuses (a cause still present,
    e.g. the e-stop) stays as it is, for the test to see."""
    from firmware_host.errors import CommandRefused
    from protocols.wire.catalogue import DeviceState

    if g.status().state == int(DeviceState.SAFE_HOLD):
        try:
            g.reset_fault()
        except CommandRefused:
            pass


@pytest.fixture
def gantry(request: pytest.FixtureRequest, gantry_url: str, tmp_path: Path) -> Iterator[Any]:
    """A connected :class:`firmware_host.api.Gantry` (simulated in virtual time, or at ``--gantry URL``)."""
    from firmware_host.api import connect, connect_virtual

    if gantry_url == SIM:
        import simpy

        from simulator.gantry import start_virtual_gantry

        env = simpy.Environment()
        cfg = sim_config(request.config.getoption("--gantry-config"))
        _, endpoint = start_virtual_gantry(env, cfg, seed=0, data_dir=tmp_path / "gantry-data", event_log=None)
        g = connect_virtual(env, endpoint, seed=0)
    else:
        rig_file = request.config.getoption("--rig")
        baud, options = 921600, None
        if rig_file:  # the rig's baud rate and the heartbeat and watchdog its session asks for
            from firmware_host.exam_plan import ExamOptions
            from hil.rig import load_rig

            rig = load_rig(rig_file)
            baud = rig.baud
            options = ExamOptions(heartbeat_period_ms=rig.timeouts.heartbeat_period_ms,
                                  watchdog_timeout_ms=rig.timeouts.watchdog_timeout_ms)
        g = connect(gantry_url, baudrate=baud, seed=0, options=options)
        _ready_after_a_lost_session(g)
    try:
        yield g
    finally:
        g.close()


@pytest.fixture
def controller(gantry: Any) -> Any:
    """The host :class:`~firmware_host.controller.Controller` of the connected ``gantry``."""
    return gantry.controller


@pytest.fixture
def exam_runner(gantry: Any, tmp_path: Path) -> Callable[..., Any]:
    """``run(exam, out_dir=None)`` -> :class:`firmware_host.api.ExamResult` on the connected gantry."""
    count = 0

    def run(exam: Any, out_dir: str | Path | None = None, **kwargs: Any) -> Any:
        nonlocal count
        count += 1
        return gantry.run_exam(exam, out_dir if out_dir is not None else tmp_path / f"exam-{count}", **kwargs)

    return run
