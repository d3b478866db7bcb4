"""Fault injection (scheduled, random, over the wire), the backup timer, line faults and determinism."""

from __future__ import annotations

from protocols.wire.framing import PROTOCOL_VERSION

from pathlib import Path

import numpy as np
import pytest
import simpy

from protocols.wire import messages as M
from protocols.wire.catalogue import DeviceState, ErrorCode, ExposureStatus, FaultCode
from protocols.wire.framing import encode_frame
from simulator.gantry import GantryConfig, load_config, load_faults, start_virtual_gantry
from simulator.gantry.client import LinkClient, make_plan, open_session
from simulator.gantry.config import small_detector
from simulator.gantry.uart import serial_line

ANGLES = [-25.0 + 50.0 * i / 24 for i in range(25)]


def cfg_small(**over) -> GantryConfig:
    base = {"geometry": {"detector": small_detector(16, 20, 8).model_dump()}, "phantom": {"name": "uniform"}}
    base.update(over)
    return load_config().with_overrides(**base)


def session(tmp: Path, *, seed: int = 1, faults=None, cfg: GantryConfig | None = None, plan: M.Message | None = None,
            after_fire=None, event_log="auto"):
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg or cfg_small(), seed=seed, faults=faults, data_dir=tmp,
                                      event_log=event_log)
    client = LinkClient(env, ep)
    plan = plan or make_plan(7, ANGLES)
    out: dict = {}

    def script():
        yield from open_session(client)
        done = client.wait_event(lambda m: m.NAME == "MOTION_DONE")
        yield client.request(M.Compress(target_force_dn=1000, min_thickness_um=0, speed_um_s=0))
        yield done
        out["arm"] = yield client.request(plan)
        end = client.wait_event(lambda m: m.NAME == "STATE_CHANGED" and m.new_state != int(DeviceState.EXPOSING)
                                and m.old_state == int(DeviceState.EXPOSING))
        out["fire"] = yield client.request(M.Fire(plan_id=plan.plan_id, digest=plan.digest))
        out["end"] = yield end | env.timeout(60.0)
        if after_fire is not None:
            yield from after_fire(env, gantry, client, out)
        yield env.timeout(1.0)

    env.run(until=env.process(script()))
    gantry.log.close()
    return env, gantry, client, out


def test_tube_arc_at_an_exposure_terminates_it_and_latches(tmp_path: Path) -> None:
    faults = {"faults": [{"at_exposure": 3, "offset_ms": 10, "fault": "TUBE_ARC"}]}

    def reset(env, gantry, client, out):
        out["reset"] = yield client.request(M.ResetFault(fault_code=int(FaultCode.TUBE_ARC)))

    env, gantry, client, out = session(tmp_path, faults=faults, after_fire=reset)
    done = client.of("EXPOSURE_DONE")
    assert len(done) == 4 and done[-1].status == int(ExposureStatus.KV_FAULT)
    assert done[-1].window_end_us - done[-1].window_start_us == 10_000
    assert [f.fault_code for f in client.of("FAULT") if f.latched] == [int(FaultCode.TUBE_ARC)]
    assert out["end"][next(iter(out["end"]))].new_state == int(DeviceState.FAULT)
    assert out["reset"].NAME == "ACK" and gantry.state == int(DeviceState.IDLE)
    assert len(client.of("IMAGE_READY")) == 4  # the cut frame is still read out: nothing lost


def test_kv_drop_lengthens_the_window_until_the_independent_backup_timer_ends_it(tmp_path: Path) -> None:
    """A 30 % kV drop cuts emission to 0.7^1.5 = 59 %: the mAs timer would need 1.7 x the pulse, so the
    independent backup timer (1.5 x pulse) ends the window at exactly 90 ms."""
    faults = {"faults": [{"at_exposure": 2, "fault": "KV_DROP", "param": 30, "duration_ms": 5000}]}
    env, gantry, client, out = session(tmp_path, faults=faults)
    done = client.of("EXPOSURE_DONE")
    assert [d.status for d in done[:2]] == [0, 0]
    cut = done[2]
    assert cut.status == int(ExposureStatus.BACKUP_TIMER)
    assert cut.window_end_us - cut.window_start_us == 90_000
    assert abs(cut.mas_nas / 1e6 - 0.7**1.5 * 2.0 / 0.060 * 0.090) < 0.05  # 59 % of the current for 90 ms
    assert abs(cut.kv_ckv / 100.0 - 0.7 * 29.0) < 0.3
    codes = [(f.fault_code, f.latched) for f in client.of("FAULT")]
    assert (int(FaultCode.KV_DROP), 0) in codes and (int(FaultCode.BACKUP_TIMER), 1) in codes
    assert gantry.state == int(DeviceState.FAULT)


def test_detector_readout_timeout_over_the_wire(tmp_path: Path) -> None:
    def inject_then_sweep(env, gantry, client, out):
        yield env.timeout(0)

    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=3, data_dir=tmp_path, event_log=None)
    client = LinkClient(env, ep)
    plan = make_plan(5, [-5.0, 0.0, 5.0], continuous=False)

    def script():
        yield from open_session(client)
        r = yield client.request(M.SimInjectFault(fault_code=int(FaultCode.DETECTOR_TIMEOUT), param=0))
        assert r.NAME == "ACK"
        yield client.request(plan)
        yield client.request(M.Fire(plan_id=5, digest=plan.digest))
        yield env.timeout(5.0)

    env.run(until=env.process(script()))
    assert len(client.of("EXPOSURE_DONE")) == 1 and client.of("IMAGE_READY") == []
    fault = [f for f in client.of("FAULT") if f.latched]
    assert fault[0].fault_code == int(FaultCode.DETECTOR_TIMEOUT) and fault[0].detail == 1
    assert gantry.state == int(DeviceState.FAULT) and not gantry.detector.ok()


def test_motor_stall_trips_on_following_error(tmp_path: Path) -> None:
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=4, data_dir=tmp_path, event_log=None)
    client = LinkClient(env, ep)
    out: dict = {}

    def script():
        yield from open_session(client)
        done = client.wait_event(lambda m: m.NAME == "MOTION_DONE")
        yield client.request(M.MoveArc(target_mdeg=20_000, speed_mdeg_s=10_000))
        yield env.timeout(1.0)
        out["t_stall"] = env.now
        out["cmd_speed"] = gantry.axis.velocity(env.now)
        yield client.request(M.SimInjectFault(fault_code=int(FaultCode.MOTOR_STALL), param=0))
        out["done"] = yield done
        yield env.timeout(0.5)

    env.run(until=env.process(script()))
    fault = [f for f in client.of("FAULT") if f.latched][0]
    assert fault.fault_code == int(FaultCode.MOTOR_STALL)
    # following error 0.5 deg at 10 deg/s: the trip comes ~50 ms after the stall (+ link/UART time)
    trip_s = fault.device_time_us / 1e6 - out["t_stall"]
    assert 0.045 < trip_s < 0.06 and out["cmd_speed"] == pytest.approx(10.0)
    assert out["done"].ok == 0 and gantry.state == int(DeviceState.FAULT)


def test_device_reset_needs_a_new_hello(tmp_path: Path) -> None:
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=5, data_dir=tmp_path, event_log=None)
    client = LinkClient(env, ep)
    out: dict = {}

    def script():
        yield from open_session(client)
        yield client.request(M.SimInjectFault(fault_code=int(FaultCode.DEVICE_RESET), param=0))
        yield env.timeout(0.2)
        out["status"] = yield client.request(M.GetStatus())
        out["hello"] = yield client.request(M.Hello(protocol_version=PROTOCOL_VERSION, min_version=PROTOCOL_VERSION, host_capabilities=0,
                                                    session_id=2, heartbeat_period_ms=100, watchdog_timeout_ms=500))
        out["move"] = yield client.request(M.MoveArc(target_mdeg=1000, speed_mdeg_s=0))

    env.run(until=env.process(script()))
    assert any(s.new_state == int(DeviceState.BOOT) and s.fault_code == int(FaultCode.DEVICE_RESET)
               for s in client.of("STATE_CHANGED"))
    assert out["status"].error_code == int(ErrorCode.NO_SESSION)
    assert out["hello"].state == int(DeviceState.IDLE)
    assert out["move"].error_code == int(ErrorCode.NOT_HOMED)  # the incremental encoder lost its home


def test_dead_line_and_bit_errors_are_recovered_by_the_link(tmp_path: Path) -> None:
    # the line dies 50 ms into the 2nd window, so that exposure's EXPOSURE_DONE is lost and must be resent
    faults = {"faults": [{"at_exposure": 1, "offset_ms": 50, "fault": "LINE_FAULT", "param": 150}],
              "line": {"bit_error_rate": 2e-5}}
    env, gantry, client, out = session(tmp_path, faults=faults, plan=make_plan(2, [-10.0, 0.0, 10.0]))
    assert out["arm"].NAME == "ACK" and out["fire"].NAME == "ACK"
    assert len(client.of("EXPOSURE_DONE")) == 3 and len(client.of("IMAGE_READY")) == 3
    dropped = gantry.line.tx.stats.bytes_dropped + gantry.line.rx.stats.bytes_dropped
    flipped = gantry.line.tx.stats.bits_flipped + gantry.line.rx.stats.bits_flipped
    assert dropped > 0 and flipped > 0
    assert gantry.link.stats.retransmissions + client.link.stats.retransmissions > 0


def test_uart_charges_each_byte_its_wire_time() -> None:
    env = simpy.Environment()
    host, dev = serial_line(env, 10 / 921600, seed=0)
    got: list[tuple[float, bytes]] = []
    dev.on_receive(lambda d: got.append((env.now, d)))
    host.write(b"x" * 100)
    host.write(b"y" * 50)  # queued behind the first chunk
    env.run(until=1.0)
    assert got[0] == (pytest.approx(100 * 10 / 921600), b"x" * 100)
    assert got[1][0] == pytest.approx(150 * 10 / 921600)


def test_same_seed_same_event_log_byte_for_byte(tmp_path: Path) -> None:
    faults = {"random": {"rate_per_s": 0.3, "faults": ["KV_DROP", "TELEMETRY_STOP"], "start_s": 0.0, "end_s": 60.0},
              "line": {"bit_error_rate": 1e-5}}
    cfg = cfg_small(geometry={"detector": small_detector(8, 10, 8).model_dump()}, phantom={"name": "pmma"})
    plan = make_plan(3, [-10.0, -5.0, 0.0, 5.0, 10.0])
    logs = []
    for run, seed in enumerate((11, 11, 12)):
        d = tmp_path / f"run{run}"
        session(d, seed=seed, faults=faults, cfg=cfg, plan=plan)
        logs.append((d / "device-events.jsonl").read_bytes())
    assert len(logs[0]) > 10_000
    assert logs[0] == logs[1]
    assert logs[0] != logs[2]
    frames0 = sorted((tmp_path / "run0").glob("frame_*.raw"))
    assert frames0 and all(f.read_bytes() == (tmp_path / "run1" / f.name).read_bytes() for f in frames0)
    a = np.fromfile(frames0[0], dtype="<u2")
    b = np.fromfile(tmp_path / "run2" / frames0[0].name, dtype="<u2")
    assert not np.array_equal(a, b)  # different seed: different quantum noise


def test_fault_files_load_and_bad_ones_name_the_problem(tmp_path: Path) -> None:
    from importlib import resources

    text = resources.files("simulator.configs").joinpath("faults-example.yaml").read_text()
    p = tmp_path / "f.yaml"
    p.write_text(text)
    plan = load_faults(p)
    assert plan.faults[0].fault == "DOOR_OPEN" and plan.faults[0].at_exposure == 12
    with pytest.raises(ValueError, match="not injectable"):
        load_faults({"faults": [{"at_s": 1, "fault": "NONE"}]})
    with pytest.raises(ValueError, match="exactly one of"):
        load_faults({"faults": [{"at_s": 1, "at_exposure": 2, "fault": "ESTOP"}]})
    with pytest.raises(FileNotFoundError):
        load_faults(tmp_path / "missing.yaml")


def test_shipped_configs_load_and_boot(tmp_path: Path) -> None:
    for name in ("default", "ge-like", "siemens-like", "hologic-like"):
        cfg = load_config(name)
        assert cfg.uart.bits_per_byte == 10 and cfg.telemetry_rate_hz == 50
        env = simpy.Environment()
        gantry, ep = start_virtual_gantry(env, cfg, seed=0, data_dir=tmp_path / name, event_log=None)
        client = LinkClient(env, ep)
        out = {}

        def script():
            out["info"] = yield client.request(M.GetInfo())

        env.run(until=env.process(script()))
        assert out["info"].sid_um == int(cfg.geometry.sid_mm * 1000)
    assert load_config("ge-like").geometry.sid_mm == 660.0 and load_config("hologic-like").geometry.sid_mm == 700.0
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("limits: {arc_min_deg: 10}\n")
    with pytest.raises(ValueError, match="bad.yaml"):
        load_config(bad)
    _ = encode_frame  # (imported for symmetry with the port tests)


def test_phase_triggered_telemetry_stop_and_encoder_glitch(tmp_path: Path) -> None:
    faults = {"faults": [{"phase": "COMPRESS", "delay_s": 0.5, "fault": "TELEMETRY_STOP", "duration_ms": 300}]}
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg_small(), seed=8, faults=faults, data_dir=tmp_path, event_log=None)
    client = LinkClient(env, ep)
    out: dict = {}

    def script():
        yield from open_session(client)
        done = client.wait_event(lambda m: m.NAME == "MOTION_DONE")
        out["t_compress"] = env.now
        yield client.request(M.Compress(target_force_dn=800, min_thickness_um=0, speed_um_s=0))
        yield done
        yield client.request(M.SimInjectFault(fault_code=int(FaultCode.ENCODER_GLITCH), param=3000))
        yield env.timeout(0.2)
        out["move"] = yield client.request(M.MoveArc(target_mdeg=1000, speed_mdeg_s=0))
        out["reset"] = yield client.request(M.ResetFault(fault_code=0))
        out["move2"] = yield client.request(M.MoveArc(target_mdeg=1000, speed_mdeg_s=0))

    env.run(until=env.process(script()))
    times = np.array([a.message.device_time_us for a in client.telemetry]) / 1e6
    gaps = np.diff(times)
    i = int(np.argmax(gaps))
    assert 0.30 <= gaps[i] <= 0.34 and abs(times[i] - (out["t_compress"] + 0.5)) < 0.03
    assert np.median(gaps) == pytest.approx(0.020, abs=1e-6)  # 50 Hz otherwise
    fault = [f for f in client.of("FAULT") if f.latched][0]
    assert fault.fault_code == int(FaultCode.ENCODER_GLITCH) and fault.detail == 3000
    assert out["move"].error_code == int(ErrorCode.BAD_STATE)  # FAULT state
    assert out["reset"].NAME == "ACK"
    assert out["move2"].error_code == int(ErrorCode.NOT_HOMED)  # position lost: re-home first
