"""Host and device decode EXPOSURE_DONE to the same :class:`ExposureRecord`, float for float.

The simulated gantry renders each frame from the record it decodes; a host that decodes the same event to
other floats (``2965 * 0.01`` is 29.650000000000002, ``2965 / 100`` is 29.65) renders a spectrum one ulp
away, and the frame's quantum noise is another draw (up to ~20 ADU on every pixel): the product's promise
that a host can regenerate a frame bit for bit from its record needs one decoding.
"""

from __future__ import annotations

from types import SimpleNamespace

from firmware_host.exam_plan import exposure_record as host_record
from protocols.wire import messages as M
from protocols.wire.catalogue import ExposureStatus
from simulator.gantry.plans import exposure_record as device_record


def _done(i: int) -> M.Message:
    return M.ExposureDone(plan_id=7, index=i % 25, frame_id=i + 1, status=int(ExposureStatus.OK),
                          planned_mdeg=-25000 + 17 * i, start_mdeg=-25107 + 17 * i, end_mdeg=-24893 + 17 * i,
                          kv_ckv=2000 + i, mas_nas=500_000 + 99_991 * i, window_start_us=1_000_003 * i,
                          window_end_us=1_000_003 * i + 60_061)


def test_host_and_device_decode_every_kv_code_alike():
    planned = SimpleNamespace(anode_filter="W/Rh", focal_spot_mm=0.3)
    for i in range(0, 2901):  # every kV code 20.00-49.00 kV, angles and mAs across their ranges
        done = _done(i)
        dev = device_record(done, "W/Rh", 0.3)
        host = host_record(done, planned, is_scout=False)  # type: ignore[arg-type]
        assert host == dev, (i, host, dev)
        assert host.kvp == float(f"{done.kv_ckv / 100:.2f}")  # the nearest double to the decimal value
