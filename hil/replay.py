"""Replay a capture (``crescent replay CAPTURE``) to reproduce a field failure.

``--to host``: the device->host bytes of the capture are fed, at their
captured times, to a fresh host :class:`~firmware_host.controller.Controller`
(the real one, sans-IO, capture time as its clock). Its answers to the
device's events (same seq as in the capture) are compared with the captured
host's answers, and everything the host's link reports about the stream
(dropped frames, rejected requests, stale responses, a lost peer) and any
exception are listed: a parsing or sequencing failure seen in the field
shows up here on a desk.

``--to gantry``: the host's requests are written to a gantry, either the
simulated one in virtual time (default, ``--gantry-config``) or any port in
wall-clock time (``--port URL``, e.g. ``crescent gantry --pty`` in another
process), at the captured pace. The gantry's responses are matched by seq to
the captured responses and compared (message type, NAK code); a missing or
different answer is a divergence. The replayed gantry's own events are
answered with ACK as they come (the captured host's answers carry the
original device's sequence numbers and are not replayed).

Divergences are listed in time order; the exit status is 1 when there is any.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from protocols.wire.errors import FrameError
from protocols.wire.framing import FLAG_RESPONSE, FrameDecoder, encode_frame
from protocols.wire.messages import Ack

from hil.capture import DEVICE_TO_HOST, HOST_TO_DEVICE, Packet, Tap
from hil.decode import WireItem, decode_packets


@dataclass
class ReplayReport:
    """What a replay found: ``divergences`` and ``notes`` (link incidents, exceptions), both text lines."""

    target: str
    divergences: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    compared: int = 0
    replayed_packets: list[Packet] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.divergences

    def text(self) -> str:
        lines = [f"replay to {self.target}: {self.compared} answers compared"]
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  DIVERGENCE: {d}" for d in self.divergences]
        lines.append("no divergence" if self.ok else f"{len(self.divergences)} divergence(s)")
        return "\n".join(lines)


def _answer_key(item: WireItem) -> tuple[str, int | None]:
    msg = item.message
    if msg is None:
        return (item.name, None)
    if msg.NAME == "NAK":
        return ("NAK", int(msg.error_code))  # type: ignore[attr-defined]
    return (msg.NAME, None)


def _key_text(key: tuple[str, int | None]) -> str:
    from protocols.wire.catalogue import ErrorCode

    name, code = key
    if code is None:
        return name
    try:
        return f"{name} {ErrorCode(code).name}"
    except ValueError:
        return f"{name} {code}"


def _answers(items: Sequence[WireItem], answer_dir: int) -> dict[int, tuple[float, tuple[str, int | None]]]:
    """First answer per request seq, travelling in ``answer_dir``."""
    out: dict[int, tuple[float, tuple[str, int | None]]] = {}
    for it in items:
        if it.direction == answer_dir and it.is_response and it.frame is not None and it.frame.seq not in out:
            out[it.frame.seq] = (it.t_s, _answer_key(it))
    return out


def _requests(items: Sequence[WireItem], direction: int) -> list[WireItem]:
    seen: set[tuple[int, int, bytes]] = set()
    out = []
    for it in items:
        if it.direction == direction and it.frame is not None and it.frame.ack_req and not it.is_response:
            key = (it.frame.seq, it.frame.msg_id, it.frame.payload)
            if key not in seen:
                seen.add(key)
                out.append(it)
    return out


#: Requests this close to the end of the capture (s) may be unanswered there (the capture stopped first).
END_GRACE_S = 0.2


def _compare(report: ReplayReport, requests: list[WireItem], captured: dict, replayed: dict, who: str) -> None:  # type: ignore[type-arg]
    end = max((r.t_s for r in requests), default=0.0)
    for req in requests:
        seq = req.frame.seq  # type: ignore[union-attr]
        cap = captured.get(seq)
        rep = replayed.get(seq)
        if cap is None and (rep is None or req.t_s > end - END_GRACE_S):
            continue
        report.compared += 1
        if rep is None:
            report.divergences.append(
                f"t={req.t_s:.6f}s {req.name} seq={seq}: captured {who} answered {_key_text(cap[1])}, replay: no answer"
            )
        elif cap is None:
            report.divergences.append(
                f"t={req.t_s:.6f}s {req.name} seq={seq}: captured {who} never answered, replay answered {_key_text(rep[1])}"
            )
        elif cap[1] != rep[1]:
            report.divergences.append(
                f"t={req.t_s:.6f}s {req.name} seq={seq}: captured {who} answered {_key_text(cap[1])}, replay {_key_text(rep[1])}"
            )


# --------------------------------------------------------------------------------------------- host
def replay_to_host(packets: Sequence[Packet], *, seed: int = 0) -> ReplayReport:
    """Feed the device->host side of ``packets`` to a fresh host controller in capture time."""
    from firmware_host.audit import MemoryAudit
    from firmware_host.controller import Controller

    report = ReplayReport("host controller")
    audit = MemoryAudit()
    ctl = Controller(audit=audit, seed=seed)
    tap = Tap()
    start = packets[0].t_s if packets else 0.0
    for p in packets:
        if p.direction != DEVICE_TO_HOST:
            continue
        try:
            ctl.tick(p.t_s)
            out = ctl.data_to_send()
            if out:
                tap.record(HOST_TO_DEVICE, out, p.t_s)
            tap.record(DEVICE_TO_HOST, p.data, p.t_s)
            ctl.receive(p.data, p.t_s)
            out = ctl.data_to_send()
            if out:
                tap.record(HOST_TO_DEVICE, out, p.t_s)
        except Exception as exc:  # noqa: BLE001 - the point of a replay is to surface this
            report.divergences.append(f"t={p.t_s:.6f}s host raised {type(exc).__name__}: {exc}")
            break
    tap.flush()
    report.replayed_packets = tap.packets
    stale = 0
    for entry in audit.entries:
        kind = entry.get("kind")
        if kind == "link" and entry.get("note") == "StaleResponse":
            stale += 1
        elif kind in ("frame_dropped", "rejected", "peer_lost", "send_failed"):
            detail = {k: v for k, v in entry.items() if k not in ("kind", "t")}
            report.notes.append(f"{kind} {detail}")
    if stale:
        report.notes.append(f"{stale} responses to the captured host's own requests arrived (stale for the replay host)")
    items = decode_packets(packets)
    replayed = decode_packets(tap.packets)
    _compare(report, _requests(items, DEVICE_TO_HOST), _answers(items, HOST_TO_DEVICE), _answers(replayed, HOST_TO_DEVICE), "host")
    report.notes.append(f"host mirror at the end: state {getattr(ctl.mirror, 'state', '?')} ({(packets[-1].t_s - start) if packets else 0:.3f} s replayed)")
    return report


# --------------------------------------------------------------------------------------------- gantry
def host_requests_only(packets: Sequence[Packet]) -> list[Packet]:
    """Host->device packets without the host's answers to the captured device's events.

    Those answers carry the original device's sequence numbers; the replayed
    device's events are answered live by :class:`EventAcker` instead.
    """
    out = []
    dec = FrameDecoder()
    for p in packets:
        if p.direction != HOST_TO_DEVICE:
            continue
        frames = [f for f in dec.feed(p.data) if not isinstance(f, FrameError)]
        if frames and all(f.flags & FLAG_RESPONSE for f in frames):
            continue
        out.append(p)
    return out


class EventAcker:
    """Answers every event request in the device's byte stream with ACK (same seq), as a host link would."""

    def __init__(self) -> None:
        self._dec = FrameDecoder()

    def feed(self, data: bytes) -> bytes:
        out = bytearray()
        for f in self._dec.feed(data):
            if isinstance(f, FrameError) or f.flags & FLAG_RESPONSE or not f.ack_req:
                continue
            out += encode_frame(Ack.ID, f.seq, FLAG_RESPONSE, Ack(acked_msg_id=f.msg_id, detail=0).pack())
        return bytes(out)


#: How long a replay to the virtual gantry runs past the last captured packet, s: long enough for the
#: device's answers to land, shorter than the 500 ms watchdog every host asks for (the replayed host falls
#: silent after its last packet; the device must not be judged on the silence the replay itself makes).
REPLAY_TAIL_S = 0.4

def replay_to_virtual_gantry(packets: Sequence[Packet], config: str | Path | None = None, *, seed: int = 0) -> ReplayReport:
    """Write the host->device side of ``packets`` to a simulated gantry in virtual time, at the captured times."""
    import tempfile

    import simpy

    from simulator.gantry import start_virtual_gantry

    report = ReplayReport("simulated gantry (virtual time)")
    tap = Tap()
    t0 = packets[0].t_s if packets else 0.0
    with tempfile.TemporaryDirectory(prefix="crescent-replay-") as tmp:
        env = simpy.Environment()
        _, endpoint = start_virtual_gantry(env, config, seed=seed, data_dir=tmp, event_log=None)

        acker = EventAcker()

        def writer():  # type: ignore[no-untyped-def]
            for p in host_requests_only(packets):
                delay = (p.t_s - t0) - env.now
                if delay > 0:
                    yield env.timeout(delay)
                tap.record(HOST_TO_DEVICE, p.data, env.now)
                endpoint.write(p.data)

        def reader():  # type: ignore[no-untyped-def]
            while True:
                chunk = yield endpoint.read()
                tap.record(DEVICE_TO_HOST, chunk, env.now)
                acks = acker.feed(chunk)
                if acks:
                    tap.record(HOST_TO_DEVICE, acks, env.now)
                    endpoint.write(acks)

        env.process(writer())
        env.process(reader())
        end = (packets[-1].t_s - t0 + REPLAY_TAIL_S) if packets else REPLAY_TAIL_S
        env.run(until=end)
    tap.flush()
    return _finish_gantry_report(report, packets, tap.packets)


def replay_to_port(packets: Sequence[Packet], url: str, *, baud: int = 921600, settle_s: float = 1.0) -> ReplayReport:
    """Write the host->device side of ``packets`` to ``url`` at the captured pace (wall clock)."""
    import serial

    report = ReplayReport(f"gantry at {url}")
    tap = Tap()
    port = serial.serial_for_url(url, baudrate=baud, timeout=0.002)
    try:
        t0 = packets[0].t_s if packets else 0.0
        start = time.monotonic()
        host = host_requests_only(packets)
        acker = EventAcker()
        i = 0
        end = (packets[-1].t_s - t0 + settle_s) if packets else settle_s
        while time.monotonic() - start < end:
            now = time.monotonic() - start
            while i < len(host) and host[i].t_s - t0 <= now:
                port.write(host[i].data)
                tap.record(HOST_TO_DEVICE, host[i].data, now)
                i += 1
            data = port.read(port.in_waiting or 1)
            if data:
                tap.record(DEVICE_TO_HOST, data, time.monotonic() - start)
                acks = acker.feed(data)
                if acks:
                    port.write(acks)
                    tap.record(HOST_TO_DEVICE, acks, time.monotonic() - start)
    finally:
        port.close()
    tap.flush()
    return _finish_gantry_report(report, packets, tap.packets)


def _finish_gantry_report(report: ReplayReport, packets: Sequence[Packet], replayed: list[Packet]) -> ReplayReport:
    report.replayed_packets = replayed
    items = decode_packets(packets)
    rep_items = decode_packets(replayed)
    _compare(report, _requests(items, HOST_TO_DEVICE), _answers(items, DEVICE_TO_HOST), _answers(rep_items, DEVICE_TO_HOST), "gantry")
    cap_events = [it.name for it in _requests(items, DEVICE_TO_HOST)]
    rep_events = [it.name for it in _requests(rep_items, DEVICE_TO_HOST)]
    if cap_events != rep_events:
        report.divergences.append(f"device events differ: captured {_summary(cap_events)}, replay {_summary(rep_events)}")
    return report


def _summary(names: list[str]) -> str:
    from collections import Counter

    return ", ".join(f"{k}x{v}" for k, v in sorted(Counter(names).items())) or "none"

