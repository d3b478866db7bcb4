"""What only a simulated gantry gives ``crescent acquire``: flat fields, phantom truth, the detector's QA edge.

A rig run never imports this module (nor :mod:`simulator`): on a rig there is no flat-field
calibration or phantom truth, and the dose comes from :mod:`physics` alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from crescent.acquire.analysis import LesionTruth
from protocols.records import AcquisitionHeader, ExposureRecord
from reconstruction.analysis.mtf import slanted_edge_mtf
from simulator.imaging.imager import ExposureImager, make_phantom


def flat_fields(header: AcquisitionHeader, exposures: list[ExposureRecord], detector_model: Any | None = None,
                grid: Any | None = None) -> np.ndarray:
    """Noise-free open-field images for each exposure: the flat-field calibration of the simulated detector.

    ``grid``: the anti-scatter grid the exam ran with (:class:`simulator.imaging.scatter.AntiScatterGrid`),
    which is in the calibration field too. An open field has no scatter.
    """
    g = header.geometry
    imager = ExposureImager(make_phantom("uniform", header.compressed_thickness_mm, g, seed=0), g,
                            detector_model, seed=0, noise=False, focal_spot=False, motion_substeps=1, grid=grid)
    flats = None
    for k, exposure in enumerate(exposures):  # filled in place: no list of frames and no stacked copy
        image = imager.image(exposure)
        if flats is None:
            flats = np.empty((len(exposures),) + image.shape, dtype=np.float32)
        flats[k] = image
        del image
    return flats


def detector_mtf(header: AcquisitionHeader, kvp: float, anode_filter: str) -> tuple[np.ndarray, np.ndarray]:
    """Presampled MTF of the simulated detector at the exam's pitch, from a slanted-edge QA image (0 deg)."""
    g = header.geometry
    det = g.detector
    size = min(200, int(40.0 / det.pitch_mm))  # inside the 50 mm long plate of the edge phantom
    small = det.model_copy(update={"rows": size, "cols": size, "offset_x_mm": 0.0, "offset_y_mm": 5.0})
    geo = g.model_copy(update={"detector": small})
    imager = ExposureImager(make_phantom("edge", 1.0, geo, seed=0), geo, seed=0, noise=False, focal_spot=False)
    exposure = ExposureRecord(index=0, frame_id=0, planned_angle_deg=0.0, angle_start_deg=0.0, angle_end_deg=0.0,
                              kvp=kvp, mas=50.0, anode_filter=anode_filter, window_start_s=0.0, window_end_s=0.1)
    image = imager.image(exposure).astype(np.float64)
    return slanted_edge_mtf(image, det.pitch_mm)


def phantom_truth(data_dir: Path | None, cfg: Any, header: AcquisitionHeader) -> tuple[list[LesionTruth], Any]:
    """Lesion truth and the phantom object (rebuilt with the gantry's own parameters)."""
    p = cfg.phantom
    phantom = make_phantom(p.name, round(header.compressed_thickness_mm, 2), header.geometry, seed=p.seed,
                           voxel_mm=p.voxel_mm, **p.options)
    truth_file = data_dir / "phantom-truth.json" if data_dir is not None else None
    if truth_file is not None and truth_file.exists():
        raw = json.loads(truth_file.read_text())
        lesions = [LesionTruth(l["kind"], *l["centre_mm"], l["diameter_mm"]) for l in raw["lesions"]]
    else:
        lesions = [LesionTruth(l.kind, *l.centre_mm, l.diameter_mm) for l in phantom.lesions]
    return lesions, phantom
