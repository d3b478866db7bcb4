"""check-capture: a hand-written clean exam capture passes; each broken invariant is reported by rule."""

from __future__ import annotations

from protocols.wire.framing import PROTOCOL_VERSION

import pytest

from hil.check_capture import check_items
from crescent.capture.command import register  # noqa: F401  (the command module imports cheaply)
from hil.decode import decode_packets
from hil.pcap import write_pcap
from crescent.cli import main as crescent_main

H2D, D2H = 0, 1
ANGLES = [-7500, 0, 7500]
ENTRIES = [(a, 2800, 40_000, 50_000) for a in ANGLES]
HB_TO = 0.5


def exam_capture(cb, *, skip: str = "", extra=None):  # type: ignore[no-untyped-def]
    """A 3-exposure exam: handshake, arm, fire, exposures, heartbeats every 0.1 s both ways.

    ``skip`` names one step to leave out; ``extra(b)`` adds frames afterwards.
    """
    b = cb()
    b.request(0.000, H2D, "HELLO", 1, protocol_version=PROTOCOL_VERSION, min_version=PROTOCOL_VERSION, session_id=9, heartbeat_period_ms=100, watchdog_timeout_ms=500)
    b.respond(0.002, D2H, "HELLO_REPLY", 1, protocol_version=PROTOCOL_VERSION, session_id=9, watchdog_timeout_ms=500, max_payload=640, state=1)
    if skip != "arm":
        b.request(0.010, H2D, "ARM_PLAN", 2, plan_id=5, motion=1, anode_filter=0, focal_spot=0, entries=ENTRIES)
        b.respond(0.012, D2H, "ACK", 2, acked_msg_id=0x15)
    b.request(0.020, H2D, "FIRE", 3, plan_id=5, digest=_digest())
    if skip != "fire-answer":
        b.respond(0.022, D2H, "ACK", 3, acked_msg_id=0x16)
    dseq = 100
    for i, a in enumerate(ANGLES):
        t = 0.1 + 0.1 * i
        b.request(t, D2H, "EXPOSURE_DONE", dseq, plan_id=5, index=i, frame_id=i, status=0, planned_mdeg=a, start_mdeg=a, end_mdeg=a + 200, kv_ckv=2800, mas_nas=40_000)
        b.respond(t + 0.001, H2D, "ACK", dseq, acked_msg_id=0x42)
        dseq += 1
    b.request(0.45, D2H, "STATE_CHANGED", dseq, old_state=4, new_state=1)
    b.respond(0.451, H2D, "ACK", dseq, acked_msg_id=0x41)
    hseq = 200
    for k in range(8):
        t = 0.05 + 0.1 * k
        if not (skip == "host-heartbeats" and k >= 2):
            b.stream(t, H2D, "HEARTBEAT", hseq, uptime_ms=int(t * 1000))
        b.stream(t + 0.003, D2H, "HEARTBEAT", 300 + k, uptime_ms=int(t * 1000), state=1)
        hseq += 1
    if extra is not None:
        extra(b)
    b.packets.sort(key=lambda p: p.t_s)
    return decode_packets(b.packets)


def _digest() -> int:
    from protocols.wire.messages import ArmPlan, plan_digest

    p = ArmPlan(plan_id=5, motion=1, anode_filter=0, focal_spot=0, entries=ENTRIES)
    return plan_digest(p)


def rules(report) -> set[str]:  # type: ignore[no-untyped-def]
    return {f.rule for f in report.errors}


def test_clean_exam_passes(capture_builder) -> None:
    report = check_items(exam_capture(capture_builder))
    assert report.ok, report.text()
    assert report.counts["EXPOSURE_DONE"] == 3


def test_fire_accepted_without_arm_is_an_error(capture_builder) -> None:
    report = check_items(exam_capture(capture_builder, skip="arm"))
    assert "fire-without-arm" in rules(report)
    assert "ACCEPTED" in report.text()


def test_fire_refused_without_arm_is_only_a_warning(capture_builder) -> None:
    b = capture_builder()
    b.request(0.0, H2D, "FIRE", 3, plan_id=5, digest=1)
    b.respond(0.001, D2H, "NAK", 3, acked_msg_id=0x16, error_code=5)
    report = check_items(decode_packets(b.packets))
    assert report.ok
    assert [f.rule for f in report.warnings] == ["fire-without-arm"]


def test_fire_with_wrong_digest_is_an_error(capture_builder) -> None:
    b = capture_builder()
    b.request(0.0, H2D, "ARM_PLAN", 2, plan_id=5, motion=1, anode_filter=0, focal_spot=0, entries=ENTRIES)
    b.respond(0.001, D2H, "ACK", 2, acked_msg_id=0x15)
    b.request(0.002, H2D, "FIRE", 3, plan_id=5, digest=_digest() ^ 1)
    b.respond(0.003, D2H, "ACK", 3, acked_msg_id=0x16)
    report = check_items(decode_packets(b.packets))
    assert rules(report) == {"fire-without-arm"}


def test_unanswered_command(capture_builder) -> None:
    report = check_items(exam_capture(capture_builder, skip="fire-answer"))
    assert "unanswered" in rules(report)
    assert any("FIRE seq=3" in f.message for f in report.errors)


def test_exposure_after_abort_and_outside_plan(capture_builder) -> None:
    def extra(b):  # type: ignore[no-untyped-def]
        b.request(0.15, H2D, "ABORT", 4, reason=0)
        b.respond(0.151, D2H, "ACK", 4, acked_msg_id=0x17)

    report = check_items(exam_capture(capture_builder, extra=extra))
    # index 1 (t=0.2) is the tolerated terminated window, index 2 (t=0.3) came after the abort
    bad = [f for f in report.errors if f.rule == "exposure-outside-plan"]
    assert len(bad) == 1 and "index 2" in bad[0].message


def test_exposure_at_wrong_angle_or_index(capture_builder) -> None:
    def extra(b):  # type: ignore[no-untyped-def]
        b.request(0.33, D2H, "EXPOSURE_DONE", 150, plan_id=5, index=7, planned_mdeg=0)
        b.respond(0.331, H2D, "ACK", 150, acked_msg_id=0x42)

    report = check_items(exam_capture(capture_builder, extra=extra))
    assert any("beyond the 3 armed entries" in f.message for f in report.errors)


def test_retransmitted_fire_answered_identically_passes_but_differently_fails(capture_builder) -> None:
    def same(b):  # type: ignore[no-untyped-def]
        b.request(0.121, H2D, "FIRE", 3, retransmit=True, plan_id=5, digest=_digest())
        b.respond(0.122, D2H, "ACK", 3, acked_msg_id=0x16)

    assert check_items(exam_capture(capture_builder, extra=same)).ok

    def different(b):  # type: ignore[no-untyped-def]
        b.request(0.121, H2D, "FIRE", 3, retransmit=True, plan_id=5, digest=_digest())
        b.respond(0.122, D2H, "NAK", 3, acked_msg_id=0x16, error_code=4)

    assert "duplicate-execution" in rules(check_items(exam_capture(capture_builder, extra=different)))


def test_same_exposure_reported_twice(capture_builder) -> None:
    def extra(b):  # type: ignore[no-untyped-def]
        b.request(0.35, D2H, "EXPOSURE_DONE", 160, plan_id=5, index=1, planned_mdeg=0)
        b.respond(0.351, H2D, "ACK", 160, acked_msg_id=0x42)

    assert "duplicate-execution" in rules(check_items(exam_capture(capture_builder, extra=extra)))


def test_host_silence_without_safe_hold_is_an_error(capture_builder) -> None:
    # the host stops its heartbeats at 0.15 s; other host frames (ACKs) end at 0.451 s, then 0.35 s of silence
    def extra(b):  # type: ignore[no-untyped-def]
        b.request(1.2, H2D, "GET_STATUS", 9)
        b.respond(1.201, D2H, "STATUS", 9, state=1)

    report = check_items(exam_capture(capture_builder, skip="host-heartbeats", extra=extra))
    silence = [f for f in report.errors if f.rule == "silence"]
    assert silence and "did NOT report SAFE_HOLD" in silence[0].message

    def extra_hold(b):  # type: ignore[no-untyped-def]
        extra(b)
        b.request(0.99, D2H, "STATE_CHANGED", 170, old_state=1, new_state=5, fault_code=12)
        b.respond(1.21, H2D, "ACK", 170, acked_msg_id=0x41)

    report = check_items(exam_capture(capture_builder, skip="host-heartbeats", extra=extra_hold))
    assert not [f for f in report.errors if f.rule == "silence"]
    assert [f.rule for f in report.warnings] == ["silence"]


def test_cli_exit_status(capture_builder, tmp_path, capsys) -> None:
    good = exam_capture(capture_builder)
    assert good  # built
    b = capture_builder()
    b.request(0.0, H2D, "FIRE", 3, plan_id=5, digest=1)
    b.respond(0.001, D2H, "ACK", 3, acked_msg_id=0x16)
    bad_path = tmp_path / "bad.pcap"
    write_pcap(bad_path, b.packets)
    assert crescent_main(["check-capture", str(bad_path), "--json", str(tmp_path / "r.json")]) == 1
    out = capsys.readouterr().out
    assert "fire-without-arm" in out and "FAILED" in out
    assert '"ok": false' in (tmp_path / "r.json").read_text()
    assert crescent_main(["check-capture", str(tmp_path / "missing.pcap")]) == 2


@pytest.mark.parametrize("junk", [b"", b"\xd4\xc3\xb2\xa1" + b"\x00" * 10, b"not a pcap at all........."])
def test_cli_rejects_non_pcap(tmp_path, junk: bytes, capsys) -> None:
    p = tmp_path / "x.pcap"
    p.write_bytes(junk)
    assert crescent_main(["check-capture", str(p)]) == 2
    assert "error: capture" in capsys.readouterr().err


def test_device_silence_is_an_error_unless_the_device_reports_realtime_overrun(capture_builder) -> None:
    """A device silent past the watchdog is an error; one that then reports FAULT REALTIME_OVERRUN with the lag
    (the stall-honesty conformance case) told the truth about it: a warning."""
    def extra(b, overrun: bool):  # type: ignore[no-untyped-def]
        for k in range(8, 16):  # the host keeps its heartbeats; the device says nothing from 0.753 s
            b.stream(0.05 + 0.1 * k, H2D, "HEARTBEAT", 400 + k, uptime_ms=50 + 100 * k)
        if overrun:
            b.request(1.50, D2H, "FAULT", 180, device_time_us=1_500_000, fault_code=17, latched=0, detail=760,
                      text="control loop 760 ms behind real time")
            b.respond(1.501, H2D, "ACK", 180, acked_msg_id=0x44)
        b.request(1.52, H2D, "GET_STATUS", 10)
        b.respond(1.521, D2H, "STATUS", 10, state=1)

    silent = check_items(exam_capture(capture_builder, extra=lambda b: extra(b, False)))
    err = [f for f in silent.errors if f.rule == "silence"]
    assert err and err[0].message.startswith("device silent"), [f.message for f in silent.findings]
    told = check_items(exam_capture(capture_builder, extra=lambda b: extra(b, True)))
    assert not [f for f in told.errors if f.rule == "silence"], [f.message for f in told.errors]
    warn = [f for f in told.warnings if f.rule == "silence"]
    assert warn and "REALTIME_OVERRUN (760 ms behind" in warn[0].message
