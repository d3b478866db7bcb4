"""Compression: the breast pushes back, relaxes over seconds, and no command drives the force past the limit."""

from __future__ import annotations

import math
from pathlib import Path

import simpy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocols.wire import messages as M
from protocols.wire.catalogue import ErrorCode
from simulator.gantry import load_config, start_virtual_gantry
from simulator.gantry.client import LinkClient, open_session
from simulator.gantry.config import BreastConfig, PaddleConfig
from simulator.gantry.paddle import Breast, Paddle


def test_breast_force_rises_steeply_as_thickness_falls() -> None:
    b = Breast(BreastConfig())
    hs = [70.0, 65.0, 60.0, 55.0, 50.0, 45.0]
    f = [b.equilibrium_force_n(h) for h in hs]
    assert f[0] == 0.0
    steps = [f[i + 1] - f[i] for i in range(len(f) - 1)]
    assert all(s > 0 for s in steps) and all(steps[i + 1] > steps[i] for i in range(len(steps) - 1))  # convex
    # the exponential law by hand: k (exp(B s) - 1), s = (70 - 49) / 70 = 0.3
    assert math.isclose(b.equilibrium_force_n(49.0), 3.0 * (math.exp(12.0 * 0.3) - 1.0), rel_tol=1e-12)


def test_held_compression_relaxes_like_a_standard_linear_solid() -> None:
    env = simpy.Environment()
    paddle = Paddle(env, PaddleConfig(), BreastConfig(), force_limit_n=200.0, thickness_min_mm=5.0)
    proc = env.process(paddle.compress(150.0, 0.0, 10.0))
    env.run(until=proc)
    assert proc.value is True
    t0, f0 = env.now, paddle.force_n()
    fe = paddle.breast.equilibrium_force_n(paddle.height_mm)
    assert 140.0 < f0 <= 150.0 and f0 > fe  # the Maxwell arm carries part of the load
    tau = BreastConfig().relaxation_time_s
    for dt in (1.0, 4.0, 12.0):
        env.run(until=t0 + dt)
        expected = fe + (f0 - fe) * math.exp(-dt / tau)
        assert math.isclose(paddle.force_n(), expected, rel_tol=1e-9)
    rel = env.process(paddle.release())
    env.run(until=rel)
    assert paddle.height_mm == PaddleConfig().park_height_mm and paddle.force_n() == 0.0


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    target_dn=st.integers(10, 3000),
    speed_um_s=st.integers(0, 60_000),
    floor_um=st.integers(0, 60_000),
    second_dn=st.integers(10, 3000),
    free=st.floats(30.0, 120.0),
    stiffness=st.floats(0.5, 20.0),
    exponent=st.floats(3.0, 25.0),
    ratio=st.floats(0.0, 3.0),
    tau=st.floats(0.3, 20.0),
)
def test_no_commanded_target_drives_the_force_past_the_limit(tmp_path: Path, target_dn: int, speed_um_s: int,
                                                            floor_um: int, second_dn: int, free: float,
                                                            stiffness: float, exponent: float, ratio: float,
                                                            tau: float) -> None:
    cfg = load_config().with_overrides(
        breast={"free_thickness_mm": free, "stiffness_n": stiffness, "exponent": exponent, "relaxation_ratio": ratio,
                "relaxation_time_s": tau})
    limit_n = cfg.limits.compression_force_max_n
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg, seed=1, data_dir=tmp_path, event_log=None)
    client = LinkClient(env, ep)
    answers: list[M.Message] = []

    def script():
        yield from open_session(client, home=False)
        for target in (target_dn, second_dn):
            done = client.wait_event(lambda m: m.NAME == "MOTION_DONE")
            r = yield client.request(M.Compress(target_force_dn=target, min_thickness_um=floor_um,
                                                speed_um_s=speed_um_s))
            answers.append(r)
            if r.NAME == "ACK":
                yield done | env.timeout(200.0)
            yield env.timeout(2.0)

    env.run(until=env.process(script()))
    assert gantry.paddle.max_force_seen_n <= limit_n
    assert max((t.message.force_dn for t in client.telemetry), default=0) <= limit_n * 10
    speed_ok = speed_um_s == 0 or 1000 <= speed_um_s <= 40_000
    for target, r in zip((target_dn, second_dn), answers):
        if target > limit_n * 10:
            assert r.error_code == int(ErrorCode.FORCE_LIMIT)
        elif not speed_ok:
            assert (r.error_code, r.detail) == (int(ErrorCode.BEYOND_LIMITS), 2)
        else:
            assert r.NAME == "ACK"
    accepted = [t for t, r in zip((target_dn, second_dn), answers) if r.NAME == "ACK"]
    if accepted:
        assert gantry.paddle.max_force_seen_n <= max(accepted) / 10.0 + 1e-9  # never past the target either
    else:
        assert gantry.paddle.max_force_seen_n == 0.0  # refused commands move nothing


def test_a_floor_above_the_breast_ends_the_drive_at_the_floor(tmp_path: Path) -> None:
    """COMPRESS with a thickness floor above the uncompressed breast stops at the floor (MOTION_DONE), never hangs BUSY."""
    cfg = load_config().with_overrides(breast={"free_thickness_mm": 30.0})
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg, seed=1, data_dir=tmp_path, event_log=None)
    client = LinkClient(env, ep)
    answers: list[M.Message] = []

    def script():
        yield from open_session(client, home=False)
        for _ in range(2):
            done = client.wait_event(lambda m: m.NAME == "MOTION_DONE")
            answers.append((yield client.request(M.Compress(target_force_dn=10, min_thickness_um=38388, speed_um_s=0))))
            yield done | env.timeout(200.0)
            answers.append(done.triggered)

    env.run(until=env.process(script()))
    assert [a if isinstance(a, bool) else a.NAME for a in answers] == ["ACK", True, "ACK", True]
    assert gantry.paddle.max_force_seen_n == 0.0 and abs(gantry.paddle.height_mm - 38.388) < 0.5


@given(target_n=st.floats(20.0, 190.0), floor_mm=st.sampled_from([0.0, 30.0, 48.0, 60.0]),
       speed=st.sampled_from([0.0, 5.0, 12.0]), sample_s=st.sampled_from([None, 0.007, 0.02, 0.05]),
       held_s=st.floats(0.01, 30.0))
@settings(max_examples=40, deadline=None)
def test_predicted_stop_is_where_the_compression_stops(target_n: float, floor_mm: float, speed: float,
                                                       sample_s: float | None, held_s: float) -> None:
    """predict_compress gives the compression's end (reached, thickness) to the bit, whatever telemetry samples
    the force sensor meanwhile, from a parked paddle and from a held one (a second COMPRESS after relaxation).
    Shown able to fail: with the sensor read committing the relaxation (as before), a held compression sampled
    ended up to 0.1 mm away from the prediction."""
    env = simpy.Environment()
    paddle = Paddle(env, PaddleConfig(), BreastConfig(), force_limit_n=200.0, thickness_min_mm=5.0)

    def telemetry():
        while sample_s is not None:
            yield env.timeout(sample_s)
            paddle.force_n()

    env.process(telemetry())
    for target in (target_n, min(target_n * 1.2, 199.0)):  # compress, hold, compress again
        state = (paddle.height_mm, paddle.breast.q_n, paddle._t_last, paddle.max_force_seen_n, env.now)
        predicted = paddle.predict_compress(target, floor_mm, speed)
        assert (paddle.height_mm, paddle.breast.q_n, paddle._t_last, paddle.max_force_seen_n, env.now) == state
        proc = env.process(paddle.compress(target, floor_mm, speed))
        env.run(until=proc)
        assert predicted == (proc.value, paddle.breast_thickness_mm())
        env.run(until=env.now + held_s)


def test_reading_the_force_sensor_does_not_change_the_breast() -> None:
    """A held compression read at 1 kHz and one never read relax alike (the reading is pure)."""
    forces = []
    for period in (None, 0.001):
        env = simpy.Environment()
        paddle = Paddle(env, PaddleConfig(), BreastConfig(), force_limit_n=200.0, thickness_min_mm=5.0)
        env.run(until=env.process(paddle.compress(150.0, 0.0, 10.0)))

        def reader():
            while period is not None:
                yield env.timeout(period)
                paddle.force_n()

        env.process(reader())
        env.run(until=env.now + 5.0)
        forces.append((paddle.force_n(), paddle.breast.q_n))
    assert forces[0][0] == forces[1][0] and forces[0][1] == forces[1][1]


class _RecordingExecutor:
    """Stands in for the real-time render pool: records what the firmware asks it to prepare."""

    def __init__(self) -> None:
        self.prepared: list[tuple] = []

    def prepare(self, *args) -> None:
        self.prepared.append(args)


def test_the_phantom_is_prepared_at_compress_for_the_thickness_it_stops_at(tmp_path: Path) -> None:
    """On COMPRESS the gantry asks its render worker for the phantom at the predicted stop thickness before the
    paddle moves; when the paddle stops, what it asks for is the same (so the worker has nothing left to build).
    A slow drive beyond PREDICT_MAX_PERIODS is not predicted: its phantom is asked for only at the stop."""
    from simulator.gantry.firmware import PREDICT_MAX_PERIODS

    for speed_um_s, predicted in ((0, True), (1000, False)):
        env = simpy.Environment()
        gantry, ep = start_virtual_gantry(env, load_config(), seed=1, data_dir=tmp_path / str(speed_um_s),
                                          event_log=None)
        pool = _RecordingExecutor()
        gantry.detector.executor = pool
        client = LinkClient(env, ep)
        seen: dict[str, object] = {}

        def script():
            yield from open_session(client, home=False)
            done = client.wait_event(lambda m: m.NAME == "MOTION_DONE")
            r = yield client.request(M.Compress(target_force_dn=1000, min_thickness_um=0, speed_um_s=speed_um_s))
            seen["ack"], seen["at_ack"], seen["height_at_ack"] = r.NAME, list(pool.prepared), gantry.paddle.height_mm
            yield done | env.timeout(200.0)

        env.run(until=env.process(script()))
        stopped = round(gantry.paddle.breast_thickness_mm(), 2)
        assert seen["ack"] == "ACK" and seen["height_at_ack"] == load_config().paddle.park_height_mm
        assert pool.prepared[-1][4] == stopped  # at the stop: the actual thickness
        if predicted:
            assert [a[4] for a in seen["at_ack"]] == [stopped]  # before any motion: the same thickness
            assert pool.prepared[0] == pool.prepared[-1]
        else:
            assert seen["at_ack"] == [] and PREDICT_MAX_PERIODS < 1200
