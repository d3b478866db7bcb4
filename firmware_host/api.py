"""The Python API of the host: connect to a gantry and run exams.

Real port (wall-clock time, any pyserial URL)::

    from firmware_host import connect
    with connect("socket://127.0.0.1:5555") as gantry:
        result = gantry.run_exam("dbt-standard", out_dir="exam1", progress=print)
    result.record.status, result.image_paths

Simulated gantry in virtual time (the same controller and exam plan)::

    env = simpy.Environment()
    gantry_model, endpoint = start_virtual_gantry(env, config, seed=1)
    with connect_virtual(env, endpoint) as gantry:
        result = gantry.run_exam("ffdm-cc", out_dir="exam2")

``progress(phase, index, total)`` is called on every phase change and, in the
``sweep``/``readout``/``image`` phases, for each exposure or stored image
(``index`` of ``total``).
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import simpy

from firmware_host.audit import JsonlAudit, MemoryAudit
from firmware_host.controller import Controller, ProgressCallback, TrafficTap
from firmware_host.errors import ExamError
from firmware_host.exam_plan import SIMULATED_IMAGE_TIMEOUT_S, ExamContext, ExamOptions, exam_plan
from firmware_host.intake import open_data_channel
from firmware_host.keys import ENV_DATA_CA, load_link_key
from firmware_host.plans import Command, Plan
from firmware_host.policy import IDEMPOTENT_RETRIES
from firmware_host.record import ExamRecord
from firmware_host.serial_adapter import SerialAdapter
from firmware_host.session import SessionInfo, connect_plan
from firmware_host.simpy_adapter import Endpoint, SimpyAdapter
from firmware_host.store import ExamStore
from protocols.exams import validate_exam
from protocols.exams.standard import load_exam_arg
from protocols.exams.models import ExamModel
from protocols.wire.catalogue import Capability, FaultCode, SimInput
from protocols.wire.link import LinkConfig
from protocols.wire.signing import DEFAULT_HOST_LINK_ID, LinkKey, Signer
from protocols.wire.messages import GetStatus, Message, ResetFault, SimInjectFault, SimSetInput


@dataclass
class ExamResult:
    """What :meth:`Gantry.run_exam` returns: the record and where everything is on disk."""

    record: ExamRecord
    out_dir: Path
    record_path: Path
    audit_path: Path
    image_paths: list[Path] = field(default_factory=list)
    scout_path: Path | None = None


class _SwitchAudit:
    """The controller's audit sink: the session's memory log, plus the running exam's file."""

    def __init__(self) -> None:
        self.session = MemoryAudit()
        self.exam: JsonlAudit | None = None

    def write(self, entry: dict[str, Any]) -> None:
        if self.exam is not None:
            self.exam.write(entry)
        elif len(self.session.entries) < 100_000:
            self.session.write(entry)


def resolve_exam(exam: str | os.PathLike[str] | ExamModel) -> ExamModel:
    """An exam model from a model, a YAML path, or a standard exam name.

    Names and paths are told apart by :func:`protocols.exams.standard.load_exam_arg` (as ``crescent
    validate`` does); an unknown one raises ``ExamFileError`` (a ValueError) naming where the shipped exams are.
    """
    if isinstance(exam, (str, os.PathLike)):
        return load_exam_arg(exam)
    return exam


def is_simulated(session: SessionInfo) -> bool:
    """The device announced SIMULATION_CONTROLS: a simulated gantry (which renders every frame)."""
    return bool(session.device_capabilities & int(Capability.SIMULATION_CONTROLS))  # type: ignore[attr-defined]


def exam_options_for(session: SessionInfo, options: ExamOptions, image_timeout_s: float | None = None) -> ExamOptions:
    """``options`` with the image timeout chosen for the device behind ``session``.

    ``image_timeout_s`` if given; otherwise a device announcing SIMULATION_CONTROLS (a simulated
    gantry, perhaps started by hand with ``crescent gantry --pty``) gets at least
    :data:`SIMULATED_IMAGE_TIMEOUT_S`, since it renders every frame, and a rig keeps ``options``'.
    """
    if image_timeout_s is None:
        simulated = is_simulated(session)
        image_timeout_s = max(options.image_timeout_s, SIMULATED_IMAGE_TIMEOUT_S) if simulated else options.image_timeout_s
    return options.model_copy(update={"image_timeout_s": image_timeout_s})


class Gantry:
    """A connected gantry (real or virtual). Use :func:`connect` or :func:`connect_virtual`."""

    def __init__(self, adapter: SerialAdapter | SimpyAdapter, controller: Controller, audit: _SwitchAudit,
                 options: ExamOptions, session_id: int, data_ca: str | None = None) -> None:
        self.adapter = adapter
        self.controller = controller
        self._audit = audit
        self.options = options
        self.session_id = session_id
        signer = controller.link.signer
        self.session: SessionInfo = adapter.run(
            connect_plan(session_id, options.heartbeat_period_ms, options.watchdog_timeout_ms,
                         link_key=signer.key if signer is not None else None), "connect"
        )
        self.data_ca = data_ca
        self._exam_count = 0

    def exam_options(self, image_timeout_s: float | None = None) -> ExamOptions:
        """This connection's options with the image timeout chosen for the device (:func:`exam_options_for`)."""
        return exam_options_for(self.session, self.options, image_timeout_s)

    # -- context manager ---------------------------------------------------------------------------
    def __enter__(self) -> "Gantry":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop talking to the device (its watchdog then holds it safe)."""
        self.adapter.close()

    # -- state ---------------------------------------------------------------------------------------
    @property
    def mirror(self) -> Any:
        """The live :class:`~firmware_host.mirror.DeviceMirror`."""
        return self.controller.mirror

    @property
    def interrupted_plan(self) -> tuple[int, int] | None:
        """(plan id, exposures done) of a plan the device reports cut short by a lost session, else None."""
        s = self.session
        return (s.resumed_plan_id, s.resumed_exposures_done) if s.resumed_plan_id else None

    def run(self, plan: Plan, name: str = "plan") -> Any:
        """Run any plan (advanced use)."""
        return self.adapter.run(plan, name)

    def status(self) -> Message:
        """A fresh STATUS snapshot."""
        def plan() -> Plan:
            return (yield Command(GetStatus(), retries=IDEMPOTENT_RETRIES))
        return self.adapter.run(plan(), "status")

    def reset_fault(self) -> None:
        """RESET_FAULT: leave SAFE_HOLD / FAULT once every cause is gone. A new session never leaves a hold
        by itself (SPEC section 3). Raises :class:`~firmware_host.errors.CommandRefused` (FAULT_ACTIVE, the
        detail naming a cause still present) when the device refuses."""
        def plan() -> Plan:
            yield Command(ResetFault(fault_code=0), retries=IDEMPOTENT_RETRIES)
        self.adapter.run(plan(), "reset_fault")

    def abort(self, reason: str = "operator abort") -> None:
        """Abort the running exam (safe sequencing: ABORT, then RELEASE if the exam says so)."""
        self.adapter.abort(reason)

    # -- simulator controls (capability SIMULATION_CONTROLS) -----------------------------------------
    def inject_fault(self, fault: str | int, param: int = 0) -> None:
        """Ask a simulated gantry to inject ``fault`` now (SIM_INJECT_FAULT, out of band)."""
        code = FaultCode[fault] if isinstance(fault, str) else FaultCode(fault)
        self.adapter.send_aux(SimInjectFault(fault_code=int(code), param=param))

    def set_input(self, name: str, value: bool) -> None:
        """Set a simulated operator input / sensor (SIM_SET_INPUT, out of band)."""
        self.adapter.send_aux(SimSetInput(input=int(SimInput[name]), value=int(value)))

    # -- exams ---------------------------------------------------------------------------------------
    def recover_exam(self, out_dir: str | os.PathLike[str]) -> ExamRecord:
        """Report an exam a crashed host left in ``out_dir``: device state, images on disk, release as configured.

        Writes ``exam_record.json`` with status ``aborted`` (see :mod:`firmware_host.recovery`).
        """
        from firmware_host.recovery import recover_plan

        return self.adapter.run(recover_plan(out_dir, self.session, self.controller.mirror, self.options), "recover")

    def run_exam(
        self,
        exam: str | os.PathLike[str] | ExamModel,
        out_dir: str | os.PathLike[str] | None = None,
        progress: ProgressCallback | None = None,
        options: ExamOptions | None = None,
    ) -> ExamResult:
        """Run one exam; returns its :class:`ExamResult` (the record says complete / incomplete / aborted).

        ``exam``: a standard exam name (``"dbt-standard"``), a YAML path or a model.
        The exam is validated against the device's limits first (:class:`ExamError` listing the
        violations). ``out_dir`` (default ``./exam-<name>-<n>``) receives the images, the audit
        log and the record as they are produced. ``options`` default to :meth:`exam_options`: the
        connection's options with the image timeout for this device (a simulated gantry gets
        :data:`~firmware_host.exam_plan.SIMULATED_IMAGE_TIMEOUT_S`), the same rule as ``crescent
        acquire``, ``crescent exam run`` and the pytest plugin.
        """
        model = resolve_exam(exam)
        problems = [v for v in validate_exam(model, self.session.limits)]
        if problems:
            raise ExamError(f"exam {model.name!r} is not safe on this device: " + "; ".join(str(v) for v in problems))
        channel = open_data_channel(self.session.data_channel, token=self.session.data_token,
                                    ca_file=self.data_ca)  # a bad URL fails here, before anything is open
        self._exam_count += 1
        out = Path(out_dir) if out_dir is not None else Path(f"exam-{model.name}-{self._exam_count}")
        store = ExamStore(out)
        audit = JsonlAudit(store.audit_path)
        audit.write({"t": self.adapter.now(), "kind": "session", **self.session.summary(),
                     "geometry": self.session.geometry.model_dump(), "limits": self.session.limits.model_dump()})
        self._audit.exam = audit
        old_progress = self.controller.progress
        self.controller.progress = progress
        plan_id = self.controller.rng.randrange(1, 0xFFF0)
        ctx = ExamContext(
            exam=model, session=self.session, store=store, channel=channel,
            mirror=self.controller.mirror, log=self.controller.log, plan_id=plan_id, session_id=self.session_id,
            options=options or self.exam_options(),
        )
        try:
            record: ExamRecord = self.adapter.run(exam_plan(ctx), f"exam {model.name}")
        finally:
            self.controller.progress = old_progress
            self._audit.exam = None
            audit.close()
            channel.close()
            store.close()  # every image fsynced (the record, if written, already waited for them)
        return ExamResult(
            record=record, out_dir=out, record_path=store.record_path, audit_path=store.audit_path,
            image_paths=[out / p for p in record.image_paths],
            scout_path=out / record.scout.path if record.scout and record.scout.path else None,
        )


def _tap_function(tap: Any) -> TrafficTap | None:
    """A tap object with ``record(direction, data, now)`` (e.g. hil.capture.Tap) or such a callable."""
    if tap is None:
        return None
    return tap.record if hasattr(tap, "record") else tap  # type: ignore[no-any-return]


def _new_gantry(adapter_factory: Any, seed: int | None, options: ExamOptions | None, tap: Any = None,
                signer: Signer | None = None, data_ca: str | None = None) -> Gantry:
    audit = _SwitchAudit()
    rng = random.Random(seed)
    options = options or ExamOptions()
    # The host calls the device lost after device_timeout_ms (never sooner than the device's own watchdog):
    # a device that falls behind real time for a moment says so (REALTIME_OVERRUN) and is not abandoned.
    link = LinkConfig(peer_timeout_s=max(options.watchdog_timeout_ms, options.device_timeout_ms) / 1000.0)
    controller = Controller(audit=audit, seed=rng.randrange(2**31), link_config=link, signer=signer)
    controller.tap = _tap_function(tap)  # sees every byte both ways, before the HELLO
    adapter = adapter_factory(controller)
    try:
        return Gantry(adapter, controller, audit, options, rng.randrange(1, 2**32), data_ca)
    except BaseException:
        adapter.close()
        raise


def connect(url: str, *, baudrate: int = 921600, seed: int | None = None,
            options: ExamOptions | None = None, tap: Any = None, link_key: LinkKey | None | str = "auto",
            link_id: int = DEFAULT_HOST_LINK_ID, data_ca: str | None = None) -> Gantry:
    """Open ``url`` with pyserial, say HELLO (version check), read DEVICE_INFO and STATUS; wall-clock time.

    ``tap``: optional recorder of every byte both ways (``record(direction, data, now_s)``,
    direction 0 = host->device, 1 = device->host; e.g. :class:`hil.capture.Tap`).
    ``link_key``: sign the link (SPEC 2.6) with this key; ``"auto"`` (default) reads it from the
    environment (:func:`firmware_host.keys.load_link_key`: ``CRESCENT_LINK_KEY`` or
    ``CRESCENT_LINK_KEY_FILE``), None for an unsigned link. ``link_id``: this host's link id (1..255).
    ``data_ca``: CA certificate (PEM) a ``tls://`` data channel is verified against (default
    ``CRESCENT_DATA_TLS_CA``).
    """
    key = load_link_key() if link_key == "auto" else link_key
    signer = None
    if key is not None:
        assert isinstance(key, LinkKey)
        signer = Signer(key, link_id)  # the adapter sets its wall-clock offset
    data_ca = data_ca or os.environ.get(ENV_DATA_CA) or None
    return _new_gantry(lambda ctl: SerialAdapter(url, ctl, baudrate=baudrate), seed, options, tap, signer, data_ca)


def connect_virtual(env: simpy.Environment, endpoint: Endpoint, *, seed: int | None = 0,
                    options: ExamOptions | None = None, tap: Any = None) -> Gantry:
    """Connect to a simulated gantry's endpoint in SimPy virtual time (same controller, same plans).

    ``tap`` as in :func:`connect`.
    """
    return _new_gantry(lambda ctl: SimpyAdapter(env, endpoint, ctl), seed, options, tap)


def run_exam_virtual(env: simpy.Environment, endpoint: Endpoint, exam: str | os.PathLike[str] | ExamModel,
                     out_dir: str | os.PathLike[str], *, seed: int | None = 0, progress: ProgressCallback | None = None,
                     options: ExamOptions | None = None) -> ExamResult:
    """Connect in virtual time, run one exam, disconnect; returns the :class:`ExamResult`."""
    with connect_virtual(env, endpoint, seed=seed, options=options) as gantry:
        return gantry.run_exam(exam, out_dir, progress=progress)
