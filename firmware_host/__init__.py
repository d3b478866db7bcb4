"""The host controller: connects to a gantry, runs exams as plans, keeps the patient safe, loses nothing.

Public API (see :mod:`firmware_host.api`): :func:`connect`, :func:`connect_virtual`,
:func:`run_exam_virtual`, :class:`Gantry`, :class:`ExamResult`, :class:`ExamRecord`,
:class:`ExamOptions`, :func:`read_audit_log`, :func:`verify_exam_folder`.
"""

from firmware_host.api import ExamResult, Gantry, connect, connect_virtual, resolve_exam, run_exam_virtual
from firmware_host.audit import read_audit_log
from firmware_host.errors import (
    CommandFailed,
    CommandRefused,
    ExamError,
    HostError,
    Interrupted,
    VersionMismatch,
    WaitTimeout,
)
from firmware_host.exam_plan import EXAM_PHASES, ExamOptions
from firmware_host.record import ExamRecord
from firmware_host.store import verify_exam_folder, verify_projection

__all__ = [
    "EXAM_PHASES", "CommandFailed", "CommandRefused", "ExamError", "ExamOptions", "ExamRecord", "ExamResult", "Gantry",
    "HostError", "Interrupted", "VersionMismatch", "WaitTimeout", "connect", "connect_virtual",
    "read_audit_log", "resolve_exam", "run_exam_virtual", "verify_exam_folder", "verify_projection",
]
