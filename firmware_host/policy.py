"""Retry and abort policy of the host: which faults are retried and which end the exam.

Principle: a fault that may have put X-rays, motion or force outside the plan
ends the exam; the host never re-exposes after a pause (abort, don't rewind).
Faults that cost no dose and leave the device safe are recovered and the exam
goes on. Every decision is written to the audit log.

=====================  ==============  ====================================================================
condition              action          what the host does
=====================  ==============  ====================================================================
link SendFailed of an  retry           resend up to ``IDEMPOTENT_RETRIES`` times (GET_STATUS, GET_INFO,
idempotent command                     HOME, MOVE_ARC, COMPRESS, RELEASE, SET_TECHNIQUE, ARM_PLAN, ABORT,
                                       SET_TELEMETRY, RESET_FAULT: repeating them has the same effect)
link SendFailed of     retry / follow  FIRE is never resent blindly: the host reads STATUS; still ARMED
FIRE                                   with this plan = not executed, FIRE once more; otherwise it ran:
                                       follow its EXPOSURE_DONE / IMAGE_READY events
line faults (bit       retry (link)    CRC drops and retransmission in the link; only a dead line
errors, drops, noise)                  (peer lost) ends the exam
DETECTOR_TIMEOUT       retry           re-read the data channel until ``image_timeout_s``; an image that
                                       never arrives makes the exam *incomplete* (the exposure is kept)
ENCODER_GLITCH         continue        not latched: the exposure record carries the actual angles and
(not latched)                          the angle tolerance check flags any projection outside it
TELEMETRY_STOP         retry           re-send SET_TELEMETRY; plans fall back on GET_STATUS polling
MOTOR_STALL,           end             ABORT, RELEASE if ``release_on_fault``; reason = the fault
FOLLOWING_ERROR,
TRAVEL_LIMIT
KV_DROP, TUBE_ARC,     end             the exposure ended early (status KV_FAULT / BACKUP_TIMER); not
BACKUP_TIMER                           repeated
ESTOP, DOOR_OPEN,      end             interlock opened / safe hold; ABORT, RELEASE as configured
WATCHDOG
DEVICE_RESET           end             the device rebooted (state BOOT): new session (HELLO), read
                                       STATUS, RELEASE as configured; the armed plan is lost
lost events (dead      reconcile       the device's exposure ledger (GET_EXPOSURE_LOG) is read whenever a
line inside the                        plan ends short of its EXPOSURE_DONEs, after every abort and at the
watchdog), lost link                   end of every exam; after a lost link the host opens a new session
                                       (HELLO) first; every exposure the device made is recorded, its image
                                       taken in (CRC-32C) or listed missing with a reason
RELEASE on any path    retry           RELEASE is resent (``release_attempts``) until the force is gone;
                                       its MOTION_DONE is matched by sequence number (cause_seq), never by
                                       cause_msg_id; NO_SESSION (device reset) = HELLO first
FORCE_LIMIT,           end             refused or stopped by the device's own limits
HEAT_LIMIT
any other latched      end             ABORT, RELEASE as configured
fault
=====================  ==============  ====================================================================
"""

from __future__ import annotations

import enum

from protocols.wire.catalogue import FaultCode


class Action(enum.Enum):
    """What the host does about a condition."""

    CONTINUE = "continue"  # note it, go on
    RETRY = "retry"  # recover (re-read, re-send), go on
    END = "end"  # abort the exam with the reason


#: Retries after a link-level SendFailed for idempotent commands.
IDEMPOTENT_RETRIES = 3

#: Commands whose repetition has the same effect as one execution (safe to resend after SendFailed).
IDEMPOTENT_COMMANDS: frozenset[str] = frozenset(
    {
        "GET_STATUS", "GET_INFO", "GET_LIMITS", "GET_EXPOSURE_LOG", "HOME", "MOVE_ARC", "COMPRESS", "RELEASE", "SET_TECHNIQUE", "ARM_PLAN",
        "ABORT", "SET_TELEMETRY", "RESET_FAULT", "HELLO",
    }
)

#: Faults handled without ending the exam.
RECOVERABLE_FAULTS: dict[int, Action] = {
    int(FaultCode.DETECTOR_TIMEOUT): Action.RETRY,
    int(FaultCode.TELEMETRY_STOP): Action.RETRY,
    int(FaultCode.LINE_FAULT): Action.RETRY,
    int(FaultCode.ENCODER_GLITCH): Action.CONTINUE,
    # the device's loop fell behind real time; not latched, it still keeps its safety (latched: END)
    int(FaultCode.REALTIME_OVERRUN): Action.CONTINUE,
    int(FaultCode.NONE): Action.CONTINUE,
}


def fault_action(code: int, latched: bool) -> Action:
    """Action for a FAULT event: latched faults always end the exam (they stop the device)."""
    if latched:
        return Action.END
    return RECOVERABLE_FAULTS.get(int(code), Action.END)


def retries_for(command: str) -> int:
    """How many times a command is resent after SendFailed (0 for FIRE and simulator controls)."""
    return IDEMPOTENT_RETRIES if command in IDEMPOTENT_COMMANDS else 0


def policy_table() -> list[tuple[str, str]]:
    """(fault name, action) for every catalogue fault code, for docs and the CLI."""
    return [(f.name, fault_action(int(f), latched=False).value) for f in FaultCode]
