"""Dose of one exposure: incident air kerma at the breast's reference point and mean glandular dose.

Both sides use this: the simulated gantry's imager books the dose of each exposure it renders, and
the application computes the dose of an exam made on a real rig from the device's exposure records
(actual kV, mAs, anode/filter and arc angles) and the compressed thickness it read back, without the
simulator. Frame: the gantry frame of :mod:`protocols.geometry` (mm, degrees).

Reference point (EU protocol): 60 mm from the chest wall, laterally centred, on the breast's upper
surface at ``support_height_mm + thickness_mm``; the distance is taken from the focal spot at the
exposure window's mean angle. MGD is Dance's ``K g c s t`` (:func:`physics.dose.mean_glandular_dose_mgy`)
with the tube arc angle for the DBT t-factor. K and the HVL are those of the beam *through the
compression paddle* (:class:`physics.beam_path.BeamPath`), as Dance's tables and the EU protocol
define them.

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

from physics.beam_path import DEFAULT_BEAM_PATH, BeamPath
from physics.dose import mean_glandular_dose_mgy
from physics.spectra import air_kerma_mgy_per_mas
from protocols.geometry import AcquisitionGeometry
from protocols.records import ExposureRecord

#: Dosimetry reference point: 60 mm from the chest wall, laterally centred (EU protocol), mm.
DOSE_REFERENCE_Y_MM = 60.0


def incident_air_kerma_mgy(geometry: AcquisitionGeometry, exposure: ExposureRecord, top_z_mm: float, *,
                           beam_path: BeamPath = DEFAULT_BEAM_PATH) -> float:
    """Incident air kerma (no backscatter, paddle in place) at ``(0, 60 mm, top_z_mm)`` for one exposure, mGy."""
    src = geometry.source_position(exposure.mean_angle_deg)
    r = math.dist((0.0, DOSE_REFERENCE_Y_MM, top_z_mm), src)
    return air_kerma_mgy_per_mas(beam_path.incident_spectrum(exposure.anode_filter, exposure.kvp), r) * exposure.mas


def exposure_hvl_mm_al(exposure: ExposureRecord, *, beam_path: BeamPath = DEFAULT_BEAM_PATH) -> float:
    """First HVL (mm Al) of the exposure's beam with the compression paddle in place."""
    return beam_path.hvl_mm_al(exposure.anode_filter, exposure.kvp)


def exposure_mgd_mgy(geometry: AcquisitionGeometry, exposure: ExposureRecord, *, thickness_mm: float,
                     glandularity: float, beam_path: BeamPath = DEFAULT_BEAM_PATH) -> float:
    """Mean glandular dose of one exposure to a breast of ``thickness_mm`` and ``glandularity`` (by weight), mGy.

    g and c are looked up with the HVL measured with the paddle in place (Dance's convention).
    """
    kerma = incident_air_kerma_mgy(geometry, exposure, geometry.support_height_mm + thickness_mm,
                                   beam_path=beam_path)
    hvl = exposure_hvl_mm_al(exposure, beam_path=beam_path)
    return mean_glandular_dose_mgy(kerma, thickness_mm, hvl, exposure.anode_filter, glandularity=glandularity,
                                   angle_deg=exposure.mean_angle_deg)
