"""Helpers for host tests against the simulated gantry (virtual time): a fast config and the invariants.

The invariants are checked from independent sources: the gantry's own event log (what the device
did), the host's audit log (what the host saw and armed) and the files on disk.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import simpy

from firmware_host import ExamOptions, connect_virtual, read_audit_log, verify_projection
from firmware_host.api import ExamResult
from simulator.gantry import load_config, start_virtual_gantry
from simulator.gantry.config import GantryConfig, small_detector


def fast_config(**overrides: Any) -> GantryConfig:
    """Default gantry, tiny detector (24 x 30 pixels, 8x binned), a PMMA slab phantom, no auto-release.

    ``release_after_exam`` is off: the host releases as each exam says (the AEC scout is its own plan,
    and stereo holds the compression).
    """
    cfg = load_config("default")
    cfg = cfg.model_copy(update={"geometry": cfg.geometry.model_copy(update={"detector": small_detector(24, 30, 8)})})
    changes: dict[str, Any] = {"paddle": {"release_after_exam": False}, "phantom": {"name": "pmma"}}
    changes.update(overrides)
    return cfg.with_overrides(**changes)


def run_virtual(exam: str, out_dir: Path, *, seed: int = 1, config: GantryConfig | None = None,
                on_phase: Callable[[Any, str, int, int], None] | None = None,
                options: ExamOptions | None = None) -> tuple[ExamResult, Any, simpy.Environment]:
    """Run ``exam`` on a fresh virtual gantry; ``on_phase(gantry_model, phase, i, n)`` may inject faults."""
    env = simpy.Environment()
    model, endpoint = start_virtual_gantry(env, config or fast_config(), seed=seed, data_dir=out_dir / "device",
                                           event_log=None)
    progress = (lambda ph, i, n: on_phase(model, ph, i, n)) if on_phase else None
    with connect_virtual(env, endpoint, seed=seed, options=options) as gantry:
        result = gantry.run_exam(exam, out_dir / "exam", progress=progress)
        # still connected (heartbeats flow): let the last acknowledgements and motions (a device's own
        # release) land before the invariants are checked
        env.run(until=env.now + 3.0)
    return result, model, env


def device_records(model: Any, kind: str) -> list[dict[str, Any]]:
    return [r for r in model.log.records() if r["kind"] == kind]


def check_invariants(result: ExamResult, model: Any) -> None:
    """No exposure outside an armed plan; every device image stored, verified and logged; release as configured."""
    audit = read_audit_log(result.audit_path)
    assert not audit.torn_last_line
    host_armed = {e["plan_id"]: e["fields"]["entries"] for e in audit.entries if e["kind"] == "armed"}
    device_armed = {r["plan_id"] for r in device_records(model, "armed")}
    seen: set[tuple[int, int]] = set()
    for x in device_records(model, "exposure"):
        key = (x["plan_id"], x["index"])
        assert key not in seen, f"exposure {key} happened twice (replayed)"
        seen.add(key)
        assert x["plan_id"] in host_armed and x["plan_id"] in device_armed, f"exposure outside an armed plan: {x}"
        entries = host_armed[x["plan_id"]]
        assert x["index"] < len(entries)
        assert round(x["planned_deg"] * 1000) == entries[x["index"]]["angle_mdeg"]
    host_exposures = {(e["plan_id"], e["index"]) for e in audit.entries if e["kind"] == "exposure"}
    assert host_exposures == seen, "every exposure the device made is in the host's audit log"
    host_images = {e["frame_id"]: e for e in audit.entries if e["kind"] == "image"}
    for img in device_records(model, "image"):
        assert img["frame_id"] in host_images, f"device frame {img['frame_id']} not taken in"
        path = result.out_dir / host_images[img["frame_id"]]["path"]
        ok, msg = verify_projection(path)
        assert ok, msg
        assert host_images[img["frame_id"]]["checksum_crc32c"] == img["checksum"]
    rec = result.record
    assert rec.status in ("complete", "incomplete", "aborted")
    if rec.status != "complete":
        assert rec.reason, "a non-complete exam says why"
    comp_release = rec.compression_release
    parked = model.paddle.height_mm >= model.cfg.paddle.park_height_mm - 1e-6
    compressed = rec.compressed_thickness_mm is not None or any(
        e["kind"] == "command" and e["name"] == "COMPRESS" for e in audit.entries)
    if rec.status == "complete" and comp_release == "after_exam":
        assert parked and rec.released
    if rec.status == "complete" and comp_release == "hold":
        assert not parked and not rec.released
    if rec.status == "aborted" and compressed:
        assert parked, f"compression not released after abort ({rec.reason}); paddle at {model.paddle.height_mm} mm"
    record_on_disk = result.record_path.read_text()
    assert rec.status in record_on_disk
