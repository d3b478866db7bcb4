"""The campaign's cases: one exam, one fault, one phase, one moment - all drawn from the case's seed.

Pure and light (no simulator import): the same seed gives the same case on any machine and in
any worker, so a campaign's results do not depend on how many workers ran it.

Fault kinds are the gantry's whole fault catalogue (:data:`simulator.gantry.faults.INJECTABLE`,
with LINE_FAULT split into a noise burst, a dead line around the link's retry budget and a dead
line long enough for both watchdogs) plus a host stall and a fault-free control. Phases are the
exam's own: preparation, compression, scout (AEC exams), sweep, readout, release (exams that
release after the exam).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: Fault kinds drawn by the campaign (``NONE`` = control exam). Durations in s, params as the injector's.
FAULT_KINDS: tuple[str, ...] = (
    "NONE", "MOTOR_STALL", "ENCODER_GLITCH", "KV_DROP", "TUBE_ARC", "DETECTOR_TIMEOUT", "DEVICE_RESET", "ESTOP",
    "DOOR_OPEN", "TELEMETRY_STOP", "LINE_NOISE", "LINE_DEAD_RETRY", "LINE_DEAD_LONG", "HOST_STALL",
)

#: Exam phases in order (campaign names); the host's progress phase that starts each.
PHASES: tuple[str, ...] = ("preparation", "compression", "scout", "sweep", "readout", "release")
HOST_PHASE: dict[str, str] = {"preparation": "prepare", "compression": "compress", "scout": "scout",
                              "sweep": "sweep", "readout": "readout", "release": "release"}

#: Latest injection time after the phase starts, s (sweep: after the chosen exposure).
PHASE_SPAN_S: dict[str, float] = {"preparation": 0.05, "compression": 1.5, "scout": 0.08, "sweep": 0.06,
                                  "readout": 0.15, "release": 1.0}

#: Shipped exam library (``protocols/exams/library``).
LIBRARY: tuple[str, ...] = ("dbt-standard", "dbt-narrow", "dbt-wide", "dbt-step", "ffdm-cc", "ffdm-mlo",
                            "stereo-biopsy")


@dataclass(frozen=True)
class Case:
    """One campaign exam. ``delay_s`` after the phase starts (sweep: after exposure ``exposure``)."""

    seed: int
    exam: str
    fault: str
    phase: str
    delay_s: float
    exposure: int = 0
    param: int = 0
    duration_s: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def label(self) -> str:
        extra = f" param={self.param}" if self.param else ""
        dur = f" for {self.duration_s:.3f} s" if self.duration_s is not None else ""
        at = f"exposure {self.exposure} + {self.delay_s * 1e3:.1f} ms" if self.phase == "sweep" else \
            f"+{self.delay_s * 1e3:.1f} ms"
        return f"{self.exam}: {self.fault}{extra}{dur} in {self.phase} ({at})"


def exam_phases(exam: Any) -> tuple[list[str], int]:
    """(phases the exam goes through, exposures in its main plan) for an :class:`ExamModel`."""
    from protocols.exams.models import AecTechnique

    phases = ["preparation", "compression"]
    if isinstance(exam.technique, AecTechnique):
        phases.append("scout")
    phases += ["sweep", "readout"]
    if exam.compression.release == "after_exam":
        phases.append("release")
    if exam.kind == "dbt":
        n = int(exam.arc.count)
    elif exam.kind == "stereo":
        n = 3 if getattr(exam, "zero_view", False) else 2
    else:
        n = 1
    return phases, n


def draw_case(seed: int, exams: list[str], exam_models: dict[str, Any]) -> Case:
    """The case of ``seed`` (deterministic). ``exam_models`` maps each exam name/path to its model."""
    rng = np.random.default_rng([int(seed), 14])
    exam = exams[int(rng.integers(len(exams)))]
    fault = FAULT_KINDS[int(rng.integers(len(FAULT_KINDS)))]
    phases, n = exam_phases(exam_models[exam])
    phase = phases[int(rng.integers(len(phases)))]
    delay = float(rng.uniform(0.0, PHASE_SPAN_S[phase]))
    exposure = int(rng.integers(n)) if phase == "sweep" else 0
    param, duration = 0, None
    if fault == "ENCODER_GLITCH":
        param = int(rng.integers(500, 5000))
    elif fault == "KV_DROP":
        param = int(rng.integers(10, 60))
        duration = float(rng.uniform(0.05, 1.0))
    elif fault in ("ESTOP", "DOOR_OPEN"):
        duration = float(rng.uniform(0.2, 3.0))
    elif fault == "TELEMETRY_STOP":
        duration = float(rng.uniform(0.2, 3.0))
    elif fault == "LINE_NOISE":
        param = int(rng.integers(20, 600))
    elif fault == "LINE_DEAD_RETRY":  # around the device's event-retry budget (6 x 100 ms)
        duration = float(rng.uniform(0.5, 1.5))
    elif fault == "LINE_DEAD_LONG":  # both watchdogs expire
        duration = float(rng.uniform(2.3, 6.0))
    elif fault == "HOST_STALL":
        duration = float(rng.uniform(0.5, 7.0))
    return Case(seed=int(seed), exam=exam, fault=fault, phase=phase, delay_s=round(delay, 6), exposure=exposure,
                param=param, duration_s=None if duration is None else round(duration, 6))
