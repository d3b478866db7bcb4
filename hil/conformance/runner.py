"""Run the conformance checks against a port and report (text, JUnit XML, optional capture)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from firmware_host.keys import load_link_key
from firmware_host.serial_adapter import prepare_for_real_time, raise_calling_thread_nice
from protocols.wire.link import LinkConfig
from protocols.wire.signing import Signer, wall_clock_offset

from hil.capture import Tap
from hil.conformance.checks import CHECKS, CheckResult, Context, failed, recover
from hil.conformance.session import Session, SessionError
from hil.junit import ERROR, FAIL, PASS, SKIP, CaseResult, write_junit
from hil.pcap import write_pcap
from hil.rig import Rig, sim_rig

SUITE_NAME = "crescent.conformance"


@dataclass
class SuiteReport:
    """Results in run order; ``ok`` when nothing failed or errored."""

    port: str
    results: list[CaseResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.status in (PASS, SKIP) for r in self.results)

    def by_name(self) -> dict[str, CaseResult]:
        return {r.name: r for r in self.results}

    def text(self) -> str:
        lines = [f"conformance of {self.port}:"]
        for r in self.results:
            lines.append(f"  {r.status.upper():5s} {r.name:34s} {r.time_s:6.2f} s  {r.message}")
        counts = {s: sum(r.status == s for r in self.results) for s in (PASS, FAIL, SKIP, ERROR)}
        lines.append(
            f"{counts[PASS]} passed, {counts[FAIL]} failed, {counts[ERROR]} errors, {counts[SKIP]} skipped"
            + (" - CONFORMANT" if self.ok else " - NOT CONFORMANT")
        )
        return "\n".join(lines)


#: The conformance host's link id (SPEC 2.6): its own high-water mark on the device, apart from an exam host's.
CONFORMANCE_LINK_ID = 2


def open_port(url: str, baud: int = 921600, read_timeout_s: float = 0.002):  # type: ignore[no-untyped-def]
    """Open a pyserial port by URL or device path (short read timeout for the session loop)."""
    import serial

    return serial.serial_for_url(url, baudrate=baud, timeout=read_timeout_s, write_timeout=2.0)


def run_suite(
    port_url: str,
    *,
    rig: Rig | None = None,
    only: Sequence[str] | None = None,
    capture: str | Path | None = None,
    junit: str | Path | None = None,
    seed: int = 0,
) -> SuiteReport:
    """Run the checks (all, or ``only`` those names; handshake always first) against ``port_url``."""
    rig = rig or sim_rig(port_url)
    if rig is not None and rig.port != port_url:
        rig = rig.model_copy(update={"port": port_url})  # the command line's port wins over the file's
    names = list(CHECKS) if not only else ["handshake", *[n for n in only if n != "handshake"]]
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise ValueError(f"unknown check(s) {unknown}; known: {list(CHECKS)}")
    report = SuiteReport(port_url)
    tap = Tap() if capture else None
    port = open_port(port_url, rig.baud)
    # the suite's host is this thread: its heartbeats must not wait behind ordinary work on a loaded
    # machine (a late heartbeat would be blamed on the device); garbage collection kept off its path
    prepare_for_real_time()
    restore_priority = raise_calling_thread_nice()
    try:
        t = rig.timeouts
        # Retransmit for up to connect_s: a slow answer is not a protocol violation here (latency is
        # measured by its own checks), and retransmissions are harmless (the device de-duplicates).
        link_config = LinkConfig(
            ack_timeout_s=t.ack_timeout_ms / 1000.0,
            max_retries=max(5, int(t.connect_s * 1000.0 / t.ack_timeout_ms)),
            peer_timeout_s=2.0,
        )
        key = load_link_key(rig.link_key_file)  # the rig's key file, else CRESCENT_LINK_KEY(_FILE), else unsigned
        signer = None
        if key is not None:
            signer = Signer(key, CONFORMANCE_LINK_ID, clock_offset=wall_clock_offset(time.monotonic(), time.time()))
        session = Session(port, tap=tap, seed=seed, link_config=link_config, signer=signer)
        ctx = Context(session, rig, watchdog_ms=rig.timeouts.watchdog_timeout_ms, heartbeat_ms=rig.timeouts.heartbeat_period_ms)
        session.pump(0.05)
        for name in names:
            t0 = time.monotonic()
            try:
                if name != "handshake":
                    recover(ctx)  # every check starts from IDLE, whatever the previous one left behind
                res: CheckResult = CHECKS[name](ctx)
                status = res.status
            except SessionError as exc:
                res, status = failed(f"protocol failure: {exc}"), FAIL
            except Exception as exc:  # noqa: BLE001 - a check crashing is reported, the suite goes on
                res, status = CheckResult(ERROR, f"{type(exc).__name__}: {exc}", traceback.format_exc()), ERROR
            report.results.append(
                CaseResult(name, status, res.message, time.monotonic() - t0, SUITE_NAME, res.details)
            )
            if name == "handshake" and status != PASS:
                break  # nothing else can run without a session
    finally:
        restore_priority()
        port.close()
        if tap is not None and capture:
            tap.flush()
            write_pcap(capture, tap.packets)
    if junit:
        write_junit(junit, SUITE_NAME, report.results, {"port": port_url, "rig": rig.name})
    return report
