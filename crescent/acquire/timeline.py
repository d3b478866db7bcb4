"""The machine timeline of an exam, read back from its serial traffic capture.

TELEMETRY frames give arc angle and velocity, tube voltage and current and
compression force on the device clock; EXPOSURE_DONE frames give the X-ray
windows. Reading them from the capture (not from the simulator) means the same
figure comes out of a run against a real rig.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from crescent.outputs import Timeline
from hil.capture import DEVICE_TO_HOST, Packet
from hil.decode import decode_packets


def timeline_from_packets(packets: Iterable[Packet]) -> Timeline:
    """Timeline (device clock, s) of the telemetry and exposure windows in a capture."""
    t, angle, speed, kv, ma, force = [], [], [], [], [], []
    windows: dict[tuple[int, int], tuple[float, float]] = {}
    offsets: list[float] = []  # host capture time - device time of each telemetry frame, s
    for item in decode_packets(packets):
        if item.direction != DEVICE_TO_HOST or item.message is None:
            continue
        m = item.message
        if m.NAME == "TELEMETRY":
            t.append(m.device_time_us * 1e-6)
            offsets.append(item.t_s - m.device_time_us * 1e-6)
            angle.append(m.arc_mdeg * 1e-3)
            speed.append(m.arc_speed_mdeg_s * 1e-3)
            kv.append(m.kv_ckv * 1e-2)
            ma.append(m.ma_dma * 0.1)
            force.append(m.force_dn * 0.1)
        elif m.NAME == "EXPOSURE_DONE":
            # a retransmitted event appears twice on the line; key by (plan, index)
            windows[(m.plan_id, m.index)] = (m.window_start_us * 1e-6, m.window_end_us * 1e-6)
    order = np.argsort(np.asarray(t, dtype=np.float64), kind="stable")

    def arr(values: list[float]) -> np.ndarray:
        return np.asarray(values, dtype=np.float64)[order]

    return Timeline(t_s=arr(t), angle_deg=arr(angle), velocity_deg_s=arr(speed), kvp=arr(kv),
                    tube_current_ma=arr(ma), force_n=arr(force),
                    exposure_windows_s=sorted(windows.values()),
                    device_clock_epoch_s=min(offsets) if offsets else None)
