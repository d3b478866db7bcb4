"""`crescent acquire` and scatter: on by default in the simulated gantry it starts, and the grid option.

The options reach the gantry config the command writes (and the simulated gantry reads); an end-to-end
virtual-time 2D exam shows the default's images carry scatter (the AEC scout sees it and the exam
needs fewer mAs than with scatter switched off).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from crescent.acquire.options import AcquireOptions
from crescent.acquire.pipeline import _gantry_config, run_acquire


def test_acquire_default_gantry_config_has_scatter_on_and_no_grid() -> None:
    det = _gantry_config(AcquireOptions()).detector
    assert det.scatter is True and det.grid is False and det.anti_scatter_grid() is None


def test_acquire_grid_options_reach_the_gantry_config() -> None:
    det = _gantry_config(AcquireOptions(grid=True, grid_scatter_transmission=0.2)).detector
    grid = det.anti_scatter_grid()
    assert (grid.ratio, grid.primary_transmission, grid.scatter_transmission) == (5.0, 0.73, 0.2)
    assert _gantry_config(AcquireOptions(scatter=False)).detector.scatter is False


@pytest.mark.parametrize("bad, field", [({"grid_primary_transmission": 0.3}, "grid_primary_transmission"),
                                        ({"grid_scatter_transmission": 1.5}, "grid_scatter_transmission"),
                                        ({"grid_scatter_transmission": 0.8}, "grid_scatter_transmission")])
def test_acquire_rejects_grid_values_out_of_bounds(bad: dict, field: str) -> None:
    with pytest.raises(ValidationError, match=field):
        AcquireOptions(grid=True, **bad)


def test_acquire_cli_has_the_scatter_and_grid_options() -> None:
    import argparse

    from crescent.acquire.command import register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    args = parser.parse_args(["acquire", "--no-scatter", "--grid", "--grid-primary-transmission", "0.8",
                              "--grid-scatter-transmission", "0.15"])
    assert (args.scatter, args.grid, args.grid_primary_transmission, args.grid_scatter_transmission) == (
        False, True, 0.8, 0.15)
    assert parser.parse_args(["acquire"]).scatter is None  # the gantry config's default: on


def test_acquire_flat_field_carries_the_grid(tmp_path: Path) -> None:
    from crescent.acquire import simulated as sim
    from simulator.imaging.scatter import AntiScatterGrid

    acq = run_acquire(AcquireOptions(out=tmp_path / "g", virtual_time=True, exam="ffdm-cc", seed=2, grid=True))
    exposures = [p.exposure for p in acq.header.projections]
    a = sim.flat_fields(acq.header, exposures[:1])[0] - 100.0
    b = sim.flat_fields(acq.header, exposures[:1], grid=AntiScatterGrid())[0] - 100.0
    np.testing.assert_allclose(b.mean() / a.mean(), 0.73, rtol=2e-3)
    cfg = (tmp_path / "g" / "gantry" / "gantry-config.yaml").read_text()
    assert "grid: true" in cfg


def test_acquire_default_exam_images_carry_scatter(tmp_path: Path) -> None:
    on = run_acquire(AcquireOptions(out=tmp_path / "on", virtual_time=True, exam="ffdm-cc", seed=3))
    off = run_acquire(AcquireOptions(out=tmp_path / "off", virtual_time=True, exam="ffdm-cc", seed=3, scatter=False))
    assert "scatter: true" in (tmp_path / "on" / "gantry" / "gantry-config.yaml").read_text()
    mas_on = on.header.projections[0].exposure.mas
    mas_off = off.header.projections[0].exposure.mas
    # the AEC scout reads primary + scatter: the default exam needs clearly fewer mAs
    print("ffdm-cc mAs with / without scatter:", mas_on, mas_off)
    assert mas_on < 0.9 * mas_off
    summary = json.loads((tmp_path / "on" / "summary.json").read_text())
    assert summary["status"] == "complete"
