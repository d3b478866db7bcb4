"""An example hardware-facing test file: it knows nothing about where the gantry is.

Run it against the simulated gantry in virtual time, a gantry on a pty, or a rig::

    pytest hil/examples --gantry sim
    pytest hil/examples --gantry /dev/pts/5
    pytest hil/examples --gantry /dev/ttyUSB0 --rig myrig.yaml

The fixtures (``gantry``, ``controller``, ``gantry_url``, ``exam_runner``) and the ``rig`` marker come
from the ``crescent_gantry`` pytest plugin (:mod:`hil.pytest_plugin`). Copy this file to start your own.
"""

import pytest
from firmware_host.plans import Command, WaitFor
from protocols.wire.catalogue import DeviceState
from protocols.wire.messages import Home, MoveArc


@pytest.fixture(autouse=True)
def ready(gantry):
    """A gantry a previous host left behind holds itself safe (its watchdog): reset it before each test."""
    if gantry.status().state in (DeviceState.SAFE_HOLD, DeviceState.FAULT):
        gantry.reset_fault()


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
    assert result.record.status == "complete", (result.record.phase, result.record.reason)
    assert len(result.image_paths) == 9


@pytest.mark.rig
def test_only_on_a_real_rig(gantry):
    raise AssertionError("rig-only tests must be skipped without a real rig")
