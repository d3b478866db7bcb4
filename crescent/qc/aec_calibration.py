"""Factory calibration of the AEC: detector signal per mAs through PMMA, for every anode/filter, kV and thickness.

An AEC scales the scout's signal to the exam's technique. The scaling is the ratio of the detector signal
per mAs of the two techniques through the same object, which a manufacturer measures on the system with
PMMA slabs (the phantoms of the EUREF AEC tests). This module makes that measurement on the simulated
gantry's physics (noiseless :class:`~simulator.imaging.imager.ExposureImager`, the default gantry's beam
path: tube, paddle, support, detector cover; its detector model; its scatter setting) and writes
``firmware_host/data/aec_calibration.json``, which the host's AEC (:mod:`firmware_host.aec`) reads. The
host never imports the simulator: on a rig, the same file would hold the rig's measured signals.

Run ``python -m crescent.qc.aec_calibration`` (about 3 minutes on one core) after changing the beam
path, the detector model or the scatter model. ``tests/crescent/test_aec_calibration.py`` re-measures
entries of the shipped table, so it cannot drift from the physics unnoticed.

Grid: PMMA 10-110 mm in 10 mm steps, 22-49 kV in 1 kV steps, the anode/filter pairs of
:data:`physics.spectra.FILTERS`; the value is ln(signal in ADU above the dark offset per mAs) in the AEC
region (30 mm from the chest wall, laterally centred). Units: mm, kV, mAs, ADU.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

THICKNESS_MM = [float(t) for t in range(10, 111, 10)]
KVP = [float(k) for k in range(22, 50)]
#: mAs of the calibration exposure (large, so the integer ADU read-out does not quantise the signal).
CAL_MAS = 100.0


def _geometry() -> Any:
    from protocols.geometry import AcquisitionGeometry

    g = AcquisitionGeometry()
    # a 4 x 4 mm patch (0.4 mm pixels) centred on the AEC region: 30 mm from the chest wall, x = 0
    det = g.detector.model_copy(update={"rows": 10, "cols": 10, "binning": 8, "offset_x_mm": -2.0,
                                        "offset_y_mm": 28.0})
    return g.model_copy(update={"detector": det})


def signal_per_mas(anode_filter: str, kvp: float, pmma_mm: float, *, gantry_config: str | None = None) -> float:
    """Noiseless detector signal above the dark offset, ADU per mAs, through ``pmma_mm`` of PMMA (0 deg)."""
    return _imager(pmma_mm, gantry_config)(anode_filter, kvp)


def _imager(pmma_mm: float, gantry_config: str | None) -> Any:
    import numpy as np

    from protocols.records import ExposureRecord
    from simulator.gantry import load_config
    from simulator.imaging.detector import DetectorModel
    from simulator.imaging.imager import ExposureImager, make_phantom

    cfg = load_config(gantry_config)
    g = _geometry()
    dm = DetectorModel()
    im = ExposureImager(make_phantom("pmma", pmma_mm, g, seed=0), g, dm, seed=0, noise=False, focal_spot=False,
                        motion_substeps=1, scatter=cfg.detector.scatter, beam_path=cfg.detector.beam_path.to_beam_path())

    def measure(anode_filter: str, kvp: float) -> float:
        e = ExposureRecord(index=0, frame_id=1, planned_angle_deg=0.0, angle_start_deg=0.0, angle_end_deg=0.0,
                           kvp=kvp, mas=CAL_MAS, anode_filter=anode_filter, window_start_s=0.0, window_end_s=0.06)
        img = im.image(e).astype(np.float64)
        return float(img.mean() - dm.offset_adu) / CAL_MAS

    return measure


def build_table(gantry_config: str | None = None) -> dict[str, Any]:
    """The calibration table (module docstring) as a JSON-ready dict."""
    from physics.spectra import FILTERS

    t0 = time.perf_counter()
    pairs = sorted(FILTERS)
    table: dict[str, list[list[float]]] = {p: [] for p in pairs}
    for t in THICKNESS_MM:
        measure = _imager(t, gantry_config)
        for p in pairs:
            table[p].append([round(math.log(max(measure(p, k), 1e-12)), 5) for k in KVP])
    return {"description": "ln(detector signal above dark, ADU per mAs) through PMMA, AEC region, 0 deg; "
                           "rows = thickness_mm, columns = kvp (crescent.qc.aec_calibration)",
            "gantry_config": gantry_config or "default", "thickness_mm": THICKNESS_MM, "kvp": KVP,
            "ln_signal_per_mas": table, "seconds": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    import argparse

    from firmware_host.aec import CALIBRATION_PATH

    p = argparse.ArgumentParser(
        prog="python -m crescent.qc.aec_calibration",
        description="Measure the AEC calibration table (detector signal per mAs through PMMA 10-110 mm, every "
        "anode/filter and kV) on the simulated gantry and write it (default: the file the host's AEC reads, "
        f"{CALIBRATION_PATH.name}). Takes about 5 minutes on 2 cores.")
    p.add_argument("--out", default=str(CALIBRATION_PATH), help="where to write the table (default: %(default)s)")
    p.add_argument("--gantry-config", default=None, help="simulated gantry config name or YAML (default: the default)")
    args = p.parse_args(argv)
    data = build_table(args.gantry_config)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n")
    print(f"wrote {out} in {data['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
