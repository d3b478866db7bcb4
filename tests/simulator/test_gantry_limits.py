"""GET_LIMITS on the simulated gantry: every limit on the wire, rounded to the safe side."""

from __future__ import annotations

import simpy

from protocols.wire import messages as M
from simulator.gantry import load_config, start_virtual_gantry
from simulator.gantry.client import LinkClient, open_session


def limits_info(tmp_path, **limits) -> M.Message:
    cfg = load_config().with_overrides(limits=limits, phantom={"name": "uniform"})
    env = simpy.Environment()
    gantry, ep = start_virtual_gantry(env, cfg, seed=1, data_dir=tmp_path, event_log=None)
    client = LinkClient(env, ep)
    out = {}

    def script():
        yield from open_session(client)
        out["li"] = yield client.request(M.GetLimits())

    env.run(until=env.process(script()))
    return out["li"]


def test_limits_info_carries_the_configured_limits(tmp_path) -> None:
    li = limits_info(tmp_path, tube_current_min_ma=12.0, tube_current_max_ma=150.0, tube_max_power_w=4500.0,
                     anode_filters=["W/Rh", "Mo/Mo"], focal_spots_mm=[0.3, 0.1], max_projections=25)
    assert li.NAME == "LIMITS_INFO"
    assert (li.ma_min_dma, li.ma_max_dma, li.power_max_w, li.max_projections) == (120, 1500, 4500, 25)
    # bit = AnodeFilter value: W_RH 0, MO_MO 3
    assert li.anode_filter_mask == (1 << 0) | (1 << 3)
    assert (li.small_focus_um, li.large_focus_um) == (100, 300)


def test_maximums_round_down_and_minimums_up(tmp_path) -> None:
    li = limits_info(tmp_path, tube_current_min_ma=10.04, tube_current_max_ma=120.06, tube_max_power_w=3999.6,
                     detector_min_frame_interval_ms=240.4, arc_settle_ms=99.2)
    assert (li.ma_min_dma, li.ma_max_dma, li.power_max_w) == (101, 1200, 3999)
    assert (li.detector_min_frame_interval_ms, li.arc_settle_ms) == (241, 100)


def test_one_focal_spot_is_reported_as_large_only(tmp_path) -> None:
    li = limits_info(tmp_path, focal_spots_mm=[0.3])
    assert (li.small_focus_um, li.large_focus_um) == (0, 300)
