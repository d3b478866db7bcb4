"""Timing report against hand-computed round trips and telemetry periods; rig files."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crescent.cli import main as crescent_main
from hil.decode import decode_packets
from hil.pcap import write_pcap
from hil.rig import EXAMPLE_RIG_PATH, InterlockSource, RigFileError, load_rig, sim_rig
from hil.timing import timing_report

H2D, D2H = 0, 1


def test_round_trips_and_attempts(capture_builder) -> None:
    b = capture_builder()
    b.request(1.000, H2D, "GET_STATUS", 1)
    b.respond(1.004, D2H, "STATUS", 1, state=1)
    b.request(2.000, H2D, "GET_STATUS", 2)
    b.respond(2.010, D2H, "STATUS", 2, state=1)
    b.request(3.000, H2D, "HOME", 3)
    b.request(3.100, H2D, "HOME", 3, retransmit=True)  # retransmission: one round trip of 150 ms, 2 attempts
    b.respond(3.150, D2H, "ACK", 3, acked_msg_id=0x10)
    rep = timing_report(decode_packets(b.packets))
    assert rep.round_trips["GET_STATUS"].n == 2
    assert rep.round_trips["GET_STATUS"].mean_ms == pytest.approx(7.0)
    assert rep.round_trips["GET_STATUS"].max_ms == pytest.approx(10.0)
    assert rep.round_trips["HOME"].p50_ms == pytest.approx(150.0)
    assert rep.attempts["HOME"] == 2
    # 4 ms falls in [2, 5), 10 ms in [10, 20)
    hist = rep.round_trips["GET_STATUS"].histogram
    assert hist[5] == 1 and hist[7] == 1 and sum(hist) == 2


def test_telemetry_jitter(capture_builder, tmp_path) -> None:
    b = capture_builder()
    dev_us = [0, 20_000, 40_000, 60_000, 80_000]
    cap_s = [0.0, 0.020, 0.043, 0.060, 0.080]  # one frame 3 ms late on the line
    for k, (t, d) in enumerate(zip(cap_s, dev_us)):
        b.stream(t, D2H, "TELEMETRY", k, device_time_us=d, state=1)
    rep = timing_report(decode_packets(b.packets))
    assert rep.telemetry is not None
    assert rep.telemetry.device.p50_ms == pytest.approx(20.0)
    assert rep.telemetry.device_jitter_ms == pytest.approx(0.0)
    periods = np.diff(cap_s) * 1000
    assert rep.telemetry.capture_jitter_ms == pytest.approx(np.max(np.abs(periods - np.median(periods))))
    assert rep.telemetry.capture_jitter_ms == pytest.approx(3.0)
    path = tmp_path / "t.pcap"
    write_pcap(path, b.packets)
    assert crescent_main(["timing", str(path), "--json", str(tmp_path / "t.json"), "--csv", str(tmp_path / "t.csv")]) == 0
    data = json.loads((tmp_path / "t.json").read_text())
    assert data["telemetry"]["device"]["n"] == 4
    assert (tmp_path / "t.csv").read_text().splitlines()[1].startswith("telemetry:capture,4,")


def test_example_rig_file_loads() -> None:
    rig = load_rig(EXAMPLE_RIG_PATH)
    assert rig.timeouts.watchdog_timeout_ms == 500
    assert rig.limits.arc_max_deg == 30.0
    assert rig.geometry.sid_mm == 660.0
    assert set(rig.simulated_interlocks()) == set(rig.interlocks)


def test_rig_file_errors_name_the_field(tmp_path) -> None:
    p = tmp_path / "r.yaml"
    p.write_text("name: x\nport: /dev/ttyUSB0\nlimits: {kvp_max_kv: 80}\ninterlocks: {DOOR: real}\n")
    with pytest.raises(RigFileError) as err:
        load_rig(p)
    assert "limits.kvp_max_kv" in str(err.value) and "unknown interlock" in str(err.value)
    with pytest.raises(RigFileError, match="none.yaml: rig file not found"):
        load_rig(tmp_path / "none.yaml")


def test_missing_interlocks_count_as_absent(tmp_path) -> None:
    p = tmp_path / "r.yaml"
    p.write_text("name: bench\nport: socket://localhost:5000\nreal_hardware: true\ninterlocks: {DOOR_CLOSED: real}\n")
    rig = load_rig(p)
    assert rig.interlocks["DOOR_CLOSED"] is InterlockSource.REAL
    assert rig.interlocks["HAND_SWITCH"] is InterlockSource.ABSENT
    assert rig.simulated_interlocks() == []
    assert sim_rig().port == "sim"
