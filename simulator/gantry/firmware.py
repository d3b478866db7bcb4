"""The gantry firmware: command dispatcher, device state machine, sweep sequencer, safety.

Theory of operation
-------------------
One :class:`Gantry` owns the device side of the serial line and the physical actors (arc axis,
paddle, generator, detector, interlocks). The sans-IO :class:`protocols.wire.link.Link` is fed
the bytes the UART delivers (at their arrival time) and clock ticks at the link's deadlines (a
SimPy timer re-armed after every link call), and what it wants sent is written to the UART. The link delivers each new request
exactly once (retransmissions are answered from its cache and never reach the dispatcher), so a
duplicated FIRE exposes once.

Commands follow :mod:`protocols.wire.device_states`: a command outside ``ALLOWED_COMMANDS`` of the
present state is refused with the code :func:`~protocols.wire.device_states.refusal` gives
(``NO_SESSION`` in BOOT, ``NOT_ARMED`` for a FIRE where no plan can be armed, else ``BAD_STATE`` with
detail = the state). State changes go through ``next_state`` with the table's triggers and are
reported with STATE_CHANGED. Accepted commands are validated against the device's own limits
(``DeviceLimits``): BEYOND_LIMITS (detail = field index; plan entries ``1000 * (i + 1) + j`` as the
codec does, j = 4 for the tube current an entry implies), FORCE_LIMIT, HEAT_LIMIT, PLAN_INVALID
(``1000 * reason + entry``), DIGEST_MISMATCH, NOT_HOMED, INTERLOCK_OPEN (detail = open bits). NAK
and ACK details follow SPEC.md section 5.

Safety, independent of the host: X-rays only inside a FIRE of the armed plan (id + digest) with
every interlock safe; an interlock opening, ABORT, the heartbeat watchdog (link ``PeerLost`` after
HELLO's ``watchdog_timeout_ms``) or the e-stop end the exposure at once (generator terminate),
brake the arm and report EXPOSURE_DONE with status INTERLOCK / ABORTED / WATCHDOG. The watchdog
puts the device in SAFE_HOLD at the moment the link declares the peer lost (0 ms after the
timeout in virtual time) and remembers the interrupted plan for the next HELLO_REPLY
(``resumed_plan_id`` / ``resumed_exposures_done``).

Latched causes (one place: :meth:`Gantry._latch_cause` records them, :meth:`Gantry._transition`
enforces them). Every cause of a hold latches in every state (BOOT, IDLE, BUSY, ARMED,
EXPOSING, SAFE_HOLD, FAULT): the e-stop and the heartbeat watchdog (SAFE_HOLD causes) and the
latched faults (MOTOR_STALL, ENCODER_GLITCH, TUBE_ARC, DETECTOR_TIMEOUT, BACKUP_TIMER: FAULT
causes; SAFE_HOLD wins when both are latched). While any cause is latched no transition leads
to IDLE, BUSY, ARMED or EXPOSING, whatever asks for it (RESET_FAULT, HELLO, any command); a
transition out of BOOT (HELLO) into a normal state is followed at once by the latched cause's
transition. A cause is unlatched only by: RESET_FAULT (``fault_code`` 0 or the cause's code) for
a fault, for the watchdog (the host heard again: its FAULT event says ``latched``), and for the
e-stop once it is released; HELLO also ends the watchdog's. A
RESET_FAULT that would leave any cause latched clears nothing and is refused (NAK FAULT_ACTIVE,
detail = a remaining cause). The e-stop input is read at boot and after a device reset, so a
device that starts with the e-stop pressed has it latched. The other interlocks (door, hand switch,
paddle, detector and generator ready) are permissives, not hold causes: one opening in EXPOSING
ends the window, stops and disarms the plan (IDLE), and closing it resumes nothing (SPEC.md,
"Safety rules"; the random safety machine checks it against a device that resumes).

MOTION_DONE is sent once the axis is at rest: after a stop (ABORT, e-stop, fault) it waits for the
quick-stop deceleration to end, so its ``arc_mdeg`` is where the arm came to rest.

Events (STATE_CHANGED, MOTION_DONE, EXPOSURE_DONE, IMAGE_READY, INTERLOCK_CHANGED, FAULT) are link
requests (retransmitted until acknowledged); TELEMETRY is a stream at the configured rate once a
session is open. Events raised while a command is being handled are sent after its answer.

Continuous sweep: the arm runs from ``first - d`` to ``last + d`` at the plan speed, with
``d = runup + half a pulse of travel`` (as :func:`protocols.exams.plan.arc_travel_deg`); each
exposure fires when the encoder crosses ``planned - direction * speed * pulse / 2`` so that the
window is centred on the planned angle; EXPOSURE_DONE reports the encoder angle at window start
and end. Step-and-shoot: move, settle (``arc_settle_ms``), expose at rest.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import simpy
import simpy.rt

from protocols.records import ExposureRecord
from protocols.wire import messages as M
from protocols.wire.catalogue import (
    ANODE_FILTER_CODE,
    ANODE_FILTER_TEXT,
    Capability,
    DetectorState,
    DeviceState,
    ErrorCode,
    ExposureStatus,
    FaultCode,
    Interlock,
    MotionMode,
)
from protocols.wire.device_states import Trigger, next_state, refusal
from protocols.wire.framing import MAX_PAYLOAD, PROTOCOL_VERSION
from protocols.wire.link import (
    Answered,
    AuthRejected,
    DuplicateAnswered,
    FrameDropped,
    Link,
    LinkConfig,
    LinkError,
    PeerAlive,
    PeerLost,
    Received,
    Rejected,
    SendFailed,
    StaleResponse,
)
from protocols.wire.signing import DEVICE_LINK_ID, HighWaterStore, LinkKey, MemoryHighWater, Signer
from simulator.gantry.arc import ArcAxis
from simulator.gantry.config import GantryConfig
from simulator.gantry.detector import Detector, Frame
from simulator.gantry.eventlog import EventLog
from simulator.gantry.faults import INJECTABLE, WIRE_INJECTABLE, FaultPlan, ScheduledFault, random_fault_times
from simulator.gantry.generator import Generator as XrayGenerator
from simulator.gantry.linkio import SimLinkDriver
from simulator.gantry.interlocks import OperatorInputs, interlock_mask, open_bits
from simulator.gantry.paddle import Paddle
from simulator.gantry.plans import ArmedPlan, estimate_s, exposure_record, focal_spot_mm, sweep_ends, validate_plan
from simulator.gantry.uart import SerialEndpoint

S = DeviceState

#: Capabilities of the simulated gantry (HELLO_REPLY.device_capabilities) = 63.
DEVICE_CAPABILITIES: int = int(
    Capability.CONTINUOUS_MOTION
    | Capability.STEP_AND_SHOOT
    | Capability.POSITION_TRIGGER
    | Capability.AEC_SCOUT
    | Capability.SIMULATION_CONTROLS
    | Capability.FILE_DATA_CHANNEL
)

#: Latched faults that concern the paddle (they stop it); every other fault leaves a release running.
PADDLE_FAULTS: frozenset[int] = frozenset({int(FaultCode.FORCE_LIMIT)})

#: Oldest protocol version this device speaks (the catalogue's min_supported_version).
MIN_PROTOCOL_VERSION = M.CATALOGUE.min_supported_version


@dataclass
class _Sweep:
    plan: ArmedPlan
    stop: simpy.Event
    status: int = int(ExposureStatus.ABORTED)
    readouts: list[simpy.Process] = field(default_factory=list)


def _mdeg(deg: float) -> int:
    return int(round(deg * 1000.0))


def _u(value: float, hi: int) -> int:
    return max(0, min(hi, int(round(value))))


def _down(value: float, hi: int) -> int:
    """A maximum on the wire: rounded down (a hair of float error forgiven), clamped to [0, hi]."""
    return max(0, min(hi, math.floor(value + 1e-9)))


def _up(value: float, hi: int) -> int:
    """A minimum on the wire: rounded up (a hair of float error forgiven), clamped to [0, hi]."""
    return max(0, min(hi, math.ceil(value - 1e-9)))


#: Control periods :meth:`Gantry._prepare_for_compression` may simulate ahead on the control loop (each up to
#: ``paddle.substeps`` sub-steps): the default drive (8 mm/s from the park height) needs about 230, 1.3 ms.
PREDICT_MAX_PERIODS = 400


class Gantry:
    """The simulated gantry firmware (see module docstring).

    Parameters: ``env`` the SimPy environment (virtual or real time); ``config``; ``line`` the
    device end of the serial line; ``seed`` for every random thing (noise, random faults, the
    link's first sequence number); ``faults`` a :class:`FaultPlan`; ``data_dir`` the file data
    channel; ``event_log`` path of the JSON-lines log (None: memory only).

    Signed link (SPEC 2.6): with ``link_key`` every frame is signed and only verified frames are
    used; ``high_water`` keeps the high-water marks across a device reset (default: in memory, which
    survives a simulated reset; the real-time gantry passes a file). ``signing_clock_offset`` (10 us
    ticks, set by the real-time I/O layer from the wall clock) makes the timestamps wall-clock time.
    """

    def __init__(self, env: simpy.Environment, config: GantryConfig, line: SerialEndpoint, *, seed: int,
                 faults: FaultPlan | None = None, data_dir: Path, event_log: Path | None = None,
                 keep_log: bool = True, link_key: LinkKey | None = None, high_water: HighWaterStore | None = None,
                 signing_clock_offset: int = 0) -> None:
        self.env = env
        self.cfg = config
        self.limits = config.limits
        self.line = line
        self.seed = int(seed)
        self.loop_stall_request_s = 0.0  # SIM_INJECT_FAULT REALTIME_OVERRUN: the real-time loop blocks this long
        self.faults = faults or FaultPlan()
        self.log = EventLog(event_log, keep=keep_log)
        lim = self.limits
        self.axis = ArcAxis(config.axis, lim)
        self.paddle = Paddle(env, config.paddle, config.breast,
                             force_limit_n=min(lim.compression_force_max_n, lim.compression_initial_drive_max_n),
                             thickness_min_mm=lim.compression_thickness_min_mm)
        self.generator = XrayGenerator(env, config.generator, lim, np.random.default_rng([self.seed, 2]))
        self.detector = Detector(env, config.detector, config.geometry, lim, config.phantom, data_dir, self.seed)
        self.inputs = OperatorInputs(paddle_present=config.paddle.paddle_present)
        self.state = int(S.BOOT)
        self.latched: dict[int, int] = {}  # FaultCode -> the hold state it calls for (SAFE_HOLD / FAULT), oldest first
        self.session_open = False
        self.session_id = 0
        self.armed: ArmedPlan | None = None
        self.sweep: _Sweep | None = None
        self.interrupted: tuple[int, int] | None = None
        self.frame_counter = 0
        self.exposure_count = 0
        #: The exposure ledger (GET_EXPOSURE_LOG): plan id -> one entry per exposure made, in wire units.
        #: Non-volatile: it survives a lost session and a device reset.
        self.ledger: dict[int, list[dict[str, Any]]] = {}
        self._ledger_by_frame: dict[int, dict[str, Any]] = {}
        self._release_proc: simpy.Process | None = None
        self._cmd_seq = 0  # link sequence number of the command being handled (MOTION_DONE.cause_seq)
        self.telemetry_period_s = 1.0 / config.telemetry_rate_hz
        self.telemetry_stopped_until = -1.0
        self.technique: dict[str, Any] = {}
        self._motions: dict[str, simpy.Process] = {}
        self._stall_pending = False
        self._arc_pending = False
        self._deferring = False
        self._pending: list[M.Message] = []
        self._after: list[Callable[[], None]] = []
        self._fired_phases: set[int] = set()
        self._seq_rng = np.random.default_rng([self.seed, 3])
        self.link_key = link_key
        self.high_water = high_water if high_water is not None or link_key is None else MemoryHighWater()
        self.signing_clock_offset = int(signing_clock_offset)
        #: Source of the data-channel nonces: seeded in virtual time; the real-time gantry uses secrets.
        _nonce_rng = np.random.default_rng([self.seed, 5])
        self.random_bytes: Callable[[int], bytes] = lambda n: _nonce_rng.bytes(n)
        self.data_nonce: bytes | None = None  # this session's (HELLO) data-channel nonce
        self._driver = SimLinkDriver(env, line, self._new_link(), self._handle_link_events)
        self.interlocks = self._compute_interlocks()
        self._scan_inputs()
        self.log.write(0, "boot", config=config.name, seed=self.seed, firmware_version=config.identity.firmware_version,
                       serial_number=config.identity.serial_number, interlocks=self.interlocks)
        env.process(self._telemetry_loop())
        self._schedule_faults()

    # ================================================================ infrastructure
    def now_us(self) -> int:
        """Device clock, microseconds."""
        return int(round(self.env.now * 1e6))

    def _new_link(self) -> Link:
        signer = None
        if self.link_key is not None:  # a reset reloads the high-water marks from non-volatile memory
            signer = Signer(self.link_key, DEVICE_LINK_ID, clock_offset=self.signing_clock_offset, store=self.high_water)
        return Link(LinkConfig(), initial_seq=int(self._seq_rng.integers(0, 0x10000)), heartbeat_state=self.state,
                    signer=signer)

    @property
    def data_token(self) -> str | None:
        """The data-channel token of the current session (None before the first HELLO); SPEC 2.6."""
        if self.data_nonce is None:
            return None
        return self.link_key.data_token(self.data_nonce) if self.link_key is not None else self.data_nonce.hex()

    @property
    def link(self) -> Link:
        """The device end of the reliable link (replaced by a device reset)."""
        return self._driver.link

    def _flush(self) -> None:
        self._driver.flush()

    def _handle_link_events(self) -> None:
        link = self.link
        for ev in link.events():
            if self.link is not link:
                break  # a device reset during this batch: RAM lost, the rest of the old link's input with it
            if isinstance(ev, Received):
                if ev.needs_answer:
                    self._on_command(ev.message, ev.seq)
            elif isinstance(ev, PeerLost):
                self.log.write(self.now_us(), "peer_lost", silent_ms=round(ev.silent_s * 1000.0, 3))
                self._watchdog()
            elif isinstance(ev, PeerAlive):
                self.log.write(self.now_us(), "peer_alive")
            elif isinstance(ev, DuplicateAnswered):
                self.log.write(self.now_us(), "duplicate", seq=ev.seq, msg_id=ev.msg_id, answered_from_cache=ev.cached)
            elif isinstance(ev, Rejected):
                self.log.write(self.now_us(), "rejected", seq=ev.seq, msg_id=ev.msg_id, error=ev.error_code,
                               detail=ev.detail, reason=ev.reason)
            elif isinstance(ev, FrameDropped):
                self.log.write(self.now_us(), "frame_dropped", error=ev.error.kind.name)
            elif isinstance(ev, SendFailed):
                self.log.write(self.now_us(), "event_undelivered", msg=ev.request.NAME, seq=ev.seq, attempts=ev.attempts)
            elif isinstance(ev, Answered):
                if ev.attempts > 1:
                    self.log.write(self.now_us(), "event_acked", msg=ev.request.NAME, seq=ev.seq, attempts=ev.attempts)
            elif isinstance(ev, StaleResponse):
                self.log.write(self.now_us(), "stale_response", seq=ev.seq, msg_id=ev.msg_id)
            elif isinstance(ev, AuthRejected):  # never the key, never the tag
                self.log.write(self.now_us(), "auth_rejected", verdict=ev.verdict.name, seq=ev.seq, msg_id=ev.msg_id,
                               link_id=ev.link_id, request=ev.request)

    def emit(self, msg: M.Message) -> None:
        """Send a device event (guaranteed delivery); deferred until the current command's answer."""
        if self._deferring:
            self._pending.append(msg)
            return
        self.log.write(self.now_us(), "event", msg=msg.NAME, fields=msg.to_dict())
        try:
            self.link.send(msg, self.env.now)
        except LinkError as exc:
            self.log.write(self.now_us(), "event_dropped", msg=msg.NAME, reason=str(exc))
        self._flush()

    # ================================================================ state
    # ================================================================ latched causes
    @property
    def fault_code(self) -> int:
        """The latest latched fault of the FAULT kind (STATUS.fault_code), 0 if none."""
        faults = [c for c, st in self.latched.items() if st == int(S.FAULT)]
        return faults[-1] if faults else 0

    @property
    def hold_cause(self) -> int:
        """The latest latched SAFE_HOLD cause (ESTOP, WATCHDOG), 0 if none."""
        holds = [c for c, st in self.latched.items() if st == int(S.SAFE_HOLD)]
        return holds[-1] if holds else 0

    def _hold_trigger(self) -> tuple[Trigger, int] | None:
        """The transition the latched causes call for: (trigger, fault code), or None if nothing is latched."""
        if int(FaultCode.ESTOP) in self.latched:
            return Trigger.ESTOP, int(FaultCode.ESTOP)
        if int(FaultCode.WATCHDOG) in self.latched:
            return Trigger.WATCHDOG, int(FaultCode.WATCHDOG)
        if self.latched:
            return Trigger.LATCHED_FAULT, self.fault_code
        return None

    def _latch_cause(self, code: int) -> None:
        """Record cause ``code`` (any state) and put the device where it calls for (see module docstring)."""
        hold = int(S.SAFE_HOLD) if code in (int(FaultCode.ESTOP), int(FaultCode.WATCHDOG)) else int(S.FAULT)
        self.latched.pop(code, None)
        self.latched[code] = hold
        self.log.write(self.now_us(), "latched", fault=FaultCode(code).name, causes=[FaultCode(c).name for c in self.latched])
        self._enforce_causes()

    def _enforce_causes(self) -> None:
        held = self._hold_trigger()
        if held is None or self.state == int(S.BOOT):
            return  # BOOT: applied when HELLO leaves it
        trigger, code = held
        if self.state == int(S.EXPOSING):
            self._stop_plan(int(ExposureStatus.INTERLOCK) if trigger is Trigger.ESTOP
                            else int(ExposureStatus.WATCHDOG) if trigger is Trigger.WATCHDOG else int(ExposureStatus.ABORTED))
        elif self.state == int(S.ARMED):
            self._disarm()
        if self.state not in (int(S.SAFE_HOLD), int(S.FAULT)):
            # (in a hold only a paddle release may be moving: it goes on.) IEC 60601-2-45: decompression
            # goes on through faults of the arc, tube, generator and detector; only a paddle fault or the
            # e-stop stops a release in progress.
            proc = self._motions.get("paddle")
            releasing = proc is not None and proc is self._release_proc and proc.is_alive
            keep_release = releasing and code not in PADDLE_FAULTS and code != int(FaultCode.ESTOP)
            self._stop_motions(("arc",) if keep_release else ("arc", "paddle"))
        self._transition(trigger, fault=code)

    def _cause_gone(self, code: int) -> bool:
        """Whether RESET_FAULT may unlatch ``code`` now: the e-stop only once released; the watchdog's cause ended
        when the host was heard again, which the RESET_FAULT itself shows (SPEC section 3)."""
        return code != int(FaultCode.ESTOP) or self.inputs.estop_released

    def _scan_inputs(self) -> None:
        """Read the hard-wired inputs (at boot and after a device reset): a pressed e-stop latches."""
        if not self.inputs.estop_released:
            self._latch_cause(int(FaultCode.ESTOP))

    def _transition(self, trigger: Trigger, cause_msg_id: int = 0, fault: int = 0) -> bool:
        """Change state by the table; False if refused (no change, or a latched cause forbids the new state)."""
        old = self.state
        new = int(next_state(S(old), trigger))
        if new == old:
            return False
        if self.latched and old in (int(S.SAFE_HOLD), int(S.FAULT)) and new not in (int(S.SAFE_HOLD), int(S.FAULT)):
            self.log.write(self.now_us(), "exit_refused", state=S(old).name, trigger=trigger.name,
                           causes=[FaultCode(c).name for c in self.latched])
            return False
        self.state = new
        self.link.heartbeat_state = new
        self.log.write(self.now_us(), "state", old=S(old).name, new=S(new).name, trigger=trigger.name,
                       cause_msg_id=cause_msg_id, fault=fault)
        self.emit(M.StateChanged(device_time_us=self.now_us(), old_state=old, new_state=new,
                                 cause_msg_id=cause_msg_id, fault_code=fault))
        if self.latched and new not in (int(S.SAFE_HOLD), int(S.FAULT), int(S.BOOT)):
            self._enforce_causes()  # leaving BOOT with a cause latched: straight on to its hold
        return True

    def _compute_interlocks(self) -> int:
        return interlock_mask(self.inputs,
                              paddle_in_range=self.paddle.in_range(self.limits.compression_thickness_max_mm),
                              detector_ready=self.detector.ok(),
                              generator_ready=self.generator.ready(self.env.now))

    def _update_interlocks(self) -> None:
        old = self.interlocks
        new = self._compute_interlocks()
        if new == old:
            return
        self.interlocks = new
        changed = old ^ new
        self.log.write(self.now_us(), "interlocks", mask=new, changed=changed)
        self.emit(M.InterlockChanged(device_time_us=self.now_us(), interlocks=new, changed=changed))
        opened = changed & old
        if opened & int(Interlock.ESTOP_RELEASED):
            self._estop()
        elif opened and self.state == int(S.EXPOSING):
            self._stop_plan(int(ExposureStatus.INTERLOCK))
            self._transition(Trigger.INTERLOCK_OPENED)

    # ================================================================ commands
    def _on_command(self, msg: M.Message, seq: int) -> None:
        name = msg.NAME
        now_us = self.now_us()
        self.log.write(now_us, "command", msg=name, seq=seq, fields=msg.to_dict())
        self._deferring = True
        self._cmd_seq = int(seq)
        try:
            refused = refusal(S(self.state), name)
            if refused is not None:
                resp = self._nak(msg, refused, self.state if refused == ErrorCode.BAD_STATE else 0)
            else:
                resp = getattr(self, "_cmd_" + name.lower())(msg)
        finally:
            self._deferring = False
            self._cmd_seq = 0
        self.log.write(now_us, "answer", seq=seq, msg=resp.NAME, fields=resp.to_dict())
        self.link.answer(seq, resp, self.env.now)
        self._flush()
        pending, self._pending = self._pending, []
        for ev in pending:
            self.emit(ev)
        after, self._after = self._after, []
        for fn in after:
            fn()

    @staticmethod
    def _nak(msg: M.Message, code: ErrorCode, detail: int = 0) -> M.Message:
        return M.Nak(acked_msg_id=msg.ID, error_code=int(code), detail=int(detail))

    @staticmethod
    def _ack(msg: M.Message, detail: int = 0) -> M.Message:
        return M.Ack(acked_msg_id=msg.ID, detail=int(max(-(2**31), min(2**31 - 1, detail))))

    def _cmd_hello(self, m: M.Message) -> M.Message:
        if m.min_version > PROTOCOL_VERSION or m.protocol_version < MIN_PROTOCOL_VERSION:
            return self._nak(m, ErrorCode.VERSION_MISMATCH, PROTOCOL_VERSION)
        wd_ms = int(m.watchdog_timeout_ms)
        self.link.config = replace(self.link.config, peer_timeout_s=wd_ms / 1000.0,
                                   heartbeat_period_s=m.heartbeat_period_ms / 1000.0)
        self.session_open = True
        self.session_id = int(m.session_id)
        self.data_nonce = self.random_bytes(16)  # a new data-channel token: the last session's is stale
        # A new session never inherits a plan: an armed plan is disarmed, a running one stopped (and
        # reported in resumed_*). SAFE_HOLD and FAULT are kept: only RESET_FAULT leaves them (SPEC 3).
        plan = self.armed
        if plan is not None and self.state in (int(S.ARMED), int(S.EXPOSING)):
            self.interrupted = (plan.plan_id, plan.exposures_done)
            if self.state == int(S.EXPOSING):
                self._stop_plan(int(ExposureStatus.ABORTED))
            self._disarm()
        plan_id, done = self.interrupted or (0, 0)
        self.interrupted = None
        if self.latched.pop(int(FaultCode.WATCHDOG), None) is not None:  # the host is back
            self.log.write(self.now_us(), "fault_cleared", fault="WATCHDOG")
        self._transition(Trigger.HELLO, cause_msg_id=m.ID)  # SAFE_HOLD/FAULT stay: only RESET_FAULT leaves them
        ident = self.cfg.identity
        caps = DEVICE_CAPABILITIES | (int(Capability.SIGNED_LINK) if self.link_key is not None else 0)
        return M.HelloReply(protocol_version=min(int(m.protocol_version), PROTOCOL_VERSION),
                            device_capabilities=caps, session_id=self.session_id,
                            firmware_version=ident.firmware_version, serial_number=ident.serial_number,
                            watchdog_timeout_ms=wd_ms, max_payload=MAX_PAYLOAD, state=self.state,
                            resumed_plan_id=plan_id, resumed_exposures_done=min(done, 255))

    def _cmd_get_data_token(self, m: M.Message) -> M.Message:
        if not self.detector.data_channel.startswith(("tcp://", "tls://")):
            return self._nak(m, ErrorCode.UNSUPPORTED, 0)
        assert self.data_nonce is not None  # HELLO came first (BOOT refuses this command)
        return M.DataToken(session_id=self.session_id, nonce=self.data_nonce.hex())

    def status(self) -> M.Message:
        """The STATUS snapshot."""
        t = self.env.now
        plan = self.armed
        return M.Status(state=self.state, fault_code=self.fault_code, interlocks=self.interlocks,
                        homed=int(self.axis.homed), arc_mdeg=_mdeg(self.axis.encoder(t)),
                        force_dn=_u(self.paddle.force_n() * 10.0, 0xFFFF),
                        thickness_um=_u(self.paddle.thickness_mm() * 1000.0, 2**32 - 1),
                        anode_heat_permille=self.generator.anode.permille(t),
                        armed_plan_id=plan.plan_id if plan else 0,
                        exposures_done=min(plan.exposures_done, 255) if plan else 0,
                        detector_state=self.detector.state, exposure_counter=self.exposure_count & 0xFFFFFFFF)

    def _cmd_get_status(self, m: M.Message) -> M.Message:
        return self.status()

    def _cmd_get_exposure_log(self, m: M.Message) -> M.Message:
        """One entry of the exposure ledger (count = exposures made in the plan; absent entry: present 0)."""
        entries = self.ledger.get(int(m.plan_id), [])
        base = dict(plan_id=m.plan_id, count=min(len(entries), 255), exposure_counter=self.exposure_count & 0xFFFFFFFF,
                    index=m.index)
        if m.index >= len(entries):
            return M.ExposureLog(**base, present=0)
        return M.ExposureLog(**base, present=1, **entries[m.index])

    def _ledger_add(self, done: M.Message) -> None:
        entry = dict(frame_id=done.frame_id, status=done.status, planned_mdeg=done.planned_mdeg,
                     start_mdeg=done.start_mdeg, end_mdeg=done.end_mdeg, kv_ckv=done.kv_ckv, mas_nas=done.mas_nas,
                     window_start_us=done.window_start_us, window_end_us=done.window_end_us, image_state=0)
        self.ledger.setdefault(int(done.plan_id), []).append(entry)
        self._ledger_by_frame[int(done.frame_id)] = entry

    def _ledger_image(self, frame_id: int, frame: Frame | None) -> None:
        entry = self._ledger_by_frame.get(int(frame_id))
        if entry is None:
            return
        if frame is None:
            entry["image_state"] = 2
        else:
            entry.update(image_state=1, rows=frame.rows, cols=frame.cols, checksum=frame.checksum,
                         size_bytes=frame.size_bytes, locator=frame.locator)

    def _cmd_get_info(self, m: M.Message) -> M.Message:
        g, lim = self.cfg.geometry, self.limits
        d = g.detector
        return M.DeviceInfo(sid_um=_u(g.sid_mm * 1000, 2**32 - 1), pivot_height_um=_u(g.pivot_height_mm * 1000, 2**32 - 1),
                            support_height_um=_u(g.support_height_mm * 1000, 2**32 - 1),
                            native_pitch_nm=_u(d.native_pitch_mm * 1e6, 2**32 - 1), binning=d.binning, rows=d.rows,
                            cols=d.cols, offset_x_um=int(round(d.offset_x_mm * 1000)),
                            offset_y_um=int(round(d.offset_y_mm * 1000)), arc_min_mdeg=_mdeg(lim.arc_min_deg),
                            arc_max_mdeg=_mdeg(lim.arc_max_deg), arc_max_speed_mdeg_s=_mdeg(lim.arc_max_speed_deg_s),
                            force_limit_dn=_u(self.paddle.force_limit_n * 10, 0xFFFF),
                            kv_min_ckv=_u(lim.kvp_min_kv * 100, 0xFFFF), kv_max_ckv=_u(lim.kvp_max_kv * 100, 0xFFFF),
                            mas_max_nas=_u(lim.mas_max_mas * 1e6, 2**32 - 1),
                            dark_offset_adu=_u(self.detector.dark_offset_adu, 2**16 - 1),
                            data_channel=self.detector.data_channel)

    def _cmd_get_limits(self, m: M.Message) -> M.Message:
        """LIMITS_INFO: maximums rounded down, minimums up, so the host never plans past this device."""
        lim = self.limits
        spots = sorted(lim.focal_spots_mm)
        return M.LimitsInfo(
            ma_min_dma=_up(lim.tube_current_min_ma * 10, 5000), ma_max_dma=_down(lim.tube_current_max_ma * 10, 5000),
            power_max_w=_down(lim.tube_max_power_w, 100000), mas_min_nas=_up(lim.mas_min_mas * 1e6, 100_000_000),
            exposure_max_ms=_down(lim.exposure_max_ms, 10000), backup_timer_ms=_down(lim.backup_timer_ms, 20000),
            anode_heat_capacity_j=_down(lim.anode_heat_capacity_j, 2**32 - 1),
            anode_cooling_w=_down(lim.anode_cooling_w, 2**32 - 1),
            arc_acceleration_mdeg_s2=_down(lim.arc_acceleration_deg_s2 * 1000, 1_000_000),
            arc_jerk_mdeg_s3=_down(lim.arc_jerk_deg_s3 * 1000, 100_000_000),
            detector_readout_ms=_up(lim.detector_readout_ms, 10000),
            detector_min_frame_interval_ms=_up(lim.detector_min_frame_interval_ms, 20000),
            arc_settle_ms=_up(lim.arc_settle_ms, 5000),
            compression_thickness_min_um=_up(lim.compression_thickness_min_mm * 1000, 1_000_000),
            compression_thickness_max_um=_down(lim.compression_thickness_max_mm * 1000, 1_000_000),
            max_projections=_down(lim.max_projections, 1000),
            anode_filter_mask=sum(1 << ANODE_FILTER_CODE[a] for a in set(lim.anode_filters)),
            small_focus_um=_u(spots[0] * 1000, 0xFFFF) if len(spots) > 1 else 0,
            large_focus_um=_u(spots[-1] * 1000, 0xFFFF),
        )

    # -- motions -----------------------------------------------------------------------------
    def _start_motion(self, key: str, cause_msg_id: int, body: Generator[simpy.Event, None, bool],
                      cause_seq: int | None = None) -> None:
        seq = self._cmd_seq if cause_seq is None else cause_seq
        proc = self.env.process(self._motion(key, cause_msg_id, body, seq))
        self._motions[key] = proc

    def _motion(self, key: str, cause_msg_id: int, body: Generator[simpy.Event, None, bool],
                cause_seq: int = 0) -> Generator[Any, None, None]:
        ok = yield from body
        while key == "arc" and self.axis.braking(self.env.now):  # a stopped move is done when the arm is at rest, not when told to stop
            try:
                yield self.env.timeout(max(0.0, self.axis.end_time() - self.env.now))
            except simpy.Interrupt:
                continue
        if self._motions.get(key) is self.env.active_process:
            del self._motions[key]
        if key == "paddle" and ok:
            self._prepare_imaging()
        self._update_interlocks()
        self.emit(M.MotionDone(device_time_us=self.now_us(), cause_msg_id=cause_msg_id, ok=int(bool(ok)),
                               arc_mdeg=_mdeg(self.axis.encoder(self.env.now)),
                               force_dn=_u(self.paddle.force_n() * 10.0, 0xFFFF),
                               thickness_um=_u(self.paddle.thickness_mm() * 1000.0, 2**32 - 1),
                               cause_seq=cause_seq & 0xFFFF))
        if not self._motions and self.state == int(S.BUSY):
            self._transition(Trigger.MOTION_ENDED, cause_msg_id=cause_msg_id)

    def _stop_motions(self, keys: tuple[str, ...] = ("arc", "paddle")) -> None:
        for key in keys:
            proc = self._motions.get(key)
            if proc is not None and proc.is_alive:
                proc.interrupt("stop")
        if "arc" in keys and self.axis.moving(self.env.now):
            self.axis.quick_stop(self.env.now)

    def _arc_move(self, target_deg: float, speed_deg_s: float) -> Generator[simpy.Event, None, bool]:
        env = self.env
        end = self.axis.start_move(env.now, target_deg, speed_deg_s)
        if self._stall_pending:
            self._stall_pending = False
            self._stall()
        try:
            yield env.timeout(max(0.0, end - env.now))
        except simpy.Interrupt:
            self.axis.quick_stop(env.now)
            return False
        if self.axis.stalled:
            return False
        self.axis.settle(env.now)
        return True

    def _home_body(self) -> Generator[simpy.Event, None, bool]:
        ok = yield from self._arc_move(self.cfg.axis.home_index_deg, self.cfg.axis.homing_speed_deg_s)
        if not ok:
            return False
        self.axis.homed = True
        self.log.write(self.now_us(), "homed", index_deg=self.cfg.axis.home_index_deg)
        ok = yield from self._arc_move(0.0, 0.0)
        return ok

    def _phase(self, name: str) -> None:
        for i, f in enumerate(self.faults.faults):
            if f.phase == name and (f.repeat or i not in self._fired_phases):
                self._fired_phases.add(i)
                self._inject_at(self.env.now + f.delay_s, f)

    def _cmd_home(self, m: M.Message) -> M.Message:
        from protocols.exams.motion import move_time_s

        lim = self.limits
        here = self.axis.position(self.env.now)
        idx = self.cfg.axis.home_index_deg
        est = move_time_s(idx - here, self.cfg.axis.homing_speed_deg_s, lim.arc_acceleration_deg_s2, lim.arc_jerk_deg_s3)
        est += move_time_s(idx, lim.arc_max_speed_deg_s, lim.arc_acceleration_deg_s2, lim.arc_jerk_deg_s3)
        self._start_motion("arc", m.ID, self._home_body())
        self._transition(Trigger.MOTION_ACCEPTED, cause_msg_id=m.ID)
        self._phase("HOME")
        return self._ack(m, int(est * 1000))

    def _cmd_move_arc(self, m: M.Message) -> M.Message:
        target = m.target_mdeg / 1000.0
        speed = m.speed_mdeg_s / 1000.0
        if not self.axis.within_soft_limits(target):
            return self._nak(m, ErrorCode.BEYOND_LIMITS, 0)
        if speed > self.limits.arc_max_speed_deg_s:
            return self._nak(m, ErrorCode.BEYOND_LIMITS, 1)
        if not self.axis.homed:
            return self._nak(m, ErrorCode.NOT_HOMED)
        from protocols.exams.motion import move_time_s

        lim = self.limits
        here = self.axis.position(self.env.now)
        est = move_time_s(target - here, speed if speed > 0 else lim.arc_max_speed_deg_s, lim.arc_acceleration_deg_s2,
                          lim.arc_jerk_deg_s3)  # the motion itself starts in the process below, after this answer
        self._start_motion("arc", m.ID, self._arc_move(target, speed))
        self._transition(Trigger.MOTION_ACCEPTED, cause_msg_id=m.ID)
        self._phase("MOVE_ARC")
        return self._ack(m, int(round(est * 1000)))

    def _cmd_compress(self, m: M.Message) -> M.Message:
        lim = self.limits
        target_n = m.target_force_dn / 10.0
        if target_n > self.paddle.force_limit_n:
            return self._nak(m, ErrorCode.FORCE_LIMIT, _u(self.paddle.force_limit_n * 10, 2**31 - 1))
        floor_mm = m.min_thickness_um / 1000.0
        if floor_mm > lim.compression_thickness_max_mm:
            return self._nak(m, ErrorCode.BEYOND_LIMITS, 1)
        speed = m.speed_um_s / 1000.0
        if speed != 0.0 and not self.cfg.paddle.min_speed_mm_s <= speed <= self.cfg.paddle.max_speed_mm_s:
            return self._nak(m, ErrorCode.BEYOND_LIMITS, 2)
        if not self.paddle.in_range(lim.compression_thickness_max_mm):
            return self._nak(m, ErrorCode.INTERLOCK_OPEN, int(Interlock.PADDLE_IN_RANGE))
        self._prepare_for_compression(target_n, floor_mm, speed)
        self._start_motion("paddle", m.ID, self.paddle.compress(target_n, floor_mm, speed))
        self._transition(Trigger.MOTION_ACCEPTED, cause_msg_id=m.ID)
        self._phase("COMPRESS")
        return self._ack(m, -1)  # no estimate: the motion ends on force

    def _release(self, cause_msg_id: int, cause_seq: int = 0) -> None:
        """Start the paddle release (stopping a compression in progress); ``cause_seq`` 0 = the device's own."""
        proc = self._motions.get("paddle")
        if proc is not None and proc.is_alive:
            proc.interrupt("release")
        self._start_motion("paddle", cause_msg_id, self.paddle.release(), cause_seq=cause_seq)
        self._release_proc = self._motions["paddle"]
        self._phase("RELEASE")

    def _cmd_release(self, m: M.Message) -> M.Message:
        if self.state == int(S.ARMED):
            self._disarm()
            self._transition(Trigger.RELEASE_ACCEPTED, cause_msg_id=m.ID)
        elif self.state == int(S.IDLE):
            self._transition(Trigger.MOTION_ACCEPTED, cause_msg_id=m.ID)
        pcfg = self.cfg.paddle
        est_s = max(0.0, pcfg.park_height_mm - self.paddle.height_mm) / pcfg.release_speed_mm_s
        self._release(m.ID, self._cmd_seq)
        return self._ack(m, int(math.ceil(est_s * 1000.0)))

    def _auto_release(self, why: str) -> None:
        self.log.write(self.now_us(), "auto_release", why=why)
        if self.state == int(S.IDLE):
            self._transition(Trigger.MOTION_ACCEPTED, cause_msg_id=0)
        self._release(M.Release.ID)

    # -- technique and plans -------------------------------------------------------------------
    def _cmd_set_technique(self, m: M.Message) -> M.Message:
        lim = self.limits
        af = ANODE_FILTER_TEXT[m.anode_filter]
        if af not in lim.anode_filters:
            return self._nak(m, ErrorCode.UNSUPPORTED, 0)
        kv = m.kv_ckv / 100.0
        if not lim.kvp_min_kv <= kv <= lim.kvp_max_kv:
            return self._nak(m, ErrorCode.BEYOND_LIMITS, 1)
        ma = m.ma_dma / 10.0
        if not lim.tube_current_min_ma <= ma <= lim.max_tube_current_ma(kv):
            return self._nak(m, ErrorCode.BEYOND_LIMITS, 2)
        self.technique = {"anode_filter": af, "kv": kv, "ma": ma, "focal_spot_mm": focal_spot_mm(self.limits, m.focal_spot)}
        self.generator.kv_set = kv
        self.generator.tube_current_ma = ma
        return self._ack(m)

    def _heat_refusal(self, plan: ArmedPlan) -> int | None:
        anode = self.generator.anode
        t = self.env.now
        if anode.would_exceed(t, plan.energy_j):
            return int(math.ceil(1000.0 * (anode.heat_j(t) + plan.energy_j) / anode.capacity_j))
        return None

    def _cmd_arm_plan(self, m: M.Message) -> M.Message:
        res = validate_plan(m, self.limits, self.axis.homed)
        if not isinstance(res, ArmedPlan):
            return self._nak(m, res[0], res[1])
        heat = self._heat_refusal(res)
        if heat is not None:
            self.log.write(self.now_us(), "heat_refused", plan_id=res.plan_id, energy_j=round(res.energy_j, 3),
                           heat_j=round(self.generator.anode.heat_j(self.env.now), 3))
            return self._nak(m, ErrorCode.HEAT_LIMIT, heat)
        self.armed = res
        self.detector.state = int(DetectorState.READY)
        self._prepare_imaging(res)
        self._update_interlocks()
        self._transition(Trigger.ARM_ACCEPTED, cause_msg_id=m.ID)
        self.log.write(self.now_us(), "armed", plan_id=res.plan_id, digest=res.digest, n=len(res.angles_deg),
                       energy_j=round(res.energy_j, 3))
        return self._ack(m, int(round(estimate_s(res, self.limits, self.axis.position(self.env.now)) * 1000)))

    def _disarm(self) -> None:
        self.armed = None
        if self.detector.state == int(DetectorState.READY):
            self.detector.state = int(DetectorState.IDLE)

    def _cmd_fire(self, m: M.Message) -> M.Message:
        plan = self.armed
        if plan is None or m.plan_id != plan.plan_id:
            return self._nak(m, ErrorCode.NOT_ARMED, plan.plan_id if plan else 0)
        if m.digest != plan.digest:
            return self._nak(m, ErrorCode.DIGEST_MISMATCH, 0)
        self.interlocks = self._compute_interlocks()
        bad = open_bits(self.interlocks)
        if bad:
            return self._nak(m, ErrorCode.INTERLOCK_OPEN, bad)
        heat = self._heat_refusal(plan)
        if heat is not None:
            return self._nak(m, ErrorCode.HEAT_LIMIT, heat)
        self._transition(Trigger.FIRE_ACCEPTED, cause_msg_id=m.ID)
        self.sweep = _Sweep(plan, self.env.event())
        self.env.process(self._run_sweep(self.sweep))
        self._phase("SWEEP")
        return self._ack(m, int(round(estimate_s(plan, self.limits, self.axis.position(self.env.now)) * 1000)))

    def _cmd_abort(self, m: M.Message) -> M.Message:
        self.log.write(self.now_us(), "abort", reason=m.reason)
        if self.state == int(S.EXPOSING):
            self._stop_plan(int(ExposureStatus.ABORTED))
        elif self.state == int(S.ARMED):
            self._disarm()
        elif self.state == int(S.BUSY):
            self._stop_motions()
        self._transition(Trigger.ABORT, cause_msg_id=m.ID)
        return self._ack(m)

    def _cmd_reset_fault(self, m: M.Message) -> M.Message:
        if self.state not in (int(S.FAULT), int(S.SAFE_HOLD)):
            return self._ack(m)
        want = int(m.fault_code)
        if want != 0 and want not in self.latched and self.latched:  # (nothing latched: every cause gone, as for 0)
            return self._nak(m, ErrorCode.FAULT_ACTIVE, next(iter(self.latched)))
        clear = [c for c in self.latched if want in (0, c)]
        stays = [c for c in self.latched if c not in clear or not self._cause_gone(c)]
        if stays:  # all or nothing: a refused RESET_FAULT changes nothing
            return self._nak(m, ErrorCode.FAULT_ACTIVE, stays[0])
        for code in clear:
            del self.latched[code]
            self.log.write(self.now_us(), "fault_cleared", fault=FaultCode(code).name)
        if self.axis.stalled:
            self.axis.clear_stall(self.env.now)
        self.generator.faulted = False
        if self.detector.state == int(DetectorState.ERROR):
            self.detector.state = int(DetectorState.IDLE)
        self._update_interlocks()
        self._transition(Trigger.RESET_FAULT, cause_msg_id=m.ID)
        return self._ack(m)

    def _cmd_set_telemetry(self, m: M.Message) -> M.Message:
        self.telemetry_period_s = m.period_ms / 1000.0
        return self._ack(m)

    def _cmd_sim_set_input(self, m: M.Message) -> M.Message:
        self._after.append(lambda: self.set_input(m.input, bool(m.value)))
        return self._ack(m)

    def _cmd_sim_inject_fault(self, m: M.Message) -> M.Message:
        name = FaultCode(m.fault_code).name
        if name not in WIRE_INJECTABLE:
            return self._nak(m, ErrorCode.UNSUPPORTED, 0)  # field 0, fault_code
        if name == "REALTIME_OVERRUN" and not isinstance(self.env, simpy.rt.RealtimeEnvironment):
            return self._nak(m, ErrorCode.UNSUPPORTED, 0)  # virtual time: no control loop to stall
        self._after.append(lambda: self.inject(name, m.param))
        return self._ack(m)

    # ================================================================ operator inputs and faults
    def set_input(self, which: int, value: bool) -> None:
        """Set an operator input / sensor (SIM_SET_INPUT semantics) and react to interlock changes."""
        self.inputs.set(which, value)
        self.paddle.present = self.inputs.paddle_present
        self.log.write(self.now_us(), "input", input=int(which), value=int(value))
        self._update_interlocks()

    def _schedule_faults(self) -> None:
        for f in self.faults.faults:
            if f.at_s is not None:
                self._inject_at(f.at_s, f)
        for t, name in random_fault_times(self.faults.random, self.seed):
            self._inject_at(t, ScheduledFault(fault=name, at_s=t))
        for ch in (self.line.tx, self.line.rx):
            ch.faults.bit_error_rate = self.faults.line.bit_error_rate
            ch.faults.drop_rate = self.faults.line.drop_rate

    def _inject_at(self, t: float, f: ScheduledFault) -> None:
        ev = self.env.timeout(max(0.0, t - self.env.now))
        ev.callbacks.append(lambda _e: self.inject(f.fault, f.param, f.duration_ms, f.noise_bytes))

    def _later(self, delay_s: float, fn: Callable[[], None]) -> None:
        ev = self.env.timeout(max(0.0, delay_s))
        ev.callbacks.append(lambda _e: fn())

    def inject(self, name: str, param: int = 0, duration_ms: float | None = None, noise_bytes: int = 0) -> None:
        """Inject fault ``name`` (a FaultCode name in :data:`INJECTABLE`) now."""
        t = self.env.now
        self.log.write(self.now_us(), "inject", fault=name, param=int(param), duration_ms=duration_ms)
        if name == "DOOR_OPEN" or name == "ESTOP":
            which = 0 if name == "DOOR_OPEN" else 1
            self.set_input(which, False)
            if duration_ms is not None:
                self._later(duration_ms / 1000.0, lambda: self.set_input(which, True))
        elif name == "MOTOR_STALL":
            if self.axis.moving(t):
                self._stall()
            else:
                self._stall_pending = True
        elif name == "ENCODER_GLITCH":
            jump = (param or 2000) / 1000.0
            self.axis.glitch_offset_deg = jump
            err = abs(self.axis.encoder(t) - self.axis.commanded(t))
            self._later(0.001, lambda: setattr(self.axis, "glitch_offset_deg", 0.0))
            if err > self.cfg.axis.following_error_limit_deg:
                self.axis.homed = False
                self._latch(int(FaultCode.ENCODER_GLITCH), _mdeg(jump), f"encoder jumped {jump:.3f} deg; re-home")
        elif name == "KV_DROP":
            frac = (param or 20) / 100.0
            # space-charge-limited emission falls as V^1.5 (Child-Langmuir)
            self.generator.change_emission(1.0 - frac, (1.0 - frac) ** 1.5)
            self._fault_event(int(FaultCode.KV_DROP), 0, int(param or 20), f"tube voltage dropped {frac * 100:.0f} %")
            self._later((duration_ms if duration_ms is not None else 1000.0) / 1000.0,
                        lambda: self.generator.change_emission(1.0, 1.0))
        elif name == "TUBE_ARC":
            if self.generator.on:
                self._tube_arc()
            else:
                self._arc_pending = True
        elif name == "DETECTOR_TIMEOUT":
            self.detector.timeout_pending = True
        elif name == "DEVICE_RESET":
            self._device_reset()
        elif name == "TELEMETRY_STOP":
            dur = (duration_ms if duration_ms is not None else 1000.0) / 1000.0
            self.telemetry_stopped_until = t + dur
            self._fault_event(int(FaultCode.TELEMETRY_STOP), 0, int(dur * 1000), "telemetry stopped")
        elif name == "REALTIME_OVERRUN":
            # the real-time loop (simulator.gantry.realtime) takes this and blocks for as long
            self.loop_stall_request_s = (param or 1000) / 1000.0
        elif name == "LINE_FAULT":
            if noise_bytes:
                self.line.tx.inject_noise(noise_bytes)
                self.line.rx.inject_noise(noise_bytes)
            else:
                dead = (param or 500) / 1000.0
                self.line.tx.kill(dead)
                self.line.rx.kill(dead)

    def _fault_event(self, code: int, latched: int, detail: int, text: str) -> None:
        self.log.write(self.now_us(), "fault", fault=FaultCode(code).name, latched=latched, detail=detail, text=text)
        self.emit(M.Fault(device_time_us=self.now_us(), fault_code=code, latched=latched, detail=detail, text=text[:120]))

    def _latch(self, code: int, detail: int, text: str, status: int = int(ExposureStatus.ABORTED)) -> None:
        """A latched fault: stop everything it concerns, FAULT state, FAULT event, release if configured."""
        self._fault_event(code, 1, detail, text)
        if self.state == int(S.EXPOSING):
            self._stop_plan(status)
        elif self.state == int(S.ARMED):
            self._disarm()
        self._stop_motions(("arc",))
        self._latch_cause(code)
        self._update_interlocks()
        if FaultCode(code).name in self.cfg.paddle.release_on_faults:
            self._release(M.Release.ID)

    def _stall(self) -> None:
        t = self.env.now
        self.axis.stall(t)
        limit = self.cfg.axis.following_error_limit_deg
        end = self.axis.end_time()
        trip = None
        step = 0.001
        k = 1
        while t + k * step <= end + 1.0:
            if abs(self.axis.commanded(t + k * step) - self.axis.position(t + k * step)) > limit:
                trip = t + k * step
                break
            k += 1
        self.log.write(self.now_us(), "stall", trip_ms=None if trip is None else round((trip - t) * 1000, 3))
        trip = t + step if trip is None else trip
        self._later(trip - t, lambda: self._latch(int(FaultCode.MOTOR_STALL), 0, "arc motor stalled (following error)"))

    def _tube_arc(self) -> None:
        self.generator.faulted = True
        self.generator.terminate(int(ExposureStatus.KV_FAULT))
        self._latch(int(FaultCode.TUBE_ARC), 0, "tube arc: high voltage collapsed", int(ExposureStatus.KV_FAULT))

    def _estop(self) -> None:
        if self.state == int(S.EXPOSING):
            self._stop_plan(int(ExposureStatus.INTERLOCK))
        if self.state == int(S.ARMED):
            self._disarm()
        self._stop_motions()
        self._latch_cause(int(FaultCode.ESTOP))
        self._fault_event(int(FaultCode.ESTOP), 1, 0, "emergency stop pressed")
        if "ESTOP" in self.cfg.paddle.release_on_faults:
            self._release(M.Release.ID)

    def _watchdog(self) -> None:
        if not self.session_open or self.state == int(S.BOOT):
            return  # no session, no host to lose
        plan = self.armed
        if plan is not None and self.state in (int(S.ARMED), int(S.EXPOSING)):
            self.interrupted = (plan.plan_id, plan.exposures_done)
        if self.state == int(S.EXPOSING):
            self._stop_plan(int(ExposureStatus.WATCHDOG))
        elif self.state == int(S.ARMED):
            self._disarm()
        self._stop_motions()
        self._latch_cause(int(FaultCode.WATCHDOG))
        self._fault_event(int(FaultCode.WATCHDOG), 1, 0, "host heartbeat lost: safe hold")  # latched: needs RESET_FAULT
        if "WATCHDOG" in self.cfg.paddle.release_on_faults:
            self._release(M.Release.ID)

    # ================================================================ real-time hooks (simulator.gantry.realtime)
    def realtime_overrun(self, lag_s: float, latch: bool = False) -> None:
        """The control loop fell ``lag_s`` seconds behind the wall clock: report REALTIME_OVERRUN.

        With ``latch``, latched (X-rays off, arm braked, FAULT state) if a sweep, motion or armed plan
        was under way, since their timing was not kept; otherwise a non-latched FAULT event (detail =
        lag, ms). Never a watchdog trip: the link judges the host on the arrival time of its frames.
        """
        code = int(FaultCode.REALTIME_OVERRUN)
        lag_ms = int(round(lag_s * 1000.0))
        self.log.write(self.now_us(), "overrun", lag_ms=lag_ms)
        text = f"control loop {lag_ms} ms behind real time"
        if latch and self.state in (int(S.BUSY), int(S.ARMED), int(S.EXPOSING)):
            self._latch(code, lag_ms, text)
        else:
            self._fault_event(code, 0, lag_ms, text)

    def is_safe(self) -> bool:
        """True when nothing moves or radiates and no live host supervises the device (parent-death exit)."""
        from protocols.wire.link import PeerState

        quiet = (self.sweep is None and not self.generator.on
                 and not any(p.is_alive for p in self._motions.values()))
        unsupervised = not self.session_open or self.link.peer_state is not PeerState.ALIVE
        return quiet and unsupervised and self.state in (int(S.BOOT), int(S.IDLE), int(S.SAFE_HOLD), int(S.FAULT))

    def _prepare_for_compression(self, target_n: float, floor_mm: float, speed_mm_s: float) -> None:
        """Real time: have the render worker build the phantom at the thickness this compression will stop at
        (:meth:`Paddle.predict_compress`, exact, about 1 ms) while the paddle is still moving, so the AEC scout
        does not wait for it after the stop (0.8 s on the default panel). A compression stopped early or
        interrupted ends elsewhere: :meth:`_prepare_imaging` at its end builds what it really needs. The
        prediction runs on the control loop, so it is given :data:`PREDICT_MAX_PERIODS` control periods at most
        (about 2.5 ms): a slow drive (1 mm/s takes some 1200 periods, 9 ms) is not predicted, and its phantom
        is built when it stops."""
        if getattr(self.detector, "executor", None) is None:
            return  # virtual time renders in process, on demand
        predicted = self.paddle.predict_compress(target_n, floor_mm, speed_mm_s, max_periods=PREDICT_MAX_PERIODS)
        if predicted is not None and predicted[0]:
            self.detector.prepare(predicted[1])

    def _prepare_imaging(self, plan: ArmedPlan | None = None) -> None:
        """Real time: let the render worker build the phantom, and the spectra and scatter kernels of the mean kV
        this generator will deliver for each of the plan's kV (set kV x rise deficit), before the first exposure.

        Only the mean: each exposure's delivered kV carries its own ripple noise, so its exact spectrum is formed
        when it is rendered anyway; preparing +-2 sigma as well tripled the work the AEC scout waits for
        (1.8 s instead of 0.6 s on the default panel), with no gain for the frames."""
        from simulator.gantry.generator import mean_rise_factor

        kvs: set[float] = set()
        af = plan.anode_filter if plan is not None else None
        if plan is not None:
            g = self.cfg.generator
            for kv, pulse in zip(plan.kv, plan.pulse_s):
                mean = kv * self.generator.kv_factor * mean_rise_factor(pulse, g.kv_rise_time_ms / 1000.0)
                kvs.add(round(mean, 1))
        self.detector.prepare(self.paddle.breast_thickness_mm(), af, tuple(sorted(kvs)))

    def _device_reset(self) -> None:
        plan = self.armed
        if plan is not None and self.state in (int(S.ARMED), int(S.EXPOSING)):
            self.interrupted = (plan.plan_id, plan.exposures_done)
        if self.state == int(S.EXPOSING):
            self._stop_plan(int(ExposureStatus.ABORTED))
        self._disarm()
        for proc in list(self._motions.values()):
            if proc.is_alive:
                proc.interrupt("reset")
        self._motions.clear()
        if self.axis.moving(self.env.now):
            self.axis.quick_stop(self.env.now)
        self.axis.homed = False
        old = self.state
        self.state = int(next_state(S(old), Trigger.DEVICE_RESET))
        self.log.write(self.now_us(), "state", old=S(old).name, new=S(self.state).name, trigger="DEVICE_RESET",
                       cause_msg_id=0, fault=int(FaultCode.DEVICE_RESET))
        self.session_open = False
        self.data_nonce = None  # RAM lost: the data-channel token with it
        self.latched.clear()  # RAM lost; the hard-wired inputs are read again below
        self._driver.replace_link(self._new_link())  # RAM lost: a fresh link, no de-duplication state
        self.emit(M.StateChanged(device_time_us=self.now_us(), old_state=old, new_state=self.state, cause_msg_id=0,
                                 fault_code=int(FaultCode.DEVICE_RESET)))
        self._scan_inputs()

    # ================================================================ the sweep
    def _stop_plan(self, status: int) -> None:
        """End the running plan: X-rays off now (``status``), brake the arm, let the sweep wind down."""
        sw = self.sweep
        if sw is None:
            return
        sw.status = status
        self.generator.terminate(status)
        if not sw.stop.triggered:
            sw.stop.succeed()
        if self.axis.moving(self.env.now):
            self.axis.quick_stop(self.env.now)
        self.armed = None

    def _wait(self, sw: _Sweep, delay_s: float) -> Generator[simpy.Event, None, bool]:
        """Wait ``delay_s`` unless the plan is stopped first; True if not stopped."""
        if sw.stop.triggered:
            return False
        yield self.env.any_of([self.env.timeout(max(0.0, delay_s)), sw.stop])
        return not sw.stop.triggered

    def _run_sweep(self, sw: _Sweep) -> Generator[Any, None, None]:
        env, plan, axis, lim = self.env, sw.plan, self.axis, self.limits
        thickness = self.paddle.breast_thickness_mm()
        self.log.write(self.now_us(), "sweep_start", plan_id=plan.plan_id, thickness_mm=round(thickness, 4))
        n = len(plan.angles_deg)
        if plan.motion == int(MotionMode.CONTINUOUS):
            start, end = sweep_ends(self.limits, plan.angles_deg, plan.pulse_s, plan.speed_deg_s)
            t_end = axis.start_move(env.now, start, 0.0)
            if not (yield from self._wait(sw, t_end - env.now)):
                yield from self._sweep_end(sw)
                return
            axis.settle(env.now)
            sign = 1.0 if end >= start else -1.0
            axis.start_move(env.now, end, plan.speed_deg_s)
            for i in range(n):
                trigger = plan.angles_deg[i] - sign * 0.5 * plan.speed_deg_s * plan.pulse_s[i]
                t_hit = axis.crossing_time(env.now, trigger)
                if t_hit is None:
                    self.log.write(self.now_us(), "trigger_missed", index=i, angle_deg=trigger)
                    sw.status = int(ExposureStatus.ABORTED)
                    break
                if not (yield from self._wait(sw, t_hit - env.now)):
                    break
                ok = yield from self._expose(sw, i, thickness)
                if not ok:
                    break
            if not sw.stop.triggered:
                yield from self._wait(sw, axis.end_time() - env.now)
                axis.settle(env.now)
        else:
            for i in range(n):
                t_end = axis.start_move(env.now, plan.angles_deg[i], 0.0)
                if not (yield from self._wait(sw, t_end - env.now + lim.arc_settle_ms / 1000.0)):
                    break
                axis.settle(env.now)
                if sw.readouts and sw.readouts[-1].is_alive:
                    yield env.any_of([sw.readouts[-1], sw.stop])
                    if sw.stop.triggered:
                        break
                ok = yield from self._expose(sw, i, thickness)
                if not ok:
                    break
        yield from self._sweep_end(sw)

    def _sweep_end(self, sw: _Sweep) -> Generator[Any, None, None]:
        alive = [p for p in sw.readouts if p.is_alive]
        if alive:
            yield self.env.all_of(alive)
        return self._finish(sw)

    def _finish(self, sw: _Sweep) -> None:
        self.log.write(self.now_us(), "sweep_end", plan_id=sw.plan.plan_id, exposures=sw.plan.exposures_done,
                       stopped=sw.stop.triggered)
        if self.sweep is not sw:
            return  # stopped earlier (HELLO, ABORT, interlock) and a newer plan's sweep runs now: its state is not ours
        self.sweep = None
        if self.state == int(S.EXPOSING):
            complete = sw.plan.exposures_done == len(sw.plan.angles_deg)
            self.armed = None
            if self.detector.state == int(DetectorState.READY):
                self.detector.state = int(DetectorState.IDLE)
            self._transition(Trigger.PLAN_COMPLETE if complete else Trigger.ABORT)
            if (complete and sw.plan.final and self.cfg.paddle.release_after_exam
                    and self.paddle.height_mm < self.cfg.paddle.park_height_mm):
                self._auto_release("plan complete")

    def _expose(self, sw: _Sweep, i: int, thickness_mm: float) -> Generator[Any, None, bool]:
        """One X-ray window of entry ``i``; False if the plan must stop."""
        env, plan, axis = self.env, sw.plan, self.axis
        if open_bits(self._compute_interlocks()):
            self._update_interlocks()
            return False
        self.frame_counter += 1
        frame_id = self.frame_counter
        k = self.exposure_count
        self.exposure_count += 1
        for f in self.faults.faults:
            if f.at_exposure == k:
                self._inject_at(env.now + f.offset_ms / 1000.0, f)
        self.detector.state = int(DetectorState.INTEGRATING)
        a0 = axis.encoder(env.now)
        proc = self.generator.expose(plan.kv[i], plan.mas[i], plan.pulse_s[i])
        plan.exposures_done += 1  # counted from X-ray on: a cut window is an exposure that happened
        if self._arc_pending:
            self._arc_pending = False
            self._later(0.005, lambda: self._tube_arc() if self.generator.on else None)
        res = yield proc
        a1 = axis.encoder(env.now)
        # The record is what EXPOSURE_DONE says, in wire units, so a host can re-render the same image from it.
        done = M.ExposureDone(plan_id=plan.plan_id, index=i, frame_id=frame_id, status=res.status,
                              planned_mdeg=_mdeg(plan.angles_deg[i]), start_mdeg=_mdeg(a0), end_mdeg=_mdeg(a1),
                              kv_ckv=_u(res.kv_mean * 100, 0xFFFF), mas_nas=_u(res.mas * 1e6, 2**32 - 1),
                              window_start_us=int(round(res.t_on_s * 1e6)), window_end_us=int(round(res.t_off_s * 1e6)))
        record = exposure_record(done, plan.anode_filter, plan.focal_spot_mm)
        self._ledger_add(done)
        self.log.write(self.now_us(), "exposure", plan_id=plan.plan_id, index=i, frame_id=frame_id, status=res.status,
                       planned_deg=plan.angles_deg[i], start_deg=round(a0, 6), end_deg=round(a1, 6),
                       kv=round(res.kv_mean, 4), mas=round(res.mas, 6), window_s=round(res.t_off_s - res.t_on_s, 9))
        self.emit(done)
        sw.readouts.append(env.process(self._readout(self._true_record(record), thickness_mm)))
        self._update_interlocks()
        if res.status == int(ExposureStatus.BACKUP_TIMER):
            self._latch(int(FaultCode.BACKUP_TIMER), frame_id, "backup timer terminated the exposure",
                        int(ExposureStatus.BACKUP_TIMER))
            return False
        return res.status in (int(ExposureStatus.OK), int(ExposureStatus.KV_FAULT)) and not sw.stop.triggered

    def _true_record(self, record: ExposureRecord) -> ExposureRecord:
        """The exposure as it physically happened, for the image (injected encoder offset, enlarged focal spot)."""
        off, spot = self.cfg.axis.angle_offset_deg, self.cfg.generator.focal_spot_scale
        if off == 0.0 and spot == 1.0:
            return record
        return record.model_copy(update={"angle_start_deg": record.angle_start_deg + off,
                                         "angle_end_deg": record.angle_end_deg + off,
                                         "focal_spot_mm": record.focal_spot_mm * spot})

    def _readout(self, record: ExposureRecord, thickness_mm: float) -> Generator[Any, None, None]:
        frame: Frame | None = yield from self.detector.readout(record, thickness_mm)
        self._ledger_image(record.frame_id, frame)
        if frame is None:
            self._update_interlocks()
            self._latch(int(FaultCode.DETECTOR_TIMEOUT), record.frame_id, "detector readout timed out")
            return
        if self.sweep is None or self.sweep.stop.triggered or self.state != int(S.EXPOSING):
            if self.detector.state == int(DetectorState.READY) and self.armed is None:
                self.detector.state = int(DetectorState.IDLE)
        self.log.write(self.now_us(), "image", frame_id=frame.frame_id, rows=frame.rows, cols=frame.cols,
                       checksum=frame.checksum, size=frame.size_bytes, locator=frame.locator)
        self.emit(M.ImageReady(frame_id=frame.frame_id, rows=frame.rows, cols=frame.cols, bits=16,
                               checksum=frame.checksum, size_bytes=frame.size_bytes, locator=frame.locator))

    # ================================================================ telemetry
    def telemetry(self) -> M.Message:
        """A TELEMETRY sample now."""
        t = self.env.now
        return M.Telemetry(device_time_us=self.now_us(), arc_mdeg=_mdeg(self.axis.encoder(t)),
                           arc_speed_mdeg_s=_mdeg(self.axis.velocity(t)), force_dn=_u(self.paddle.force_n() * 10, 0xFFFF),
                           thickness_um=_u(self.paddle.thickness_mm() * 1000, 2**32 - 1),
                           kv_ckv=_u(self.generator.measured_kv() * 100, 0xFFFF),
                           ma_dma=_u(self.generator.measured_ma() * 10, 0xFFFF),
                           anode_heat_permille=self.generator.anode.permille(t), state=self.state,
                           interlocks=self.interlocks, detector_state=self.detector.state)

    def _telemetry_loop(self) -> Generator[simpy.Event, None, None]:
        while True:
            yield self.env.timeout(self.telemetry_period_s)
            if self.session_open and self.env.now >= self.telemetry_stopped_until:
                self.link.send(self.telemetry(), self.env.now)
                self._flush()
