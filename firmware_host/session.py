"""Session plans: HELLO with version check, GET_INFO (geometry, limits, data channel), GET_LIMITS, GET_STATUS.

``connect_plan`` is the first plan every adapter runs. The device's
DEVICE_INFO becomes the shared :class:`protocols.geometry.AcquisitionGeometry`
and, with LIMITS_INFO (generator, tube, arc dynamics, detector timing), the
:class:`protocols.limits.DeviceLimits` the host plans with (units converted
from the wire's fixed point: um -> mm, nm -> mm, mdeg -> deg, dN -> N,
ckV -> kV, nAs -> mAs, 0.1 mA -> mA). GET_LIMITS is optional: a device that
answers NAK UNKNOWN_MESSAGE (or UNSUPPORTED) leaves those limits at the
:class:`DeviceLimits` defaults, and the session says so.
"""

from __future__ import annotations

from dataclasses import dataclass

from firmware_host.errors import CommandRefused, DeviceLimitsInvalid, VersionMismatch
from firmware_host.plans import Command, Plan
from firmware_host.policy import IDEMPOTENT_RETRIES
from protocols.geometry import AcquisitionGeometry, DetectorGeometry
from protocols.limits import DeviceLimits
from pydantic import ValidationError

from protocols.wire.catalogue import ANODE_FILTER_TEXT, Capability, DeviceState, ErrorCode
from protocols.wire.messages import CATALOGUE, GetDataToken, GetInfo, GetLimits, GetStatus, Hello, Message
from protocols.wire.signing import LinkKey

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
    limits_source: str = "device"  # "device" (DEVICE_INFO + LIMITS_INFO) or "defaults" (no GET_LIMITS)
    signed: bool = False  # the link is signed (SPEC 2.6)
    data_token: str | None = None  # the data-channel token of this session (tcp:// and tls:// channels)

    @property
    def interrupted_plan(self) -> bool:
        """True if the device reports a plan cut short by a lost session."""
        return self.resumed_plan_id != 0

    def summary(self) -> dict[str, object]:
        return {
            "protocol_version": self.protocol_version, "firmware_version": self.firmware_version,
            "serial_number": self.serial_number, "state_at_connect": self.state_at_connect,
            "resumed_plan_id": self.resumed_plan_id, "resumed_exposures_done": self.resumed_exposures_done,
            "data_channel": self.data_channel, "limits_source": self.limits_source, "signed_link": self.signed,
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


def limits_from_info(info: Message, limits_info: Message | None = None) -> DeviceLimits:
    """DEVICE_INFO (+ LIMITS_INFO if the device has it) -> the limits they state.

    Fields neither message carries keep the :class:`DeviceLimits` defaults.
    Raises :class:`DeviceLimitsInvalid` when the stated values break the
    model's bounds or order (e.g. a highest tube current below the lowest).
    """
    force = info.force_limit_dn * 0.1
    values: dict[str, object] = dict(
        arc_min_deg=info.arc_min_mdeg * 1e-3, arc_max_deg=info.arc_max_mdeg * 1e-3,
        arc_max_speed_deg_s=info.arc_max_speed_mdeg_s * 1e-3,
        compression_force_max_n=force, compression_initial_drive_max_n=min(force, 200.0),
        kvp_min_kv=info.kv_min_ckv * 0.01, kvp_max_kv=info.kv_max_ckv * 0.01,
        mas_max_mas=info.mas_max_nas * 1e-6,
    )
    if limits_info is not None:
        li = limits_info
        spots = tuple(s * 1e-3 for s in (li.small_focus_um, li.large_focus_um) if s)
        values.update(
            tube_current_min_ma=li.ma_min_dma * 0.1, tube_current_max_ma=li.ma_max_dma * 0.1,
            tube_max_power_w=float(li.power_max_w), mas_min_mas=li.mas_min_nas * 1e-6,
            exposure_max_ms=float(li.exposure_max_ms), backup_timer_ms=float(li.backup_timer_ms),
            anode_heat_capacity_j=float(li.anode_heat_capacity_j), anode_cooling_w=float(li.anode_cooling_w),
            arc_acceleration_deg_s2=li.arc_acceleration_mdeg_s2 * 1e-3, arc_jerk_deg_s3=li.arc_jerk_mdeg_s3 * 1e-3,
            detector_readout_ms=float(li.detector_readout_ms),
            detector_min_frame_interval_ms=float(li.detector_min_frame_interval_ms),
            arc_settle_ms=float(li.arc_settle_ms), max_projections=int(li.max_projections),
            compression_thickness_min_mm=li.compression_thickness_min_um * 1e-3,
            compression_thickness_max_mm=li.compression_thickness_max_um * 1e-3,
            anode_filters=tuple(text for code, text in sorted(ANODE_FILTER_TEXT.items()) if li.anode_filter_mask >> code & 1),
            focal_spots_mm=spots,
        )
    try:
        return DeviceLimits(**values)  # type: ignore[arg-type]
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])} = {e.get('input')!r}: {e['msg']}" if e["loc"]
                             else e["msg"] for e in exc.errors())
        raise DeviceLimitsInvalid(f"the device reports limits the host cannot use: {problems}") from None


def limits_plan() -> Plan:
    """GET_LIMITS; returns LIMITS_INFO, or None when the device does not have the command."""
    try:
        return (yield Command(GetLimits(), retries=IDEMPOTENT_RETRIES))
    except CommandRefused as exc:
        if exc.error_code in (int(ErrorCode.UNKNOWN_MESSAGE), int(ErrorCode.UNSUPPORTED)):
            return None
        raise


def data_token_plan(link_key: LinkKey | None) -> Plan:
    """GET_DATA_TOKEN; returns the session's data-channel token (SPEC 2.6), or None if the device has none."""
    try:
        reply = yield Command(GetDataToken(), retries=IDEMPOTENT_RETRIES)
    except CommandRefused as exc:
        if exc.error_code in (int(ErrorCode.UNKNOWN_MESSAGE), int(ErrorCode.UNSUPPORTED)):
            return None
        raise
    nonce = bytes.fromhex(reply.nonce)
    return link_key.data_token(nonce) if link_key is not None else nonce.hex()


def hello_plan(session_id: int, heartbeat_period_ms: int, watchdog_timeout_ms: int, new_session: bool = False,
               signed: bool = False) -> Plan:
    """HELLO and version check; returns HELLO_REPLY. Raises :class:`VersionMismatch` naming both versions.

    ``signed``: the link is signed; HELLO announces SIGNED_LINK (SPEC 2.6)."""
    caps = HOST_CAPABILITIES | (int(Capability.SIGNED_LINK) if signed else 0)  # type: ignore[attr-defined]
    hello = Hello(
        protocol_version=HOST_PROTOCOL_VERSION, min_version=HOST_MIN_VERSION, host_capabilities=caps,
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


def connect_plan(session_id: int, heartbeat_period_ms: int = 100, watchdog_timeout_ms: int = 500,
                 new_session: bool = False, link_key: LinkKey | None = None) -> Plan:
    """HELLO, GET_INFO, GET_LIMITS (optional), GET_DATA_TOKEN (tcp:// and tls:// data channels), GET_STATUS;
    returns :class:`SessionInfo`. ``link_key``: the link is signed with it (the adapter's signer holds it too)."""
    reply = yield from hello_plan(session_id, heartbeat_period_ms, watchdog_timeout_ms, new_session,
                                  signed=link_key is not None)
    info = yield Command(GetInfo(), retries=IDEMPOTENT_RETRIES)
    limits_info = yield from limits_plan()
    token = None
    if info.data_channel.startswith(("tcp://", "tls://")):
        token = yield from data_token_plan(link_key)
    status = yield Command(GetStatus(), retries=IDEMPOTENT_RETRIES)
    return SessionInfo(
        protocol_version=reply.protocol_version, firmware_version=firmware_text(reply.firmware_version),
        serial_number=reply.serial_number, device_capabilities=reply.device_capabilities,
        watchdog_timeout_ms=reply.watchdog_timeout_ms, state_at_connect=DeviceState(reply.state).name,
        resumed_plan_id=reply.resumed_plan_id, resumed_exposures_done=reply.resumed_exposures_done,
        geometry=geometry_from_info(info), limits=limits_from_info(info, limits_info), data_channel=info.data_channel,
        info=info, status=status, limits_source="device" if limits_info is not None else "defaults",
        signed=link_key is not None, data_token=token,
    )
