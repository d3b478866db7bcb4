"""Session plans: HELLO with version check, GET_INFO (geometry, limits, data channel), GET_STATUS.

``connect_plan`` is the first plan every adapter runs. The device's
DEVICE_INFO becomes the shared :class:`protocols.geometry.AcquisitionGeometry`
and :class:`protocols.limits.DeviceLimits` (units converted from the wire's
fixed point: um -> mm, nm -> mm, mdeg -> deg, dN -> N, ckV -> kV, uAs -> mAs).
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_host.errors import CommandRefused, VersionMismatch
from firmware_host.plans import Command, Plan
from firmware_host.policy import IDEMPOTENT_RETRIES
from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from protocols.limits import DeviceLimits
from protocols.wire.catalogue import Capability, DeviceState, ErrorCode
from protocols.wire.messages import CATALOGUE, GetInfo, GetStatus, Hello, Message

#: Versions this host speaks.
HOST_PROTOCOL_VERSION: int = CATALOGUE.protocol_version
HOST_MIN_VERSION: int = CATALOGUE.min_supported_version

#: Capabilities the host announces.
HOST_CAPABILITIES = int(
    Capability.CONTINUOUS_MOTION | Capability.STEP_AND_SHOOT | Capability.POSITION_TRIGGER  # type: ignore[attr-defined]
    | Capability.AEC_SCOUT | Capability.FILE_DATA_CHANNEL  # type: ignore[attr-defined]
)


@dataclass
class SessionInfo:
    """What the host learnt when it connected."""

    protocol_version: int
    firmware_version: str
    serial_number: int
    device_capabilities: int
    watchdog_timeout_ms: int
    state_at_connect: str
    resumed_plan_id: int
    resumed_exposures_done: int
    geometry: AcquisitionGeometry
    limits: DeviceLimits
    data_channel: str
    info: Message
    status: Message

    @property
    def interrupted_plan(self) -> bool:
        """True if the device reports a plan cut short by a lost session."""
        return self.resumed_plan_id != 0

    def summary(self) -> dict[str, object]:
        return {
            "protocol_version": self.protocol_version, "firmware_version": self.firmware_version,
            "serial_number": self.serial_number, "state_at_connect": self.state_at_connect,
            "resumed_plan_id": self.resumed_plan_id, "resumed_exposures_done": self.resumed_exposures_done,
            "data_channel": self.data_channel,
        }


def firmware_text(v: int) -> str:
    """``major << 16 | minor << 8 | patch`` -> ``'1.2.3'``."""
    return f"{v >> 16 & 0xFF}.{v >> 8 & 0xFF}.{v & 0xFF}"


def geometry_from_info(info: Message) -> AcquisitionGeometry:
    """DEVICE_INFO -> gantry-frame geometry (mm)."""
    det = DetectorGeometry(
        native_pitch_mm=info.native_pitch_nm * 1e-6, binning=info.binning, rows=info.rows, cols=info.cols,
        offset_x_mm=info.offset_x_um * 1e-3, offset_y_mm=info.offset_y_um * 1e-3,
    )
    return AcquisitionGeometry(
        sid_mm=info.sid_um * 1e-3, pivot_height_mm=info.pivot_height_um * 1e-3,
        support_height_mm=info.support_height_um * 1e-3, detector=det,
    )


def limits_from_info(info: Message) -> DeviceLimits:
    """DEVICE_INFO -> the limits it states (others keep the :class:`DeviceLimits` defaults)."""
    force = info.force_limit_dn * 0.1
    return DeviceLimits(
        arc_min_deg=info.arc_min_mdeg * 1e-3, arc_max_deg=info.arc_max_mdeg * 1e-3,
        arc_max_speed_deg_s=info.arc_max_speed_mdeg_s * 1e-3,
        compression_force_max_n=force, compression_initial_drive_max_n=min(force, 200.0),
        kvp_min_kv=info.kv_min_ckv * 0.01, kvp_max_kv=info.kv_max_ckv * 0.01,
        mas_max_mas=info.mas_max_uas * 1e-6,
    )


def hello_plan(session_id: int, heartbeat_period_ms: int, watchdog_timeout_ms: int, new_session: bool = False) -> Plan:
    """HELLO and version check; returns HELLO_REPLY. Raises :class:`VersionMismatch` naming both versions."""
    hello = Hello(
        protocol_version=HOST_PROTOCOL_VERSION, min_version=HOST_MIN_VERSION, host_capabilities=HOST_CAPABILITIES,
        session_id=session_id, heartbeat_period_ms=heartbeat_period_ms, watchdog_timeout_ms=watchdog_timeout_ms,
    )
    try:
        reply = yield Command(hello, retries=IDEMPOTENT_RETRIES, new_session=new_session)
    except CommandRefused as exc:
        if exc.error_code == int(ErrorCode.VERSION_MISMATCH):
            raise VersionMismatch(HOST_MIN_VERSION, HOST_PROTOCOL_VERSION, exc.detail, "device refused HELLO") from exc
        raise
    if not HOST_MIN_VERSION <= reply.protocol_version <= HOST_PROTOCOL_VERSION:
        raise VersionMismatch(HOST_MIN_VERSION, HOST_PROTOCOL_VERSION, reply.protocol_version)
    return reply


def connect_plan(session_id: int, heartbeat_period_ms: int = 100, watchdog_timeout_ms: int = 1000,
                 new_session: bool = False) -> Plan:
    """HELLO, GET_INFO, GET_STATUS; returns :class:`SessionInfo`."""
    reply = yield from hello_plan(session_id, heartbeat_period_ms, watchdog_timeout_ms, new_session)
    info = yield Command(GetInfo(), retries=IDEMPOTENT_RETRIES)
    status = yield Command(GetStatus(), retries=IDEMPOTENT_RETRIES)
    return SessionInfo(
        protocol_version=reply.protocol_version, firmware_version=firmware_text(reply.firmware_version),
        serial_number=reply.serial_number, device_capabilities=reply.device_capabilities,
        watchdog_timeout_ms=reply.watchdog_timeout_ms, state_at_connect=DeviceState(reply.state).name,
        resumed_plan_id=reply.resumed_plan_id, resumed_exposures_done=reply.resumed_exposures_done,
        geometry=geometry_from_info(info), limits=limits_from_info(info), data_channel=info.data_channel,
        info=info, status=status,
    )
