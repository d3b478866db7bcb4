"""Pass/fail of an acquisition against stated limits, each with its source (no physics here).

MGD limits: European guidelines for quality assurance in breast cancer screening and
diagnosis, 4th edition (European Commission 2006), chapter 2b (digital mammography), dosimetry
section: acceptable and achievable mean glandular dose for PMMA thicknesses 20-70 mm and the
equivalent breast thicknesses 21-90 mm (Dance et al. 2000); the EUREF protocol for DBT uses the
same PMMA method for a DBT view. Not confirmed against the publication's text: the stored copies
searched (December 2026) hold its title pages and executive summary, not the table, and the
section number is not confirmed either (crescent.qc.limits has the same table and says so).
Verified: the equivalent breasts 21, 53 and 90 mm of 20, 45 and 70 mm PMMA (Dance et al., IWDM 2012,
LNCS 7361, abstract). Check the levels against your copy before relying on them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: (PMMA mm, equivalent breast mm, acceptable MGD mGy, achievable MGD mGy), European guidelines 4th ed.
EUREF_MGD_LIMITS: tuple[tuple[float, float, float, float], ...] = (
    (20.0, 21.0, 1.0, 0.6),
    (30.0, 32.0, 1.5, 1.0),
    (40.0, 45.0, 2.0, 1.6),
    (45.0, 53.0, 2.5, 2.0),
    (50.0, 60.0, 3.0, 2.4),
    (60.0, 75.0, 4.5, 3.6),
    (70.0, 90.0, 6.5, 5.1),
)
EUREF_SOURCE = ("European guidelines for quality assurance in breast cancer screening and diagnosis, 4th ed. "
                "(European Commission 2006), ch. 2b dosimetry, limiting MGD per PMMA thickness (table not "
                "confirmed against the text)")
#: Stereotactic localisation accuracy: +-1 mm in each axis (ACR Stereotactic Breast Biopsy QC Manual, 1999).
STEREO_LIMIT_MM = 1.0
STEREO_SOURCE = "ACR Stereotactic Breast Biopsy Quality Control Manual (1999): localisation accuracy +-1 mm"


@dataclass(frozen=True)
class Verdict:
    """One checked figure: what, measured value (text), limit (text), PASS/FAIL/INFO, and the limit's source."""

    name: str
    value: str
    limit: str
    result: str
    source: str
    #: 1-based projection numbers a failed check blames (e.g. the projections after a patient moved); empty:
    #: the whole exam. The quality-rejection KOS references these frames (crescent.outputs.dicom_kos).
    frames: tuple[int, ...] = ()


def euref_limits(breast_thickness_mm: float) -> tuple[float, float, float]:
    """(equivalent PMMA mm, acceptable MGD, achievable MGD) at a breast thickness, linear between table rows.

    Outside 21..90 mm the end rows apply (clamped), which the verdict text says.
    """
    t = np.array([r[1] for r in EUREF_MGD_LIMITS])
    pmma = float(np.interp(breast_thickness_mm, t, [r[0] for r in EUREF_MGD_LIMITS]))
    acc = float(np.interp(breast_thickness_mm, t, [r[2] for r in EUREF_MGD_LIMITS]))
    ach = float(np.interp(breast_thickness_mm, t, [r[3] for r in EUREF_MGD_LIMITS]))
    return pmma, acc, ach


def mgd_verdict(mgd_mgy: float, breast_thickness_mm: float) -> Verdict:
    """The exam's MGD against the EUREF acceptable (pass/fail) and achievable (noted) levels."""
    pmma, acc, ach = euref_limits(breast_thickness_mm)
    result = "PASS" if mgd_mgy <= acc else "FAIL"
    note = "within achievable" if mgd_mgy <= ach else "above achievable"
    return Verdict("Mean glandular dose of the view", f"{mgd_mgy:.3f} mGy ({note})",
                   f"acceptable <= {acc:.2f} mGy, achievable <= {ach:.2f} mGy at {breast_thickness_mm:.0f} mm "
                   f"breast (~{pmma:.0f} mm PMMA)", result, EUREF_SOURCE)


def mtf_verdict(mtf_at_nyquist: float, pitch_mm: float) -> Verdict:
    """MTF at the Nyquist frequency, shown against the ideal square del aperture (sinc(0.5) = 0.637)."""
    ideal = float(np.sinc(0.5))
    return Verdict("Presampled MTF at Nyquist", f"{mtf_at_nyquist:.3f} at {1 / (2 * pitch_mm):.2f} lp/mm",
                   f"reference: ideal {pitch_mm * 1000:.0f} um aperture {ideal:.3f}; no regulatory limit",
                   "INFO", "IEC 62220-1-2 method; aperture sinc as the upper bound of a direct-conversion del")


def stereo_verdict(errors_mm: list[float]) -> Verdict:
    """Largest 3-D localisation error of a stereotactic pair against +-1 mm."""
    worst = max(errors_mm)
    return Verdict("Stereotactic localisation", f"largest error {worst:.2f} mm over {len(errors_mm)} targets",
                   f"<= {STEREO_LIMIT_MM:.1f} mm", "PASS" if worst <= STEREO_LIMIT_MM else "FAIL", STEREO_SOURCE)
