"""The conformance checks: what protocols/SPEC.md promises, one function per promise.

Each check takes a :class:`Context` (session, rig, device capabilities) and
returns a :class:`CheckResult` (pass / fail / skip with a message). Checks
leave the device in IDLE with a session open where they can, so they run in
any order; :data:`CHECKS` is the suite in its default order. A check that
needs simulator inputs (SIM_SET_INPUT) is skipped on a device without the
SIMULATION_CONTROLS capability, or for an interlock the rig wires for real.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

from protocols.wire.catalogue import (
    AbortReason, Capability, DeviceState, ErrorCode, ExposureStatus, FaultCode, Interlock, SimInput,
)
from protocols.wire.framing import FLAG_ACK_REQ, FLAG_RETRANSMIT, FLAG_SYN, FLAGS_RESERVED, PROTOCOL_VERSION
from protocols.wire.messages import (
    Abort,
    ArmPlan,
    BY_NAME,
    Fire,
    GetInfo,
    GetLimits,
    GetStatus,
    Heartbeat,
    Hello,
    Home,
    Message,
    MoveArc,
    ResetFault,
    SetTelemetry,
    SimInjectFault,
    SimSetInput,
    plan_digest,
)

from hil.conformance.session import RxFrame, Session, SessionError, describe
from hil.junit import FAIL, PASS, SKIP
from hil.rig import InterlockSource, Rig

#: SIM_SET_INPUT input that drives each interlock bit (the others have no simulator input).
SIM_INPUT_OF: dict[str, int] = {
    "DOOR_CLOSED": int(SimInput.DOOR_CLOSED),
    "ESTOP_RELEASED": int(SimInput.ESTOP_RELEASED),
    "HAND_SWITCH": int(SimInput.HAND_SWITCH),
    "PADDLE_IN_RANGE": int(SimInput.PADDLE_PRESENT),
}


@dataclass(frozen=True)
class CheckResult:
    """Outcome of one check: ``status`` is pass / fail / skip (hil.junit constants)."""

    status: str
    message: str
    details: str = ""


def passed(msg: str, details: str = "") -> CheckResult:
    return CheckResult(PASS, msg, details)


def failed(msg: str, details: str = "") -> CheckResult:
    return CheckResult(FAIL, msg, details)


def skipped(msg: str) -> CheckResult:
    return CheckResult(SKIP, msg)


@dataclass
class Context:
    """What every check gets: the session, the rig description and what HELLO_REPLY said."""

    session: Session
    rig: Rig
    capabilities: int = 0
    watchdog_ms: int = 500
    heartbeat_ms: int = 100
    info: Message | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def sim_controls(self) -> bool:
        return bool(self.capabilities & int(Capability.SIMULATION_CONTROLS))


# --------------------------------------------------------------------------------------------
# helpers
def hello(ctx: Context, *, watchdog_ms: int | None = None, new_session: bool = True) -> Message:
    """Open a session (SYN) and return the device's answer."""
    s = ctx.session
    if new_session:
        s.link.new_session()
    msg = Hello(
        protocol_version=PROTOCOL_VERSION,
        min_version=PROTOCOL_VERSION,
        host_capabilities=int(Capability.SIGNED_LINK) if s.link.signer is not None else 0,
        session_id=s.session_id,
        heartbeat_period_ms=ctx.heartbeat_ms,
        watchdog_timeout_ms=watchdog_ms or ctx.watchdog_ms,
    )
    return s.request(msg, timeout_s=ctx.rig.timeouts.connect_s)


def status(ctx: Context) -> Message:
    return ctx.session.request(GetStatus())


def is_nak(resp: Message, *codes: int) -> bool:
    return resp.NAME == "NAK" and (not codes or resp.error_code in codes)  # type: ignore[attr-defined]


def code_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return str(code)


def recover(ctx: Context) -> None:
    """Bring the device back to IDLE with a fresh session (after a check that faulted it)."""
    s = ctx.session
    s.resume()
    st = status(ctx)
    if st.state in (DeviceState.SAFE_HOLD, DeviceState.FAULT):  # type: ignore[attr-defined]
        hello(ctx)
        s.request(ResetFault(fault_code=0))
        st = status(ctx)
    if st.state != DeviceState.IDLE:  # type: ignore[attr-defined]
        s.request(Abort(reason=0))


def ensure_homed(ctx: Context) -> None:
    """HOME the arc if needed and wait for MOTION_DONE; raises :class:`SessionError` if refused or stuck."""
    s = ctx.session
    st = status(ctx)
    waited = 0.0
    while st.state == DeviceState.BUSY and waited < ctx.rig.timeouts.motion_timeout_s:  # type: ignore[attr-defined]
        s.pump(0.1)  # a motion still braking after an ABORT (recover) ends first
        waited += 0.1
        st = status(ctx)
    if st.homed:  # type: ignore[attr-defined]
        return None
    mark = len(s.frames)
    resp = s.request(Home())
    if resp.NAME != "ACK":
        raise SessionError(f"HOME refused: {describe(resp)}")
    done = s.wait_for(lambda f: f.name == "MOTION_DONE", ctx.rig.timeouts.motion_timeout_s, since=mark)
    if done is None:
        raise SessionError("HOME: no MOTION_DONE")
    s.pump(0.05)
    return None


def single_plan(ctx: Context, plan_id: int = 7) -> Message:
    """A one-exposure step-and-shoot plan at the current angle, inside every default limit."""
    angle = int(status(ctx).arc_mdeg)  # type: ignore[attr-defined]
    angle = max(-30000, min(30000, angle))
    plan = ArmPlan(
        plan_id=plan_id, motion=0, anode_filter=0, focal_spot=0, speed_mdeg_s=0,
        entries=[(angle, 2800, 10_000_000, 100_000)],  # 28 kV, 10 mAs, 100 ms
    )
    plan.digest = plan_digest(plan)  # type: ignore[attr-defined]
    return plan


def exposures_since(s: Session, mark: int) -> list[RxFrame]:
    return [f for f in s.frames[mark:] if f.name == "EXPOSURE_DONE"]


def raw_payload(name: str, values: tuple[int, ...]) -> bytes:
    """A payload packed without the codec's range checks (to send out-of-range values on purpose)."""
    return BY_NAME[name].FIXED.pack(*values)


# --------------------------------------------------------------------------------------------
# checks
def check_handshake(ctx: Context) -> CheckResult:
    """HELLO opens a session: HELLO_REPLY with this protocol version, the session id echoed, the watchdog in force."""
    resp = hello(ctx)
    if resp.NAME != "HELLO_REPLY":
        return failed(f"HELLO answered with {describe(resp)}")
    problems = []
    if resp.protocol_version != PROTOCOL_VERSION:  # type: ignore[attr-defined]
        problems.append(f"protocol_version {resp.protocol_version}, expected {PROTOCOL_VERSION}")  # type: ignore[attr-defined]
    if resp.session_id != ctx.session.session_id:  # type: ignore[attr-defined]
        problems.append(f"session_id {resp.session_id} does not echo {ctx.session.session_id}")  # type: ignore[attr-defined]
    if resp.watchdog_timeout_ms != ctx.watchdog_ms:  # type: ignore[attr-defined]
        problems.append(f"watchdog {resp.watchdog_timeout_ms} ms, requested {ctx.watchdog_ms} ms")  # type: ignore[attr-defined]
    ctx.capabilities = resp.device_capabilities  # type: ignore[attr-defined]
    info = ctx.session.request(GetInfo())
    if info.NAME != "DEVICE_INFO":
        problems.append(f"GET_INFO answered with {describe(info)}")
    else:
        ctx.info = info
    if problems:
        return failed("; ".join(problems))
    caps = ", ".join(c.name for c in Capability if resp.device_capabilities & int(c)) or "none"  # type: ignore[attr-defined,union-attr]
    return passed(f"session open, firmware 0x{resp.firmware_version:06X}, capabilities: {caps}")  # type: ignore[attr-defined]


def check_version_negotiation(ctx: Context) -> CheckResult:
    """A host that speaks only a later version gets NAK VERSION_MISMATCH; so does a frame with that header version."""
    s = ctx.session
    fixed = BY_NAME["HELLO"].FIXED
    later = PROTOCOL_VERSION + 1
    payload = fixed.pack(later, later, 0, s.session_id, ctx.heartbeat_ms, ctx.watchdog_ms)
    seq, wire = s.raw_frame(0x01, payload, flags=FLAG_ACK_REQ | FLAG_SYN)
    mark = s.send_raw(wire)
    got = s.responses_to(seq, mark, 1.0)
    problems = []
    if not got or got[0].message is None or not is_nak(got[0].message, ErrorCode.VERSION_MISMATCH):
        problems.append(f"HELLO(version {later} only): {describe(got[0].message) if got else 'no answer'}")
    seq, wire = s.raw_frame(0x06, b"", version=later)
    mark = s.send_raw(wire)
    got = s.responses_to(seq, mark, 1.0)
    if not got or got[0].message is None or not is_nak(got[0].message, ErrorCode.VERSION_MISMATCH):
        problems.append(f"frame version {later}: {describe(got[0].message) if got else 'no answer'}")
    # the device must still talk this version afterwards
    resp = hello(ctx)
    if resp.NAME != "HELLO_REPLY":
        problems.append(f"HELLO v{PROTOCOL_VERSION} afterwards: {describe(resp)}")
    return failed("; ".join(problems)) if problems else passed(
        f"NAK VERSION_MISMATCH for HELLO v{later} and for a v{later} frame; v{PROTOCOL_VERSION} still accepted")


def check_crc_and_resync(ctx: Context) -> CheckResult:
    """A frame with a bad CRC is never answered; noise and an over-long run are skipped up to the next delimiter."""
    s = ctx.session
    problems = []
    seq, wire = s.raw_frame(0x06, b"")
    bad = bytearray(wire)
    bad[-2] ^= 0x01 if bad[-2] != 0x01 else 0x03  # flip a bit of the last stuffed byte (CRC), never make it 0x00
    mark = s.send_raw(bytes(bad))
    got = s.responses_to(seq, mark, 0.4)
    if got:
        problems.append(f"answered a frame with a bad CRC: {describe(got[0].message)}")
    # garbage without a delimiter directly in front of a valid frame (the frame's leading 0x00 ends it)
    seq, wire = s.raw_frame(0x06, b"")
    mark = s.send_raw(b"\x55\xAA\x13\x37" + wire)
    got = s.responses_to(seq, mark, 1.0)
    if not got or got[0].name != "STATUS":
        problems.append("no STATUS for a valid frame after line noise")
    # an over-long run (more than the 654-byte frame limit) must be discarded with bounded memory
    seq, wire = s.raw_frame(0x06, b"")
    mark = s.send_raw(b"\x01" * 1000 + wire)
    got = s.responses_to(seq, mark, 1.0)
    if not got or got[0].name != "STATUS":
        problems.append("no STATUS for a valid frame after a 1000-byte run without delimiter")
    # a frame whose length field disagrees with its size, CRC recomputed: dropped, not answered
    from protocols.wire.framing import build_frame
    from cobs import cobs
    from protocols.wire.crc import crc32c

    seq = s.new_raw_seq()
    raw = bytearray(build_frame(0x06, seq, FLAG_ACK_REQ, b""))
    raw[5] = 3
    raw[-4:] = struct.pack("<I", crc32c(bytes(raw[:-4])))
    mark = s.send_raw(b"\x00" + cobs.encode(bytes(raw)) + b"\x00")
    got = s.responses_to(seq, mark, 0.4)
    if got:
        problems.append(f"answered a frame whose length field is wrong: {describe(got[0].message)}")
    return failed("; ".join(problems)) if problems else passed("bad CRC and bad length dropped silently; resync after noise and a 1000-byte run")


def check_deduplication(ctx: Context) -> CheckResult:
    """Identical request bytes sent twice: two identical answers, one execution (one motion)."""
    s = ctx.session
    ensure_homed(ctx)
    angle = int(status(ctx).arc_mdeg)  # type: ignore[attr-defined]
    target = angle + 1000 if angle < 20000 else angle - 1000
    payload = MoveArc(target_mdeg=target, speed_mdeg_s=5000).pack()
    seq, wire = s.raw_frame(MoveArc.ID, payload)
    mark = s.send_raw(wire)
    first = s.responses_to(seq, mark, 1.0)
    if not first:
        return failed("MOVE_ARC not answered")
    if s.link.signer is not None:  # signed (SPEC 2.6): a byte-identical copy is a replay; a copy is re-signed
        wire = s.raw_frame(MoveArc.ID, payload, seq=seq)[1]
    mark2 = s.send_raw(wire)  # byte-identical (unsigned link)
    second = s.responses_to(seq, mark2, 1.0)
    # and once more flagged RETRANSMIT, as a link would send it
    _, wire_rt = s.raw_frame(MoveArc.ID, payload, seq=seq, flags=FLAG_ACK_REQ | FLAG_RETRANSMIT)
    mark3 = s.send_raw(wire_rt)
    third = s.responses_to(seq, mark3, 1.0)
    done = s.wait_for(lambda f: f.name == "MOTION_DONE", ctx.rig.timeouts.motion_timeout_s, since=mark)
    s.pump(0.6)  # room for a second (wrong) execution to show up
    motions = {f.frame.seq for f in s.frames[mark:] if f.name == "MOTION_DONE"}
    busy = [st for _, st in s.states_seen(mark) if st == DeviceState.BUSY]
    problems = []
    if not second or not third:
        problems.append(f"retransmission not answered (answers: {len(first)}, {len(second)}, {len(third)})")
    else:
        a, b, c = (x[0].frame for x in (first, second, third))
        if (a.msg_id, a.payload) != (b.msg_id, b.payload) or (a.msg_id, a.payload) != (c.msg_id, c.payload):
            problems.append(
                f"answers differ: {describe(first[0].message)} / {describe(second[0].message)} / {describe(third[0].message)}"
            )
    if first[0].name != "ACK":
        problems.append(f"MOVE_ARC refused: {describe(first[0].message)}")
    elif done is None:
        problems.append("no MOTION_DONE")
    if len(motions) > 1 or len(busy) > 1:
        problems.append(f"executed more than once: {len(motions)} MOTION_DONE events, {len(busy)} moves to BUSY")
    if problems:
        return failed("; ".join(problems))
    return passed("3 copies of one MOVE_ARC: 3 identical answers, 1 motion")


def check_heartbeat_watchdog(ctx: Context) -> CheckResult:
    """Host goes silent: the device reaches SAFE_HOLD within the watchdog timeout + margin; HELLO recovers."""
    s = ctx.session
    wd_ms = 300
    resp = hello(ctx, watchdog_ms=wd_ms)
    if resp.NAME != "HELLO_REPLY":
        return failed(f"HELLO with a {wd_ms} ms watchdog: {describe(resp)}")
    s.pump(0.3)  # heartbeats flowing
    margin_ms = ctx.rig.timeouts.watchdog_margin_ms
    mark = len(s.frames)
    s.go_silent()
    silent_from = s.last_tx_s if s.last_tx_s is not None else s.now()
    hit = s.wait_for(
        lambda f: f.name == "STATE_CHANGED" and f.message.new_state == DeviceState.SAFE_HOLD,  # type: ignore[union-attr]
        (wd_ms + margin_ms) / 1000.0 + 1.0,
        since=mark,
    )
    s.resume()
    latency_ms = None if hit is None else 1000.0 * (hit.t_s - silent_from)
    try:
        recover(ctx)
        hello(ctx)
    except SessionError as exc:
        return failed(f"device did not recover after the watchdog: {exc}")
    if hit is None:
        return failed(f"no SAFE_HOLD within {wd_ms + margin_ms + 1000:.0f} ms of host silence")
    assert latency_ms is not None
    if latency_ms > wd_ms + margin_ms:
        return failed(f"SAFE_HOLD {latency_ms:.0f} ms after the last host frame; limit {wd_ms} + {margin_ms:.0f} ms")
    if latency_ms < wd_ms * 0.9:
        return failed(f"SAFE_HOLD after only {latency_ms:.0f} ms of silence (watchdog {wd_ms} ms): too early")
    return passed(f"SAFE_HOLD {latency_ms:.0f} ms after the last host frame (watchdog {wd_ms} ms + {margin_ms:.0f} ms)")


def check_fire_without_arm(ctx: Context) -> CheckResult:
    """FIRE in IDLE (nothing armed) is refused with NOT_ARMED (SPEC section 3, vector nak_not_armed); nothing is exposed."""
    s = ctx.session
    mark = len(s.frames)
    resp = s.request(Fire(plan_id=4242, digest=0x12345678))
    s.pump(0.3)
    if not is_nak(resp, ErrorCode.NOT_ARMED):
        return failed(f"FIRE without ARM answered {describe(resp)}")
    if exposures_since(s, mark):
        return failed("EXPOSURE_DONE after a refused FIRE")
    # armed, but FIRE with a wrong digest
    ensure_homed(ctx)
    plan = single_plan(ctx)
    armed = s.request(plan)
    if armed.NAME != "ACK":
        return failed(f"a valid one-exposure plan was refused: {describe(armed)}")
    resp2 = s.request(Fire(plan_id=plan.plan_id, digest=plan.digest ^ 0xFFFF))  # type: ignore[attr-defined]
    s.request(Abort(reason=0))
    s.pump(0.2)
    if not is_nak(resp2, ErrorCode.DIGEST_MISMATCH, ErrorCode.NOT_ARMED):
        return failed(f"FIRE with a wrong digest answered {describe(resp2)}")
    if exposures_since(s, mark):
        return failed("EXPOSURE_DONE after a refused FIRE")
    return passed(f"FIRE unarmed -> NAK {code_name(resp.error_code)}; wrong digest -> NAK {code_name(resp2.error_code)}")  # type: ignore[attr-defined]


def _fire_with_open(ctx: Context, interlock: str) -> CheckResult:
    s = ctx.session
    src = ctx.rig.interlocks.get(interlock)
    if interlock not in SIM_INPUT_OF:
        return skipped(f"{interlock} has no simulator input; rig-only")
    if src is not InterlockSource.SIMULATED:
        return skipped(f"{interlock} is {src.value if src else 'absent'} on this rig; open it by hand (rig-only)")
    if not ctx.sim_controls:
        return skipped("device lacks SIMULATION_CONTROLS; rig-only")
    ensure_homed(ctx)
    bit = int(Interlock[interlock])
    plan = single_plan(ctx, plan_id=11)
    armed = s.request(plan)
    if armed.NAME != "ACK":
        return failed(f"a valid one-exposure plan was refused: {describe(armed)}")
    mark = len(s.frames)
    set_resp = s.request(SimSetInput(input=SIM_INPUT_OF[interlock], value=0))
    if set_resp.NAME != "ACK":
        return failed(f"SIM_SET_INPUT refused: {describe(set_resp)}")
    s.pump(0.1)
    st = status(ctx)
    resp = s.request(Fire(plan_id=plan.plan_id, digest=plan.digest))  # type: ignore[attr-defined]
    s.pump(0.3)
    exposed = exposures_since(s, mark)
    s.request(SimSetInput(input=SIM_INPUT_OF[interlock], value=1))
    s.request(Abort(reason=2))
    s.pump(0.1)
    recover(ctx)
    if st.interlocks & bit:  # type: ignore[attr-defined]
        return failed(f"STATUS still reports {interlock} safe after opening it (interlocks 0x{st.interlocks:02X})")  # type: ignore[attr-defined]
    if resp.NAME != "NAK":
        return failed(f"FIRE with {interlock} open answered {describe(resp)}" + (f"; {len(exposed)} exposure(s)" if exposed else ""))
    if exposed:
        return failed(f"EXPOSURE_DONE with {interlock} open")
    # the e-stop also puts the device in SAFE_HOLD (device_states), which disarms: BAD_STATE or NOT_ARMED
    allowed = (
        (ErrorCode.INTERLOCK_OPEN, ErrorCode.BAD_STATE, ErrorCode.NOT_ARMED)
        if interlock == "ESTOP_RELEASED"
        else (ErrorCode.INTERLOCK_OPEN,)
    )
    if not is_nak(resp, *allowed):
        return failed(f"FIRE with {interlock} open refused with {code_name(resp.error_code)}, expected INTERLOCK_OPEN")  # type: ignore[attr-defined]
    if is_nak(resp, ErrorCode.INTERLOCK_OPEN) and not (resp.detail & bit):  # type: ignore[attr-defined]
        return failed(f"NAK INTERLOCK_OPEN detail 0x{resp.detail:02X} does not name {interlock} (bit 0x{bit:02X})")  # type: ignore[attr-defined]
    return passed(f"FIRE with {interlock} open -> NAK {code_name(resp.error_code)} detail 0x{resp.detail:02X}")  # type: ignore[attr-defined]


def _interlock_check(name: str) -> Callable[[Context], CheckResult]:
    def check(ctx: Context) -> CheckResult:
        return _fire_with_open(ctx, name)

    check.__doc__ = f"FIRE on an armed plan with {name} open is refused (NAK INTERLOCK_OPEN naming the bit), nothing exposed."
    check.__name__ = f"check_fire_interlock_{name.lower()}"
    return check


#: The permissives the interruption case opens mid-plan: every one with a simulator input (SPEC.md
#: section 3, "Safety rules"; the e-stop is a hold cause, checked by estop_latches_in_every_state).
PERMISSIVE_INPUTS: tuple[str, ...] = ("DOOR_CLOSED", "HAND_SWITCH", "PADDLE_IN_RANGE")

#: X-ray window of each exposure of the interruption case's plan, ms: long enough for the host to see the
#: tube on in TELEMETRY and open an interlock inside the window, even on a loaded machine.
LONG_WINDOW_MS = 1500

#: Tube current of those exposures, mA (28 kV, 30 mAs over 1.5 s: inside every default limit).
LONG_WINDOW_MA = 20.0

#: How long the interruption case waits, once the interlock is closed again, for the frame of the cut window
#: to be read out (IMAGE_READY), s: a step-and-shoot device takes its next window only after that readout,
#: so a plan that resumes would show only then (a render on a loaded machine may take seconds).
READOUT_WAIT_S = 10.0

#: How long the interruption case then watches for a plan that resumes, s (a step-and-shoot device that
#: went on would start its next window within the settle time, 0.1 s by default).
RESUME_WATCH_S = 1.2


def long_plan(ctx: Context, plan_id: int, n: int = 3) -> Message:
    """``n`` step-and-shoot exposures at the current angle, each a long window.

    Each entry: 28 kV, a :data:`LONG_WINDOW_MS` ms pulse (the rig's longest exposure if that is shorter) at
    :data:`LONG_WINDOW_MA` mA, so an interlock can be opened while a window is on. Step-and-shoot may repeat
    an angle (SPEC.md section 3), so the arm does not move between exposures.
    """
    angle = int(status(ctx).arc_mdeg)  # type: ignore[attr-defined]
    angle = max(-30000, min(30000, angle))
    pulse_ms = min(float(LONG_WINDOW_MS), ctx.rig.limits.exposure_max_ms)
    mas = LONG_WINDOW_MA * pulse_ms / 1000.0
    entry = (angle, 2800, int(round(mas * 1e6)), int(round(pulse_ms * 1000.0)))  # mdeg, ckV, nAs, us
    plan = ArmPlan(plan_id=plan_id, motion=0, anode_filter=0, focal_spot=0, speed_mdeg_s=0, entries=[entry] * n)
    plan.digest = plan_digest(plan)  # type: ignore[attr-defined]
    return plan


def pulse_s(plan: Message) -> float:
    """The longest pulse of an ARM_PLAN's entries, s."""
    return max(e.pulse_us for e in plan.entries) / 1e6  # type: ignore[attr-defined]


def _tube_on(f: RxFrame) -> bool:
    """A TELEMETRY frame that shows tube current (an X-ray window on)."""
    return f.name == "TELEMETRY" and f.message is not None and f.message.ma_dma > 0  # type: ignore[attr-defined]


def answer_text(resp: Message) -> str:
    """A response as a failure message names it: a NAK by its code (and a BAD_STATE's state), else :func:`describe`."""
    if resp.NAME != "NAK":
        return describe(resp)
    code, detail = resp.error_code, resp.detail  # type: ignore[attr-defined]
    if code == ErrorCode.BAD_STATE:
        try:
            return f"NAK BAD_STATE (device in {DeviceState(detail).name})"
        except ValueError:
            pass
    return f"NAK {code_name(code)} detail {detail}"


def _exposure_text(f: RxFrame) -> str:
    m = f.message
    try:
        how = ExposureStatus(m.status).name  # type: ignore[union-attr]
    except ValueError:
        how = str(m.status)  # type: ignore[union-attr]
    return f"index {m.index} status {how}"  # type: ignore[union-attr]


class _HostTooSlow(Exception):
    """This host opened the interlock too late to judge the device (the window had ended): not the device's fault."""


#: Tries per interlock when the host is too slow to open it inside a window (a loaded host), before the case
#: gives up on that interlock as not judged (skipped, never failed: the device did nothing wrong).
INTERRUPT_TRIES = 3


def _interrupt(ctx: Context, interlock: str, plan_id: int) -> list[str]:
    """Open ``interlock`` inside a window of a 3-exposure plan, close it again; what went wrong ([] if nothing)."""
    s = ctx.session
    sim_input = SIM_INPUT_OF[interlock]
    ensure_homed(ctx)
    plan = long_plan(ctx, plan_id)
    n = len(plan.entries)  # type: ignore[attr-defined]
    armed = s.request(plan)
    if armed.NAME != "ACK":
        return [f"ARM_PLAN of a valid {n}-exposure plan answered {answer_text(armed)}"]
    start = len(s.frames)
    fire = s.request(Fire(plan_id=plan.plan_id, digest=plan.digest))  # type: ignore[attr-defined]
    if fire.NAME != "ACK":
        return [f"FIRE of the armed plan answered {answer_text(fire)}"]
    wait_s = 5.0 + pulse_s(plan)
    on = s.wait_for(_tube_on, wait_s, since=start)
    if on is None:
        return [f"no X-ray window within {wait_s:.1f} s of FIRE (no TELEMETRY with tube current)"]
    mark = len(s.frames)
    resp = s.request(SimSetInput(input=sim_input, value=0))
    if resp.NAME != "ACK":
        return [f"SIM_SET_INPUT {interlock} open answered {describe(resp)}"]
    problems: list[str] = []
    before = [f for f in s.frames[start:mark] if f.name == "EXPOSURE_DONE"]
    early = [f for f in before if f.message.status != ExposureStatus.OK]  # type: ignore[union-attr]
    if early:  # a window ended otherwise than by its mAs before anything opened: the device's doing
        problems.append(f"before {interlock} opened: {', '.join(_exposure_text(f) for f in early)} (expected OK)")
    elif before:  # the host was too late: the window it saw had ended (status OK) before the interlock opened
        raise _HostTooSlow(f"the window had ended before {interlock} opened ({len(before)} EXPOSURE_DONE: "
                           f"{', '.join(_exposure_text(f) for f in before)})")
    cut = s.wait_for(lambda f: f.name == "EXPOSURE_DONE", pulse_s(plan) + 1.0, since=mark)
    s.pump(0.2)
    opened = status(ctx)
    where = f"{interlock} opened in EXPOSING"
    if cut is None:
        problems.append(f"{where}: no EXPOSURE_DONE for the window it ended")
    elif cut.message.status != ExposureStatus.INTERLOCK:  # type: ignore[union-attr]
        problems.append(f"{where}: EXPOSURE_DONE {_exposure_text(cut)}, expected status INTERLOCK")
    if opened.state != DeviceState.IDLE:  # type: ignore[attr-defined]
        problems.append(f"{where}: device in {DeviceState(opened.state).name}, not IDLE")  # type: ignore[attr-defined]
    # close it again: nothing may resume, nothing may fire, and the old plan stays disarmed
    mark = len(s.frames)
    resp = s.request(SimSetInput(input=sim_input, value=1))
    if resp.NAME != "ACK":
        return problems + [f"SIM_SET_INPUT {interlock} closed answered {describe(resp)}"]
    if cut is not None:  # let the cut window's readout end first (the next window would wait for it)
        frame_id = cut.message.frame_id  # type: ignore[union-attr]
        s.wait_for(lambda f: f.name == "IMAGE_READY" and f.message.frame_id == frame_id,  # type: ignore[union-attr]
                   READOUT_WAIT_S, since=start)
    s.pump(RESUME_WATCH_S)
    closed = status(ctx)
    where = f"{interlock} closed again"
    later = [f for f in s.frames[mark:] if f.name == "EXPOSURE_DONE"]
    moved_on = sorted({DeviceState(st).name for _, st in s.states_seen(mark)
                       if st in (DeviceState.ARMED, DeviceState.EXPOSING)})
    beam = [f for f in s.frames[mark:] if _tube_on(f)]
    resumed = []
    if moved_on:
        resumed.append(f"STATE_CHANGED to {', '.join(moved_on)}")
    if beam:
        resumed.append(f"tube current {max(f.message.ma_dma for f in beam) / 10.0:.1f} mA in TELEMETRY")  # type: ignore[union-attr]
    if later:
        resumed.append(f"{len(later)} EXPOSURE_DONE ({', '.join(_exposure_text(f) for f in later)})")
    if resumed:
        problems.append(f"{where}: the interrupted plan resumed: " + "; ".join(resumed))
    if closed.state != DeviceState.IDLE:  # type: ignore[attr-defined]
        problems.append(f"{where}: device in {DeviceState(closed.state).name}, not IDLE")  # type: ignore[attr-defined]
    # the old FIRE again, as a new request (a new seq: not a retransmission answered from the cache)
    again = s.request(Fire(plan_id=plan.plan_id, digest=plan.digest))  # type: ignore[attr-defined]
    if not is_nak(again, ErrorCode.NOT_ARMED):
        problems.append(f"{where}: FIRE of the interrupted plan {plan.plan_id} (a new request) answered "  # type: ignore[attr-defined]
                        f"{answer_text(again)}, expected NAK NOT_ARMED")
        if again.NAME == "ACK":
            s.request(Abort(reason=int(AbortReason.INTERLOCK)))
    # a permissive is not a hold cause: no RESET_FAULT, a new plan arms at once
    holds = sorted({DeviceState(st).name for _, st in s.states_seen(start)
                    if st in (DeviceState.SAFE_HOLD, DeviceState.FAULT)})
    if holds:
        problems.append(f"{interlock} opening took the device to {', '.join(holds)} (a permissive is not a hold cause)")
    fresh = single_plan(ctx, plan_id=plan_id + 1)
    rearm = s.request(fresh)
    if rearm.NAME != "ACK":
        problems.append(f"{where}: a new plan without RESET_FAULT: ARM_PLAN answered {answer_text(rearm)}")
    s.request(Abort(reason=0))
    return problems


def check_interruption_latches(ctx: Context) -> CheckResult:
    """A permissive opened mid-plan interrupts it for good; closing it again resumes nothing, no RESET_FAULT needed.

    For each permissive with a simulator input (door, hand switch, paddle) simulated on the rig: a
    3-exposure step-and-shoot plan (1.5 s windows) is fired and the interlock opened while the first
    window is on (TELEMETRY shows tube current). The window must end with EXPOSURE_DONE status
    INTERLOCK and the device be in IDLE. With the interlock closed again, until the cut frame is read
    out (IMAGE_READY, at most 10 s) and 1.2 s more: no EXPOSURE_DONE, no tube current, no ARMED or
    EXPOSING, state IDLE. FIRE of the interrupted plan (same id and digest, a new request) is refused
    NOT_ARMED; the device never went to SAFE_HOLD or FAULT and arms a new plan at once, without
    RESET_FAULT (SPEC.md section 3, "Safety rules"). Skipped for an interlock the rig wires for real, and
    for one this host could not open inside a window in INTERRUPT_TRIES tries (a loaded host; not judged).
    """
    if not ctx.sim_controls:
        return skipped("device lacks SIMULATION_CONTROLS; rig-only (open each interlock by hand mid-plan)")
    s = ctx.session
    problems: list[str] = []
    done: list[str] = []
    skips: list[str] = []
    for k, interlock in enumerate(PERMISSIVE_INPUTS):
        src = ctx.rig.interlocks.get(interlock)
        if interlock not in SIM_INPUT_OF:
            skips.append(f"{interlock} has no simulator input")
            continue
        if src is not InterlockSource.SIMULATED:
            skips.append(f"{interlock} is {src.value if src else 'absent'} on this rig (rig-only)")
            continue
        bad: list[str] | None = None
        for attempt in range(INTERRUPT_TRIES):
            try:
                bad = _interrupt(ctx, interlock, plan_id=31 + 2 * k + 10 * attempt)
            except _HostTooSlow as exc:
                slow = str(exc)
            except SessionError as exc:
                bad = [f"{interlock}: {exc}"]
            finally:
                try:
                    s.request(SimSetInput(input=SIM_INPUT_OF[interlock], value=1))
                    s.request(Abort(reason=int(AbortReason.INTERLOCK)))
                    s.pump(0.1)
                    recover(ctx)
                except SessionError as exc:
                    problems.append(f"{interlock}: no recovery afterwards: {exc}")
            if bad is not None:
                break
        if bad is None:
            skips.append(f"{interlock} not judged: this host was too slow {INTERRUPT_TRIES} times ({slow})")
        elif bad:
            problems.extend(bad)
        else:
            done.append(interlock)
    if problems:
        return failed("; ".join(problems))
    if not done:
        return skipped("; ".join(skips))
    note = f" ({'; '.join(skips)})" if skips else ""
    return passed(f"{', '.join(done)} opened in a window: EXPOSURE_DONE INTERLOCK, IDLE; closed again: nothing resumed "
                  f"in {RESUME_WATCH_S:.1f} s, FIRE of the old plan NAK NOT_ARMED, a new plan armed without "
                  f"RESET_FAULT{note}")


def check_abort_latency(ctx: Context) -> CheckResult:
    """ABORT during a long arc move: ACK and the return to IDLE within the rig's abort latency."""
    s = ctx.session
    ensure_homed(ctx)
    angle = int(status(ctx).arc_mdeg)  # type: ignore[attr-defined]
    target = -25000 if angle > 0 else 25000
    resp = s.request(MoveArc(target_mdeg=target, speed_mdeg_s=2000))
    if resp.NAME != "ACK":
        return failed(f"MOVE_ARC refused: {describe(resp)}")
    s.pump(0.3)
    mark = len(s.frames)
    t0 = s.now()
    ack = s.request(Abort(reason=0))
    t_ack = s.now()
    idle = s.wait_for(
        lambda f: f.name == "STATE_CHANGED" and f.message.new_state == DeviceState.IDLE,  # type: ignore[union-attr]
        2.0,
        since=mark,
    )
    limit = ctx.rig.timeouts.abort_latency_max_ms
    if ack.NAME != "ACK":
        return failed(f"ABORT answered {describe(ack)}")
    if idle is None:
        return failed("no STATE_CHANGED to IDLE after ABORT")
    ack_ms = 1000 * (t_ack - t0)
    idle_ms = 1000 * (idle.t_s - t0)
    s.pump(0.3)
    st = status(ctx)
    moved = abs(st.arc_mdeg - target) > 500  # type: ignore[attr-defined]
    if max(ack_ms, idle_ms) > limit:
        return failed(f"ABORT: ACK after {ack_ms:.1f} ms, IDLE after {idle_ms:.1f} ms; limit {limit:.0f} ms")
    if not moved:
        return failed("the arc reached its target despite ABORT")
    return passed(f"ABORT: ACK after {ack_ms:.1f} ms, IDLE after {idle_ms:.1f} ms (limit {limit:.0f} ms)")


def check_telemetry_rate(ctx: Context) -> CheckResult:
    """SET_TELEMETRY 20 ms and 50 ms: the device clock period matches within 10 %, none missing."""
    s = ctx.session
    problems, notes = [], []
    for period_ms in (20, 50):
        resp = s.request(SetTelemetry(period_ms=period_ms))
        if resp.NAME != "ACK":
            problems.append(f"SET_TELEMETRY {period_ms} ms answered {describe(resp)}")
            continue
        s.pump(0.1)
        mark = len(s.frames)
        s.pump(1.0)
        tel = [f for f in s.frames[mark:] if f.name == "TELEMETRY"]
        if len(tel) < 5:
            problems.append(f"{len(tel)} TELEMETRY frames in 1 s at {period_ms} ms")
            continue
        dev = [f.message.device_time_us for f in tel]  # type: ignore[union-attr]
        periods = sorted((b - a) / 1000.0 for a, b in zip(dev, dev[1:]))
        median = periods[len(periods) // 2]
        wall = 1000.0 * (tel[-1].t_s - tel[0].t_s) / (len(tel) - 1)
        notes.append(f"{period_ms} ms: median {median:.2f} ms (device), {wall:.2f} ms (host clock), n={len(tel)}")
        if abs(median - period_ms) > 0.1 * period_ms:
            problems.append(f"period {median:.2f} ms on the device clock, requested {period_ms} ms")
        if abs(wall - period_ms) > 0.5 * period_ms:  # the host clock sees scheduling jitter too
            problems.append(f"period {wall:.2f} ms on the host clock, requested {period_ms} ms")
        if max(periods) > 2.5 * period_ms:
            problems.append(f"a gap of {max(periods):.1f} ms at period {period_ms} ms")
    s.request(SetTelemetry(period_ms=20))
    if problems:
        return failed("; ".join(problems), "\n".join(notes))
    return passed("; ".join(notes))


def check_range_rejection(ctx: Context) -> CheckResult:
    """Out-of-range values, undefined enums, bad lengths, unknown ids and reserved flags: the right NAK and detail."""
    s = ctx.session
    mk = raw_payload
    cases: list[tuple[str, int, bytes, int, int, int | None]] = [
        # (what, msg_id, payload, flags, expected code, expected detail)
        ("MOVE_ARC target 95 deg", 0x11, mk("MOVE_ARC", (95_000, 0)), FLAG_ACK_REQ, ErrorCode.OUT_OF_RANGE, 0),
        ("SET_TECHNIQUE 55 kV", 0x14, mk("SET_TECHNIQUE", (0, 5500, 1000, 0)), FLAG_ACK_REQ, ErrorCode.OUT_OF_RANGE, 1),
        ("SET_TECHNIQUE anode/filter 9", 0x14, mk("SET_TECHNIQUE", (9, 2800, 1000, 0)), FLAG_ACK_REQ, ErrorCode.BAD_ENUM, 0),
        ("SET_TELEMETRY 1 ms", 0x19, mk("SET_TELEMETRY", (1,)), FLAG_ACK_REQ, ErrorCode.OUT_OF_RANGE, 0),
        ("GET_STATUS with 3 payload bytes", 0x06, b"\x01\x02\x03", FLAG_ACK_REQ, ErrorCode.BAD_LENGTH, None),
        ("unknown msg id 0x7F", 0x7F, b"", FLAG_ACK_REQ, ErrorCode.UNKNOWN_MESSAGE, None),
        ("reserved flag bit", 0x06, b"", FLAG_ACK_REQ | (FLAGS_RESERVED & 0x20), ErrorCode.BAD_FLAGS, None),
    ]
    problems, ok = [], []
    for what, msg_id, payload, flags, code, detail in cases:
        seq, wire = s.raw_frame(msg_id, payload, flags=flags)
        mark = s.send_raw(wire)
        got = s.responses_to(seq, mark, 1.0)
        msg = got[0].message if got else None
        if msg is None or not is_nak(msg, code) or (detail is not None and msg.detail != detail):  # type: ignore[attr-defined]
            want = f"NAK {code_name(code)}" + ("" if detail is None else f" detail {detail}")
            problems.append(f"{what}: {describe(msg) if msg else 'no answer'}, expected {want}")
        else:
            ok.append(what)
    # device limits beyond the catalogue ranges (DEVICE_INFO): travel and force
    info = ctx.info
    if info is not None:
        ensure_homed(ctx)
        beyond = int(info.arc_max_mdeg) + 5000  # type: ignore[attr-defined]
        if beyond <= 90_000:
            resp = s.request(MoveArc(target_mdeg=beyond, speed_mdeg_s=0))
            if not is_nak(resp, ErrorCode.BEYOND_LIMITS):
                problems.append(f"MOVE_ARC {beyond} mdeg beyond travel {info.arc_max_mdeg}: {describe(resp)}")  # type: ignore[attr-defined]
                if resp.NAME == "ACK":
                    s.request(Abort(reason=0))
            else:
                ok.append("MOVE_ARC beyond the device's travel")
        force = int(info.force_limit_dn) + 100  # type: ignore[attr-defined]
        if force <= 3000:
            resp = s.request(BY_NAME["COMPRESS"](target_force_dn=force, min_thickness_um=0, speed_um_s=0))
            if not is_nak(resp, ErrorCode.FORCE_LIMIT):
                problems.append(f"COMPRESS {force} dN above the limit {info.force_limit_dn} dN: {describe(resp)}")  # type: ignore[attr-defined]
                if resp.NAME == "ACK":
                    s.request(Abort(reason=0))
            else:
                ok.append("COMPRESS above the force limit")
    if problems:
        return failed("; ".join(problems))
    return passed(f"{len(ok)} refusals with the right code: " + "; ".join(ok))


def check_device_info_matches_rig(ctx: Context) -> CheckResult:
    """DEVICE_INFO (and LIMITS_INFO, if the device has GET_LIMITS) agree with the rig description.

    Geometry (SID, pivot, support), travel, speed, force, kV; then tube current, power, exposure
    length, backup timer and anode heat capacity.
    """
    info = ctx.info
    if info is None:
        return failed("no DEVICE_INFO (GET_INFO failed in the handshake)")
    g, lim = ctx.rig.geometry, ctx.rig.limits
    pairs = [  # (what, device value, rig value, tolerance, unit)
        ("sid", info.sid_um / 1000.0, g.sid_mm, 0.5, "mm"),  # type: ignore[attr-defined]
        ("pivot height", info.pivot_height_um / 1000.0, g.pivot_height_mm, 0.5, "mm"),  # type: ignore[attr-defined]
        ("support height", info.support_height_um / 1000.0, g.support_height_mm, 0.5, "mm"),  # type: ignore[attr-defined]
        ("arc min", info.arc_min_mdeg / 1000.0, lim.arc_min_deg, 0.01, "deg"),  # type: ignore[attr-defined]
        ("arc max", info.arc_max_mdeg / 1000.0, lim.arc_max_deg, 0.01, "deg"),  # type: ignore[attr-defined]
        ("arc max speed", info.arc_max_speed_mdeg_s / 1000.0, lim.arc_max_speed_deg_s, 0.01, "deg/s"),  # type: ignore[attr-defined]
        ("force limit", info.force_limit_dn / 10.0, lim.compression_force_max_n, 0.5, "N"),  # type: ignore[attr-defined]
        ("kV min", info.kv_min_ckv / 100.0, lim.kvp_min_kv, 0.01, "kV"),  # type: ignore[attr-defined]
        ("kV max", info.kv_max_ckv / 100.0, lim.kvp_max_kv, 0.01, "kV"),  # type: ignore[attr-defined]
    ]
    source = "DEVICE_INFO"
    limits_info = ctx.session.request(GetLimits())
    if limits_info.NAME == "LIMITS_INFO":
        li = limits_info
        source = "DEVICE_INFO and LIMITS_INFO"
        pairs += [
            ("tube current min", li.ma_min_dma / 10.0, lim.tube_current_min_ma, 0.05, "mA"),  # type: ignore[attr-defined]
            ("tube current max", li.ma_max_dma / 10.0, lim.tube_current_max_ma, 0.05, "mA"),  # type: ignore[attr-defined]
            ("tube power", float(li.power_max_w), lim.tube_max_power_w, 0.5, "W"),  # type: ignore[attr-defined]
            ("exposure max", float(li.exposure_max_ms), lim.exposure_max_ms, 0.5, "ms"),  # type: ignore[attr-defined]
            ("backup timer", float(li.backup_timer_ms), lim.backup_timer_ms, 0.5, "ms"),  # type: ignore[attr-defined]
            ("anode heat capacity", float(li.anode_heat_capacity_j), lim.anode_heat_capacity_j, 0.5, "J"),  # type: ignore[attr-defined]
        ]
    elif is_nak(limits_info, ErrorCode.UNKNOWN_MESSAGE, ErrorCode.UNSUPPORTED):
        ctx.notes.append("device has no GET_LIMITS: generator limits not compared")
    else:
        return failed(f"GET_LIMITS answered with {describe(limits_info)}")
    bad = [f"{w}: device {d:g} {u}, rig file {r:g} {u}" for w, d, r, tol, u in pairs if abs(d - r) > tol]
    if bad:
        return failed(f"{source} disagrees with the rig description: " + "; ".join(bad))
    return passed(f"{len(pairs)} geometry and limit values in {source} agree with the rig description ({ctx.rig.name})")


def _estop(ctx: Context, pressed: bool) -> Message:
    return ctx.session.request(SimSetInput(input=int(SimInput.ESTOP_RELEASED), value=0 if pressed else 1))


def _reach(ctx: Context, state: DeviceState) -> str | None:
    """Bring the device to ``state`` (a session open, except BOOT); None, or why it could not."""
    s = ctx.session
    if state is DeviceState.BOOT:
        s.request(SimInjectFault(fault_code=int(FaultCode.DEVICE_RESET), param=0))
        s.pump(0.2)
        s.link.new_session()  # the device's RAM (and duplicate memory) is gone
        st = status(ctx)
        return None if is_nak(st, ErrorCode.NO_SESSION) else f"after DEVICE_RESET GET_STATUS answered {describe(st)}"
    if state is DeviceState.IDLE:
        return None
    if state is DeviceState.SAFE_HOLD:
        wd_ms = 300
        hello(ctx, watchdog_ms=wd_ms)
        s.go_silent()
        s.pump((wd_ms + ctx.rig.timeouts.watchdog_margin_ms) / 1000.0 + 0.3)
        s.resume()  # heartbeats again; the device stays in SAFE_HOLD until RESET_FAULT
    elif state is DeviceState.FAULT:
        ensure_homed(ctx)
        resp = s.request(SimInjectFault(fault_code=int(FaultCode.ENCODER_GLITCH), param=5000))
        if resp.NAME != "ACK":
            return f"SIM_INJECT_FAULT ENCODER_GLITCH answered {describe(resp)}"
        s.pump(0.1)
    elif state is DeviceState.BUSY:
        ensure_homed(ctx)
        angle = int(status(ctx).arc_mdeg)  # type: ignore[attr-defined]
        resp = s.request(MoveArc(target_mdeg=-20000 if angle > 0 else 20000, speed_mdeg_s=2000))
        if resp.NAME != "ACK":
            return f"MOVE_ARC answered {describe(resp)}"
    elif state in (DeviceState.ARMED, DeviceState.EXPOSING):
        ensure_homed(ctx)
        plan = single_plan(ctx, plan_id=13)
        resp = s.request(plan)
        if resp.NAME != "ACK":
            return f"ARM_PLAN answered {describe(resp)}"
        if state is DeviceState.EXPOSING:
            resp = s.request(Fire(plan_id=plan.plan_id, digest=plan.digest))  # type: ignore[attr-defined]
            if resp.NAME != "ACK":
                return f"FIRE answered {describe(resp)}"
    st = status(ctx)
    if st.state != state:  # type: ignore[attr-defined]
        return f"device in {DeviceState(st.state).name}, not {state.name}"  # type: ignore[attr-defined]
    return None


def check_estop_latches_in_every_state(ctx: Context) -> CheckResult:
    """The e-stop pressed in each state (BOOT, IDLE, BUSY, ARMED, EXPOSING, SAFE_HOLD, FAULT) latches.

    With it pressed, neither HELLO nor RESET_FAULT leaves SAFE_HOLD, HOME is refused and nothing
    moves or exposes; once released, HELLO + RESET_FAULT bring the device back to IDLE.
    """
    if not ctx.sim_controls:
        return skipped("device lacks SIMULATION_CONTROLS; rig-only")
    src = ctx.rig.interlocks.get("ESTOP_RELEASED")
    if src is not InterlockSource.SIMULATED:
        return skipped("the e-stop is wired for real on this rig; press it by hand (rig-only)")
    s = ctx.session
    problems, done = [], []
    for state in (DeviceState.IDLE, DeviceState.BUSY, DeviceState.ARMED, DeviceState.EXPOSING,
                  DeviceState.SAFE_HOLD, DeviceState.FAULT, DeviceState.BOOT):
        where = state.name
        try:
            why = _reach(ctx, state)
            if why is not None:
                problems.append(f"{where}: could not reach it: {why}")
                continue
            _estop(ctx, True)
            s.pump(0.15)
            mark = len(s.frames)
            reply = hello(ctx)
            reset = s.request(ResetFault(fault_code=0))
            home = s.request(Home())
            s.pump(0.3)
            st = status(ctx)
            moved = [f for f in s.frames[mark:] if f.name in ("MOTION_DONE", "EXPOSURE_DONE") and f.message is not None
                     and getattr(f.message, "cause_msg_id", 0) == Home.ID]
            bad = []
            if reply.NAME != "HELLO_REPLY" or reply.state != DeviceState.SAFE_HOLD:  # type: ignore[attr-defined]
                bad.append(f"HELLO -> {describe(reply)}")
            if not is_nak(reset, ErrorCode.FAULT_ACTIVE):
                bad.append(f"RESET_FAULT -> {describe(reset)}")
            if home.NAME != "NAK":
                bad.append(f"HOME accepted ({describe(home)})")
                s.request(Abort(reason=0))
            if st.state != DeviceState.SAFE_HOLD:  # type: ignore[attr-defined]
                bad.append(f"STATUS state {DeviceState(st.state).name}")  # type: ignore[attr-defined]
            left = (DeviceState.BUSY,) if state is DeviceState.BOOT else (DeviceState.IDLE, DeviceState.BUSY)
            if moved or any(stt in left for _, stt in s.states_seen(mark)):  # (BOOT -> IDLE -> SAFE_HOLD on HELLO)
                bad.append("left SAFE_HOLD with the e-stop pressed")
            if bad:
                problems.append(f"e-stop pressed in {where}: " + "; ".join(bad))
            else:
                done.append(where)
        except SessionError as exc:
            problems.append(f"{where}: {exc}")
        finally:
            try:
                _estop(ctx, False)
                s.pump(0.1)
                recover(ctx)
                hello(ctx)
                if not status(ctx).homed:  # type: ignore[attr-defined]
                    ensure_homed(ctx)
            except SessionError as exc:
                problems.append(f"{where}: no recovery after releasing the e-stop: {exc}")
    if problems:
        return failed("; ".join(problems))
    return passed(f"e-stop latched in {', '.join(done)}: HELLO and RESET_FAULT kept SAFE_HOLD, HOME refused")


def _fault_across_hello(ctx: Context, start: DeviceState) -> list[str]:
    """ENCODER_GLITCH latched in ``start`` (IDLE: the device goes to FAULT; SAFE_HOLD after a watchdog trip: it
    stays in its hold; BOOT after a device reset: the first HELLO finds it and answers FAULT); what the case
    checks, as problems (empty: passed)."""
    s = ctx.session
    if start in (DeviceState.SAFE_HOLD, DeviceState.BOOT):
        ensure_homed(ctx)
        why = _reach(ctx, start)
        if why is None:
            resp = s.request(SimInjectFault(fault_code=int(FaultCode.ENCODER_GLITCH), param=5000))
            why = None if resp.NAME == "ACK" else f"SIM_INJECT_FAULT ENCODER_GLITCH answered {describe(resp)}"
            s.pump(0.1)
    else:
        why = _reach(ctx, DeviceState.FAULT)
    if why is not None:
        recover(ctx)
        return [f"could not latch the fault in {start.name}: {why}"]
    holds = (DeviceState.SAFE_HOLD, DeviceState.FAULT) if start is DeviceState.SAFE_HOLD else (DeviceState.FAULT,)
    mark = len(s.frames)
    reply = hello(ctx)
    if start is DeviceState.BOOT:  # the first HELLO leaves BOOT for IDLE and goes on at once to FAULT (SPEC 3):
        s.pump(0.1)  # its STATE_CHANGED events follow HELLO_REPLY
        mark = len(s.frames)
    wrong = s.request(ResetFault(fault_code=int(FaultCode.TUBE_ARC)))
    home = s.request(Home())
    s.pump(0.2)
    held = status(ctx)
    problems = []
    if reply.NAME != "HELLO_REPLY" or reply.state not in holds:  # type: ignore[attr-defined]
        problems.append(f"HELLO -> {describe(reply)}")
    if not is_nak(wrong, ErrorCode.FAULT_ACTIVE):
        problems.append(f"RESET_FAULT TUBE_ARC (not latched) -> {describe(wrong)}")
    if home.NAME != "NAK":
        problems.append(f"HOME accepted ({describe(home)})")
        s.request(Abort(reason=0))
    if held.state not in holds or held.fault_code != FaultCode.ENCODER_GLITCH:  # type: ignore[attr-defined]
        problems.append(f"STATUS {DeviceState(held.state).name}, fault {code_name(held.fault_code)}")  # type: ignore[attr-defined]
    if any(st not in holds for _, st in s.states_seen(mark)):
        problems.append("left the hold before RESET_FAULT: " + ", ".join(DeviceState(st).name for _, st in s.states_seen(mark)))
    reset = s.request(ResetFault(fault_code=0))
    after = status(ctx)
    if reset.NAME != "ACK" or after.state != DeviceState.IDLE:  # type: ignore[attr-defined]
        problems.append(f"RESET_FAULT 0 -> {describe(reset)}, then {DeviceState(after.state).name}")  # type: ignore[attr-defined]
    recover(ctx)
    ensure_homed(ctx)
    return [f"latched in {start.name}: {p}" for p in problems]


def check_fault_latches_across_hello(ctx: Context) -> CheckResult:
    """A latched fault (SIM_INJECT_FAULT ENCODER_GLITCH) survives a new session and every command but RESET_FAULT.

    Latched in IDLE (the device goes to FAULT), in SAFE_HOLD after a watchdog trip (the device holds) and
    in BOOT after a device reset (the first HELLO answers FAULT): HELLO answers the hold; HOME is refused;
    RESET_FAULT naming a fault that is not latched is refused (FAULT_ACTIVE) and clears nothing;
    RESET_FAULT 0 (the cause gone: a glitch is momentary, and the new session ended the watchdog's)
    leaves the hold for IDLE.
    """
    if not ctx.sim_controls:
        return skipped("device lacks SIMULATION_CONTROLS; rig-only (latch a fault by hand)")
    problems = []
    for start in (DeviceState.IDLE, DeviceState.SAFE_HOLD, DeviceState.BOOT):
        try:
            problems += _fault_across_hello(ctx, start)
        except SessionError as exc:
            problems.append(f"latched in {start.name}: {exc}")
            recover(ctx)
    if problems:
        return failed("; ".join(problems))
    return passed("ENCODER_GLITCH latched in IDLE, SAFE_HOLD and BOOT: HELLO kept the hold, HOME and a RESET_FAULT "
                  "for another fault refused; RESET_FAULT 0 left it")


def check_duplicate_burst(ctx: Context) -> CheckResult:
    """A burst of copies, heartbeats and another request in one write: each executed once, all answered alike.

    After a stall a device may read, at once, a request with its retransmitted copies, heartbeats and
    the next request. Each distinct request is answered (copies read before the answer get none, or
    the same answer); the motion runs once; copies sent after the answer each get the cached answer.
    """
    s = ctx.session
    ensure_homed(ctx)
    angle = int(status(ctx).arc_mdeg)  # type: ignore[attr-defined]
    target = angle + 1000 if angle < 20000 else angle - 1000
    move = MoveArc(target_mdeg=target, speed_mdeg_s=5000).pack()
    seq_a, wire_a = s.raw_frame(MoveArc.ID, move)
    _, copy_a = s.raw_frame(MoveArc.ID, move, seq=seq_a, flags=FLAG_ACK_REQ | FLAG_RETRANSMIT)
    seq_b, wire_b = s.raw_frame(GetStatus.ID, b"")
    _, copy_b = s.raw_frame(GetStatus.ID, b"", seq=seq_b, flags=FLAG_ACK_REQ | FLAG_RETRANSMIT)
    _, beat = s.raw_frame(Heartbeat.ID, Heartbeat(uptime_ms=1, state=int(DeviceState.IDLE)).pack(), flags=0)
    mark = s.send_raw(wire_a + copy_a + beat + copy_a + wire_b + copy_a + beat + copy_b + copy_b)
    got_a = s.responses_to(seq_a, mark, 1.0)
    got_b = s.responses_to(seq_b, mark, 1.0)
    done = s.wait_for(lambda f: f.name == "MOTION_DONE", ctx.rig.timeouts.motion_timeout_s, since=mark)
    if s.link.signer is not None:  # signed: every copy carries its own timestamp (a byte-identical one is a replay)
        wire_a, wire_b, beat = b"", b"", b""
        mark2 = s.send_raw(b"".join(s.raw_frame(MoveArc.ID, move, seq=seq_a, flags=FLAG_ACK_REQ | FLAG_RETRANSMIT)[1]
                                    for _ in range(3))
                           + b"".join(s.raw_frame(GetStatus.ID, b"", seq=seq_b, flags=FLAG_ACK_REQ | FLAG_RETRANSMIT)[1]
                                      for _ in range(2)))
    else:
        mark2 = s.send_raw(copy_a * 3 + copy_b * 2)
    again_a = s.responses_to(seq_a, mark2, 1.0, count=3)
    again_b = s.responses_to(seq_b, mark2, 1.0, count=2)
    s.pump(0.6)  # room for a second (wrong) execution to show up
    motions = {f.frame.seq for f in s.frames[mark:] if f.name == "MOTION_DONE"}
    problems = []
    if not got_a or not got_b:
        problems.append(f"burst: MOVE_ARC answered {len(got_a)}x, GET_STATUS {len(got_b)}x")
    else:
        if got_a[0].name != "ACK":
            problems.append(f"MOVE_ARC refused: {describe(got_a[0].message)}")
        for name, first, later in (("MOVE_ARC", got_a, again_a), ("GET_STATUS", got_b, again_b)):
            ref = (first[0].frame.msg_id, first[0].frame.payload)
            if any((x.frame.msg_id, x.frame.payload) != ref for x in first + later):
                problems.append(f"{name}: copies answered differently")
    if len(again_a) != 3 or len(again_b) != 2:
        problems.append(f"copies after the answer: {len(again_a)}/3 MOVE_ARC and {len(again_b)}/2 GET_STATUS answered")
    if done is None:
        problems.append("no MOTION_DONE")
    if len(motions) > 1:
        problems.append(f"executed more than once: {len(motions)} MOTION_DONE events")
    st = status(ctx)
    if st.NAME != "STATUS":
        problems.append(f"device silent after the burst: {describe(st)}")
    if problems:
        return failed("; ".join(problems))
    return passed("burst of 4 MOVE_ARC copies, 3 GET_STATUS copies and heartbeats: 1 motion, identical answers; "
                  "5 later copies answered from the cache")


# --------------------------------------------------------------------------------------------
# signed links (SPEC 2.6): run when the rig has a link key, skipped otherwise
def _signed(ctx: Context) -> CheckResult | None:
    if ctx.session.link.signer is None:
        return skipped("unsigned session: the rig has no link key (rig file link_key_file, or CRESCENT_LINK_KEY)")
    if not ctx.capabilities & int(Capability.SIGNED_LINK):
        return failed("the device does not announce SIGNED_LINK in HELLO_REPLY although it answered a signed session")
    return None


def _refusal(ctx: Context, wire: bytes, seq: int, code: ErrorCode, what: str) -> str:
    """'' if ``wire`` is answered NAK ``code``, else what went wrong."""
    s = ctx.session
    mark = s.send_raw(wire)
    got = s.responses_to(seq, mark, 1.0)
    if not got or got[0].message is None or not is_nak(got[0].message, code):
        return f"{what}: {describe(got[0].message) if got else 'no answer'}, expected NAK {code.name}"
    return ""


def _retag(wire: bytes) -> bytes:
    """``wire`` (one signed frame) with one bit of its tag flipped and the CRC recomputed: only the tag is wrong."""
    from cobs import cobs

    from protocols.wire.crc import crc32c

    raw = bytearray(cobs.decode(wire[1:-1])[:-4])
    raw[-1] ^= 0x01
    return b"\x00" + cobs.encode(bytes(raw) + struct.pack("<I", crc32c(bytes(raw)))) + b"\x00"


def check_signed_forged_signature(ctx: Context) -> CheckResult:
    """A signed frame whose tag is wrong (CRC good) gets NAK BAD_SIGNATURE and is not executed; the session goes on."""
    skip = _signed(ctx)
    if skip is not None:
        return skip
    s = ctx.session
    ensure_homed(ctx)
    angle = int(status(ctx).arc_mdeg)  # type: ignore[attr-defined]
    target = angle + 1000 if angle < 20000 else angle - 1000
    seq, wire = s.raw_frame(MoveArc.ID, MoveArc(target_mdeg=target, speed_mdeg_s=5000).pack())
    mark = s.send_raw(b"")
    problems = [p for p in [_refusal(ctx, _retag(wire), seq, ErrorCode.BAD_SIGNATURE, "forged MOVE_ARC")] if p]
    s.pump(0.5)
    if any(f.name == "MOTION_DONE" for f in s.frames[mark:]) or any(st == DeviceState.BUSY for _, st in s.states_seen(mark)):
        problems.append("the forged MOVE_ARC was executed")
    if status(ctx).NAME != "STATUS":
        problems.append("no STATUS after the forged frame")
    return failed("; ".join(problems)) if problems else passed("forged MOVE_ARC: NAK BAD_SIGNATURE, no motion")


def check_signed_replay(ctx: Context) -> CheckResult:
    """A signed frame sent again byte for byte (a replay) gets NAK REPLAYED, its first copy answered normally."""
    skip = _signed(ctx)
    if skip is not None:
        return skip
    s = ctx.session
    seq, wire = s.raw_frame(GetStatus.ID, b"")
    mark = s.send_raw(wire)
    first = s.responses_to(seq, mark, 1.0)
    problems = []
    if not first or first[0].name != "STATUS":
        problems.append(f"first copy: {describe(first[0].message) if first else 'no answer'}")
    seq2, wire2 = s.raw_frame(GetStatus.ID, b"")  # a new seq too: not a retransmission, a replay of a frame
    mark = s.send_raw(wire2)
    s.responses_to(seq2, mark, 1.0)
    p = _refusal(ctx, wire, seq, ErrorCode.REPLAYED, "GET_STATUS replayed byte for byte")
    if p:
        problems.append(p)
    return failed("; ".join(problems)) if problems else passed("replayed frame: NAK REPLAYED")


def check_signed_replay_after_restart(ctx: Context) -> CheckResult:
    """A frame accepted before a device restart (SIM DEVICE_RESET) is refused after it: the high-water mark is kept."""
    skip = _signed(ctx)
    if skip is not None:
        return skip
    if not ctx.sim_controls:
        return skipped("needs SIMULATION_CONTROLS (SIM_INJECT_FAULT DEVICE_RESET) to restart the device")
    s = ctx.session
    seq, wire = s.raw_frame(GetStatus.ID, b"")
    mark = s.send_raw(wire)
    first = s.responses_to(seq, mark, 1.0)
    if not first or first[0].name != "STATUS":
        return failed(f"GET_STATUS before the restart: {describe(first[0].message) if first else 'no answer'}")
    s.request(SimInjectFault(fault_code=int(FaultCode.DEVICE_RESET), param=0))
    s.pump(0.3)
    if hello(ctx).NAME != "HELLO_REPLY":
        return failed("no session after the restart")
    p = _refusal(ctx, wire, seq, ErrorCode.REPLAYED, "GET_STATUS from before the restart")
    recover(ctx)
    return failed(p) if p else passed("frame from before DEVICE_RESET: NAK REPLAYED after it")


def check_signed_stale_timestamp(ctx: Context) -> CheckResult:
    """A new link id whose first frame is more than the stale window (60 s) old gets NAK STALE."""
    skip = _signed(ctx)
    if skip is not None:
        return skip
    from protocols.wire.framing import encode_frame
    from protocols.wire.signing import STALE_WINDOW

    s = ctx.session
    signer = s.link.signer
    assert signer is not None
    now = signer.next_timestamp(s.now())
    seq = s.new_raw_seq()
    link_id = 200 + seq % 50  # a link id this device has not seen (not the session's)
    wire = encode_frame(GetStatus.ID, seq, FLAG_ACK_REQ, b"", signature=(link_id, now - STALE_WINDOW - 100_000, signer.key.tag))
    p = _refusal(ctx, wire, seq, ErrorCode.STALE, f"GET_STATUS of new link id {link_id}, 61 s old")
    return failed(p) if p else passed(f"new link id {link_id}, timestamp 61 s old: NAK STALE")


def check_signed_unsigned_frame(ctx: Context) -> CheckResult:
    """An unsigned request on a signed link gets NAK UNSIGNED and is not executed."""
    skip = _signed(ctx)
    if skip is not None:
        return skip
    s = ctx.session
    seq, wire = s.raw_frame(GetStatus.ID, b"", signed=False)
    p = _refusal(ctx, wire, seq, ErrorCode.UNSIGNED, "unsigned GET_STATUS")
    return failed(p) if p else passed("unsigned GET_STATUS: NAK UNSIGNED")


def check_data_channel_token(ctx: Context) -> CheckResult:
    """The TCP data channel refuses a request without the session token, and one with an earlier session's token."""
    import os
    import socket
    import ssl
    from urllib.parse import urlparse

    from protocols.data_channel import Missing, ResponseParser, encode_request
    from protocols.wire.messages import GetDataToken

    url = ctx.info.data_channel if ctx.info is not None else ""  # type: ignore[attr-defined]
    parsed = urlparse(url)
    if parsed.scheme not in ("tcp", "tls"):
        return skipped(f"data channel {url or '?'} is not tcp:// or tls://")
    s = ctx.session

    def token() -> str:
        reply = s.request(GetDataToken())
        nonce = bytes.fromhex(reply.nonce)  # type: ignore[attr-defined]
        return s.link.signer.key.data_token(nonce) if s.link.signer is not None else nonce.hex()

    def ask(tok: str | None) -> str:
        """The device's answer to ``GET frame_0.raw [tok]`` on a new connection: 'frame', or NO's reason."""
        sock = socket.create_connection((parsed.hostname, parsed.port), timeout=3.0)
        if parsed.scheme == "tls":
            ca = os.environ.get("CRESCENT_DATA_TLS_CA")
            sock = ssl.create_default_context(cafile=ca).wrap_socket(sock, server_hostname=parsed.hostname)
        with sock:
            sock.sendall(encode_request("frame_0.raw", tok))
            parser = ResponseParser()
            while True:
                chunk = sock.recv(1 << 16)
                if not chunk:
                    return "closed without an answer"
                got = parser.feed(chunk)
                if got:
                    return got[0].reason if isinstance(got[0], Missing) else "frame"

    old = token()
    hello(ctx)  # a new session: a new token
    new = token()
    problems = []
    for tok, what in ((None, "no token"), (old, "the previous session's token")):
        answer = ask(tok)
        if "token" not in answer:
            problems.append(f"request with {what} answered: {answer!r}")
    answer = ask(new)
    if "token" in answer:
        problems.append(f"request with the session's token refused: {answer!r}")
    return failed("; ".join(problems)) if problems else passed(
        "data channel: no token and a stale token refused, the session's token accepted")


#: Stall injected by the "stall honesty" check, ms: longer than the 500 ms watchdog a host asks for (a device
#: that judged its watchdog on when it got round to frames would declare the host lost), shorter than the
#: 1 s after which a stall in motion would latch REALTIME_OVERRUN.
STALL_MS = 800


def check_stall_honesty(ctx: Context) -> CheckResult:
    """A device that falls behind real time says so (FAULT REALTIME_OVERRUN) and never declares the host lost.

    The host asks (SIM_INJECT_FAULT REALTIME_OVERRUN, param ms) for an 800 ms stall of the device's control loop
    while its heartbeats keep flowing. The device must judge its 500 ms watchdog on when the heartbeats
    arrived: no WATCHDOG fault, no SAFE_HOLD, and a REALTIME_OVERRUN event naming the lag; it answers STATUS
    in the state it had. Simulated real-time devices only (a virtual-time device has no loop to stall and
    refuses the request as UNSUPPORTED; a rig cannot be stalled on request).
    """
    if not ctx.sim_controls:
        return skipped("device lacks SIMULATION_CONTROLS; a rig cannot be stalled on request")
    s = ctx.session
    if hello(ctx, watchdog_ms=500).NAME != "HELLO_REPLY":
        return failed("no session with a 500 ms watchdog")
    before = status(ctx)
    s.pump(0.3)  # heartbeats flowing
    mark = len(s.frames)
    resp = s.request(SimInjectFault(fault_code=int(FaultCode.REALTIME_OVERRUN), param=STALL_MS))
    if is_nak(resp, ErrorCode.UNSUPPORTED):
        return skipped("the device has no real-time control loop to stall (virtual time)")
    if resp.NAME != "ACK":
        return failed(f"SIM_INJECT_FAULT REALTIME_OVERRUN: {describe(resp)}")
    overrun = s.wait_for(lambda f: f.name == "FAULT" and f.message.fault_code == FaultCode.REALTIME_OVERRUN,  # type: ignore[union-attr]
                         STALL_MS / 1000.0 + 3.0, since=mark)
    s.pump(0.5)  # room for a (wrong) watchdog trip to show up
    faults = [f.message for f in s.frames[mark:] if f.name == "FAULT"]
    held = [f for f in s.frames[mark:] if f.name == "STATE_CHANGED"
            and f.message.new_state == DeviceState.SAFE_HOLD]  # type: ignore[union-attr]
    problems = []
    if any(m.fault_code == FaultCode.WATCHDOG for m in faults):  # type: ignore[attr-defined]
        problems.append("the device declared the host lost (FAULT WATCHDOG) although its heartbeats kept arriving")
    if held:
        problems.append("the device went to SAFE_HOLD during its own stall")
    if overrun is None:
        problems.append(f"no FAULT REALTIME_OVERRUN within {STALL_MS / 1000.0 + 3.0:.1f} s of an {STALL_MS} ms stall")
    after = status(ctx)
    if after.NAME != "STATUS":
        problems.append(f"no STATUS after the stall: {describe(after)}")
    elif after.state != before.state:  # type: ignore[attr-defined]
        problems.append(f"state {DeviceState(before.state).name} before the stall, "  # type: ignore[attr-defined]
                        f"{DeviceState(after.state).name} after it")  # type: ignore[attr-defined]
    if problems:
        recover(ctx)
        return failed("; ".join(problems))
    lag = overrun.message.detail  # type: ignore[union-attr]
    return passed(f"{STALL_MS} ms loop stall: FAULT REALTIME_OVERRUN ({lag} ms behind), no watchdog trip, "
                  f"state {DeviceState(after.state).name} kept")  # type: ignore[attr-defined]


#: The suite in its default order (name -> check).
CHECKS: dict[str, Callable[[Context], CheckResult]] = {
    "handshake": check_handshake,
    "device_info_matches_rig": check_device_info_matches_rig,
    "version_negotiation": check_version_negotiation,
    "crc_and_resync": check_crc_and_resync,
    "deduplication": check_deduplication,
    "duplicate_burst": check_duplicate_burst,
    "fire_without_arm": check_fire_without_arm,
    **{f"fire_interlock_{n.lower()}": _interlock_check(n) for n in Interlock.__members__},
    "interruption_latches": check_interruption_latches,
    "abort_latency": check_abort_latency,
    "telemetry_rate": check_telemetry_rate,
    "range_rejection": check_range_rejection,
    "heartbeat_watchdog": check_heartbeat_watchdog,
    "estop_latches_in_every_state": check_estop_latches_in_every_state,
    "fault_latches_across_hello": check_fault_latches_across_hello,
    "stall_honesty": check_stall_honesty,
    "signed_forged_signature": check_signed_forged_signature,
    "signed_replay": check_signed_replay,
    "signed_replay_after_restart": check_signed_replay_after_restart,
    "signed_stale_timestamp": check_signed_stale_timestamp,
    "signed_unsigned_frame": check_signed_unsigned_frame,
    "data_channel_token": check_data_channel_token,
}
