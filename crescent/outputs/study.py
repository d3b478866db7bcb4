"""Study, patient and equipment description shared by every output file, and deterministic UIDs.

:class:`StudyInfo` is the one boundary model the acquire command fills (or
leaves at its defaults) to say *who*, *when* and *with what* an exam was
acquired. Nothing here knows about pixels.

UIDs are derived with :func:`pydicom.uid.generate_uid` from the study's
``uid_seed`` plus a role string, so the same seed reproduces the same UIDs
bit for bit (DESIGN.md property 5) while different seeds never collide.

Example
-------
>>> s = StudyInfo(uid_seed="seed-7")
>>> s.uid("study") == StudyInfo(uid_seed="seed-7").uid("study")
True
>>> s.uid("study") != StudyInfo(uid_seed="seed-8").uid("study")
True
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydicom.uid import generate_uid

#: Default acquisition time of a simulated exam: fixed, so outputs are reproducible.
DEFAULT_STUDY_DATETIME = datetime(2026, 1, 5, 9, 30, 0)


class StudyInfo(BaseModel):
    """Patient, study, view and equipment identification of one exam.

    ``gantry_rotation_deg`` is the rotation of the whole C-arm about the
    patient's antero-posterior axis that sets the view (0 for CC, about 45
    for MLO); the tube's tomosynthesis arc angle is added to it for the DICOM
    Positioner Primary Angle. ``study_datetime`` is the device clock's zero:
    an exposure window starting at ``t`` s is stamped ``study_datetime + t``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    uid_seed: str = Field("crescent", min_length=1, description="entropy source of every UID")
    patient_name: str = "Phantom^Breast"
    patient_id: str = "CRESCENT-PHANTOM"
    patient_birth_date: str = Field("", pattern=r"^(\d{8})?$", description="YYYYMMDD or empty")
    patient_sex: Literal["F", "M", "O", ""] = "F"
    study_id: str = Field("1", max_length=16)
    accession_number: str = Field("", max_length=16)
    study_description: str = "Simulated digital breast tomosynthesis"
    referring_physician_name: str = ""
    operator_name: str = "Operator^Crescent"
    study_datetime: datetime = DEFAULT_STUDY_DATETIME
    laterality: Literal["L", "R"] = "R"
    view: Literal["CC", "MLO"] = "CC"
    gantry_rotation_deg: float = Field(0.0, ge=-180.0, le=180.0, description="C-arm rotation, degrees")
    projection_series_number: int = Field(1, ge=1)
    tomo_series_number: int = Field(2, ge=1)
    institution_name: str = "Crescent simulation"
    station_name: str = Field("CRESCENT-SIM", max_length=16)
    manufacturer: str = "Crescent"
    model_name: str = "Crescent DBT simulator"
    device_serial_number: str = "SIM-0001"
    detector_id: str = Field("SIM-ASE-50UM", max_length=16)
    software_versions: str = "crescent 0.1.0"
    paddle_description: str = Field("FLAT 24x30 cm", max_length=64, description="compression paddle in use")
    detector_temperature_c: float = Field(25.0, description="detector temperature, degrees Celsius")
    content_qualification: Literal["PRODUCT", "RESEARCH", "SERVICE"] = "RESEARCH"
    study_instance_uid: str = Field("", pattern=r"^([0-9.]{1,64})?$",
                                    description="the study's UID when a worklist assigned one; empty = derived")

    def uid(self, *role: object) -> str:
        """A UID for ``role`` (e.g. ``("sop", "projection", 3)``), deterministic in ``uid_seed``."""
        if role == ("study",) and self.study_instance_uid:
            return self.study_instance_uid
        return str(generate_uid(entropy_srcs=[self.uid_seed, *map(str, role)]))

    def at(self, seconds: float) -> datetime:
        """Wall time of device-clock time ``seconds`` (s after ``study_datetime``)."""
        return self.study_datetime + timedelta(seconds=float(seconds))
