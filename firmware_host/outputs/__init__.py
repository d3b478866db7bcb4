"""Output writers of an acquisition: DICOM, NumPy/TIFF arrays, the HTML report and its figures.

Public API (everything the ``crescent acquire`` command needs)::

    StudyInfo                                  # who / when / which view / which device; UID seed
    write_projection_dicom(path, image, exposure, header, study, *, entrance_dose_mgy, mgd_mgy,
                           instance_number, half_value_layer_mm_al=None) -> Path
    write_tomo_dicom(path, volume, grid, header, study, *, mgd_mgy, half_value_layer_mm_al,
                     relative_exposures=None) -> Path

All geometry is in the gantry frame of :mod:`protocols.geometry`. The writers
contain no physics: doses, HVL and MTF come from the caller.
"""

from firmware_host.outputs.dicom import write_projection_dicom
from firmware_host.outputs.dicom_tomo import write_tomo_dicom
from firmware_host.outputs.study import StudyInfo

__all__ = ["StudyInfo", "write_projection_dicom", "write_tomo_dicom"]
