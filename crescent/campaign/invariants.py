"""The campaign's invariants, checked from the device's event log, the capture and the record on disk.

Never from the controller's own verdict: the device log says what the device did (armed plans,
exposures with their windows, images with their CRC, faults, states, interlocks, the paddle's
force at the end), the capture what crossed the line (:mod:`hil.check_capture`), the exam folder
what the host wrote (record, images, each CRC-32C recomputed here).

(a) no exposure outside an armed window with interlocks closed;
(b) no projection exposed twice;
(c) every exposure the device made is accounted for: its image stored with the device's CRC,
    or listed missing with a reason; never fewer exposures than the device made;
(d) safe state within 100 ms of a fault that requires it (X-rays off, FAULT / SAFE_HOLD / BOOT);
(e) compression released as the exam's policy says, never left on a fault that requires release;
(f) record status, reason and fault true;
(g) no exception, no hang (each exam capped in virtual time).

Everything here works on plain data (dicts and lists), so a test can hand it a broken device log
or a lying record and see the right invariant fail.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: Invariant letters and their one-line meaning (table and report order).
INVARIANTS: dict[str, str] = {
    "a": "no exposure outside an armed window with interlocks closed",
    "b": "no projection exposed twice",
    "c": "every exposure accounted for (image with matching CRC, or missing with a reason)",
    "d": "safe state within 100 ms of a fault that requires it",
    "e": "compression released as the policy says",
    "f": "record status and reason true",
    "g": "no exception, no hang",
}

#: Time allowed from a fault to the safe state, s.
SAFE_STATE_S = 0.100

#: All interlock bits set (protocols.wire.catalogue.ALL_INTERLOCKS; 6 bits).
ALL_INTERLOCKS = 0b111111
DOOR_BIT, ESTOP_BIT = 1 << 0, 1 << 1

#: Capture rules (hil.check_capture) and the invariant each one evidences.
CAPTURE_RULES = {"fire-without-arm": "a", "exposure-outside-plan": "a", "duplicate-execution": "b"}

#: Force below which the breast counts as released, N.
RELEASED_N = 1.0


@dataclass(frozen=True)
class Violation:
    """One broken invariant."""

    invariant: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"invariant": self.invariant, "message": self.message}


@dataclass
class Evidence:
    """What the checks read. ``stored_crc`` maps frame id -> CRC-32C recomputed from the stored file
    (None when the file is missing or unreadable); ``paddle_force_n`` is the force at the end."""

    device: list[dict[str, Any]]
    record: dict[str, Any] | None
    stored_crc: dict[int, int | None]
    paddle_force_n: float
    release_policy: str  # "after_exam" or "hold"
    release_on_fault: bool
    capture_errors: list[dict[str, Any]]
    host_peer_lost: bool = False
    error: str | None = None


def _s(us: int) -> float:
    return us * 1e-6


def exposures(device: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Device exposure records with their window start/end in s (device clock)."""
    out = []
    for r in device:
        if r["kind"] == "exposure":
            end = _s(r["t_us"])
            out.append({**r, "t_start": end - float(r.get("window_s", 0.0)), "t_end": end})
    return out


def _interlocks_at(device: list[dict[str, Any]], t_s: float) -> int:
    mask = next((r.get("interlocks", ALL_INTERLOCKS) for r in device if r["kind"] == "boot"), ALL_INTERLOCKS)
    for r in device:
        if _s(r["t_us"]) > t_s:
            break
        if r["kind"] == "interlocks":
            mask = int(r["mask"])
    return mask


def check_a(ev: Evidence) -> list[Violation]:
    out: list[Violation] = []
    armed: dict[int, int] = {}
    for r in ev.device:
        if r["kind"] == "armed":
            armed[int(r["plan_id"])] = int(r["n"])
        elif r["kind"] == "exposure":
            key = (int(r["plan_id"]), int(r["index"]))
            if key[0] not in armed:
                out.append(Violation("a", f"exposure {key} of a plan the device never armed"))
            elif key[1] >= armed[key[0]]:
                out.append(Violation("a", f"exposure {key} beyond the armed plan's {armed[key[0]]} entries"))
    for x in exposures(ev.device):
        mask = _interlocks_at(ev.device, x["t_start"] - 1e-9)
        if mask & ALL_INTERLOCKS != ALL_INTERLOCKS:
            out.append(Violation("a", f"exposure ({x['plan_id']}, {x['index']}) started at {x['t_start']:.6f} s with "
                                 f"interlocks 0b{mask:06b} open"))
    out += [Violation(CAPTURE_RULES[f["rule"]], f"capture: {f['rule']}: {f['message']}")
            for f in ev.capture_errors if CAPTURE_RULES.get(f["rule"]) == "a" and not _late_report(f, ev.device)]
    return out


_LATE = re.compile(r"plan (\d+) index (\d+) (after the plan was aborted|but no such plan is running)")


def _late_report(finding: dict[str, Any], device: list[dict[str, Any]]) -> bool:
    """A capture's "exposure after ABORT" / "no such plan running" that is only a late report: the
    device log shows the exposure made inside its armed plan, before the device took an ABORT; its
    EXPOSURE_DONE waited on a dead line and crossed it after the ABORT or a new session (HELLO)."""
    m = _LATE.search(finding.get("message", ""))
    if not m:
        return False
    key = (int(m.group(1)), int(m.group(2)))
    armed_at = {int(r["plan_id"]): (r["t_us"], int(r["n"])) for r in device if r["kind"] == "armed"}
    made = [r for r in device if r["kind"] == "exposure" and (int(r["plan_id"]), int(r["index"])) == key]
    if not made or key[0] not in armed_at:
        return False
    t_armed, n = armed_at[key[0]]
    aborts = [r["t_us"] for r in device if r["kind"] == "abort" and r["t_us"] >= t_armed]
    return key[1] < n and made[0]["t_us"] >= t_armed and (not aborts or made[0]["t_us"] <= min(aborts))


def check_b(ev: Evidence) -> list[Violation]:
    seen: set[tuple[int, int]] = set()
    out: list[Violation] = []
    for r in ev.device:
        if r["kind"] == "exposure":
            key = (int(r["plan_id"]), int(r["index"]))
            if key in seen:
                out.append(Violation("b", f"projection {key} exposed twice"))
            seen.add(key)
    out += [Violation("b", f"capture: {f['rule']}: {f['message']}")
            for f in ev.capture_errors if CAPTURE_RULES.get(f["rule"]) == "b"]
    return out


def _record_exposures(rec: dict[str, Any]) -> dict[int, dict[str, Any]]:
    return {int(e["frame_id"]): e for e in rec.get("exposures", [])}


def _stored_frames(rec: dict[str, Any]) -> set[int]:
    frames = set()
    header = rec.get("header") or {}
    for p in header.get("projections", []):
        frames.add(int(p["exposure"]["frame_id"]))
    if rec.get("scout"):
        frames.add(int(rec["scout"]["exposure"]["frame_id"]))
    return frames


def check_c(ev: Evidence) -> list[Violation]:
    rec = ev.record
    dev = exposures(ev.device)
    if rec is None:
        return [Violation("c", f"no exam record written; the device made {len(dev)} exposure(s)")] if dev else []
    out: list[Violation] = []
    images = {int(r["frame_id"]): int(r["checksum"]) for r in ev.device if r["kind"] == "image"}
    listed = _record_exposures(rec)
    stored = _stored_frames(rec)
    reasons = {int(k): v for k, v in (rec.get("missing_reasons") or {}).items()}
    for x in dev:
        fid = int(x["frame_id"])
        if fid not in listed:
            out.append(Violation("c", f"exposure ({x['plan_id']}, {x['index']}) frame {fid} made by the device is "
                                 "not in the record"))
            continue
        if fid in stored:
            crc = ev.stored_crc.get(fid)
            if fid not in images:
                out.append(Violation("c", f"frame {fid}: an image is stored but the device never produced one"))
            elif crc is None:
                out.append(Violation("c", f"frame {fid}: the record lists a stored image that is not on disk"))
            elif crc != images[fid]:
                out.append(Violation("c", f"frame {fid}: stored image CRC-32C 0x{crc:08X} != device 0x{images[fid]:08X}"))
        elif not reasons.get(fid):
            out.append(Violation("c", f"frame {fid} (exposure {x['index']}): no stored image and no missing reason"))
    claimed = rec.get("device_exposures")
    if claimed is not None and claimed < len(dev):
        out.append(Violation("c", f"record says the device made {claimed} exposure(s); it made {len(dev)}"))
    return out


def _faults_requiring_safe_state(device: list[dict[str, Any]]) -> list[tuple[float, str]]:
    """(time s, name) of latched faults, e-stop, door opening, watchdog and resets."""
    out: list[tuple[float, str]] = []
    prev = next((r.get("interlocks", ALL_INTERLOCKS) for r in device if r["kind"] == "boot"), ALL_INTERLOCKS)
    for r in device:
        k = r["kind"]
        if k == "fault" and (r.get("latched") or r.get("fault") in ("WATCHDOG", "ESTOP")):
            out.append((_s(r["t_us"]), str(r["fault"])))
        elif k == "interlocks":
            mask = int(r["mask"])
            opened = prev & ~mask
            if opened & DOOR_BIT:
                out.append((_s(r["t_us"]), "DOOR_OPEN"))
            if opened & ESTOP_BIT:
                out.append((_s(r["t_us"]), "ESTOP"))
            prev = mask
        elif k == "state" and r.get("trigger") == "DEVICE_RESET":
            out.append((_s(r["t_us"]), "DEVICE_RESET"))
    return out


_STOPPED = {"FAULT", "SAFE_HOLD", "BOOT"}


def check_d(ev: Evidence) -> list[Violation]:
    out: list[Violation] = []
    dev = exposures(ev.device)
    for t_f, name in _faults_requiring_safe_state(ev.device):
        limit = t_f + SAFE_STATE_S
        for x in dev:
            if x["t_start"] <= t_f < x["t_end"] and x["t_end"] > limit + 1e-9:
                out.append(Violation("d", f"{name} at {t_f:.6f} s: X-rays on until {x['t_end']:.6f} s "
                                     f"({(x['t_end'] - t_f) * 1e3:.1f} ms)"))
        # a new exposure after the fault without a new plan armed in between
        rearmed = [_s(r["t_us"]) for r in ev.device if r["kind"] == "armed" and _s(r["t_us"]) > t_f]
        for x in dev:
            if x["t_start"] > t_f and not any(t_f < t <= x["t_start"] for t in rearmed):
                out.append(Violation("d", f"{name} at {t_f:.6f} s: exposure ({x['plan_id']}, {x['index']}) started "
                                     f"at {x['t_start']:.6f} s without a new plan"))
        if name in ("DOOR_OPEN",):
            continue
        reached = any(r["kind"] == "state" and r.get("new") in _STOPPED and t_f - 1e-9 <= _s(r["t_us"]) <= limit + 1e-9
                      for r in ev.device)
        already = _state_at(ev.device, t_f) in _STOPPED
        if not (reached or already) and _stops_state(name):
            out.append(Violation("d", f"{name} at {t_f:.6f} s: no FAULT / SAFE_HOLD / BOOT within "
                                 f"{SAFE_STATE_S * 1e3:.0f} ms"))
    return out


def _stops_state(name: str) -> bool:
    return name not in ("DOOR_OPEN",)


def _state_at(device: list[dict[str, Any]], t_s: float) -> str:
    state = "BOOT"
    for r in device:
        if _s(r["t_us"]) > t_s + 1e-9:
            break
        if r["kind"] == "state":
            state = str(r["new"])
    return state


def _ending_faults(device: list[dict[str, Any]]) -> list[str]:
    return [name for _, name in _faults_requiring_safe_state(device)]


def check_e(ev: Evidence) -> list[Violation]:
    rec = ev.record
    compressed = any(r["kind"] == "command" and r.get("msg") == "COMPRESS" for r in ev.device)
    if not compressed:
        return []
    released = ev.paddle_force_n < RELEASED_N
    aborted = rec is not None and rec.get("status") == "aborted"
    faults = _ending_faults(ev.device)
    must_release = ev.release_policy == "after_exam" or (aborted and ev.release_on_fault)
    if rec is None:
        must_release = ev.release_on_fault or ev.release_policy == "after_exam"
    if must_release and not released:
        why = f"fault(s) {', '.join(sorted(set(faults)))}" if faults else f"policy {ev.release_policy}"
        return [Violation("e", f"breast left compressed at {ev.paddle_force_n:.1f} N ({why}; record "
                          f"{rec.get('status') if rec else 'missing'})")]
    if rec is not None and rec.get("status") == "complete" and ev.release_policy == "hold" and not faults and released:
        return [Violation("e", "compression released although the exam holds it")]
    return []


_COUNT = re.compile(r"(\d+) of (\d+) exposures")


def check_f(ev: Evidence) -> list[Violation]:
    rec = ev.record
    if rec is None:
        return [Violation("f", "no exam record written")] if ev.error is None else []
    out: list[Violation] = []
    status = rec.get("status")
    if status not in ("complete", "incomplete", "aborted"):
        out.append(Violation("f", f"record status {status!r}"))
    if status != "complete" and not rec.get("reason"):
        out.append(Violation("f", f"record {status} without a reason"))
    main = int(rec.get("plan_id") or 0)
    dev_main = [x for x in exposures(ev.device) if int(x["plan_id"]) == main]
    if status == "complete":
        planned = int(rec.get("planned_count") or 0)
        bad = [x for x in dev_main if int(x["status"]) != 0]
        if len(dev_main) != planned or bad:
            out.append(Violation("f", f"record complete but the device made {len(dev_main)} of {planned} exposures"
                                 f"{f', {len(bad)} not OK' if bad else ''}"))
        if rec.get("missing_images"):
            out.append(Violation("f", f"record complete with images missing {rec['missing_images']}"))
    m = _COUNT.search(rec.get("reason") or "")
    if m and main and int(m.group(1)) != len(dev_main):
        out.append(Violation("f", f"record says {m.group(0)}; the device made {len(dev_main)}"))
    faults = set(_ending_faults(ev.device)) | {str(r["fault"]) for r in ev.device if r["kind"] == "fault"}
    if ev.host_peer_lost or any(r["kind"] == "peer_lost" for r in ev.device):
        faults.add("WATCHDOG")
    named = rec.get("fault")
    if named is not None and named not in faults:
        out.append(Violation("f", f"record names fault {named}; the device reports {sorted(faults) or 'none'}"))
    ending = _ending_faults(ev.device)
    if named is None and ending and status == "complete":
        out.append(Violation("f", f"record complete with no fault named; the device reports {sorted(set(ending))}"))
    return out


def check_g(ev: Evidence) -> list[Violation]:
    return [Violation("g", ev.error)] if ev.error else []


CHECKS = {"a": check_a, "b": check_b, "c": check_c, "d": check_d, "e": check_e, "f": check_f, "g": check_g}


def check_all(ev: Evidence) -> list[Violation]:
    """Every invariant over ``ev``; the violations in invariant order."""
    out: list[Violation] = []
    for letter, fn in CHECKS.items():
        if letter != "g" and ev.error and letter in "f":
            continue
        out += fn(ev)
    return out
