"""Test-suite set-up shared by every folder: the helper modules of ``tests/helpers`` are importable.

``tests/helpers`` holds test doubles and launchers used across suites (``host_sim``: virtual-time
exams; ``host_pty``: a ``crescent gantry --pty`` child process; ``host_peer``: a scripted device).

It also schedules the parallel run of ``make test`` (pytest-xdist, ``--dist loadgroup``): the groups of tests
that stay on one worker, longest first (see "Parallel runs" below).
"""

from __future__ import annotations

import atexit
import functools
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

_HELPERS = str(Path(__file__).parent / "helpers")
if _HELPERS not in sys.path:
    sys.path.insert(0, _HELPERS)

# Every random thing takes a seed: hypothesis draws its examples from a seed derived from each test's
# name (derandomize), so a run is reproducible and CI never meets an example no run met before. No
# deadline: a loaded 2-core machine must not turn a slow example into a failure.
from hypothesis import settings  # noqa: E402
import pytest  # noqa: E402

settings.register_profile("crescent", derandomize=True, deadline=None, database=None, print_blob=True)
settings.load_profile("crescent")

# The suite never reads or writes the user's spectrum cache (~/.cache/crescent): its own folder, shared with the
# gantry and trial-worker processes it starts (they inherit the environment), removed at the end. Every run
# therefore computes the spectra it meets from spekpy, as on a fresh machine.
if "CRESCENT_CACHE_DIR" not in os.environ:
    _CACHE = tempfile.mkdtemp(prefix="crescent-test-cache-")
    os.environ["CRESCENT_CACHE_DIR"] = _CACHE
    atexit.register(shutil.rmtree, _CACHE, True)


# ------------------------------------------------------------------------------------------------
# Parallel runs (``make test``: ``pytest -n 2 --dist loadgroup``, pytest-xdist). A group of tests runs on one
# worker, in order: a test module is one group (its module fixtures are built once), except the README's
# recipes, one group per section (tests/test_readme.py: ``section_of_block``). Groups are handed out longest
# first (``tests/durations.json``: seconds per group, written by ``make test PYTEST_ARGS=--write-durations``; a
# group not listed counts as short): the long ones start at once, the short ones fill the gaps at the end.
# (xdist's own ``loadgroup`` reads ``xdist_group`` marks, which it no longer sees under pytest 9: the
# scheduler below takes the groups from the test ids instead.)

_DURATIONS = Path(__file__).with_name("durations.json")
_README_BLOCK = re.compile(r"test_readme_block_runs_as_written\[(.+)\]")
_measured: dict[str, float] = {}


@functools.cache
def group_of(nodeid: str) -> str:
    """The parallel-run group of a test id: its file, or for a README recipe its section."""
    path, _, name = nodeid.partition("::")
    block = _README_BLOCK.fullmatch(name)
    if path == "tests/test_readme.py" and block:
        try:
            from test_readme import section_of_block
        except ImportError:  # not importable by name (``--import-mode=importlib``): the file is the group
            return path
        return section_of_block(block.group(1))
    return path


@pytest.hookimpl(optionalhook=True)  # an xdist hook: without xdist (``-p no:xdist``) it is not called
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    if config.getoption("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        """Whole groups (:func:`group_of`) to one worker each, in collection order (longest first)."""

        def _split_scope(self, nodeid: str) -> str:
            return group_of(nodeid)

    return GroupScheduling(config, log)


def _durations() -> dict[str, float]:
    """``tests/durations.json`` (empty when missing or unreadable: every group then counts as short)."""
    try:
        return dict(json.loads(_DURATIONS.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        return {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--write-durations", action="store_true",
                     help="write the seconds each group took (setup + call + teardown) to tests/durations.json")


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    # the controller of a parallel run gets every worker's reports (a plain run, its own); only it writes
    group = group_of(report.nodeid)
    _measured[group] = _measured.get(group, 0.0) + report.duration


def pytest_sessionfinish(session: pytest.Session) -> None:
    """``--write-durations``: the groups this run measured replace their entries; the others are kept (a run of a
    selection does not forget the rest). Written whole, then renamed: a run that starts meanwhile reads the old
    file or the new one."""
    if session.config.getoption("--write-durations") and not hasattr(session.config, "workerinput"):
        seconds = _durations()
        seconds.update({g: round(t, 1) for g, t in _measured.items()})
        ordered = dict(sorted(seconds.items(), key=lambda kv: -kv[1]))
        tmp = _DURATIONS.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(ordered, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
        os.replace(tmp, _DURATIONS)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    seconds = _durations()
    groups = {item.nodeid: group_of(item.nodeid) for item in items}
    first_seen: dict[str, int] = {}
    for n, item in enumerate(items):
        first_seen.setdefault(groups[item.nodeid], n)
    # longest group first; within a group (and among unlisted groups) the collection order is kept
    items.sort(key=lambda it: (-float(seconds.get(groups[it.nodeid], 0.0)), first_seen[groups[it.nodeid]]))
