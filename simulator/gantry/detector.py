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

import math
import os
from collections import OrderedDict
from collections.abc import Generator, Iterator
from contextlib import contextmanager
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


def write_frame(data_dir: Path, frame_id: int, image: np.ndarray, fsync: bool = False, staged: bool = False) -> Frame:
    """Write ``image`` as ``frame_<id>.raw`` (uint16 LE) atomically; returns its description.

    Readers never see a partial file (temporary file + rename); ``fsync`` additionally makes it
    durable across a power loss (slow; off by default in the simulator). ``staged`` leaves it as
    :func:`simulator.gantry.render_worker.staged_path` for :func:`publish_frame` (real time: the
    render worker writes, the gantry publishes when the readout time has passed).
    """
    raw = np.ascontiguousarray(image, dtype="<u2").tobytes()
    name = f"frame_{frame_id}.raw"
    tmp = data_dir / f".{name}.tmp"
    with open(tmp, "wb") as fh:
        fh.write(raw)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())
    os.replace(tmp, data_dir / (f".{name}.staged" if staged else name))
    rows, cols = image.shape
    return Frame(frame_id, rows, cols, crc32c(raw), len(raw), name)


def publish_frame(data_dir: Path, frame: Frame) -> None:
    """Make a staged frame visible under its locator (atomic rename)."""
    os.replace(Path(data_dir) / f".{frame.locator}.staged", Path(data_dir) / frame.locator)


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
        #: An object to image instead of the configured phantom (a :class:`simulator.imaging.phantoms.base.Phantom`
        #: built by the caller, e.g. one case of a virtual clinical trial): imaged as given, whatever thickness
        #: the paddle reads, and rendered in this process (set it on a virtual-time gantry; the real-time render
        #: worker only knows the configured phantoms).
        self.phantom_object: Any = None
        self._imagers: dict[float, ExposureImager] = {}
        self.executor: Any = None  # real-time mode: ``submit(fn, *args)`` -> future with done()/result()
        self.data_channel_url: str | None = None  # set when a TCP frame server serves data_dir
        # Dark offset (pedestal) of every raw pixel, ADU, reported in DEVICE_INFO; read here, at boot,
        # because the physics import is heavy and must not stall the real-time loop on GET_INFO.
        from simulator.imaging.detector import DetectorModel

        self.dark_offset_adu: float = DetectorModel().offset_adu + cfg.dark_offset_report_error_adu
        self.ghost = Ghost(cfg.ghost_loss_per_kadu, cfg.ghost_decay_s, DetectorModel().offset_adu)


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
            im = build_imager(self.geometry, self.phantom_cfg, self.cfg, self.seed, key, self.phantom_object)
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
            frame = write_frame(self.data_dir, record.frame_id, image, self.cfg.fsync)
        elif self.executor is None or self.phantom_object is not None:
            # sensitivity left by earlier frames (virtual-time path), at the end of the exposure window
            ghosting = self.cfg.ghost_loss_per_kadu > 0
            gain = self.ghost.gain((self.geometry.detector.rows, self.geometry.detector.cols), rec.window_end_s) \
                if ghosting else None
            image = render_image(self.imager(thickness_mm), rec, self.cfg, gain)
            if ghosting:
                self.ghost.remember(image, rec.window_end_s)
            yield self.env.timeout(self.limits.detector_readout_ms / 1000.0)
            frame = write_frame(self.data_dir, record.frame_id, image, self.cfg.fsync)
        else:
            # The worker renders and writes the staged file; the loop only waits (polling a flag) and renames.
            fut = self.executor.submit(render_to_file_job, *self._job_args(thickness_mm), rec.model_dump_json(),
                                       str(self.data_dir), self.cfg.fsync)
            yield self.env.timeout(self.limits.detector_readout_ms / 1000.0)
            while not fut.done():
                yield self.env.timeout(0.005)
            try:
                frame = fut.result()
                publish_frame(self.data_dir, frame)
            except Exception:  # a render that fails is a detector that never delivers
                self.state = int(DetectorState.ERROR)
                return None
        if self.cfg.readout_delay_ms > 0:  # injected (QC): a slow panel
            yield self.env.timeout(self.cfg.readout_delay_ms / 1000.0)
        self.state = int(DetectorState.READY)
        return frame

    def _job_args(self, thickness_mm: float) -> tuple[str, str, str, int, float]:
        return (self.geometry.model_dump_json(), self.phantom_cfg.model_dump_json(), self.cfg.model_dump_json(),
                self.seed, round(float(thickness_mm), 2))

    def prepare(self, thickness_mm: float, anode_filter: str | None = None, kvps: tuple[float, ...] = ()) -> None:
        """Real time: have the render worker build the phantom at ``thickness_mm`` (mm) and the spectra of
        ``anode_filter`` at each of ``kvps`` (kV) now, before the first exposure needs them (no-op in virtual time)."""
        if self.executor is None or not hasattr(self.executor, "prepare"):
            return
        kvs = tuple(sorted({min(max(float(k), KV_RENDER_MIN), KV_RENDER_MAX) for k in kvps}))
        self.executor.prepare(*self._job_args(thickness_mm), anode_filter, kvs)


def inject_defects(image: np.ndarray, cfg: DetectorConfig, geometry: AcquisitionGeometry) -> np.ndarray:
    """Apply the injected panel defects of ``cfg`` (gain gradient, dead columns) to a raw image (QC tests).

    The gradient scales the signal above the dark offset by ``1 + g x / 100 mm`` (x = column centre, mm);
    a dead column reads the dark offset only. A healthy config returns ``image`` unchanged.
    """
    if not cfg.dead_columns_x_mm and cfg.gain_gradient_percent_per_100mm == 0.0:
        return image
    from simulator.imaging.detector import DetectorModel

    dark = DetectorModel().offset_adu
    x = geometry.detector.col_centres_mm()
    out = image.astype(np.float64)
    if cfg.gain_gradient_percent_per_100mm:
        gain = np.maximum(1.0 + cfg.gain_gradient_percent_per_100mm / 100.0 * x / 100.0, 0.0)
        out = dark + (out - dark) * gain[None, :]
    for xd in cfg.dead_columns_x_mm:
        c = int(np.argmin(np.abs(x - xd)))
        if abs(x[c] - xd) <= geometry.detector.pitch_mm:
            out[:, c] = dark
    return np.clip(np.rint(out), 0, 65535).astype(np.uint16)


def synthetic_frame(rows: int, cols: int, record: ExposureRecord, seed: int) -> np.ndarray:
    """A flat uint16 frame (no physics): level ~ mAs x kV^2, Poisson-like noise seeded by (seed, frame id)."""
    rng = np.random.default_rng([int(seed), int(record.frame_id), 77])
    level = min(60000.0, 200.0 + 40.0 * record.mas * (record.kvp / 28.0) ** 2)
    return np.clip(rng.normal(level, np.sqrt(level), (rows, cols)), 0, 65535).astype("<u2")


#: Phantoms kept for reuse by :func:`reuse_phantoms` (None: each gantry builds its own), newest last.
_reused_phantoms: OrderedDict[str, Any] | None = None
_reused_phantoms_max = 0


@contextmanager
def reuse_phantoms(max_phantoms: int = 8) -> Iterator[None]:
    """Within the block, every gantry of this process reuses a phantom built before with the same phantom
    config, thickness (mm, to 0.01) and geometry instead of building it again; at most ``max_phantoms``
    are kept (least recently used dropped), all dropped on leaving.

    For many short virtual-time runs over the same breasts (``crescent validate`` of an exam library: each
    dry run starts a new gantry, and a textured breast takes about a second to build). A phantom is not
    changed by imaging it, so a reused one gives the same images, bit for bit.
    """
    global _reused_phantoms, _reused_phantoms_max
    outer = (_reused_phantoms, _reused_phantoms_max)
    if _reused_phantoms is None:
        _reused_phantoms, _reused_phantoms_max = OrderedDict(), int(max_phantoms)
    try:
        yield
    finally:
        _reused_phantoms, _reused_phantoms_max = outer


def _configured_phantom(geometry: AcquisitionGeometry, phantom: PhantomConfig, thickness_mm: float,
                        options: dict[str, Any]) -> Any:
    """The configured phantom at ``thickness_mm`` (mm), built now or reused (:func:`reuse_phantoms`)."""
    import json

    from simulator.imaging.imager import make_phantom  # heavy (numba, spekpy): load on first use

    def build() -> Any:
        return make_phantom(phantom.name, thickness_mm, geometry, seed=phantom.seed, voxel_mm=phantom.voxel_mm,
                            **options)

    memo = _reused_phantoms
    if memo is None:
        return build()
    key = json.dumps([phantom.model_dump(mode="json"), round(float(thickness_mm), 2),
                      geometry.model_dump(mode="json"), options], sort_keys=True, default=str)
    ph = memo.pop(key, None)
    if ph is None:
        ph = build()
    memo[key] = ph
    while len(memo) > _reused_phantoms_max:
        memo.popitem(last=False)
    return ph


def build_imager(geometry: AcquisitionGeometry, phantom: PhantomConfig, det: DetectorConfig, seed: int,
                 thickness_mm: float, phantom_object: Any = None) -> ExposureImager:
    """Phantom at ``thickness_mm`` on the support of ``geometry`` and its :class:`ExposureImager`.

    ``phantom_object``: a ready :class:`~simulator.imaging.phantoms.base.Phantom` to image instead of building
    the configured one (``phantom``'s motion still applies).
    """
    from simulator.imaging.imager import ExposureImager  # heavy (numba, spekpy): load on first use

    options = dict(phantom.options)
    if phantom.name == "chest-wall-ruler":  # the ruler lies against the support's chest-wall edge
        options.setdefault("support_edge_y_mm", -det.chest_wall_gap_mm)
    ph = phantom_object if phantom_object is not None else _configured_phantom(geometry, phantom, thickness_mm,
                                                                               options)
    moving = phantom.motion_mm != (0.0, 0.0)
    model = None
    if det.extra_electronic_noise_adu > 0:  # injected (QC): a noisy panel
        from simulator.imaging.detector import DetectorModel

        base = DetectorModel()
        model = DetectorModel(electronic_noise_adu=float(np.hypot(base.electronic_noise_adu,
                                                                  det.extra_electronic_noise_adu)))
    return ExposureImager(ph, geometry, model, seed=seed, scatter=det.scatter, motion_substeps=det.motion_substeps,
                          noise=det.noise, beam_path=det.beam_path.to_beam_path(), grid=det.anti_scatter_grid(),
                          patient_motion=(*phantom.motion_mm, phantom.motion_after_deg) if moving else None,
                          field_mm=xray_field_mm(geometry, det))


def xray_field_mm(geometry: AcquisitionGeometry, det: DetectorConfig) -> tuple[float, float, float, float]:
    """The X-ray field at the detector plane, ``(y_chest, y_nipple, x_min, x_max)`` mm: the read-out area of
    ``geometry`` widened by ``det.field_margin_mm`` (chest wall, nipple, -x, +x)."""
    d = geometry.detector
    mc, mn, mx0, mx1 = det.field_margin_mm
    return (d.offset_y_mm - mc, d.offset_y_mm + d.height_mm + mn,
            d.offset_x_mm - 0.5 * d.width_mm - mx0, d.offset_x_mm + 0.5 * d.width_mm + mx1)


class Ghost:
    """a-Se ghosting: each pixel's sensitivity drops by ``loss_per_kadu`` per 1000 ADU of signal it recorded
    before, the memory decaying as ``exp(-dt / decay_s)`` (dt in s of gantry time). The loss applies to the
    collected charge, before digitisation (:meth:`ExposureImager.image` ``gain``)."""

    def __init__(self, loss_per_kadu: float, decay_s: float, dark_adu: float) -> None:
        self.loss = float(loss_per_kadu)
        self.decay_s = float(decay_s)
        self.dark = float(dark_adu)
        self.memory: np.ndarray | None = None
        self.t_s = 0.0

    def gain(self, shape: tuple[int, ...], t_s: float) -> np.ndarray | None:
        """Relative sensitivity of each pixel for a frame integrated at ``t_s`` (None: no memory yet)."""
        if self.memory is None or self.memory.shape != shape or self.loss == 0:
            return None
        self.memory *= math.exp(-max(t_s - self.t_s, 0.0) / self.decay_s)
        self.t_s = t_s
        return np.maximum(1.0 - self.loss * self.memory / 1000.0, 0.0)

    def remember(self, image: np.ndarray, t_s: float) -> None:
        """Add the frame's signal (ADU above the dark offset) to the memory."""
        above = np.maximum(image.astype(np.float64) - self.dark, 0.0)
        if self.memory is None or self.memory.shape != above.shape:
            self.memory = np.zeros(above.shape)
        else:
            self.memory *= math.exp(-max(t_s - self.t_s, 0.0) / self.decay_s)
        self.memory += above
        self.t_s = t_s


def render_image(imager: ExposureImager, record: ExposureRecord, cfg: DetectorConfig,
                 gain: np.ndarray | None = None) -> np.ndarray:
    """The raw image of ``record`` with the panel defects ``cfg`` injects, if any (the one function both
    the in-process and the worker path call); ``gain``: the ghost's relative sensitivity per pixel."""
    return inject_defects(imager.image(record, gain), cfg, imager.geometry)


_WORKER_IMAGERS: dict[tuple, ExposureImager] = {}


def _worker_imager(geometry_json: str, phantom_json: str, detector_json: str, seed: int,
                   thickness_mm: float) -> ExposureImager:
    key = (geometry_json, phantom_json, detector_json, seed, thickness_mm)
    im = _WORKER_IMAGERS.get(key)
    if im is None:
        _WORKER_IMAGERS.clear()
        im = build_imager(AcquisitionGeometry.model_validate_json(geometry_json),
                          PhantomConfig.model_validate_json(phantom_json),
                          DetectorConfig.model_validate_json(detector_json), seed, thickness_mm)
        _WORKER_IMAGERS[key] = im
    return im


def render_job(geometry_json: str, phantom_json: str, detector_json: str, seed: int, thickness_mm: float,
               record_json: str) -> np.ndarray:
    """Render one frame in a worker process (arguments as JSON so they pickle cheaply); caches the imager."""
    im = _worker_imager(geometry_json, phantom_json, detector_json, seed, thickness_mm)
    return render_image(im, ExposureRecord.model_validate_json(record_json),
                        DetectorConfig.model_validate_json(detector_json))


def render_to_file_job(geometry_json: str, phantom_json: str, detector_json: str, seed: int, thickness_mm: float,
                       record_json: str, data_dir: str, fsync: bool) -> Frame:
    """Render one frame in the worker and write it staged in ``data_dir``; returns its :class:`Frame`."""
    record = ExposureRecord.model_validate_json(record_json)
    image = render_job(geometry_json, phantom_json, detector_json, seed, thickness_mm, record_json)
    return write_frame(Path(data_dir), record.frame_id, image, fsync, staged=True)


def prepare_job(geometry_json: str, phantom_json: str, detector_json: str, seed: int, thickness_mm: float,
                anode_filter: str | None = None, kvps: tuple[float, ...] = ()) -> None:
    """Worker: build (and cache) the imager at ``thickness_mm`` and the beam spectra at ``kvps`` (kV)."""
    im = _worker_imager(geometry_json, phantom_json, detector_json, seed, thickness_mm)
    if anode_filter is not None:
        from physics.spectra import beam_spectrum

        for kv in kvps:
            beam_spectrum(anode_filter, kv)
            im.prepare_scatter(ExposureRecord(index=0, frame_id=0, planned_angle_deg=0.0, angle_start_deg=0.0,
                                              angle_end_deg=0.0, kvp=kv, mas=1.0, anode_filter=anode_filter,
                                              window_start_s=0.0, window_end_s=0.1))
