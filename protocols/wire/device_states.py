"""The device state machine every gantry (simulated or real) must follow, as data.

Theory of operation: a gantry boots into ``BOOT`` and answers only HELLO
(and GET_INFO, GET_LIMITS, ABORT and the simulator controls) until a session is open. ``IDLE`` accepts motions (-> ``BUSY`` until the
motion ends) and ARM_PLAN (-> ``ARMED``). FIRE with the armed plan's id and
digest and every interlock safe starts the sweep (``EXPOSING``); the plan
ending, ABORT or an opening interlock return to ``IDLE`` (after terminating
any exposure). The heartbeat watchdog and the emergency stop put the device
in ``SAFE_HOLD`` (motion stopped, X-rays off, plan disarmed); a latched fault
puts it in ``FAULT``. Both are left only by RESET_FAULT once the cause is
gone; HELLO never leaves them (a new session's host must see the hold and
reset it). HELLO in ``ARMED`` or ``EXPOSING`` ends the plan: a new session
never inherits a plan armed by an earlier one.

:data:`TRANSITIONS` is the table; :data:`ALLOWED_COMMANDS` says which
commands each state accepts; :func:`refusal` gives the NAK code of the
others (``NO_SESSION`` in ``BOOT``, ``NOT_ARMED`` for a FIRE where no plan
can be armed, ``BAD_STATE`` otherwise). SPEC.md's device diagram is
generated from them and the conformance suite checks a device against them.
"""

from __future__ import annotations

import enum

from protocols.wire.catalogue import DeviceState as S
from protocols.wire.catalogue import ErrorCode


class Trigger(enum.Enum):
    """What moves the device between states."""

    HELLO = "HELLO"
    MOTION_ACCEPTED = "HOME / MOVE_ARC / COMPRESS / RELEASE accepted"
    MOTION_ENDED = "motion ended (MOTION_DONE)"
    ARM_ACCEPTED = "ARM_PLAN accepted"
    FIRE_ACCEPTED = "FIRE accepted"
    PLAN_COMPLETE = "last exposure done"
    ABORT = "ABORT"
    INTERLOCK_OPENED = "interlock opened"
    RELEASE_ACCEPTED = "RELEASE accepted (disarms)"
    WATCHDOG = "heartbeat watchdog expired"
    ESTOP = "emergency stop"
    LATCHED_FAULT = "latched fault"
    RESET_FAULT = "RESET_FAULT, cause gone"
    DEVICE_RESET = "device reset"


#: (state, trigger) -> next state. Absent pairs do not change the state.
TRANSITIONS: dict[tuple[S, Trigger], S] = {
    (S.BOOT, Trigger.HELLO): S.IDLE,
    (S.IDLE, Trigger.MOTION_ACCEPTED): S.BUSY,
    (S.BUSY, Trigger.MOTION_ENDED): S.IDLE,
    (S.BUSY, Trigger.ABORT): S.IDLE,
    (S.IDLE, Trigger.ARM_ACCEPTED): S.ARMED,
    (S.ARMED, Trigger.ARM_ACCEPTED): S.ARMED,
    (S.ARMED, Trigger.FIRE_ACCEPTED): S.EXPOSING,
    (S.ARMED, Trigger.ABORT): S.IDLE,
    (S.ARMED, Trigger.RELEASE_ACCEPTED): S.BUSY,
    (S.EXPOSING, Trigger.PLAN_COMPLETE): S.IDLE,
    (S.EXPOSING, Trigger.ABORT): S.IDLE,
    (S.EXPOSING, Trigger.INTERLOCK_OPENED): S.IDLE,
    (S.ARMED, Trigger.HELLO): S.IDLE,
    (S.EXPOSING, Trigger.HELLO): S.IDLE,
    (S.SAFE_HOLD, Trigger.RESET_FAULT): S.IDLE,
    (S.FAULT, Trigger.RESET_FAULT): S.IDLE,
}
for _s in (S.IDLE, S.BUSY, S.ARMED, S.EXPOSING, S.FAULT):
    TRANSITIONS[(_s, Trigger.WATCHDOG)] = S.SAFE_HOLD
for _s in (S.IDLE, S.BUSY, S.ARMED, S.EXPOSING, S.FAULT):
    TRANSITIONS[(_s, Trigger.ESTOP)] = S.SAFE_HOLD
for _s in (S.IDLE, S.BUSY, S.ARMED, S.EXPOSING):
    TRANSITIONS[(_s, Trigger.LATCHED_FAULT)] = S.FAULT
for _s in (S.IDLE, S.BUSY, S.ARMED, S.EXPOSING, S.SAFE_HOLD, S.FAULT):
    TRANSITIONS[(_s, Trigger.DEVICE_RESET)] = S.BOOT

_ALWAYS = frozenset({"HELLO", "GET_STATUS", "GET_INFO", "GET_LIMITS", "GET_EXPOSURE_LOG", "GET_DATA_TOKEN", "ABORT", "SET_TELEMETRY", "SIM_SET_INPUT", "SIM_INJECT_FAULT"})

#: Commands each state accepts. RELEASE is refused only while exposing (ABORT first) and before a session.
ALLOWED_COMMANDS: dict[S, frozenset[str]] = {
    S.BOOT: frozenset({"HELLO", "GET_INFO", "GET_LIMITS", "GET_EXPOSURE_LOG", "ABORT", "SIM_SET_INPUT", "SIM_INJECT_FAULT"}),
    S.IDLE: _ALWAYS
    | {"HOME", "MOVE_ARC", "COMPRESS", "RELEASE", "SET_TECHNIQUE", "ARM_PLAN", "RESET_FAULT"},
    S.BUSY: _ALWAYS | {"RELEASE", "RESET_FAULT"},
    S.ARMED: _ALWAYS | {"FIRE", "ARM_PLAN", "RELEASE", "SET_TECHNIQUE", "RESET_FAULT"},
    S.EXPOSING: _ALWAYS,
    S.SAFE_HOLD: _ALWAYS | {"RESET_FAULT", "RELEASE"},
    S.FAULT: _ALWAYS | {"RESET_FAULT", "RELEASE"},
}


def next_state(state: S, trigger: Trigger) -> S:
    """State after ``trigger`` in ``state`` (unchanged if the table has no entry)."""
    return TRANSITIONS.get((state, trigger), state)


def command_allowed(state: S, command: str) -> bool:
    """Whether ``command`` (catalogue name) is accepted in ``state``."""
    return command in ALLOWED_COMMANDS[state]


#: States in which no plan can be armed: a FIRE there is refused with NOT_ARMED (not BAD_STATE).
NO_PLAN_STATES = frozenset({S.IDLE, S.BUSY, S.SAFE_HOLD, S.FAULT})


def refusal(state: S, command: str) -> ErrorCode | None:
    """The NAK code for ``command`` in ``state`` (None when the state accepts it).

    BOOT refuses with NO_SESSION; FIRE where no plan can be armed with NOT_ARMED (detail 0);
    everything else with BAD_STATE (detail = the state).
    """
    if command_allowed(state, command):
        return None
    if state == S.BOOT:
        return ErrorCode.NO_SESSION
    if command == "FIRE" and state in NO_PLAN_STATES:
        return ErrorCode.NOT_ARMED
    return ErrorCode.BAD_STATE
