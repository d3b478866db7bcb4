"""Post-hoc safety and protocol invariants over a capture (``crescent check-capture``).

Rules (each finding names its rule, the capture item and the time):

``fire-without-arm``
    FIRE accepted by the device with no accepted ARM_PLAN of that plan id and
    digest armed at the time (error); FIRE sent by the host without one but
    refused by the device (warning: the device defended itself).
``unanswered``
    A request (command or event) that never got its response, unless it was
    sent less than ``grace_s`` before the capture ended (still in flight).
``wrong-response``
    A response whose message type is neither the catalogue's answer nor NAK.
``exposure-outside-plan``
    EXPOSURE_DONE for a plan that is not running, an index beyond the plan's
    entries, a planned angle different from the armed entry, or an exposure
    reported after ABORT was accepted (one terminated window is tolerated).
``duplicate-execution``
    Answers to retransmissions of one request that differ from the first
    answer (a retransmitted command executed twice), or the same exposure
    (plan id, index) reported twice as new events.
``silence``
    A gap in one direction longer than the watchdog timeout (HELLO's
    ``watchdog_timeout_ms``, default 500 ms), and a device that did not reach
    SAFE_HOLD within timeout + ``watchdog_margin_s`` of host silence.

Example
-------
>>> report = check_items([])
>>> report.ok, report.summary()
(True, 'check-capture: 0 items, 0 errors, 0 warnings')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from protocols.wire.catalogue import DeviceState, FaultCode

from hil.capture import DEVICE_TO_HOST, DIRECTION_TEXT, HOST_TO_DEVICE
from hil.decode import WireItem

ERROR = "error"
WARNING = "warning"
DEFAULT_WATCHDOG_S = 0.5


@dataclass(frozen=True)
class Finding:
    """One violated invariant; ``index`` is the capture item (see :func:`hil.decode.decode_packets`)."""

    severity: str
    rule: str
    index: int
    t_s: float
    message: str

    def __str__(self) -> str:
        return f"{self.severity.upper():7s} {self.rule:22s} #{self.index} t={self.t_s:.6f}s: {self.message}"


@dataclass
class CaptureReport:
    """Result of :func:`check_items`; ``ok`` is False when any error was found."""

    items: int
    findings: list[Finding] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == ERROR]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.severity == WARNING]

    @property
    def ok(self) -> bool:
        return not self.errors

    def summary(self) -> str:
        return f"check-capture: {self.items} items, {len(self.errors)} errors, {len(self.warnings)} warnings"

    def text(self) -> str:
        """Human-readable report: one line per finding, then the summary."""
        lines = [str(f) for f in self.findings]
        if self.counts:
            lines.append("messages: " + ", ".join(f"{k}={v}" for k, v in sorted(self.counts.items())))
        lines.append(self.summary() + (" - OK" if self.ok else " - FAILED"))
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "items": self.items,
            "findings": [f.__dict__ for f in self.findings],
            "counts": self.counts,
        }


@dataclass
class _Request:
    item: WireItem
    first_response: WireItem | None = None
    response_bytes: bytes | None = None
    transmissions: int = 1


@dataclass
class _Plan:
    plan_id: int
    digest: int
    angles_mdeg: list[int]


def check_items(
    items: Sequence[WireItem], *, grace_s: float = 0.2, watchdog_margin_s: float = 0.1
) -> CaptureReport:
    """Check the invariants over decoded capture ``items`` (times in seconds)."""
    report = CaptureReport(items=len(items))
    add = report.findings.append
    end_t = items[-1].t_s if items else 0.0
    # open requests per direction of the request, keyed by seq
    open_req: dict[tuple[int, int], _Request] = {}
    all_reqs: list[_Request] = []
    armed: _Plan | None = None
    running: _Plan | None = None
    aborted: _Plan | None = None
    abort_tolerance = 0
    exposures_seen: set[tuple[int, int]] = set()
    pending_arm: dict[int, _Plan] = {}  # seq -> plan awaiting its answer
    pending_fire: dict[int, WireItem] = {}
    watchdog_s = DEFAULT_WATCHDOG_S
    last_rx: dict[int, float | None] = {HOST_TO_DEVICE: None, DEVICE_TO_HOST: None}
    host_silence_from: float | None = None
    safe_hold_times: list[float] = []
    overruns: list[tuple[float, int]] = []  # (time, lag ms) of the device's FAULT REALTIME_OVERRUN reports
    silences: list[tuple[WireItem, float, float, float]] = []

    for it in items:
        if it.frame is None or it.message is None:
            continue
        report.counts[it.name] = report.counts.get(it.name, 0) + 1
        d = it.direction
        prev = last_rx[d]
        if prev is not None and it.t_s - prev > watchdog_s:
            silences.append((it, prev, it.t_s, watchdog_s))
        last_rx[d] = it.t_s
        msg = it.message
        seq = it.frame.seq
        if not it.is_response and it.frame.ack_req:
            key = (d, seq)
            req = open_req.get(key)
            raw = (it.frame.msg_id, it.frame.payload)
            if req is not None and (req.item.frame.msg_id, req.item.frame.payload) == raw:  # type: ignore[union-attr]
                req.transmissions += 1  # retransmission: never a new execution
                continue
            req = _Request(it)
            open_req[key] = req
            all_reqs.append(req)
            name = msg.NAME
            if name == "HELLO":
                watchdog_s = msg.watchdog_timeout_ms / 1000.0  # type: ignore[attr-defined]
            elif name == "ARM_PLAN":
                pending_arm[seq] = _Plan(msg.plan_id, msg.digest, [e.angle_mdeg for e in msg.entries])  # type: ignore[attr-defined]
            elif name == "FIRE":
                pending_fire[seq] = it
            elif name == "EXPOSURE_DONE":
                _check_exposure(it, running, aborted, abort_tolerance, exposures_seen, add)
                if aborted is not None and msg.plan_id == aborted.plan_id:  # type: ignore[attr-defined]
                    abort_tolerance = max(0, abort_tolerance - 1)
            elif name == "FAULT" and msg.fault_code == FaultCode.REALTIME_OVERRUN:  # type: ignore[attr-defined]
                overruns.append((it.t_s, int(msg.detail)))  # type: ignore[attr-defined]
            elif name == "STATE_CHANGED":
                new = msg.new_state  # type: ignore[attr-defined]
                if new == DeviceState.SAFE_HOLD:
                    safe_hold_times.append(it.t_s)
                if new in (DeviceState.IDLE, DeviceState.SAFE_HOLD, DeviceState.FAULT, DeviceState.BOOT):
                    armed = None  # leaving ARMED for any of these disarms
                    if running is not None and new != DeviceState.EXPOSING:
                        aborted, running, abort_tolerance = running, None, 1
            continue
        if it.is_response:
            req_dir = HOST_TO_DEVICE if d == DEVICE_TO_HOST else DEVICE_TO_HOST
            req = open_req.get((req_dir, seq))
            if req is None:
                continue  # late duplicate answer of an old request (the link reports it stale)
            frame_bytes = bytes([it.frame.msg_id]) + it.frame.payload
            if req.first_response is not None:
                if frame_bytes != req.response_bytes:
                    add(
                        Finding(
                            ERROR,
                            "duplicate-execution",
                            it.index,
                            it.t_s,
                            f"{req.item.name} seq={seq} answered differently on a retransmission "
                            f"(first {req.first_response.name} {req.first_response.message.to_dict()}, "  # type: ignore[union-attr]
                            f"now {it.name} {msg.to_dict()}): executed twice?",
                        )
                    )
                continue
            req.first_response = it
            req.response_bytes = frame_bytes
            expected = req.item.message.DEF.response  # type: ignore[union-attr]
            if msg.NAME not in (expected, "NAK") and not (expected is None and msg.NAME == "ACK"):
                add(
                    Finding(
                        ERROR,
                        "wrong-response",
                        it.index,
                        it.t_s,
                        f"{req.item.name} seq={seq} answered with {msg.NAME}, expected {expected or 'ACK'} or NAK",
                    )
                )
            accepted = msg.NAME != "NAK"
            rname = req.item.name
            if rname == "ARM_PLAN" and seq in pending_arm:
                plan = pending_arm.pop(seq)
                if accepted:
                    armed = plan
            elif rname == "FIRE" and seq in pending_fire:
                fire = pending_fire.pop(seq)
                fm = fire.message
                ok = armed is not None and (armed.plan_id, armed.digest) == (fm.plan_id, fm.digest)  # type: ignore[union-attr]
                if not ok:
                    what = "no armed plan" if armed is None else f"armed plan is id {armed.plan_id} digest 0x{armed.digest:08X}"
                    add(
                        Finding(
                            ERROR if accepted else WARNING,
                            "fire-without-arm",
                            fire.index,
                            fire.t_s,
                            f"FIRE plan_id={fm.plan_id} digest=0x{fm.digest:08X} with {what}; "  # type: ignore[union-attr]
                            + ("the device ACCEPTED it" if accepted else f"refused ({msg.to_dict()})"),
                        )
                    )
                if accepted:
                    running, armed, aborted = armed, None, None
            elif rname in ("ABORT", "RELEASE") and accepted:
                armed = None
                if running is not None:
                    aborted, running, abort_tolerance = running, None, 1
            elif rname == "HELLO" and accepted:
                armed = running = None
    for req in all_reqs:
        if req.first_response is None and req.item.t_s < end_t - grace_s:
            add(
                Finding(
                    ERROR,
                    "unanswered",
                    req.item.index,
                    req.item.t_s,
                    f"{DIRECTION_TEXT[req.item.direction]} {req.item.name} seq={req.item.frame.seq} "  # type: ignore[union-attr]
                    f"sent {req.transmissions} time(s), never answered",
                )
            )
    for it, start, stop, watchdog_s in silences:
        who = "host" if it.direction == HOST_TO_DEVICE else "device"
        msg_txt = f"{who} silent for {1000 * (stop - start):.1f} ms (> watchdog {1000 * watchdog_s:.0f} ms) from t={start:.6f}s"
        if it.direction == HOST_TO_DEVICE:
            limit = start + watchdog_s + watchdog_margin_s
            held = [t for t in safe_hold_times if start < t <= limit]
            msg_txt += (
                f"; device reached SAFE_HOLD after {1000 * (held[0] - start):.1f} ms"
                if held
                else f"; device did NOT report SAFE_HOLD within {1000 * (watchdog_s + watchdog_margin_s):.0f} ms"
            )
            severity = WARNING if held else ERROR
        else:
            # a device that fell behind real time and said so (FAULT REALTIME_OVERRUN, lag in ms, sent when
            # it caught up) is honest about the silence: a warning; an unexplained silence is an error
            told = [lag for t, lag in overruns if stop - 0.05 <= t <= stop + 1.0 and lag >= 0.5 * 1000 * (stop - start)]
            if told:
                msg_txt += f"; the device reported REALTIME_OVERRUN ({told[0]} ms behind real time)"
            severity = WARNING if told else ERROR
        add(Finding(severity, "silence", it.index, it.t_s, msg_txt))
    report.findings.sort(key=lambda f: (f.index, f.rule))
    return report


def _check_exposure(
    it: WireItem,
    running: _Plan | None,
    aborted: _Plan | None,
    abort_tolerance: int,
    seen: set[tuple[int, int]],
    add: Any,
) -> None:
    m = it.message
    pid, idx = m.plan_id, m.index  # type: ignore[union-attr]
    if (pid, idx) in seen:
        add(Finding(ERROR, "duplicate-execution", it.index, it.t_s, f"exposure plan {pid} index {idx} reported twice"))
        return
    seen.add((pid, idx))
    plan = running
    if plan is None or plan.plan_id != pid:
        if aborted is not None and aborted.plan_id == pid and abort_tolerance > 0:
            plan = aborted  # the window open when ABORT arrived
        elif aborted is not None and aborted.plan_id == pid:
            add(Finding(ERROR, "exposure-outside-plan", it.index, it.t_s, f"exposure plan {pid} index {idx} after the plan was aborted/ended"))
            return
        else:
            add(Finding(ERROR, "exposure-outside-plan", it.index, it.t_s, f"exposure plan {pid} index {idx} but no such plan is running"))
            return
    if idx >= len(plan.angles_mdeg):
        add(Finding(ERROR, "exposure-outside-plan", it.index, it.t_s, f"exposure index {idx} beyond the {len(plan.angles_mdeg)} armed entries of plan {pid}"))
    elif m.planned_mdeg != plan.angles_mdeg[idx]:  # type: ignore[union-attr]
        add(
            Finding(
                ERROR,
                "exposure-outside-plan",
                it.index,
                it.t_s,
                f"exposure plan {pid} index {idx} planned at {m.planned_mdeg} mdeg, armed entry is {plan.angles_mdeg[idx]} mdeg",  # type: ignore[union-attr]
            )
        )

