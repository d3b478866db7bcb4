"""The exam plan: one generator that runs a DBT sweep, a 2D view or a stereo pair end to end.

Phases, in order (each announced with :class:`~firmware_host.plans.Phase`):

``prepare`` (STATUS, clear a stale fault, check door and e-stop) -> ``home`` (if
not homed) -> ``compress`` (COMPRESS to the target force, wait until the force
settles from telemetry, read the thickness from STATUS and check it against the
exam) -> ``scout`` (AEC only: a one-entry plan with the scout technique, its image's
AEC-region signal -> :func:`firmware_host.aec.choose_technique`) -> ``position``
(arm to the start of the sweep) -> ``arm`` (SET_TECHNIQUE, ARM_PLAN from
:func:`protocols.exams.expand_exam` with its digest) -> ``sweep`` (FIRE, follow
EXPOSURE_DONE and IMAGE_READY, take in each image from the data channel and
verify its CRC-32C) -> ``readout`` (images still to come after the last
exposure) -> ``release`` (as the exam's compression policy says) -> ``done``.

Any :class:`~firmware_host.errors.Interrupted` (suspender, operator) or host
error ends the exam through :func:`safe_stop`: ABORT, take in the images of
exposures already made, RELEASE if ``release_on_fault``. An operator's stop
(Ctrl-C, SIGTERM, :meth:`~firmware_host.api.Gantry.abort`) sends RELEASE right
after ABORT, takes in the images while the paddle rises, and ends once the breast
is free (force below :data:`BREAST_FREE_N`) and the images are in, or
``operator_stop_wait_s`` after the stop for readouts still pending: the device
finishes its park and those readouts on its own. The plan never
re-fires an exposure. The return value is the :class:`~firmware_host.record.ExamRecord`,
also written to the exam folder.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from pydantic import BaseModel, Field

from firmware_host.aec import AecDecision, aec_roi, choose_technique, roi_signal
from firmware_host.audit import message_dict
from firmware_host.errors import CommandFailed, CommandRefused, ExamError, HostError, Interrupted, WaitTimeout
from firmware_host.intake import DataChannel, FrameCheck, check_frame, frame_array
from firmware_host.mirror import DeviceMirror, fault_name
from firmware_host.plans import Command, Guard, Now, Phase, Plan, Sleep, WaitFor
from firmware_host.policy import IDEMPOTENT_RETRIES, Action, fault_action
from firmware_host.record import AecRecord, ExamRecord, ExposureCheck
from firmware_host.session import SessionInfo, hello_plan
from firmware_host.store import ExamStore
from protocols.exams.models import AecTechnique, ExamModel
from protocols.exams.motion import runup_deg
from protocols.exams.plan import PlanError, PlannedExposure, aec_scout_exposure, expand_exam, scan_time_s
from protocols.records import AcquisitionHeader, ExposureRecord, ProjectionRecord, Technique, exposure_from_done
from protocols.wire.catalogue import (
    ANODE_FILTER_CODE,
    AbortReason,
    DeviceState,
    ErrorCode,
    ExposureStatus,
    FocalSpot,
    Interlock,
    MotionMode,
)
from protocols.wire.messages import (
    Abort,
    ArmPlan,
    Compress,
    ExposureDone,
    Fire,
    GetExposureLog,
    GetStatus,
    Home,
    ImageReady,
    Message,
    MoveArc,
    Release,
    ResetFault,
    SetTechnique,
    plan_digest,
)
from protocols.limits import DeviceLimits
from protocols.option_bounds import IMAGE_TIMEOUT_S_MAX, WATCHDOG_MS_MAX, WATCHDOG_MS_MIN

R = IDEMPOTENT_RETRIES

#: The phases an exam announces, in order (progress callbacks). ``home`` only if the arm is not homed,
#: ``scout`` only for AEC exams, ``release`` only for exams that release after the exam. Besides these:
#: ``image`` (i of n stored, during sweep/readout), ``abort`` (safe stop running) and a final
#: ``aborted`` / ``incomplete`` instead of ``done``.
EXAM_PHASES: tuple[str, ...] = (
    "prepare", "home", "compress", "scout", "position", "arm", "sweep", "readout", "release", "done",
)


#: Image timeout for a simulated gantry, s. In real time it renders each image with the X-ray
#: physics, which takes seconds (the first one also builds the phantom), far longer than a panel's readout.
SIMULATED_IMAGE_TIMEOUT_S = 60.0

#: What an exam cut short by the image timeout says would help (CLI option and Python field).
IMAGE_TIMEOUT_HINT = "a longer --image-timeout S (ExamOptions.image_timeout_s) would wait for it"


class ExamOptions(BaseModel):
    """Host-side settings of an exam run (times in s, angles in deg, forces in N)."""

    angle_tolerance_deg: float = Field(0.25, gt=0.0, description="planned vs actual (window-mean) angle")
    move_timeout_s: float = Field(30.0, gt=0.0)
    compress_timeout_s: float = Field(30.0, gt=0.0)
    settle_rate_n_s: float = Field(1.0, gt=0.0, description="force counts as settled below this |dF/dt|")
    settle_sample_s: float = Field(0.25, gt=0.0)
    scout_min_window_ms: float = Field(
        20.0, gt=0.0, description="the scout's current is lowered so its window lasts at least this (kV rise settles)"
    )
    image_timeout_s: float = Field(
        3.0, gt=0.0, le=IMAGE_TIMEOUT_S_MAX,
        description="wait for each image, s: restarted by each image's arrival (IMAGE_READY and a complete "
                    "file); a simulated gantry gets at least SIMULATED_IMAGE_TIMEOUT_S (firmware_host.api)")
    image_retry_s: float = Field(0.05, gt=0.0)
    abort_grace_s: float = Field(0.5, gt=0.0, description="after ABORT, wait this long for late EXPOSURE_DONEs")
    operator_stop_wait_s: float = Field(
        1.5, gt=0.0, le=IMAGE_TIMEOUT_S_MAX,
        description="after an operator's stop (Ctrl-C, SIGTERM, abort()), the longest the safe stop waits for "
                    "readouts still pending on the device, counted from the stop, s: a run stopped by a signal ends "
                    "within 2 s; an image still pending then is listed missing with that reason, and the device "
                    "finishes it into its data channel (`crescent exam recover` takes it in)")
    sweep_margin_s: float = Field(10.0, gt=0.0, description="added to the planned scan time")
    reconnect_timeout_s: float = Field(3.0, gt=0.0, description="wait for a lost link before giving up the stop")
    reconnect_budget_s: float = Field(
        20.0, gt=0.0,
        description="after a lost link, keep opening a new session (HELLO) this long to read the exposure ledger, "
                    "take in the images and release before the record is written")
    release_attempts: int = Field(4, ge=1, le=20, description="RELEASE is sent up to this many times on every path")
    heartbeat_period_ms: int = Field(100, ge=10, le=5000, description="host heartbeat period, ms")
    watchdog_timeout_ms: int = Field(
        500, ge=WATCHDOG_MS_MIN, le=WATCHDOG_MS_MAX,
        description="device watchdog asked for in HELLO, ms (500 ms as SPEC's default: an unsupervised device stops "
                    "X-rays within half a second)",
    )
    device_timeout_ms: int = Field(
        2000, ge=WATCHDOG_MS_MIN, le=60000,
        description="the host calls the device lost after this much silence (at least the watchdog), ms: a device "
                    "that briefly falls behind real time reports REALTIME_OVERRUN and is not abandoned mid-exam; "
                    "the device's own watchdog, not this, is what makes it safe",
    )


@dataclass
class ExamContext:
    """What the exam plan needs besides the device: the exam, the session, the folder."""

    exam: ExamModel
    session: SessionInfo
    store: ExamStore
    channel: DataChannel
    mirror: DeviceMirror
    log: Callable[..., None]
    plan_id: int = 1
    session_id: int = 1
    options: ExamOptions = field(default_factory=ExamOptions)
    #: what the image timeout cut short (filled by the plan; names the option in the record's reason)
    timed_out: list[str] = field(default_factory=list)


@dataclass
class _State:
    """What the exam accumulates while it runs."""

    phase: str = "prepare"
    started_s: float = 0.0
    compressed: bool = False
    released: bool = False
    force_n: float | None = None
    thickness_mm: float | None = None
    technique: Technique | None = None
    aec: AecDecision | None = None
    planned: list[PlannedExposure] = field(default_factory=list)
    scout: ProjectionRecord | None = None
    exposures: list[ExposureRecord] = field(default_factory=list)
    checks: dict[int, ExposureCheck] = field(default_factory=dict)
    images: dict[int, ProjectionRecord] = field(default_factory=dict)
    frame_to_index: dict[int, int] = field(default_factory=dict)
    pending_ready: dict[int, Message] = field(default_factory=dict)  # frame id -> IMAGE_READY not yet taken
    armed: dict[int, tuple[list[PlannedExposure], bool]] = field(default_factory=dict)  # plan id -> (plan, is_scout)
    recorded: set[tuple[int, int]] = field(default_factory=set)  # (plan id, index) of recorded exposures
    warnings: list[str] = field(default_factory=list)
    end_reason: str | None = None
    end_fault: str | None = None
    aborted: bool = False
    event_mark: int = 0  # first device event of this exam
    peer_losses: int = 0  # mirror.peer_lost_count when the exam started
    missing_reasons: dict[int, str] = field(default_factory=dict)  # frame id -> why its image is not stored
    ledger: dict[int, int] = field(default_factory=dict)  # plan id -> exposures the device's ledger reports
    ledger_unread: list[str] = field(default_factory=list)  # why a plan's ledger could not be read


# ------------------------------------------------------------------------------------------- helpers


def _status(ctx: ExamContext) -> Plan:
    st = yield Command(GetStatus(), retries=R)
    return st


def motion(mirror: DeviceMirror, message: Message, timeout_s: float) -> Plan:
    """Send a motion command and wait for its MOTION_DONE; returns the MOTION_DONE message."""
    mark = mirror.mark
    cmd = Command(message, retries=R)
    yield cmd

    def done(m: DeviceMirror) -> Any:
        # Matched by the link sequence number of the answered copy: the device's own motions (a release
        # on a fault, after the exam) carry the same cause_msg_id but cause_seq 0.
        for e in m.events_since(mark, "MOTION_DONE"):
            if e.message.cause_msg_id == message.ID and e.message.cause_seq == cmd.answered_seq:
                return e
        return None

    ev = yield WaitFor(done, timeout_s, f"{message.NAME} to finish")
    return ev.message


def move_arc(ctx: ExamContext, angle_deg: float) -> Plan:
    """Move the arm to ``angle_deg`` (skipped if already there within 0.01 deg)."""
    if abs(ctx.mirror.arc_deg - angle_deg) < 0.01:
        return None
    done = yield from motion(ctx.mirror, MoveArc(target_mdeg=round(angle_deg * 1000), speed_mdeg_s=0), ctx.options.move_timeout_s)
    if not done.ok:
        raise ExamError(f"MOVE_ARC to {angle_deg:.3f} deg stopped at {done.arc_mdeg / 1000:.3f} deg")
    return done


#: Focal spots (mm) assumed when a device does not report its own (DeviceLimits default).
DEFAULT_FOCAL_SPOTS_MM: tuple[float, ...] = (0.1, 0.3)


def focal_spot_code(focal_spot_mm: float, device_spots_mm: tuple[float, ...] = DEFAULT_FOCAL_SPOTS_MM) -> int:
    """FocalSpot code for the device spot nearest ``focal_spot_mm``.

    The wire selects SMALL (the device's smallest spot) or LARGE (its largest); a device with one
    spot has only LARGE. Nearest, not a fixed threshold: a device with 0.3/0.5 mm spots gets SMALL
    for 0.3 mm.
    """
    spots = sorted(device_spots_mm)
    if len(spots) < 2:
        return int(FocalSpot.LARGE)
    nearest = min(spots, key=lambda s: abs(s - focal_spot_mm))
    return int(FocalSpot.SMALL) if nearest == spots[0] else int(FocalSpot.LARGE)


#: Relative lengthening of each planned pulse on the wire. Exposures planned at the tube's current
#: limit would otherwise land a hair above it once kV (centi-kV) and the pulse (us) are rounded, and
#: the device rightly refuses them; 0.1 % longer means 0.1 % less current, never more.
PULSE_MARGIN = 1e-3


def _pulse_us(window_ms: float) -> int:
    """Pulse length on the wire, us: rounded up with :data:`PULSE_MARGIN`, at least 1."""
    return max(1, math.ceil(window_ms * 1000.0 * (1.0 + PULSE_MARGIN)))


def arm_message(plan_id: int, planned: list[PlannedExposure], final: bool = True,
                device_spots_mm: tuple[float, ...] = DEFAULT_FOCAL_SPOTS_MM) -> Message:
    """ARM_PLAN for ``planned`` (one anode/filter and focal spot per plan), digest filled in.

    ``final``: the exam's last plan (a device set to release after the exam does so when it
    completes); False for the AEC scout.
    """
    first = planned[0]
    continuous = first.motion == "continuous"
    msg = ArmPlan(
        plan_id=plan_id,
        motion=int(MotionMode.CONTINUOUS if continuous else MotionMode.STEP_AND_SHOOT),
        anode_filter=ANODE_FILTER_CODE[first.anode_filter],
        focal_spot=focal_spot_code(first.focal_spot_mm, device_spots_mm),
        speed_mdeg_s=round(abs(first.speed_deg_s) * 1000) if continuous else 0,
        digest=0,
        final=int(final),
        entries=[
            {"angle_mdeg": round(p.planned_angle_deg * 1000), "kv_ckv": round(p.kvp * 100),
             "mas_nas": round(p.mas * 1e6), "pulse_us": _pulse_us(p.window_ms)}
            for p in planned
        ],
    )
    msg.digest = plan_digest(msg)
    return msg


def technique_message(p: PlannedExposure, device_spots_mm: tuple[float, ...] = DEFAULT_FOCAL_SPOTS_MM) -> Message:
    return SetTechnique(
        anode_filter=ANODE_FILTER_CODE[p.anode_filter], kv_ckv=round(p.kvp * 100),
        # floor: rounding up could pass the device's power limit (mA <= P / kV) by 0.05 mA
        ma_dma=min(5000, max(1, math.floor(p.tube_current_ma * 10))), focal_spot=focal_spot_code(p.focal_spot_mm, device_spots_mm),
    )


def exposure_record(done: Message, planned: PlannedExposure, is_scout: bool) -> ExposureRecord:
    """EXPOSURE_DONE (wire units) -> ExposureRecord (deg, kV, mAs, s)."""
    return exposure_from_done(done, planned.anode_filter, planned.focal_spot_mm, is_scout)


def _status_name(code: int) -> str:
    try:
        return ExposureStatus(code).name
    except ValueError:
        return f"status {code}"


def take_image(ctx: ExamContext, ready: Message, exposure: ExposureRecord, stem: str,
               reasons: dict[int, str] | None = None) -> Plan:
    """Read a frame from the data channel until size and CRC match (or time out); store it.

    Returns the stored :class:`ProjectionRecord`, or None if it never arrived intact.
    """
    start = yield Now()
    attempts = 0
    while True:
        attempts += 1
        chk = check_frame(ctx.channel.read(ready.locator), ready)
        if chk.data is not None:
            break
        if ctx.channel.last_problem:
            chk = FrameCheck(None, f"{chk.problem} ({ctx.channel.last_problem})")
        now = yield Now()
        if now - start >= ctx.options.image_timeout_s:
            ctx.log("decision", note=f"{chk.problem}; giving up after {attempts} reads", action="end")
            if reasons is not None:
                reasons[ready.frame_id] = f"{chk.problem} (gave up after {attempts} reads)"
            ctx.timed_out.append(f"frame {ready.frame_id} not intact within {ctx.options.image_timeout_s:g} s")
            return None
        if attempts == 1:
            ctx.log("decision", note=f"{chk.problem}; re-reading", action="retry")
        yield Sleep(ctx.options.image_retry_s)
    image = frame_array(chk.data, ready)
    rec = ProjectionRecord(exposure=exposure, rows=ready.rows, cols=ready.cols, dtype=str(image.dtype.name),
                           checksum_crc32c=ready.checksum)
    rec = ctx.store.save_image(stem, image, rec)
    ctx.log("image", frame_id=ready.frame_id, index=exposure.index, is_scout=exposure.is_scout, path=rec.path,
            checksum_crc32c=ready.checksum, rows=ready.rows, cols=ready.cols, reads=attempts)
    return rec


# ------------------------------------------------------------------------------------------- phases


def prepare(ctx: ExamContext, st: _State) -> Plan:
    yield _ph(st, "prepare")
    status = yield from _status(ctx)
    if status.state in (int(DeviceState.FAULT), int(DeviceState.SAFE_HOLD)):
        ctx.log("decision", note=f"device in {DeviceState(status.state).name} before the exam; RESET_FAULT",
                action="retry")
        yield Command(ResetFault(fault_code=0), retries=R)
        # faults the device reported before this reset (e.g. its watchdog when the previous host left) are
        # cleared; if their events reach us only now they must not end this exam
        ctx.mirror.mark_reset()
        status = yield from _status(ctx)
    if status.state == int(DeviceState.BUSY):
        # a motion still under way: the paddle rising to its park height after an operator's stop ended the
        # previous exam (the stop does not wait for the park), or a HOME someone else started
        ctx.log("decision", note="device BUSY before the exam (a motion under way): waiting for it to end",
                action="retry")
        try:
            yield WaitFor(lambda m: m.state != int(DeviceState.BUSY), ctx.options.move_timeout_s,
                          "the device's motion to end")
        except WaitTimeout:
            pass
        status = yield from _status(ctx)
    if status.state not in (int(DeviceState.IDLE), int(DeviceState.ARMED)):
        fault = f", fault {fault_name(status.fault_code)}" if status.fault_code else ""
        raise ExamError(f"device not ready: state {DeviceState(status.state).name}{fault}")
    if status.state == int(DeviceState.ARMED):
        yield Command(Abort(reason=int(AbortReason.OPERATOR)), retries=R)  # a stale plan is never fired
    hard = int(Interlock.DOOR_CLOSED) | int(Interlock.ESTOP_RELEASED)  # type: ignore[attr-defined]
    if status.interlocks & hard != hard:
        raise ExamError(f"cannot start: interlock open: {', '.join(ctx.mirror.open_interlocks)}")
    yield Guard(True)
    if not status.homed:
        yield _ph(st, "home")
        done = yield from motion(ctx.mirror, Home(), ctx.options.move_timeout_s)
        if not done.ok:
            raise ExamError("HOME did not reach the index mark")


def compress(ctx: ExamContext, st: _State) -> Plan:
    comp = ctx.exam.compression
    yield _ph(st, "compress")
    st.compressed = True  # from the moment the paddle may touch the breast
    done = yield from motion(
        ctx.mirror,
        Compress(target_force_dn=round(comp.target_force_n * 10), min_thickness_um=round(comp.min_thickness_mm * 1000),
                 speed_um_s=0),
        ctx.options.compress_timeout_s,
    )
    if not done.ok:
        st.warnings.append(f"COMPRESS stopped at {done.force_dn / 10:.1f} N, {done.thickness_um / 1000:.1f} mm "
                           f"before the target {comp.target_force_n} N")
    # Settle: the breast relaxes; wait until |dF/dt| < settle_rate (from telemetry), at most settle_time_s.
    t0 = yield Now()
    f_prev = ctx.mirror.force_n
    while True:
        now = yield Sleep(ctx.options.settle_sample_s)
        last = ctx.mirror.last_telemetry_host_s
        if last is None or now - last > 2 * ctx.options.settle_sample_s:
            yield from _status(ctx)  # telemetry stopped: poll the force instead (policy: TELEMETRY_STOP)
        f = ctx.mirror.force_n
        rate = abs(f - f_prev) / ctx.options.settle_sample_s
        f_prev = f
        if rate < ctx.options.settle_rate_n_s or now - t0 >= comp.settle_time_s:
            break
    status = yield from _status(ctx)
    st.force_n = status.force_dn * 0.1
    st.thickness_mm = status.thickness_um * 1e-3
    ctx.log("compression", force_n=st.force_n, thickness_mm=st.thickness_mm, settled_after_s=round(now - t0, 4),
            rate_n_s=round(rate, 4))
    if not comp.min_thickness_mm <= st.thickness_mm <= comp.max_thickness_mm:
        raise ExamError(f"compressed thickness {st.thickness_mm:.1f} mm outside the exam's "
                        f"[{comp.min_thickness_mm}, {comp.max_thickness_mm}] mm")


def run_armed_plan(ctx: ExamContext, st: _State, plan_id: int, planned: list[PlannedExposure], is_scout: bool,
                   phase: str) -> Plan:
    """SET_TECHNIQUE, ARM_PLAN, FIRE, then follow exposures and images until all are in (or raise)."""
    n = len(planned)
    yield _ph(st, "arm" if not is_scout else phase)
    spots = ctx.session.limits.focal_spots_mm
    yield Command(technique_message(planned[0], spots), retries=R)
    arm = arm_message(plan_id, planned, final=not is_scout, device_spots_mm=spots)
    yield Command(arm, retries=R)
    st.armed[plan_id] = (planned, is_scout)
    ctx.log("armed", plan_id=plan_id, digest=arm.digest, is_scout=is_scout, fields=message_dict(arm))
    yield _ph(st, phase, 0, n)
    mark = ctx.mirror.mark
    try:
        yield Command(Fire(plan_id=plan_id, digest=arm.digest))  # never resent (policy)
    except CommandFailed:
        # Never resend blindly. STATUS is answered after every earlier byte of the line was processed:
        # still ARMED with this plan = no copy of FIRE executed (and none can: the link gave up), so one
        # new FIRE is safe; any other state = FIRE ran (or a fault disarmed the plan): follow the events.
        status = yield from _status(ctx)
        if status.state == int(DeviceState.ARMED) and status.armed_plan_id == plan_id:
            ctx.log("decision", note="FIRE unanswered and the plan is still armed (STATUS): FIRE once more",
                    action="retry")
            yield Command(Fire(plan_id=plan_id, digest=arm.digest))
        else:
            ctx.log("decision", note=f"FIRE unanswered; device {DeviceState(status.state).name}: following the "
                    "plan's events", action="continue")
    budget = scan_time_s(ctx.exam, planned) + ctx.options.sweep_margin_s
    t_fire = yield Now()
    deadline = t_fire + budget
    done_count = 0
    stored = 0
    ended_early: str | None = None
    while stored < n:
        now = yield Now()
        try:
            ev = yield WaitFor(lambda m: m.first_since(mark, "EXPOSURE_DONE", "IMAGE_READY", "STATE_CHANGED"),
                               max(1e-3, deadline - now), "the plan's exposures and images")
        except WaitTimeout:
            if done_count < n:
                # events may have been lost (a dead line longer than the device's event retries):
                # the device's ledger says what really happened
                made, all_ok = yield from reconcile_ledger(ctx, st, plan_id)
                if made == n and all_ok:
                    ctx.log("decision", note=f"{n - done_count} EXPOSURE_DONE(s) never arrived; the device's "
                            f"ledger shows all {n} exposures made: taken from the ledger", action="continue")
                    break
                raise Interrupted(f"{phase}: the device made {made} of {n} exposures (its ledger; "
                                  f"{done_count} reported by EXPOSURE_DONE within {budget:.1f} s)", "TIMEOUT")
            ctx.log("decision", note=f"{n - stored} image(s) never announced (IMAGE_READY) within "
                    f"{ctx.options.image_timeout_s:g} s of the last exposure or image; reading the device's ledger",
                    action="retry")
            yield from reconcile_ledger(ctx, st, plan_id)  # an IMAGE_READY lost on the line: the ledger has it
            still = n - (int(st.scout is not None) if is_scout else sum(1 for i in st.images if i < n))
            if still > 0:
                ctx.timed_out.append(f"{still} image(s) not announced within {ctx.options.image_timeout_s:g} s "
                                     "of the last exposure or image")
            break
        mark = ev.index + 1
        msg = ev.message
        if msg.NAME == "EXPOSURE_DONE" and msg.plan_id == plan_id:
            rec = record_exposure(ctx, st, msg, ev.host_time_s)
            done_count += 1
            if msg.status != int(ExposureStatus.OK):
                ended_early = f"exposure {msg.index} ended early: {_status_name(msg.status)}"
            yield _ph(st, phase, done_count, n)
            if done_count == n:
                # X-rays are over: door or e-stop no longer end the exam; images and release go on.
                yield Guard(False)
                # the sweep's budget covered the exposures; the images get their own timeout from here
                deadline = (yield Now()) + ctx.options.image_timeout_s
                if not is_scout:
                    yield _ph(st, "readout", stored, n)
            ready = st.pending_ready.pop(msg.frame_id, None)
            if ready is not None:
                stored += yield from _store(ctx, st, ready, rec, is_scout, n)
        elif msg.NAME == "IMAGE_READY":
            if msg.frame_id not in st.frame_to_index:
                st.pending_ready[msg.frame_id] = msg  # image before its EXPOSURE_DONE: keep it
                continue
            rec = next(e for e in reversed(st.exposures) if e.frame_id == msg.frame_id)
            stored += yield from _store(ctx, st, msg, rec, is_scout, n)
            if done_count == n:  # the image timeout is per image: each arrival restarts it
                deadline = (yield Now()) + ctx.options.image_timeout_s
        elif msg.NAME == "STATE_CHANGED" and msg.old_state == int(DeviceState.EXPOSING) and done_count < n:
            # The plan left EXPOSING before we heard of every exposure: ask the device's ledger (an
            # EXPOSURE_DONE lost on the line is not an exposure that did not happen).
            made, all_ok = yield from reconcile_ledger(ctx, st, plan_id)
            if made == n and all_ok:
                ctx.log("decision", note=f"plan ended with {done_count} of {n} EXPOSURE_DONE(s) heard; the "
                        f"device's ledger shows all {n} made: the rest taken from the ledger", action="continue")
                break
            ended_early = ended_early or f"the device ended the plan after {made} of {n} exposures"
        if ended_early is not None:
            raise Interrupted(ended_early, "FAULT", fault_name(ctx.mirror.fault_code) if ctx.mirror.fault_code else None)


def read_ledger(plan_id: int) -> Plan:
    """Every entry of the device's exposure ledger for ``plan_id`` (paged GET_EXPOSURE_LOG); list of EXPOSURE_LOG."""
    entries: list[Message] = []
    index = 0
    while True:
        reply = yield Command(GetExposureLog(plan_id=plan_id, index=index), retries=R)
        if not reply.present:
            return entries
        entries.append(reply)
        index += 1
        if index > 255:
            return entries


def ledger_done(entry: Message) -> Message:
    """The EXPOSURE_DONE an EXPOSURE_LOG entry stands for."""
    return ExposureDone(plan_id=entry.plan_id, index=entry.index, frame_id=entry.frame_id, status=entry.status,
                        planned_mdeg=entry.planned_mdeg, start_mdeg=entry.start_mdeg, end_mdeg=entry.end_mdeg,
                        kv_ckv=entry.kv_ckv, mas_nas=entry.mas_nas, window_start_us=entry.window_start_us,
                        window_end_us=entry.window_end_us)


def ledger_ready(entry: Message) -> Message:
    """The IMAGE_READY an EXPOSURE_LOG entry with an image (image_state 1) stands for."""
    return ImageReady(frame_id=entry.frame_id, rows=entry.rows, cols=entry.cols, bits=16, checksum=entry.checksum,
                      size_bytes=entry.size_bytes, locator=entry.locator)


def reconcile_ledger(ctx: ExamContext, st: _State, plan_id: int, deadline_s: float | None = None) -> Plan:
    """Read the device's ledger of ``plan_id``; record every exposure not yet heard of, take in every image
    the data channel still offers (CRC checked); returns (exposures made, all with status OK).

    Readouts still pending are waited for (GET_EXPOSURE_LOG again) up to ``image_timeout_s``, or until
    the host time ``deadline_s`` (an operator's stop: :func:`safe_stop`).
    """
    t0 = yield Now()
    while True:
        try:
            entries = yield from read_ledger(plan_id)
        except Interrupted:
            raise  # a suspender fired meanwhile (the guard is on): the exam ends; the safe stop reads the ledger
        except HostError as exc:
            st.ledger_unread.append(f"plan {plan_id}: {exc}")
            ctx.log("decision", note=f"exposure ledger of plan {plan_id} unreadable: {exc}", action="end")
            return -1, False
        st.ledger[plan_id] = len(entries)
        for e in entries:
            if (plan_id, e.index) not in st.recorded:
                now = yield Now()
                ctx.log("decision", note=f"exposure {e.index} of plan {plan_id} (frame {e.frame_id}) known only "
                        "from the device's ledger: recorded", action="continue")
                record_exposure(ctx, st, ledger_done(e), now, source="ledger")
        pending = False
        _, is_scout = st.armed.get(plan_id, ([], False))
        for e in entries:
            have = st.scout is not None if is_scout else e.index in st.images
            if have:
                continue
            if e.image_state == 0:
                pending = True
                continue
            if e.image_state == 2:
                st.missing_reasons[e.frame_id] = "the device reports the detector readout failed"
                continue
            rec = next((x for x in reversed(st.exposures) if x.frame_id == e.frame_id), None)
            if rec is None:
                continue
            stem = "scout" if is_scout else ctx.store.projection_stem(rec.index)
            prec = yield from take_image(ctx, ledger_ready(e), rec, stem, st.missing_reasons)
            if prec is not None:
                st.missing_reasons.pop(e.frame_id, None)
                if is_scout:
                    st.scout = prec
                else:
                    st.images[rec.index] = prec
                    if rec.index in st.checks:
                        st.checks[rec.index] = st.checks[rec.index].model_copy(update={"image_stored": True})
        now = yield Now()
        out_of_time = now - t0 >= ctx.options.image_timeout_s if deadline_s is None else now >= deadline_s
        if not pending or out_of_time:
            why = ("readout still pending on the device when the exam ended" if deadline_s is None else
                   f"readout still pending on the device {ctx.options.operator_stop_wait_s:g} s after the operator's "
                   "stop (operator_stop_wait_s); the device writes it to its data channel, `crescent exam recover` "
                   "takes it in")
            for e in entries:
                if e.image_state == 0 and e.frame_id not in st.missing_reasons:
                    st.missing_reasons[e.frame_id] = why
            return len(entries), all(e.status == int(ExposureStatus.OK) for e in entries)
        yield Sleep(max(ctx.options.image_retry_s, 0.1))


def record_exposure(ctx: ExamContext, st: _State, msg: Message, host_time_s: float,
                    source: str = "event") -> ExposureRecord:
    """Record one EXPOSURE_DONE of an armed plan: exposure list, plan check, audit line (planned vs actual)."""
    planned, is_scout = st.armed[msg.plan_id]
    p = planned[min(msg.index, len(planned) - 1)]
    rec = exposure_record(msg, p, is_scout)
    st.exposures.append(rec)
    st.recorded.add((msg.plan_id, msg.index))
    st.frame_to_index[msg.frame_id] = msg.index
    status = _status_name(msg.status)
    if not is_scout:
        st.checks[msg.index] = _check(ctx, rec, p, status)
    ctx.log("exposure", plan_id=msg.plan_id, index=msg.index, frame_id=msg.frame_id, status=status,
            is_scout=is_scout, planned_angle_deg=p.planned_angle_deg, actual_start_deg=rec.angle_start_deg,
            actual_end_deg=rec.angle_end_deg, planned_kvp=p.kvp, actual_kvp=rec.kvp, planned_mas=p.mas,
            actual_mas=rec.mas, planned_window_ms=p.window_ms,
            actual_window_ms=round((rec.window_end_s - rec.window_start_s) * 1e3, 6),
            window_start_us=msg.window_start_us, window_end_us=msg.window_end_us, host_time_s=host_time_s,
            source=source)
    return rec


def _ph(st: _State, name: str, index: int = 0, total: int = 0) -> Phase:
    """A Phase message that also records the exam's current phase."""
    if name not in ("image",):
        st.phase = name
    return Phase(name, index, total)


def _store(ctx: ExamContext, st: _State, ready: Message, rec: ExposureRecord, is_scout: bool, n: int) -> Plan:
    stem = "scout" if is_scout else ctx.store.projection_stem(rec.index)
    prec = yield from take_image(ctx, ready, rec, stem, st.missing_reasons)
    if prec is None:
        return 0
    if is_scout:
        st.scout = prec
    else:
        st.images[rec.index] = prec
        if rec.index in st.checks:
            st.checks[rec.index] = st.checks[rec.index].model_copy(update={"image_stored": True})
        yield Phase("image", len(st.images), n)
    return 1


def _check(ctx: ExamContext, rec: ExposureRecord, p: PlannedExposure, status: str) -> ExposureCheck:
    err = rec.mean_angle_deg - p.planned_angle_deg
    return ExposureCheck(
        index=rec.index, status=status, planned_angle_deg=p.planned_angle_deg, actual_angle_deg=rec.mean_angle_deg,
        angle_error_deg=err, within_tolerance=abs(err) <= ctx.options.angle_tolerance_deg, planned_kvp=p.kvp,
        planned_mas=p.mas, planned_window_ms=p.window_ms, actual_window_ms=(rec.window_end_s - rec.window_start_s) * 1e3,
    )


def host_scout_exposure(exam: ExamModel, limits: DeviceLimits, min_window_ms: float) -> PlannedExposure:
    """The AEC scout as the host plans it: the exam's scout, its window stretched to at least
    ``min_window_ms`` (ms) at a lower tube current and the same mAs (a very short pulse is mostly kV rise).

    Also what the virtual clinical trial's direct path images, so that both AECs see the same scout.
    """
    exp = aec_scout_exposure(exam, limits)
    if exp is None:
        raise ValueError(f"exam {exam.name} has no AEC scout (manual technique)")
    if exp.window_ms < min_window_ms:
        ma = max(limits.tube_current_min_ma, 1e3 * exp.mas / min_window_ms)
        exp = replace(exp, tube_current_ma=ma, window_ms=1e3 * exp.mas / ma)
    return exp


def scout(ctx: ExamContext, st: _State) -> Plan:
    """AEC pre-exposure; sets ``st.technique``."""
    tech = ctx.exam.technique
    assert isinstance(tech, AecTechnique)
    yield _ph(st, "scout")
    exp = host_scout_exposure(ctx.exam, ctx.session.limits, ctx.options.scout_min_window_ms)
    yield from move_arc(ctx, exp.planned_angle_deg)
    yield from run_armed_plan(ctx, st, ctx.plan_id, [exp], True, "scout")
    if st.scout is None:
        why = f" ({ctx.timed_out[0]}: {IMAGE_TIMEOUT_HINT})" if ctx.timed_out else ""
        raise ExamError(f"the AEC scout image never arrived intact{why}")
    yield Guard(True)  # off since the scout's exposure ended; a fault meanwhile ends the exam here
    yield WaitFor(lambda m: m.state == int(DeviceState.IDLE), ctx.options.move_timeout_s, "the scout plan to end")
    # STATUS is answered after everything the device did at the plan's end: a device that releases
    # after every plan (ignoring ARM_PLAN.final) is moving the paddle now.
    status = yield from _status(ctx)
    if status.state == int(DeviceState.BUSY):
        yield WaitFor(lambda m: m.state != int(DeviceState.BUSY), ctx.options.move_timeout_s,
                      "the device's own motion after the scout to end")
        status = yield from _status(ctx)
    if st.force_n and status.force_dn * 0.1 < 0.5 * st.force_n:
        raise ExamError(
            f"the device released the compression after the AEC scout plan ({status.force_dn / 10:.0f} N left of "
            f"{st.force_n:.0f} N): it releases after every plan instead of only the final one (ARM_PLAN.final); "
            "the host does not compress the patient twice"
        )
    image = np.load(ctx.store.root / st.scout.path, allow_pickle=False)  # type: ignore[operator]
    det = ctx.session.geometry.detector
    roi = aec_roi(image.shape[0], image.shape[1], det.pitch_mm)
    bits = 16 if image.dtype.itemsize == 2 else 8 * image.dtype.itemsize
    signal = roi_signal(image, roi, bits, float(ctx.session.info.dark_offset_adu))
    assert st.thickness_mm is not None
    decision = choose_technique(tech, st.thickness_mm, signal)
    st.aec, st.technique = decision, decision.technique
    ctx.log("aec", thickness_mm=st.thickness_mm, scout_signal=signal, roi=[roi.r0, roi.r1, roi.c0, roi.c1],
            exponent=decision.exponent, chosen=decision.technique.model_dump(), note=decision.clamped)


def start_angle(ctx: ExamContext, planned: list[PlannedExposure]) -> float:
    """Where the arm waits before FIRE: the first angle, or for a continuous sweep its run-up start."""
    first = planned[0]
    if first.motion != "continuous":
        return first.planned_angle_deg
    lim = ctx.session.limits
    speed = abs(first.speed_deg_s)
    back = 0.5e-3 * speed * first.window_ms + runup_deg(speed, lim.arc_acceleration_deg_s2, lim.arc_jerk_deg_s3)
    direction = 1.0 if first.speed_deg_s > 0 else -1.0
    angle = first.planned_angle_deg - direction * back
    return min(max(angle, lim.arc_min_deg), lim.arc_max_deg)


def release_compression(mirror: DeviceMirror, timeout_s: float, attempts: int = 4,
                        log: Callable[..., None] | None = None, reopen: Callable[[], Plan] | None = None) -> Plan:
    """RELEASE until the paddle is parked; returns (released, last MOTION_DONE message or None).

    A RELEASE that is refused, unanswered, or whose motion stopped before the park height (a fault
    of another axis, a device reset, the device's own release taking over) is sent again, up to
    ``attempts`` times; a device that has reset (NAK NO_SESSION, state BOOT) first gets a new
    session from ``reopen`` (a HELLO plan). No fault path leaves the breast compressed while the
    device accepts RELEASE (IEC 60601-2-45). If the paddle never reports parked, the breast counts
    as released when STATUS shows the force gone (below 1 N) after a settling pause.
    """
    done: Message | None = None
    last_problem = ""
    for attempt in range(attempts):
        if attempt:
            if log is not None:
                log("decision", note=f"compression not released ({last_problem}); RELEASE again "
                    f"({attempt + 1} of {attempts})", action="retry")
            yield Sleep(0.2)
        try:
            if mirror.state == int(DeviceState.BOOT) and reopen is not None:
                yield from reopen()
            done = yield from motion(mirror, Release(), timeout_s)
        except (CommandRefused, CommandFailed, WaitTimeout) as exc:
            last_problem = f"{type(exc).__name__}: {exc}"
            done = None
            if isinstance(exc, CommandRefused) and exc.error_code == int(ErrorCode.NO_SESSION) and reopen is not None:
                try:
                    yield from reopen()
                except HostError as exc2:
                    last_problem = f"new session failed: {exc2}"
            continue
        if done.ok:
            return True, done
        last_problem = (f"the paddle stopped at {done.thickness_um / 1000:.1f} mm with {done.force_dn / 10:.1f} N")
    yield Sleep(0.5)  # a breast relaxing back onto a stopped paddle shows force again
    try:
        status = yield Command(GetStatus(), retries=R)
    except HostError:
        return False, done
    return status.force_dn < 10, done


def release(ctx: ExamContext, st: _State) -> Plan:
    yield _ph(st, "release")
    def reopen() -> Plan:
        ctx.log("decision", note="device reset: new session (HELLO) before RELEASE", action="retry")
        yield from hello_plan(ctx.session_id, ctx.options.heartbeat_period_ms, ctx.options.watchdog_timeout_ms,
                              new_session=True)

    st.released, done = yield from release_compression(ctx.mirror, ctx.options.move_timeout_s,
                                                       ctx.options.release_attempts, ctx.log, reopen)
    if not st.released:
        st.warnings.append(f"RELEASE stopped with {ctx.mirror.force_n:.1f} N on the breast "
                           f"after {ctx.options.release_attempts} attempts")
    elif done is not None and not done.ok:
        st.warnings.append(f"RELEASE ended before the park height ({done.thickness_um / 1000:.1f} mm) with no force")


#: Force below which the breast counts as free of the paddle, N (as the fault campaign's invariant).
BREAST_FREE_N = 1.0


def start_release(ctx: ExamContext, st: _State) -> Plan:
    """An operator's stop: send RELEASE now and return what :func:`breast_free` needs to follow it, or None
    when the device did not accept it (the full :func:`release`, with its retries, then runs after the images)."""
    yield _ph(st, "release")
    mark = ctx.mirror.mark
    cmd = Command(Release(), retries=R)
    try:
        yield cmd
    except HostError as exc:
        ctx.log("decision", note=f"RELEASE at the stop not accepted ({exc}); released after the images", action="retry")
        return None
    return mark, cmd.answered_seq


def breast_free(ctx: ExamContext, st: _State, releasing: tuple[int, int]) -> Plan:
    """After :func:`start_release`: wait until the breast is free (the force read back below
    :data:`BREAST_FREE_N`) or the release's MOTION_DONE; the paddle goes on to its park height by itself
    and an operator's stop does not wait for it. A release that stops with the breast still under force,
    or never frees it within ``move_timeout_s``, goes through :func:`release` (RELEASE again, retries)."""
    mark, seq = releasing

    def free(m: DeviceMirror) -> Any:
        for e in m.events_since(mark, "MOTION_DONE"):
            if e.message.cause_msg_id == Release.ID and e.message.cause_seq == seq:
                return e.message
        return "free" if m.force_n < BREAST_FREE_N else None

    try:
        got = yield WaitFor(free, ctx.options.move_timeout_s, "the breast to be free")
    except WaitTimeout:
        got = None
    if isinstance(got, str):
        st.released = True
        ctx.log("decision", note=f"breast free ({ctx.mirror.force_n:.1f} N, paddle at {ctx.mirror.thickness_mm:.1f} mm "
                "and rising): the device parks the paddle; the stop does not wait for it", action="continue")
        return
    if got is not None and got.ok:
        st.released = True
        return
    yield from release(ctx, st)


# ------------------------------------------------------------------------------------------- the plan


def exam_plan(ctx: ExamContext) -> Plan:
    """The whole exam (see module docstring); returns the :class:`ExamRecord`."""
    st = _State(event_mark=ctx.mirror.mark, peer_losses=ctx.mirror.peer_lost_count)
    st.started_s = yield Now()
    ctx.log("exam_start", exam=ctx.exam.name, exam_kind=ctx.exam.kind, plan_id=ctx.plan_id + 1,
            exam_definition=ctx.exam.model_dump(mode="json"))
    try:
        yield from prepare(ctx, st)
        yield from compress(ctx, st)
        if isinstance(ctx.exam.technique, AecTechnique):
            yield from scout(ctx, st)
            st.planned = expand_exam(ctx.exam, st.technique, ctx.session.limits)
        else:
            st.planned = expand_exam(ctx.exam, None, ctx.session.limits)
            st.technique = st.planned[0].technique()
        yield _ph(st, "position")
        yield from move_arc(ctx, start_angle(ctx, st.planned))
        yield from run_armed_plan(ctx, st, ctx.plan_id + 1, st.planned, False, "sweep")
        if ctx.exam.compression.release == "after_exam":
            try:
                yield WaitFor(lambda m: m.state == int(DeviceState.IDLE) or m.state in _STOPPED,
                              ctx.options.move_timeout_s, "the plan to end")
                yield from release(ctx, st)
            except (HostError, PlanError) as exc:
                # Every image is in; only the release failed: make it safe and say so (the record
                # is incomplete if the paddle still does not release).
                st.warnings.append(f"release failed ({type(exc).__name__}: {exc}); stopping and releasing again")
                yield from safe_stop(ctx, st, "HOST_ERROR", release_anyway=True)
    except Interrupted as exc:
        st.aborted, st.end_reason, st.end_fault = True, exc.reason, exc.fault
        yield from safe_stop(ctx, st, exc.abort_reason)
        cause = device_cause(ctx, st) if exc.fault is None else None
        if cause is not None:  # the plan saw the effect (plan ended early); the device says why
            st.end_reason, st.end_fault = f"{cause[0]} ({st.end_reason})", cause[1]
    except (HostError, PlanError, ValueError) as exc:
        st.aborted, st.end_reason = True, f"{type(exc).__name__}: {exc}"
        yield from safe_stop(ctx, st, "HOST_ERROR")
        cause = device_cause(ctx, st)
        if cause is not None:  # a refused command is usually the echo of a device fault: name the fault
            st.end_reason, st.end_fault = f"{cause[0]} ({st.end_reason})", cause[1]
    if not st.aborted and ctx.mirror.peer_alive:
        # Both sides keep the ledger: read the device's and reconcile, so the record never claims fewer
        # exposures than the device made (an EXPOSURE_DONE lost on the line included).
        for plan_id in [p for p in st.armed if p not in st.ledger]:
            yield from reconcile_ledger(ctx, st, plan_id)
    if not st.aborted:
        st.phase = "done"
    if st.end_fault is None:
        cause = device_cause(ctx, st)
        if cause is None and ctx.mirror.peer_lost_count > st.peer_losses:
            # the link was lost for the watchdog time: the device's watchdog held it safe (its events
            # saying so may have been lost with the line)
            cause = ("the link was lost for the watchdog time during the exam (the device's watchdog held it "
                     f"safe; device now {ctx.mirror.state_name})", "WATCHDOG")
        if cause is not None:  # e.g. an arc fault while the paddle released: the exam went on, the record says so
            st.end_fault = cause[1]
            if not st.aborted:
                st.warnings.append(f"device fault during the exam: {cause[0]}")
    end = yield Now()
    record = build_record(ctx, st, end)
    ctx.store.write_record(record)
    ctx.log("exam_end", status=record.status, reason=record.reason, fault=record.fault,
            images=len(record.image_paths), planned=record.planned_count)
    yield Phase("done" if record.complete else record.status)
    return record


_STOPPED = (int(DeviceState.SAFE_HOLD), int(DeviceState.FAULT), int(DeviceState.BOOT))


def device_cause(ctx: ExamContext, st: _State) -> tuple[str, str] | None:
    """The first device fault (or stop) during this exam that the policy ends an exam on: (reason, fault name)."""
    hard = int(Interlock.DOOR_CLOSED) | int(Interlock.ESTOP_RELEASED)  # type: ignore[attr-defined]
    for ev in ctx.mirror.events_since(st.event_mark, "FAULT", "STATE_CHANGED", "INTERLOCK_CHANGED"):
        m = ev.message
        if int(getattr(m, "device_time_us", ctx.mirror.fault_floor_us)) < ctx.mirror.fault_floor_us:
            continue  # from before this host's RESET_FAULT, delivered late: already cleared
        if m.NAME == "INTERLOCK_CHANGED" and m.interlocks & hard != hard:
            door = not m.interlocks & int(Interlock.DOOR_CLOSED)  # type: ignore[attr-defined]
            return ("interlock open: DOOR_CLOSED" if door else "interlock open: ESTOP_RELEASED",
                    "DOOR_OPEN" if door else "ESTOP")
        if m.NAME == "FAULT" and fault_action(m.fault_code, bool(m.latched)) is Action.END:
            return f"device fault {fault_name(m.fault_code)}: {m.text or 'no detail'}", fault_name(m.fault_code)
        if m.NAME == "STATE_CHANGED" and m.new_state in _STOPPED:
            name = "DEVICE_RESET" if m.new_state == int(DeviceState.BOOT) else fault_name(m.fault_code)
            return f"device entered {DeviceState(m.new_state).name}", name
    return None


def safe_stop(ctx: ExamContext, st: _State, abort_reason: str, release_anyway: bool = False) -> Plan:
    """Abort sequencing: reach the device, ABORT, take in images already exposed, RELEASE as configured.

    The compression is released if the exam's ``release_on_fault`` says so (or ``release_anyway``,
    used when the exam's own release step failed).
    """
    ended_in = st.phase  # the record keeps the phase the exam ended in, not the stop's own steps
    yield from _safe_stop_steps(ctx, st, abort_reason, release_anyway)
    st.phase = ended_in


def _safe_stop_steps(ctx: ExamContext, st: _State, abort_reason: str, release_anyway: bool) -> Plan:
    yield Guard(False)
    yield Phase("abort")
    m = ctx.mirror
    new_session = False
    if not m.peer_alive:
        try:
            yield WaitFor(lambda mm: mm.peer_alive, ctx.options.reconnect_timeout_s, "the link to come back")
        except WaitTimeout:
            # Lost for good (as far as this session knows): open a new session, as a restarted host
            # would, to read the ledger and take in the images before the record is written.
            ok = yield from reconnect(ctx, st)
            if not ok:
                st.warnings.append("device unreachable: ABORT/RELEASE not sent, exposure ledger not read (the "
                                   "device's watchdog holds it safe; `crescent exam recover` reads it later)")
                st.ledger_unread.append("device unreachable")
                return
            new_session = True
    operator = abort_reason == "OPERATOR"
    stopped_at = yield Now()
    try:
        if m.state == int(DeviceState.BOOT) and not new_session:
            ctx.log("decision", note="device reset: new session (HELLO) before ABORT/RELEASE", action="retry")
            yield from hello_plan(ctx.session_id, ctx.options.heartbeat_period_ms, ctx.options.watchdog_timeout_ms,
                                  new_session=True)
        yield Command(Abort(reason=int(AbortReason[abort_reason])), retries=R)
    except HostError as exc:
        st.warnings.append(f"ABORT not acknowledged: {exc}")
    comp = ctx.exam.compression
    must_release = st.compressed and (comp.release_on_fault or release_anyway)
    # An operator's stop (Ctrl-C, SIGTERM) frees the breast first: RELEASE now, the images and the ledger are
    # read while the paddle rises, and the stop ends once the breast is free (the device parks the paddle).
    releasing = (yield from start_release(ctx, st)) if operator and must_release else None
    # an operator's stop waits only the grace for images already on their way, and for readouts still pending
    # until operator_stop_wait_s after the stop (a run stopped by a signal ends within 2 s)
    yield from collect_late_images(ctx, st, ctx.options.abort_grace_s if operator else ctx.options.image_timeout_s)
    deadline = stopped_at + ctx.options.operator_stop_wait_s if operator else None
    for plan_id in list(st.armed):
        yield from reconcile_ledger(ctx, st, plan_id, deadline)
    if must_release:
        try:
            if releasing is not None:
                yield from breast_free(ctx, st, releasing)
            else:
                yield from release(ctx, st)
        except HostError as exc:
            st.warnings.append(f"RELEASE after the abort failed: {exc}")


def reconnect(ctx: ExamContext, st: _State) -> Plan:
    """A new session (HELLO, new link session) until it answers or ``reconnect_budget_s`` passes; True if reached."""
    t0 = yield Now()
    attempt = 0
    while True:
        attempt += 1
        ctx.log("decision", note=f"link lost: opening a new session (HELLO attempt {attempt})", action="retry")
        try:
            reply = yield from hello_plan(ctx.session_id, ctx.options.heartbeat_period_ms,
                                          ctx.options.watchdog_timeout_ms, new_session=True)
        except HostError as exc:
            now = yield Now()
            if now - t0 >= ctx.options.reconnect_budget_s:
                ctx.log("decision", note=f"no new session within {ctx.options.reconnect_budget_s} s: {exc}",
                        action="end")
                return False
            yield Sleep(0.5)
            continue
        ctx.log("reconnected", resumed_plan_id=reply.resumed_plan_id,
                resumed_exposures_done=reply.resumed_exposures_done, state=DeviceState(reply.state).name)
        if reply.resumed_plan_id and reply.resumed_plan_id not in st.armed:
            st.warnings.append(f"the device reports an interrupted plan {reply.resumed_plan_id} this exam did not arm")
        yield from _status(ctx)
        return True


def collect_late_images(ctx: ExamContext, st: _State, limit_s: float | None = None) -> Plan:
    """After an abort: record EXPOSURE_DONE events that came after the interrupt, take in their images.

    Keeps looking for ``abort_grace_s`` after the ABORT and as long as an image is outstanding, up
    to ``limit_s`` (default ``image_timeout_s``; an operator stop passes ``abort_grace_s``).
    """
    t0 = yield Now()
    while True:
        for ev in ctx.mirror.events_since(0, "EXPOSURE_DONE"):
            m = ev.message
            if m.plan_id in st.armed and (m.plan_id, m.index) not in st.recorded:
                record_exposure(ctx, st, m, ev.host_time_s)
        want = {e.frame_id: e for e in st.exposures
                if (not e.is_scout and e.index not in st.images) or (e.is_scout and st.scout is None)}
        for ev in ctx.mirror.events_since(0, "IMAGE_READY"):
            rec = want.pop(ev.message.frame_id, None)
            if rec is None:
                continue
            stem = "scout" if rec.is_scout else ctx.store.projection_stem(rec.index)
            prec = yield from take_image(ctx, ev.message, rec, stem, st.missing_reasons)
            if prec is not None:
                if rec.is_scout:
                    st.scout = prec
                else:
                    st.images[rec.index] = prec
        now = yield Now()
        limit = ctx.options.image_timeout_s if limit_s is None else limit_s
        if now - t0 >= limit or (not want and now - t0 >= ctx.options.abort_grace_s):
            return
        yield Sleep(ctx.options.image_retry_s)


def build_record(ctx: ExamContext, st: _State, end_s: float) -> ExamRecord:
    """Assemble the :class:`ExamRecord` from what the exam accumulated."""
    planned_n = len(st.planned) if st.planned else 0
    image_indices = sorted(st.images)
    exposed = {e.index for e in st.exposures if not e.is_scout}
    missing = sorted(i for i in exposed if i not in st.images)
    reasons: dict[int, str] = {}
    for e in st.exposures:
        stored = st.scout is not None if e.is_scout else e.index in st.images
        if not stored:
            reasons[e.frame_id] = st.missing_reasons.get(e.frame_id) or (
                "no IMAGE_READY for it and the device's ledger was not read" if st.ledger_unread
                else "the image was never announced (IMAGE_READY) before the exam ended")
    checks = [st.checks[i].model_copy(update={"image_stored": i in st.images}) for i in sorted(st.checks)]
    header = None
    if st.thickness_mm and st.thickness_mm > 0:
        header = AcquisitionHeader(
            geometry=ctx.session.geometry, compressed_thickness_mm=st.thickness_mm,
            compression_force_n=st.force_n or 0.0, projections=[st.images[i] for i in image_indices],
        )
    comp = ctx.exam.compression
    release_ok = (not st.compressed) or st.released == (comp.release == "after_exam" or (st.aborted and comp.release_on_fault))
    if st.aborted:
        status, reason = "aborted", st.end_reason
    elif missing or len(image_indices) < planned_n:
        status = "incomplete"
        reason = f"images missing for exposures {missing or 'not made'} ({len(image_indices)} of {planned_n} stored)"
        if ctx.timed_out:
            reason += f"; {ctx.timed_out[0]}: {IMAGE_TIMEOUT_HINT}"
    elif not release_ok:
        status, reason = "incomplete", "compression not released as the exam requires"
    else:
        status, reason = "complete", None
    return ExamRecord(
        exam_name=ctx.exam.name, exam_kind=ctx.exam.kind, status=status, reason=reason, fault=st.end_fault,
        phase=st.phase, plan_id=ctx.plan_id + 1, started_host_s=st.started_s, ended_host_s=end_s,
        device=ctx.session.summary(), angle_tolerance_deg=ctx.options.angle_tolerance_deg, technique=st.technique,
        aec=AecRecord(thickness_mm=st.aec.thickness_mm, scout_signal_fraction=st.aec.scout_signal,
                      target_signal_fraction=st.aec.target_signal, kvp_exponent=st.aec.exponent,
                      chosen=st.aec.technique, note=st.aec.clamped) if st.aec else None,
        compression_force_n=st.force_n, compressed_thickness_mm=st.thickness_mm, compression_release=comp.release,
        released=st.released, scout=st.scout, header=header, exposures=st.exposures, checks=checks,
        planned_count=planned_n, missing_images=missing, missing_reasons=reasons,
        device_exposures=sum(st.ledger.values()) if st.ledger and not st.ledger_unread else None,
        warnings=st.warnings,
        image_paths=[st.images[i].path for i in image_indices if st.images[i].path],
    )
