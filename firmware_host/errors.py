"""Errors the host controller raises: each names what failed and why.

Plans see these at the ``yield`` that failed (the runner throws them into the
generator), so an exam plan handles a refused command, a lost link or an
interlock like any Python exception.
"""

from __future__ import annotations


class HostError(Exception):
    """Base of every host-controller error."""


class VersionMismatch(HostError):
    """The device does not speak a protocol version the host accepts."""

    def __init__(self, host_min: int, host_max: int, device: int, detail: str = "") -> None:
        self.host_min, self.host_max, self.device = host_min, host_max, device
        extra = f" ({detail})" if detail else ""
        super().__init__(
            f"protocol version mismatch: host speaks {host_min}..{host_max}, device answered {device}{extra}"
        )


class DeviceLimitsInvalid(HostError):
    """The device reported limits that break the limits model (the message names each field and value)."""


class CommandRefused(HostError):
    """The device answered a command with NAK (nothing was executed)."""

    def __init__(self, command: str, error_code: int, error_name: str, detail: int) -> None:
        self.command, self.error_code, self.error_name, self.detail = command, error_code, error_name, detail
        super().__init__(f"{command} refused by the device: {error_name} (code {error_code}, detail {detail})")


class CommandFailed(HostError):
    """A command got no response after every retransmission (link-level SendFailed)."""

    def __init__(self, command: str, attempts: int, reason: str) -> None:
        self.command, self.attempts = command, attempts
        super().__init__(f"{command} got no response after {attempts} attempts: {reason}")


class WaitTimeout(HostError):
    """A :class:`~firmware_host.plans.WaitFor` condition did not come true in time."""

    def __init__(self, what: str, timeout_s: float) -> None:
        self.what, self.timeout_s = what, timeout_s
        super().__init__(f"timed out after {timeout_s:.3g} s waiting for {what}")


class Interrupted(HostError):
    """A suspender fired: interlock opened, a fault that ends the exam, link lost, or an operator abort.

    ``abort_reason`` is the wire ``AbortReason`` name to send with ABORT;
    ``fault`` the ``FaultCode`` name when a device fault caused it.
    """

    def __init__(self, reason: str, abort_reason: str = "FAULT", fault: str | None = None) -> None:
        self.reason, self.abort_reason, self.fault = reason, abort_reason, fault
        super().__init__(reason)


class ExamError(HostError):
    """The exam cannot go on for a reason found by the host (thickness out of range, image missing, ...)."""
