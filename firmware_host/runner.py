"""The plan runner: executes a plan generator against the controller, one message at a time.

Theory of operation. A plan (see :mod:`firmware_host.plans`) is advanced until
it yields something that needs the device or the clock: a
:class:`~firmware_host.plans.Command` (sent through the link; the plan
resumes when its response arrives), a :class:`~firmware_host.plans.WaitFor`
(resumes when its predicate over the mirror is true, checked after every
change of the mirror) or a :class:`~firmware_host.plans.Sleep`. The runner
has at most one such *pending* item; :meth:`PlanRunner.deadline` tells the
adapter when the clock next matters. Errors (NAK, SendFailed, timeouts,
suspenders) are thrown into the generator at the ``yield`` that waits.

Suspenders: while the plan has the guard on, a condition that ends the exam
(:func:`firmware_host.controller.Controller.trouble`) throws
:class:`~firmware_host.errors.Interrupted` into the plan once and switches
the guard off; the plan's handler sequences the abort and is never resumed
at the interrupted step.

The runner does no I/O and reads no clock: ``now`` is always passed in.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from firmware_host.errors import CommandFailed, CommandRefused, Interrupted, WaitTimeout
from firmware_host.mirror import DeviceMirror
from firmware_host.plans import Command, Guard, Now, Phase, Plan, Sleep, WaitFor
from protocols.wire.catalogue import ErrorCode
from protocols.wire.messages import Message

if TYPE_CHECKING:
    from protocols.wire.link import Answered, SendFailed


class PlanHost(Protocol):
    """What the runner needs of the controller that owns it (:class:`firmware_host.controller.Controller`).

    A protocol rather than an import, so that the controller (which creates runners) and the
    runner do not import each other.
    """

    mirror: DeviceMirror

    def send_command(self, message: Message, now: float, new_session: bool = False, log_note: str = "") -> None:
        """Send ``message`` through the link at time ``now`` (s)."""

    def on_phase(self, phase: Phase, now: float) -> None:
        """The plan entered ``phase``."""

    def log(self, kind: str, **fields: Any) -> None:
        """Write an audit entry."""

    def trouble(self) -> Interrupted | None:
        """A condition that ends the exam, if any (suspenders)."""


class RunnerState(enum.Enum):
    READY = "READY"  # created, not started
    RUNNING = "RUNNING"  # advancing (transient)
    WAITING = "WAITING"  # one pending item
    DONE = "DONE"  # returned a value
    FAILED = "FAILED"  # raised


@dataclass
class _Pending:
    item: Command | WaitFor | Sleep
    deadline: float | None
    attempts_left: int = 0


class PlanRunner:
    """Runs one plan on a controller (a :class:`PlanHost`; see module docstring)."""

    def __init__(self, plan: Plan, controller: PlanHost, name: str = "plan") -> None:
        self.plan = plan
        self.controller = controller
        self.name = name
        self.state = RunnerState.READY
        self.guard = False
        self.interrupted = False
        self.result: Any = None
        self.error: BaseException | None = None
        self._pending: _Pending | None = None
        self._deferred: Interrupted | None = None  # an interrupt requested while the plan was executing

    # -- status --------------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self.state in (RunnerState.DONE, RunnerState.FAILED)

    def deadline(self) -> float | None:
        """Next time at which the runner has work without any input, or None."""
        return self._pending.deadline if self._pending else None

    def outcome(self) -> Any:
        """The plan's return value; re-raises its error."""
        if self.error is not None:
            raise self.error
        return self.result

    # -- inputs --------------------------------------------------------------------------------
    def start(self, now: float) -> None:
        self._advance(now)

    def on_answered(self, ev: "Answered", now: float) -> bool:
        """A response arrived; True if it was the pending command's."""
        p = self._pending
        if p is None or not isinstance(p.item, Command) or ev.request is not p.item.message:
            return False
        self._pending = None
        p.item.answered_seq = ev.seq
        resp = ev.response
        if resp.NAME == "NAK":
            try:
                err_name = ErrorCode(resp.error_code).name
            except ValueError:
                err_name = f"error {resp.error_code}"
            self._advance(now, exc=CommandRefused(p.item.message.NAME, resp.error_code, err_name, resp.detail))
        else:
            self._advance(now, value=resp)
        return True

    def on_send_failed(self, ev: "SendFailed", now: float) -> bool:
        """A request got no answer; resend if retries are left, else throw CommandFailed."""
        p = self._pending
        if p is None or not isinstance(p.item, Command) or ev.request is not p.item.message:
            return False
        if p.attempts_left > 0:
            p.attempts_left -= 1
            self.controller.send_command(p.item.message, now, log_note=f"retry after SendFailed ({ev.reason})")
            return True
        self._pending = None
        self._advance(now, exc=CommandFailed(p.item.message.NAME, ev.attempts, ev.reason))
        return True

    def on_change(self, now: float) -> None:
        """The mirror changed: check the suspenders, then the pending predicate."""
        if self.finished:
            return
        if self.guard and not self.interrupted:
            trouble = self.controller.trouble()
            if trouble is not None:
                self.interrupt(trouble, now)
                return
        p = self._pending
        if p is not None and isinstance(p.item, WaitFor):
            value = p.item.predicate(self.controller.mirror)
            if value:
                self._pending = None
                self._advance(now, value=value)

    def on_tick(self, now: float) -> None:
        """The clock advanced: time-outs and sleeps."""
        p = self._pending
        if p is None or p.deadline is None or now < p.deadline:
            return
        if isinstance(p.item, Sleep):
            self._pending = None
            self._advance(now, value=now)
        elif isinstance(p.item, WaitFor):
            value = p.item.predicate(self.controller.mirror)
            self._pending = None
            if value:
                self._advance(now, value=value)
            else:
                self._advance(now, exc=WaitTimeout(p.item.what, p.item.timeout_s))

    def interrupt(self, exc: Interrupted, now: float) -> bool:
        """Throw ``exc`` into the plan once (suspender or operator abort); False if already interrupted."""
        if self.finished or self.interrupted:
            return False
        self.interrupted = True
        self.guard = False
        self.controller.log("interrupt", reason=exc.reason, abort_reason=exc.abort_reason, fault=exc.fault)
        if self.state is RunnerState.RUNNING:
            # Called from inside the plan's own step (e.g. a progress callback): thrown in at its next yield.
            self._deferred = exc
            return True
        self._pending = None  # a pending command's late response is ignored (logged as a response)
        self._advance(now, exc=exc)
        return True

    # -- the engine ----------------------------------------------------------------------------
    def _wait(self) -> bool:
        """Park on the pending item; False if a deferred interrupt must be thrown in instead."""
        if self._deferred is not None:
            self._pending = None
            return False
        self.state = RunnerState.WAITING
        return True

    def _advance(self, now: float, value: Any = None, exc: BaseException | None = None) -> None:
        self.state = RunnerState.RUNNING
        while True:
            if self._deferred is not None and exc is None:
                exc, self._deferred = self._deferred, None
            try:
                item = self.plan.throw(exc) if exc is not None else self.plan.send(value)
            except StopIteration as stop:
                self.state, self.result = RunnerState.DONE, stop.value
                return
            except Exception as err:  # the plan let an error out: that is its result
                self.state, self.error = RunnerState.FAILED, err
                return
            value, exc = None, None
            if isinstance(item, Command):
                self._pending = _Pending(item, None, item.retries)
                self.controller.send_command(item.message, now, new_session=item.new_session)
                if self._wait():
                    return
                continue
            if isinstance(item, WaitFor):
                got = item.predicate(self.controller.mirror)
                if got:
                    value = got
                    continue
                self._pending = _Pending(item, now + item.timeout_s)
                if self._wait():
                    return
                continue
            if isinstance(item, Sleep):
                if item.seconds <= 0:
                    value = now
                    continue
                self._pending = _Pending(item, now + item.seconds)
                if self._wait():
                    return
                continue
            if isinstance(item, Now):
                value = now
                continue
            if isinstance(item, Phase):
                self.controller.on_phase(item, now)
                continue
            if isinstance(item, Guard):
                self.guard = item.armed
                if item.armed and not self.interrupted:
                    trouble = self.controller.trouble()
                    if trouble is not None:
                        self.interrupted, self.guard = True, False
                        self.controller.log("interrupt", reason=trouble.reason, abort_reason=trouble.abort_reason,
                                            fault=trouble.fault)
                        exc = trouble
                continue
            exc = TypeError(f"plan {self.name} yielded {item!r}, which is not a plan message")
