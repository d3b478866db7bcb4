"""Helpers for the HIL tests: build captures frame by frame with the project's codec."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hil.capture import Packet
from protocols.wire.framing import FLAG_ACK_REQ, FLAG_RESPONSE, FLAG_RETRANSMIT, encode_frame
from protocols.wire.messages import BY_NAME, plan_digest

H2D, D2H = 0, 1


class CaptureBuilder:
    """Append frames (request/response/stream) at given times; ``packets`` is the capture."""

    def __init__(self) -> None:
        self.packets: list[Packet] = []

    def add(self, t: float, direction: int, name: str, seq: int, flags: int, **fields: Any) -> bytes:
        msg = BY_NAME[name](**fields)
        if name == "ARM_PLAN" and "digest" not in fields:
            msg.digest = plan_digest(msg)  # type: ignore[attr-defined]
        wire = encode_frame(msg.ID, seq, flags, msg.pack())
        self.packets.append(Packet(t, direction, wire))
        return wire

    def request(self, t: float, direction: int, name: str, seq: int, retransmit: bool = False, **f: Any) -> bytes:
        return self.add(t, direction, name, seq, FLAG_ACK_REQ | (FLAG_RETRANSMIT if retransmit else 0), **f)

    def respond(self, t: float, direction: int, name: str, seq: int, **f: Any) -> bytes:
        return self.add(t, direction, name, seq, FLAG_RESPONSE, **f)

    def stream(self, t: float, direction: int, name: str, seq: int, **f: Any) -> bytes:
        return self.add(t, direction, name, seq, 0, **f)


@pytest.fixture
def capture_builder() -> Callable[[], CaptureBuilder]:
    return CaptureBuilder


@pytest.fixture(scope="module")
def gantry_pty():  # type: ignore[no-untyped-def]
    """``crescent gantry --pty`` in another process; yields its pty path (stopped at the end of the module by its
    pid: an idle real-time gantry still runs its 1 ms control loop, 5-10 % of a core)."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile

    import yaml

    from hil.pytest_plugin import sim_config

    data_dir = tempfile.mkdtemp(prefix="crescent-hil-gantry-")
    cfg_path = os.path.join(data_dir, "gantry.yaml")
    with open(cfg_path, "w", encoding="utf-8") as fh:  # the default gantry with a small detector: fast images
        yaml.safe_dump(sim_config(None).model_dump(mode="json"), fh)
    proc = subprocess.Popen(
        [sys.executable, "-m", "crescent", "gantry", "--pty", "--quiet", "--data-dir", data_dir, "--seed", "3",
         "--config", cfg_path],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = proc.stdout.readline().strip() if proc.stdout else ""
        if not line.startswith("listening pty "):
            pytest.fail(f"crescent gantry --pty printed {line!r}")
        yield line.split()[2]
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()


@pytest.fixture(scope="session")
def exam_capture(tmp_path_factory):  # type: ignore[no-untyped-def]
    """(packets, gantry config, record) of a dbt-step exam run by the host on the virtual gantry, tapped."""
    import simpy

    from firmware_host.api import run_exam_virtual
    from hil.capture import Tap, TappedEndpoint
    from hil.validate_exam import dry_run_config
    from simulator.gantry import start_virtual_gantry

    tmp = tmp_path_factory.mktemp("exam-capture")
    cfg = dry_run_config(None, None, 100.0)
    env = simpy.Environment()
    _, endpoint = start_virtual_gantry(env, cfg, seed=0, data_dir=tmp / "device", event_log=None)
    tap = Tap()
    result = run_exam_virtual(env, TappedEndpoint(endpoint, tap, env), "dbt-step", tmp / "exam", seed=0)
    env.run(until=env.now + 0.5)
    tap.flush()
    return tap.packets, cfg, result.record
