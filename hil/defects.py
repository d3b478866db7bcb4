"""Deliberately defective gantries: a byte-level proxy between a host and a good gantry.

The simulated gantry's configuration (simulator.gantry.config.GantryConfig)
has no switches for protocol defects, so defects are injected here, on the
wire: :class:`DefectFilter` is a sans-IO transform of the two byte streams
(cut at the 0x00 delimiters, frames decoded and re-encoded with the project's
codec), and :class:`DefectProxy` runs it between a pseudo-terminal (the
"defective gantry" a test connects to) and the real gantry's port. Each defect
breaks one promise of protocols/SPEC.md, so the matching conformance check
must fail:

===================  ==================================================  ======================
defect               what the "device" does wrong                         check that must fail
===================  ==================================================  ======================
no-dedup-answer      never answers a retransmitted request                deduplication
accept-bad-crc       repairs the CRC of corrupt host frames (executes     crc_and_resync
                     frames it should drop)
late-watchdog        keeps the device's watchdog fed for 400 ms after     heartbeat_watchdog
                     the host falls silent (SAFE_HOLD too late)
slow-abort           delays everything after an ABORT by 250 ms           abort_latency
wrong-error-code     reports OUT_OF_RANGE refusals as BAD_STATE           range_rejection
slow-telemetry       sends only every other TELEMETRY frame               telemetry_rate
estop-lost-in-hold   does not latch an e-stop pressed while in           estop_latches_in_every_state
                     SAFE_HOLD (issue 13 defect 1: the press is lost)
copy-in-flight-nak   refuses (NAK BUSY) a copy of a request that          duplicate_burst
                     arrives before the original was answered
hello-clears-fault   a new session (HELLO) in FAULT also clears the       fault_latches_across_hello
                     latched fault
===================  ==================================================  ======================

These are defects a proxy can make: lost, changed or added frames. A defect inside the firmware is
shown with an in-process gantry whose class is patched instead (tests/hil/test_hil_conformance.py,
``_serve_in_thread``): ``estop-lost-in-hold`` loses the e-stop press on the wire (a lost input), while
the firmware that receives the press and does not latch it (``Gantry._latch_cause`` ignoring ESTOP in
SAFE_HOLD, the device double ``IgnoresEstopInSafeHold`` of tests/simulator/test_gantry_safety_properties.py)
must fail estop_latches_in_every_state too; firmwares that resume a plan once a permissive closes again
(as ``ResumesAfterTheDoorCloses`` there) must fail interruption_latches; one that stamps frames when its
late loop reads them must fail stall_honesty.

Run one by hand::

    python -m hil.defects --port /dev/pts/5 --defect slow-abort   # prints "listening pty /dev/pts/N"
"""

from __future__ import annotations

import argparse
import heapq
import os
import sys
import threading
import time
import tty
from dataclasses import dataclass, field

from cobs import cobs

from protocols.wire.catalogue import DeviceState, ErrorCode, SimInput
from protocols.wire.errors import FrameError
from protocols.wire.framing import FLAG_ACK_REQ, FLAG_RESPONSE, Frame, encode_frame, parse_frame
from protocols.wire.messages import (
    Abort, Heartbeat, Hello, HelloReply, Nak, ResetFault, SimSetInput, StateChanged, Status, Telemetry,
)

#: Defect name -> the conformance check it must make fail.
DEFECTS: dict[str, str] = {
    "no-dedup-answer": "deduplication",
    "accept-bad-crc": "crc_and_resync",
    "late-watchdog": "heartbeat_watchdog",
    "slow-abort": "abort_latency",
    "wrong-error-code": "range_rejection",
    "slow-telemetry": "telemetry_rate",
    "estop-lost-in-hold": "estop_latches_in_every_state",
    "copy-in-flight-nak": "duplicate_burst",
    "hello-clears-fault": "fault_latches_across_hello",
}

#: Sequence numbers of the requests the proxy itself sends the device (their answers go nowhere).
PROXY_SEQ_BASE = 0x7E00

LATE_WATCHDOG_S = 0.4
SLOW_ABORT_S = 0.25


def _decode(run: bytes) -> Frame | None:
    body = run.strip(b"\x00")
    if not body:
        return None
    try:
        return parse_frame(cobs.decode(body))
    except (cobs.DecodeError, FrameError):
        return None


def _crc_repaired(run: bytes) -> bytes | None:
    """The run with its CRC recomputed, if it is a COBS frame whose only fault is the CRC."""
    body = run.strip(b"\x00")
    try:
        raw = cobs.decode(body)
    except cobs.DecodeError:
        return None
    if len(raw) < 11:
        return None
    version, flags, seq, msg_id = raw[0], raw[1], int.from_bytes(raw[2:4], "little"), raw[4]
    payload = raw[7:-4]
    if int.from_bytes(raw[5:7], "little") != len(payload):
        return None
    return encode_frame(msg_id, seq, flags, payload, version)


@dataclass
class DefectFilter:
    """Sans-IO defect injector. Feed bytes with the time (s); collect timed output per side.

    ``to_device`` / ``to_host`` hold (release time, bytes) in release order.
    """

    defect: str
    to_device: list[tuple[float, int, bytes]] = field(default_factory=list)
    to_host: list[tuple[float, int, bytes]] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.defect not in DEFECTS and self.defect != "none":
            raise ValueError(f"unknown defect {self.defect!r}; known: {sorted(DEFECTS)}")
        self._buf = {0: bytearray(), 1: bytearray()}
        self._n = 0
        self._seen: dict[int, tuple[int, bytes]] = {}
        self._retransmitted: set[int] = set()
        self._last_host_s: float | None = None
        self._fake_until: float | None = None
        self._next_fake_s = 0.0
        self._delay_until = -1.0
        self._telemetry_count = 0
        self._device_state = -1  # as the device last reported it (STATE_CHANGED, HELLO_REPLY, STATUS)
        self._unanswered: dict[int, tuple[int, bytes]] = {}  # host requests the device has not answered yet
        self._own_seqs: set[int] = set()

    # -- feeding -------------------------------------------------------------------------------
    def from_host(self, data: bytes, now: float) -> None:
        """Bytes the host wrote."""
        self._last_host_s = now
        self._fake_until = None
        for run in self._runs(0, data):
            self._host_run(run, now)

    def from_device(self, data: bytes, now: float) -> None:
        """Bytes the gantry wrote."""
        for run in self._runs(1, data):
            self._device_run(run, now)

    def tick(self, now: float) -> None:
        """Advance timers (late-watchdog keep-alives)."""
        if self.defect != "late-watchdog" or self._last_host_s is None:
            return
        if self._fake_until is None and now - self._last_host_s > 0.05:
            self._fake_until = self._last_host_s + LATE_WATCHDOG_S
            self._next_fake_s = now
        if self._fake_until is not None and now < self._fake_until and now >= self._next_fake_s:
            self._push(self.to_device, now, encode_frame(Heartbeat.ID, 0x7F00, 0, Heartbeat(uptime_ms=0, state=0).pack()))
            self._next_fake_s = now + 0.05

    def due(self, queue: list[tuple[float, int, bytes]], now: float) -> bytes:
        """Pop and join everything in ``queue`` released by ``now``."""
        out = bytearray()
        while queue and queue[0][0] <= now:
            out += heapq.heappop(queue)[2]
        return bytes(out)

    # -- internals -----------------------------------------------------------------------------
    def _push(self, queue: list[tuple[float, int, bytes]], t: float, data: bytes) -> None:
        self._n += 1
        heapq.heappush(queue, (t, self._n, data))

    def _runs(self, side: int, data: bytes) -> list[bytes]:
        buf = self._buf[side]
        buf += data
        out = []
        while True:
            i = buf.find(b"\x00")
            if i < 0:
                break
            if buf[: i + 1].count(0) == i + 1:  # only delimiters so far: keep them in front of the next frame
                j = i + 1
                while j < len(buf) and buf[j] == 0:
                    j += 1
                nxt = buf.find(b"\x00", j)
                if nxt < 0:
                    break
                i = nxt
            run = bytes(buf[: i + 1])
            del buf[: i + 1]
            out.append(run)
        if len(buf) > 4096:  # noise without delimiters: pass it on
            out.append(bytes(buf))
            buf.clear()
        return out

    def _host_run(self, run: bytes, now: float) -> None:
        frame = _decode(run)
        if frame is None and self.defect == "accept-bad-crc":
            repaired = _crc_repaired(run)
            if repaired is not None:
                run = repaired
                frame = _decode(run)
        if frame is not None and frame.flags & FLAG_ACK_REQ:
            key = (frame.msg_id, frame.payload)
            if self._seen.get(frame.seq) == key:
                self._retransmitted.add(frame.seq)
                if self.defect == "copy-in-flight-nak" and self._unanswered.get(frame.seq) == key:
                    nak = Nak(acked_msg_id=frame.msg_id, error_code=int(ErrorCode.BUSY), detail=0)
                    self._push(self.to_host, now, encode_frame(Nak.ID, frame.seq, FLAG_RESPONSE, nak.pack(), frame.version))
                    return  # taken for a new command while the first is still being handled
            self._seen[frame.seq] = key
            self._unanswered[frame.seq] = key
            if (self.defect == "estop-lost-in-hold" and frame.msg_id == SimSetInput.ID
                    and self._device_state == int(DeviceState.SAFE_HOLD)):
                press = SimSetInput.unpack(frame.payload)
                if press.input == int(SimInput.ESTOP_RELEASED) and press.value == 0:
                    press.value = 1  # the press never reaches the device's latch
                    run = encode_frame(frame.msg_id, frame.seq, frame.flags, press.pack(), frame.version)
            if frame.msg_id == Abort.ID and self.defect == "slow-abort":
                self._delay_until = now + 2 * SLOW_ABORT_S
        self._push(self.to_device, now, run)
        if (self.defect == "hello-clears-fault" and frame is not None and frame.msg_id == Hello.ID
                and frame.flags & FLAG_ACK_REQ and self._device_state == int(DeviceState.FAULT)):
            seq = PROXY_SEQ_BASE + len(self._own_seqs)
            self._own_seqs.add(seq)
            self._push(self.to_device, now, encode_frame(ResetFault.ID, seq, FLAG_ACK_REQ, ResetFault(fault_code=0).pack()))

    def _device_run(self, run: bytes, now: float) -> None:
        frame = _decode(run)
        t = now
        if frame is not None:
            if frame.flags & FLAG_RESPONSE:
                self._unanswered.pop(frame.seq, None)
                if frame.seq in self._own_seqs:
                    return  # the answer to the proxy's own request
            msg_cls = {StateChanged.ID: StateChanged, HelloReply.ID: HelloReply, Status.ID: Status}.get(frame.msg_id)
            if msg_cls is not None:
                try:
                    m = msg_cls.unpack(frame.payload)
                    self._device_state = int(m.new_state if msg_cls is StateChanged else m.state)  # type: ignore[attr-defined]
                except Exception:  # noqa: BLE001 - a frame this proxy cannot read is passed on as it is
                    pass
            if self.defect == "no-dedup-answer" and frame.flags & FLAG_RESPONSE and frame.seq in self._retransmitted:
                self._retransmitted.discard(frame.seq)
                return
            if self.defect == "wrong-error-code" and frame.flags & FLAG_RESPONSE and frame.msg_id == Nak.ID:
                nak = Nak.unpack(frame.payload)
                if nak.error_code == ErrorCode.OUT_OF_RANGE:  # type: ignore[attr-defined]
                    nak.error_code = int(ErrorCode.BAD_STATE)  # type: ignore[attr-defined]
                    run = encode_frame(Nak.ID, frame.seq, frame.flags, nak.pack(), frame.version)
            if self.defect == "slow-telemetry" and frame.msg_id == Telemetry.ID:
                self._telemetry_count += 1
                if self._telemetry_count % 2 == 0:
                    return
        if self.defect == "slow-abort" and now < self._delay_until:
            t = now + SLOW_ABORT_S
        self._push(self.to_host, t, run)


class DefectProxy:
    """Runs a :class:`DefectFilter` between a new pseudo-terminal and a gantry port, in a thread.

    ``pty_path`` is the "defective gantry" to connect to. Use as a context manager.
    """

    def __init__(self, gantry_url: str, defect: str, baud: int = 921600) -> None:
        import serial

        self.filter = DefectFilter(defect)
        self.gantry = serial.serial_for_url(gantry_url, baudrate=baud, timeout=0)
        self.master, slave = os.openpty()
        tty.setraw(slave)
        self.pty_path = os.ttyname(slave)
        self._slave = slave
        os.set_blocking(self.master, False)
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name=f"defect-proxy {defect}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        import select

        f = self.filter
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master, self.gantry.fileno()], [], [], 0.002)
            now = time.monotonic()
            if self.master in ready:
                try:
                    data = os.read(self.master, 4096)
                except (BlockingIOError, OSError):
                    data = b""
                if data:
                    f.from_host(data, now)
            if self.gantry.fileno() in ready:
                data = self.gantry.read(self.gantry.in_waiting or 1)
                if data:
                    f.from_device(data, now)
            f.tick(now)
            out = f.due(f.to_device, now)
            if out:
                self.gantry.write(out)
            out = f.due(f.to_host, now)
            if out:
                try:
                    os.write(self.master, out)
                except OSError:
                    pass

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=2.0)
        self.gantry.close()
        os.close(self.master)
        os.close(self._slave)

    def __enter__(self) -> "DefectProxy":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def main(argv: list[str] | None = None) -> int:
    """``python -m hil.defects --port URL --defect NAME``: serve a defective gantry on a new pty."""
    ap = argparse.ArgumentParser(prog="python -m hil.defects", description=__doc__.split("\n")[0])
    ap.add_argument("--port", required=True, help="the good gantry's port (pyserial URL)")
    ap.add_argument("--defect", required=True, choices=sorted(DEFECTS))
    args = ap.parse_args(argv)
    with DefectProxy(args.port, args.defect) as proxy:
        print(f"listening pty {proxy.pty_path}", flush=True)
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            return 0


if __name__ == "__main__":
    sys.exit(main())
