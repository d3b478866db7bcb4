"""Flat-panel detector: idle / ready / integrating / reading out, and the file data channel.

Each exposure's image is rendered by :class:`simulator.imaging.imager.ExposureImager` from the
*actual* :class:`protocols.records.ExposureRecord` (encoder angles at window start and end,
measured kV, delivered mAs, anode/filter, focal spot). The phantom is built with
:func:`simulator.imaging.imager.make_phantom` at the thickness the paddle actually reached
(cached per thickness).

Data channel: files ``<data_dir>/frame_<id>.raw`` (uint16 little-endian, ``[rows, cols]``
row-major), written atomically (temporary file + ``os.replace``) when the readout time has
passed; IMAGE_READY then carries the frame id, shape, 16 bits, the CRC-32C of exactly those
bytes, the size and the file name. Pixels never travel on the UART.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import simpy

from protocols.geometry import AcquisitionGeometry
from protocols.limits import DeviceLimits
from protocols.records import ExposureRecord
from protocols.wire.catalogue import DetectorState
from protocols.wire.crc import crc32c
from simulator.gantry.config import DetectorConfig, PhantomConfig

if TYPE_CHECKING:
    from simulator.imaging.imager import ExposureImager


#: Tube voltage range the X-ray physics renders (protocols.records.Technique), kV.
KV_RENDER_MIN, KV_RENDER_MAX = 20.0, 49.0


@dataclass(frozen=True)
class Frame:
    """A frame written to the data channel."""

    frame_id: int
    rows: int
    cols: int
    checksum: int
    size_bytes: int
    locator: str


def write_frame(data_dir: Path, frame_id: int, image: np.ndarray, fsync: bool = False) -> Frame:
    """Write ``image`` as ``frame_<id>.raw`` (uint16 LE) atomically; returns its description.

    Readers never see a partial file (temporary file + rename); ``fsync`` additionally makes it
    durable across a power loss (slow; off by default in the simulator).
    """
    raw = np.ascontiguousarray(image, dtype="<u2").tobytes()
    name = f"frame_{frame_id}.raw"
    tmp = data_dir / f".{name}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(raw)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, data_dir / name)
    rows, cols = image.shape
    return Frame(frame_id, rows, cols, crc32c(raw), len(raw), name)


def read_frame(data_dir: Path, locator: str, rows: int, cols: int) -> np.ndarray:
    """Read a frame back from the file data channel (for hosts and tests)."""
    return np.fromfile(Path(data_dir) / locator, dtype="<u2").reshape(rows, cols)


class Detector:
    """Detector state, readout process and the imager cache."""

    def __init__(self, env: simpy.Environment, cfg: DetectorConfig, geometry: AcquisitionGeometry,
                 limits: DeviceLimits, phantom: PhantomConfig, data_dir: Path, seed: int) -> None:
        self.env = env
        self.cfg = cfg
        self.geometry = geometry
        self.limits = limits
        self.phantom_cfg = phantom
        self.data_dir = Path(data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.seed = seed
        self.state = int(DetectorState.IDLE)
        self.timeout_pending = False  # fault injected: the next readout never completes
        #: No image formation (fault campaigns, protocol tests): each frame is a flat field whose level
        #: follows the delivered mAs and kV, with seeded noise; the readout time is unchanged.
        self.synthetic = False
        self._imagers: dict[float, ExposureImager] = {}
        self.executor: Any = None  # real-time mode: ``submit(fn, *args)`` -> future with done()/result()
        self.data_channel_url: str | None = None  # set when a TCP frame server serves data_dir
        # Dark offset (pedestal) of every raw pixel, ADU, reported in DEVICE_INFO; read here, at boot,
        # because the physics import is heavy and must not stall the real-time loop on GET_INFO.
        from simulator.imaging.detector import DetectorModel

        self.dark_offset_adu: float = DetectorModel().offset_adu


    @property
    def data_channel(self) -> str:
        """DEVICE_INFO.data_channel: ``file://<absolute data_dir>``, or the TCP frame server's URL when one serves it."""
        return self.data_channel_url or "file://" + str(self.data_dir.resolve())

    def ok(self) -> bool:
        """DETECTOR_READY interlock: powered and not in error."""
        return self.state != int(DetectorState.ERROR)

    def imager(self, thickness_mm: float) -> ExposureImager:
        """The exam's imager for a breast compressed to ``thickness_mm`` (built once per thickness)."""
        key = round(float(thickness_mm), 2)
        im = self._imagers.get(key)
        if im is None:
            im = build_imager(self.geometry, self.phantom_cfg, self.cfg, self.seed, key)
            self._imagers = {key: im}  # keep only the current exam's phantom
        return im

    def readout(self, record: ExposureRecord, thickness_mm: float) -> Generator[simpy.Event, None, Frame | None]:
        """Read out the frame of ``record``; the value is the written :class:`Frame`, or None on timeout.

        With an ``executor`` (real-time mode) the image is rendered in a worker process while the
        firmware keeps running; the frame is ready when both the readout time has passed and the
        render has finished. Without one (virtual time) it is rendered inline.
        """
        self.state = int(DetectorState.READING_OUT)
        if self.timeout_pending:
            self.timeout_pending = False
            yield self.env.timeout(self.cfg.readout_timeout_ms / 1000.0)
            self.state = int(DetectorState.ERROR)
            return None
        # The physics covers 20-49 kV; a collapsed tube voltage (kV drop, arc) is rendered at the nearest edge.
        kv = min(max(record.kvp, KV_RENDER_MIN), KV_RENDER_MAX)
        rec = record if kv == record.kvp else record.model_copy(update={"kvp": kv})
        if self.synthetic:
            image = synthetic_frame(self.geometry.detector.rows, self.geometry.detector.cols, rec, self.seed)
            yield self.env.timeout(self.limits.detector_readout_ms / 1000.0)
        elif self.executor is None:
            image = self.imager(thickness_mm).image(rec)
            yield self.env.timeout(self.limits.detector_readout_ms / 1000.0)
        else:
            fut = self.executor.submit(render_job, self.geometry.model_dump_json(), self.phantom_cfg.model_dump_json(),
                                       self.cfg.model_dump_json(), self.seed, round(float(thickness_mm), 2),
                                       rec.model_dump_json())
            yield self.env.timeout(self.limits.detector_readout_ms / 1000.0)
            while not fut.done():
                yield self.env.timeout(0.005)
            try:
                image = fut.result()
            except Exception:  # a render that fails is a detector that never delivers
                self.state = int(DetectorState.ERROR)
                return None
        frame = write_frame(self.data_dir, record.frame_id, image, self.cfg.fsync)
        self.state = int(DetectorState.READY)
        return frame


def synthetic_frame(rows: int, cols: int, record: ExposureRecord, seed: int) -> np.ndarray:
    """A flat uint16 frame (no physics): level ~ mAs x kV^2, Poisson-like noise seeded by (seed, frame id)."""
    rng = np.random.default_rng([int(seed), int(record.frame_id), 77])
    level = min(60000.0, 200.0 + 40.0 * record.mas * (record.kvp / 28.0) ** 2)
    return np.clip(rng.normal(level, np.sqrt(level), (rows, cols)), 0, 65535).astype("<u2")


def build_imager(geometry: AcquisitionGeometry, phantom: PhantomConfig, det: DetectorConfig, seed: int,
                 thickness_mm: float) -> ExposureImager:
    """Phantom at ``thickness_mm`` on the support of ``geometry`` and its :class:`ExposureImager`."""
    from simulator.imaging.imager import ExposureImager, make_phantom  # heavy (numba, spekpy): load on first use

    ph = make_phantom(phantom.name, thickness_mm, geometry, seed=phantom.seed, voxel_mm=phantom.voxel_mm,
                      **phantom.options)
    return ExposureImager(ph, geometry, seed=seed, scatter=det.scatter, motion_substeps=det.motion_substeps,
                          noise=det.noise)


_WORKER_IMAGERS: dict[tuple, ExposureImager] = {}


def render_job(geometry_json: str, phantom_json: str, detector_json: str, seed: int, thickness_mm: float,
               record_json: str) -> np.ndarray:
    """Render one frame in a worker process (arguments as JSON so they pickle cheaply); caches the imager."""
    key = (geometry_json, phantom_json, detector_json, seed, thickness_mm)
    im = _WORKER_IMAGERS.get(key)
    if im is None:
        _WORKER_IMAGERS.clear()
        im = build_imager(AcquisitionGeometry.model_validate_json(geometry_json),
                          PhantomConfig.model_validate_json(phantom_json),
                          DetectorConfig.model_validate_json(detector_json), seed, thickness_mm)
        _WORKER_IMAGERS[key] = im
    return im.image(ExposureRecord.model_validate_json(record_json))
