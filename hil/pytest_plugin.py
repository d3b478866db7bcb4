"""pytest plugin ``crescent_gantry`` (registered through the ``pytest11`` entry point).

Options and markers:

* ``--gantry sim`` runs gantry tests against the in-process simulated gantry;
  ``--gantry URL`` (any pyserial URL, e.g. ``/dev/pts/5``) against a gantry in
  another process or a real rig. ``--rig FILE`` names a rig description
  (:mod:`hil.rig`) for a real rig.
* ``@pytest.mark.rig`` marks tests that need a real rig; they are skipped
  unless the rig file says ``real_hardware: true``.

It is loaded by every pytest run of the project, so this module imports
nothing heavy at import time and does nothing unless ``--gantry`` is given or
one of its fixtures is used.
"""

from __future__ import annotations

from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("crescent-gantry", "Crescent gantry under test")
    group.addoption(
        "--gantry",
        action="store",
        default=None,
        metavar="sim|URL",
        help="gantry to test against: 'sim' (in-process, virtual time) or a pyserial URL such as /dev/pts/5",
    )
    group.addoption("--rig", action="store", default=None, metavar="FILE", help="rig description YAML (hil/rig.py)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "rig: needs a real gantry given with --gantry URL (and --rig FILE)")


def _real_rig(config: pytest.Config) -> bool:
    rig_file = config.getoption("--rig")
    if not rig_file or not config.getoption("--gantry") or config.getoption("--gantry") == "sim":
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
