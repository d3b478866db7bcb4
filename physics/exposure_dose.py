"""Dose of one exposure: incident air kerma at the breast's reference point and mean glandular dose.

Both sides use this: the simulated gantry's imager books the dose of each exposure it renders, and
the application computes the dose of an exam made on a real rig from the device's exposure records
(actual kV, mAs, anode/filter and arc angles) and the compressed thickness it read back, without the
simulator. Frame: the gantry frame of :mod:`protocols.geometry` (mm, degrees).

Reference point (EU protocol): 60 mm from the chest wall, laterally centred, on the breast's upper
surface at ``support_height_mm + thickness_mm``; the distance is taken from the focal spot at the
exposure window's mean angle. MGD is Dance's ``K g c s t`` (:func:`physics.dose.mean_glandular_dose_mgy`)
with the tube arc angle for the DBT t-factor.

Example
-------
>>> from protocols.geometry import AcquisitionGeometry
>>> from protocols.records import ExposureRecord
>>> g = AcquisitionGeometry()
>>> e = ExposureRecord(index=0, frame_id=1, planned_angle_deg=0, angle_start_deg=0, angle_end_deg=0,
...                    kvp=29, mas=50, anode_filter="W/Rh", window_start_s=0, window_end_s=0.1)
>>> 0.5 < exposure_mgd_mgy(g, e, thickness_mm=45.0, glandularity=0.5) < 3.0
True
"""

from __future__ import annotations

import math

from physics.dose import mean_glandular_dose_mgy
from physics.spectra import air_kerma_mgy_per_mas, beam_spectrum, half_value_layer_mm_al
from protocols.geometry import AcquisitionGeometry
from protocols.records import ExposureRecord

#: Dosimetry reference point: 60 mm from the chest wall, laterally centred (EU protocol), mm.
DOSE_REFERENCE_Y_MM = 60.0


def incident_air_kerma_mgy(geometry: AcquisitionGeometry, exposure: ExposureRecord, top_z_mm: float) -> float:
    """Incident air kerma (no backscatter) at ``(0, 60 mm, top_z_mm)`` for one exposure, mGy."""
    src = geometry.source_position(exposure.mean_angle_deg)
    r = math.dist((0.0, DOSE_REFERENCE_Y_MM, top_z_mm), src)
    return air_kerma_mgy_per_mas(beam_spectrum(exposure.anode_filter, exposure.kvp), r) * exposure.mas


def exposure_mgd_mgy(geometry: AcquisitionGeometry, exposure: ExposureRecord, *, thickness_mm: float,
                     glandularity: float) -> float:
    """Mean glandular dose of one exposure to a breast of ``thickness_mm`` and ``glandularity`` (by weight), mGy."""
    kerma = incident_air_kerma_mgy(geometry, exposure, geometry.support_height_mm + thickness_mm)
    hvl = half_value_layer_mm_al(beam_spectrum(exposure.anode_filter, exposure.kvp))
    return mean_glandular_dose_mgy(kerma, thickness_mm, hvl, exposure.anode_filter, glandularity=glandularity,
                                   angle_deg=exposure.mean_angle_deg)
