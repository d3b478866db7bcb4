"""Plan messages: what an exam plan (a generator) yields to the runner.

Plans follow Bluesky's plans-as-generators model: a plan is a generator that
yields these small objects; :class:`firmware_host.runner.PlanRunner` executes
each one and sends the result back into the generator (or throws the error
in). A plan therefore reads like straight-line code and does no I/O and no
time-keeping of its own::

    def home_plan():
        yield Phase("home")
        ack = yield Command(Home())
        done = yield WaitFor(motion_done("HOME"), timeout_s=30.0, what="HOME to finish")

Times are in seconds on the adapter's clock (wall clock or SimPy virtual time).
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any

from protocols.wire.messages import Message

#: A predicate over the device mirror: returns a truthy value (handed back to the plan) when satisfied.
Predicate = Callable[[Any], Any]

#: A plan: a generator of plan messages, resumed with their results, returning its result.
Plan = Generator[Any, Any, Any]


@dataclass
class Command:
    """Send ``message`` (a catalogue command); resumes with the response (ACK, STATUS, ...).

    NAK raises :class:`~firmware_host.errors.CommandRefused`. A link-level
    SendFailed is retried up to ``retries`` more times (only for commands the
    retry policy calls idempotent), then raises
    :class:`~firmware_host.errors.CommandFailed`.
    """

    message: Message
    retries: int = 0
    new_session: bool = False  # start a new link session first (HELLO after a device reset)
    #: Set by the runner when the command is answered: the link sequence number of the copy that was
    #: answered (a device event caused by this command, e.g. MOTION_DONE.cause_seq, carries it).
    answered_seq: int | None = None


@dataclass
class WaitFor:
    """Resume with ``predicate(mirror)`` once it is truthy; raise WaitTimeout after ``timeout_s`` seconds."""

    predicate: Predicate
    timeout_s: float
    what: str = "a device condition"


@dataclass
class Sleep:
    """Resume after ``seconds`` (adapter clock), with the time then."""

    seconds: float


@dataclass
class Now:
    """Resume at once with the current adapter time, s."""


@dataclass
class Phase:
    """Announce an exam phase (progress callback, audit log); resumes at once.

    ``index``/``total`` count projections inside a phase (e.g. image 3 of 15).
    """

    name: str
    index: int = 0
    total: int = 0


@dataclass
class Guard:
    """Switch the suspenders on (``armed=True``) or off; resumes at once.

    While on, a condition that ends the exam (see :mod:`firmware_host.policy`)
    throws :class:`~firmware_host.errors.Interrupted` into the plan at its
    current ``yield``. The plan's handler then sequences the abort; it is
    never resumed where it was (an exposure is never replayed).
    """

    armed: bool = True
