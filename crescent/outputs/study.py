"""Study, patient and equipment description shared by every output file, and deterministic UIDs.

:class:`StudyInfo` is the one boundary model the acquire command fills (or
leaves at its defaults) to say *who*, *when* and *with what* an exam was
acquired. Nothing here knows about pixels.

UIDs are derived with :func:`pydicom.uid.generate_uid` from the study's
``uid_seed`` plus a role string. By default ``uid_seed`` is 128 fresh random
bits (:func:`secrets.token_hex`), so every acquisition gets new Study, Series
and SOP Instance UIDs (a PACS never drops a second run as a duplicate) while the
files of one run still reference each other consistently. Only a
bit-for-bit reproducible run (``crescent acquire --virtual-time``) passes a
seed-derived ``uid_seed`` and the fixed :data:`DEFAULT_STUDY_DATETIME`, and
says so in ``reproducibility_note`` (written to Image Comments and summary.json).

Example
-------
>>> s = StudyInfo(uid_seed="seed-7")
>>> s.uid("study") == StudyInfo(uid_seed="seed-7").uid("study")
True
>>> s.uid("study") != StudyInfo(uid_seed="seed-8").uid("study")
True
>>> StudyInfo().uid("study") != StudyInfo().uid("study")  # fresh by default
True
"""

from __future__ import annotations

import calendar
import secrets
from datetime import datetime, timedelta
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydicom.uid import generate_uid

#: Study date/time of a bit-for-bit reproducible (virtual-time) run: fixed, so outputs are reproducible.
#: Every other run stamps the real date and time.
DEFAULT_STUDY_DATETIME = datetime(2026, 1, 5, 9, 30, 0)


#: Epoch (s) of a virtual-time run's clock zero in its pcap: the fixed study date read as UTC.
VIRTUAL_EPOCH_S = float(calendar.timegm(DEFAULT_STUDY_DATETIME.timetuple()))


def fresh_uid_seed() -> str:
    """128 random bits as hex: the UID entropy of one acquisition that must never repeat."""
    return secrets.token_hex(16)


class StudyInfo(BaseModel):
    """Patient, study, view and equipment identification of one exam.

    ``gantry_rotation_deg`` is the rotation of the whole C-arm about the
    patient's antero-posterior axis that sets the view (0 for CC, about 45
    for MLO); the tube's tomosynthesis arc angle is added to it for the DICOM
    Positioner Primary Angle. ``study_datetime`` is when the study started;
    ``clock_zero`` is the wall time of the device clock's zero (default: the
    study start): an exposure window starting at ``t`` s on the device clock is
    stamped ``clock_zero + t``. ``reproducibility_note`` is empty for a real
    acquisition and says how UIDs and dates were derived for a reproducible one.
    ``acquisition_number``: one per acquisition (the whole sweep), not per projection.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    uid_seed: str = Field(default_factory=fresh_uid_seed, min_length=1, description="entropy source of every UID")
    reproducibility_note: str = Field("", description="how UIDs/dates were derived in a reproducible run")
    clock_zero: datetime | None = Field(None, description="wall time of the device clock's zero")
    acquisition_number: int = Field(1, ge=1, description="number of the acquisition (sweep) in the study")
    patient_name: str = "Phantom^Breast"
    patient_id: str = "CRESCENT-PHANTOM"
    patient_birth_date: str = Field("19760101", pattern=r"^(\d{8})?$", description="YYYYMMDD or empty")
    patient_sex: Literal["F", "M", "O", ""] = "F"
    patient_age: str = Field("050Y", pattern=r"^\d{3}[DWMY]$", description="DICOM AS, e.g. 050Y")
    patient_size_m: float = Field(1.62, gt=0.0, lt=3.0, description="nominal height of the (phantom) patient, m")
    patient_weight_kg: float = Field(65.0, gt=0.0, lt=500.0, description="nominal weight, kg")
    admitting_diagnosis: str = "Screening"
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
    institution_address: str = "Simulated site, no address"
    institutional_department_name: str = "Breast imaging"
    station_name: str = Field("CRESCENT-SIM", max_length=16)
    manufacturer: str = "Crescent"
    model_name: str = "Crescent DBT simulator"
    device_serial_number: str = "SIM-0001"
    detector_id: str = Field("SIM-ASE-50UM", max_length=16)
    software_versions: str = "crescent 0.1.0"
    paddle_description: str = Field("FLAT 24x30 cm", max_length=64, description="compression paddle in use")
    detector_calibration: datetime | None = Field(None, description="last detector (flat-field) calibration; "
                                                  "None: the study start")
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
        zero = self.clock_zero if self.clock_zero is not None else self.study_datetime
        return zero + timedelta(seconds=float(seconds))
