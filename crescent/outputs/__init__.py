"""Output writers of an acquisition: DICOM, NumPy/TIFF arrays, the HTML report and its figures.

Public API (everything the ``crescent acquire`` command needs)::

    StudyInfo                                  # who / when / which view / which device; UID seed
    write_projection_dicom(path, image, exposure, header, study, *, entrance_dose_mgy, mgd_mgy,
                           instance_number, half_value_layer_mm_al=None) -> Path
    write_tomo_dicom(path, volume, grid, header, study, *, mgd_mgy, half_value_layer_mm_al,
                     relative_exposures=None) -> Path
    write_numpy_outputs(out_dir, *, images, exposures, pitch_mm, volume, z_mm=None, voxel_mm=None,
                        x0_mm=0.0, y0_mm=0.0) -> list[Path]
    write_report(out_dir, ReportData(...)) -> Path          # report.html + PNG figures
    ReportData, Timeline, SliceStack, Lesion, MtfCurve, DoseRow   # what the report shows

All geometry is in the gantry frame of :mod:`protocols.geometry`. The writers
contain no physics: doses, HVL and MTF come from the caller.
"""

from crescent.outputs.arrays import write_numpy_outputs
from crescent.outputs.dicom import write_projection_dicom
from crescent.outputs.dicom_tomo import write_tomo_dicom
from crescent.outputs.report import write_report
from crescent.outputs.report_data import DoseRow, Lesion, MtfCurve, ReportData, SliceStack, Timeline
from crescent.outputs.study import StudyInfo

__all__ = [
    "DoseRow", "Lesion", "MtfCurve", "ReportData", "SliceStack", "StudyInfo", "Timeline",
    "write_numpy_outputs", "write_projection_dicom", "write_report", "write_tomo_dicom",
]
