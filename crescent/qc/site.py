"""Where QC exams run: the simulated gantry (virtual time) or a rig (``--port``), through the product path.

Both sites run an exam model with :meth:`firmware_host.api.Gantry.run_exam` (the host controller the
product uses) and hand back an :class:`Acquisition`: the exam record, the projections as stored by the
host, and the host's audit log (timestamps). On a rig the operator is asked to place each phantom.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Exponent and relaxation of the simulated "breast" that stands in for a rigid phantom: a PMMA stack
#: compresses by ``PHANTOM_STRAIN`` under the QC exams' force (so the measured thickness is the stack's).
PHANTOM_EXPONENT = 30.0
PHANTOM_STRAIN = 0.01


@dataclass
class Acquisition:
    """One QC exam's result: record, projections (float ADU, scout excluded), audit entries, timings."""

    record: Any
    images: np.ndarray
    audit: list[dict[str, Any]]
    dark_adu: float
    serial: str
    out_dir: Path

    @property
    def header(self) -> Any:
        return self.record.header

    @property
    def exposures(self) -> list[Any]:
        return [p.exposure for p in self.record.header.projections]

    @property
    def pitch_mm(self) -> float:
        return float(self.record.header.geometry.detector.pitch_mm)


@dataclass
class PhantomSpec:
    """What a QC exam expects on the support: a simulator phantom name, thickness (mm) and options."""

    name: str
    thickness_mm: float = 45.0
    options: dict[str, float] = field(default_factory=dict)
    #: the simulated panel's read-out layout for this exam: (rows, cols, binning, offset_x_mm, offset_y_mm),
    #: None = the whole panel at the site's binning
    detector: tuple[int, int, int, float, float] | None = None
    #: the phantom is moved during the exam: ``(dx_mm, dy_mm, after_deg)``, by (dx, dy) mm for the projections
    #: whose arc angle exceeds after_deg (the ghost test moves its slab after the first projection)
    motion: tuple[float, float, float] | None = None
    #: simulated site only: render without scatter. The ghost test moves its slab 50 mm, which the simulator
    #: renders by shifting the image, while scatter is computed over the read-out window before the shift:
    #: the moved and the reference exam would then differ by scatter alone (a ghost factor of -0.9 on a
    #: panel without ghost). The ghost is the panel's own property, so its test renders primary only.
    without_scatter: bool = False

    def describe(self) -> str:
        opts = ", ".join(f"{k}={v:g}" for k, v in self.options.items())
        moved = (f"; moved by ({self.motion[0]:g}, {self.motion[1]:g}) mm after {self.motion[2]:g} deg"
                 if self.motion else "")
        return f"{self.name} {self.thickness_mm:g} mm" + (f" ({opts})" if opts else "") + moved


def _collect(result: Any, dark_adu: float, serial: str) -> Acquisition:
    from firmware_host import read_audit_log

    rec = result.record
    if rec.header is None or not rec.header.projections:
        raise RuntimeError(f"QC exam {rec.exam_name} produced no projections: {rec.status} ({rec.reason})")
    images = np.stack([np.load(p) for p in result.image_paths]).astype(np.float64)
    audit = read_audit_log(result.audit_path).entries
    return Acquisition(rec, images, audit, dark_adu, serial, Path(result.out_dir))


class SimulatedSite:
    """The simulated gantry in virtual time, with optional injected defects (gantry config overrides).

    ``defects``: nested overrides of :class:`simulator.gantry.config.GantryConfig`, e.g.
    ``{"detector": {"dead_columns_x_mm": [-60.0]}}``. ``binning``: read-out binning of the whole panel.
    """

    kind = "simulated"

    def __init__(self, workdir: Path, *, seed: int = 1, binning: int = 8, defects: dict[str, Any] | None = None,
                 gantry_config: str | None = None) -> None:
        self.workdir = Path(workdir)
        self.seed = seed
        self.binning = binning
        self.defects = defects or {}
        self.gantry_config = gantry_config
        self.serial = ""
        self._n = 0

    def config(self, phantom: PhantomSpec) -> Any:
        from simulator.gantry import load_config
        from simulator.gantry.config import DetectorGeometry

        cfg = load_config(self.gantry_config)
        full = det = cfg.geometry.detector
        if phantom.detector is None:
            b = self.binning
            layout = DetectorGeometry(native_pitch_mm=det.native_pitch_mm, binning=b,
                                      rows=int(round(det.rows * det.binning / b)),
                                      cols=int(round(det.cols * det.binning / b)))
        else:
            rows, cols, b, ox, oy = phantom.detector
            layout = DetectorGeometry(native_pitch_mm=det.native_pitch_mm, binning=b, rows=rows, cols=cols,
                                      offset_x_mm=ox, offset_y_mm=oy)
        # a rigid phantom: stiff exponential spring, no relaxation, free thickness just above the stack's
        force = 60.0
        stiffness = force / (math.exp(PHANTOM_EXPONENT * PHANTOM_STRAIN) - 1.0)
        cfg = cfg.with_overrides(
            geometry={"detector": layout.model_dump()},
            breast={"free_thickness_mm": phantom.thickness_mm / (1.0 - PHANTOM_STRAIN), "stiffness_n": stiffness,
                    "exponent": PHANTOM_EXPONENT, "relaxation_ratio": 0.0},
            paddle={"release_after_exam": False},
            phantom={"name": phantom.name, "seed": self.seed, "options": dict(phantom.options),
                     **({"motion_mm": phantom.motion[:2], "motion_after_deg": phantom.motion[2]}
                        if phantom.motion else {})},
        )
        cfg = cfg.with_overrides(**self.defects) if self.defects else cfg
        if phantom.without_scatter:
            cfg = cfg.with_overrides(detector={"scatter": False})
        # the collimator's field is set against the whole panel: re-express it against the read-out area
        mc, mn, mx0, mx1 = cfg.detector.field_margin_mm
        sub = cfg.geometry.detector
        margins = (mc + (sub.offset_y_mm - full.offset_y_mm),
                   mn + (full.offset_y_mm + full.height_mm) - (sub.offset_y_mm + sub.height_mm),
                   mx0 + (sub.offset_x_mm - 0.5 * sub.width_mm) - (full.offset_x_mm - 0.5 * full.width_mm),
                   mx1 + (full.offset_x_mm + 0.5 * full.width_mm) - (sub.offset_x_mm + 0.5 * sub.width_mm))
        self._panel_margins = (mc, mn, mx0, mx1)
        return cfg.with_overrides(detector={"field_margin_mm": margins})

    def acquire(self, exam: Any, phantom: PhantomSpec) -> Acquisition:
        """Run ``exam`` with ``phantom`` on a fresh virtual gantry; the projections and the record."""
        import simpy

        from firmware_host import ExamOptions, connect_virtual
        from firmware_host.exam_plan import SIMULATED_IMAGE_TIMEOUT_S
        from simulator.gantry import start_virtual_gantry

        self._n += 1
        out = self.workdir / f"{self._n:02d}-{exam.name}"
        cfg = self.config(phantom)
        env = simpy.Environment()
        model, endpoint = start_virtual_gantry(env, cfg, seed=self.seed, data_dir=out / "device", event_log=None)
        options = ExamOptions(image_timeout_s=SIMULATED_IMAGE_TIMEOUT_S)  # SPEC's 500 ms watchdog, as every host path
        with connect_virtual(env, endpoint, seed=self.seed, options=options) as gantry:
            result = gantry.run_exam(exam, out / "exam")
            serial = self.serial = f"sim-{gantry.session.serial_number}"
        from simulator.imaging.detector import DetectorModel

        # the QC analysis subtracts the panel's true pedestal (the pedestal the device reports may be detuned)
        return _collect(result, float(DetectorModel().offset_adu), serial)


    def dosimeter(self, exposure: Any) -> tuple[float, float]:
        """The dosimeter model: air kerma at 1 m (mGy) and HVL (mm Al) of the beam the exposure delivered."""
        from physics.spectra import air_kerma_mgy_per_mas, beam_spectrum, half_value_layer_mm_al

        spec = beam_spectrum(exposure.anode_filter, exposure.kvp)
        return air_kerma_mgy_per_mas(spec, 1000.0) * exposure.mas, half_value_layer_mm_al(spec)

    def field_film(self, acq: Acquisition) -> tuple[float, float, float, float]:
        """The film model: how far the X-ray field of the last exam extends beyond the panel's active area on the
        chest-wall, nipple, -x and +x sides, mm at the detector plane, read to 0.5 mm (a self-developing film
        or CR plate on the support, scaled to the detector plane)."""
        return tuple(round(2.0 * m) / 2.0 for m in self._panel_margins)  # type: ignore[return-value]

    def flat_field(self, acq: Acquisition) -> np.ndarray:
        """The panel's flat-field calibration (noise-free open field, dark removed) for the acquisition's exposure."""
        from crescent.acquire.simulated import flat_fields

        return flat_fields(acq.header, acq.exposures[:1])[0] - acq.dark_adu


    def flat_fields(self, acq: Acquisition) -> np.ndarray:
        """Raw (dark included) flat fields of every projection, for reconstruction."""
        from crescent.acquire.simulated import flat_fields

        return flat_fields(acq.header, acq.exposures)


class RigSite:
    """A real gantry on ``port`` (pyserial URL); ``ask(prompt)`` waits for the operator (default: input)."""

    kind = "rig"

    def __init__(self, port: str, workdir: Path, *, seed: int = 1, ask: Callable[[str], str] = input,
                 watchdog_ms: int | None = None, image_timeout_s: float = 30.0) -> None:
        self.port = port
        self.watchdog_ms = watchdog_ms
        self.image_timeout_s = image_timeout_s
        self.workdir = Path(workdir)
        self.seed = seed
        self.ask = ask
        self.serial = ""
        self._n = 0

    def acquire(self, exam: Any, phantom: PhantomSpec) -> Acquisition:
        from firmware_host.api import connect

        self._n += 1
        self.ask(f"Place the {phantom.describe()} phantom for QC exam {exam.name}, then press Enter: ")
        out = self.workdir / f"{self._n:02d}-{exam.name}"
        from firmware_host import ExamOptions

        options = ExamOptions(watchdog_timeout_ms=self.watchdog_ms) if self.watchdog_ms else None
        with connect(self.port, seed=self.seed, options=options) as gantry:
            # QC is not time-critical: a generous image timeout (image-ready time is measured, not waited on)
            result = gantry.run_exam(exam, out / "exam", options=gantry.exam_options(self.image_timeout_s))
            info = gantry.session.info
            dark = float(info.dark_offset_adu)
            serial = self.serial = f"rig-{gantry.session.serial_number}"
        return _collect(result, dark, serial)

    def dosimeter(self, exposure: Any) -> tuple[float, float]:
        """The operator's meter readings for the exposure just made: air kerma at 1 m (mGy), HVL (mm Al)."""
        kerma = float(self.ask(f"Dosimeter: air kerma at 1 m of the {exposure.kvp:g} kV {exposure.mas:g} mAs "
                               "exposure, mGy: "))
        hvl = float(self.ask("Dosimeter: HVL, mm Al: "))
        return kerma, hvl

    def field_film(self, acq: Acquisition) -> tuple[float, float, float, float]:
        """The operator's film readings: X-ray field beyond the active area's edge per side, mm (detector plane)."""
        return tuple(float(self.ask(f"Field film: X-ray field beyond the detector's {side} edge, mm at the detector "
                                    "plane (negative: inside): "))
                     for side in ("chest-wall", "nipple-side", "-x (left)", "+x (right)"))  # type: ignore[return-value]

    def flat_fields(self, acq: Acquisition) -> None:
        """No flat fields on a rig: reconstruction normalises each projection to its open field."""
        return None

    def flat_field(self, acq: Acquisition) -> None:
        """A rig delivers flat-fielded ("for processing") images: no further correction."""
        return None
