"""Generate protocols/SPEC.md, protocols/wire/test_vectors.yaml and protocols/wire/crescent_wire.h.

Everything in those files that can be derived from the catalogue, the state
tables or the codec is derived here, so the spec cannot drift from the code
(a test regenerates all three and compares). Run::

    python -m protocols.wire.specgen
"""

from __future__ import annotations

import sys
from pathlib import Path

import yaml

from protocols import data_channel
from protocols.wire import crc, device_states, framing, link
from protocols.wire.catalogue import SCALAR_TYPES, DeviceState, load_catalogue
from protocols.wire.vectors import VECTORS

ROOT = Path(__file__).resolve().parent
SPEC_PATH = ROOT.parent / "SPEC.md"
VECTORS_PATH = ROOT / "test_vectors.yaml"
HEADER_PATH = ROOT / "crescent_wire.h"

C_TYPES = {"u8": "uint8_t", "u16": "uint16_t", "u32": "uint32_t", "u64": "uint64_t",
           "i8": "int8_t", "i16": "int16_t", "i32": "int32_t", "i64": "int64_t"}


def _range(f: object) -> str:
    fd = f  # FieldDef
    if fd.type == "str":  # type: ignore[attr-defined]
        return f"0..{fd.max_len} bytes UTF-8"  # type: ignore[attr-defined]
    if fd.type == "array":  # type: ignore[attr-defined]
        return f"0..{fd.max_count} records"  # type: ignore[attr-defined]
    _, _, tmin, tmax = SCALAR_TYPES[fd.type]  # type: ignore[attr-defined]
    if fd.lo == tmin and fd.hi == tmax:  # type: ignore[attr-defined]
        return "any"
    return f"{fd.lo}..{fd.hi}"  # type: ignore[attr-defined]


def _wire_type(f: object) -> str:
    t = f.type  # type: ignore[attr-defined]
    if t == "str":
        return f"u8 len + str[{f.max_len}]"  # type: ignore[attr-defined]
    if t == "array":
        return f"u8 count + record[{f.max_count}]"  # type: ignore[attr-defined]
    return t


def _message_sections() -> str:
    cat = load_catalogue()
    out = ["| id | name | kind | direction | answered by | description |", "|---|---|---|---|---|---|"]
    direction = {"command": "host → device", "event": "device → host", "response": "either", "stream": "either"}
    for m in cat.messages:
        answer = m.response or ("ACK" if m.kind == "event" else "—")
        if m.kind == "command" and m.response:
            answer = f"{m.response} or NAK"
        out.append(f"| 0x{m.id:02X} | {m.name} | {m.kind} | {direction[m.kind]} | {answer} | {m.description} |")
    out.append("")
    for m in cat.messages:
        out.append(f"### 0x{m.id:02X} {m.name} ({m.kind})\n\n{m.description}\n")
        if not m.fields:
            out.append("Empty payload.\n")
            continue
        out.append("| offset | field | wire type | unit | valid range | enum | description |")
        out.append("|---|---|---|---|---|---|---|")
        offset = 0
        for f in m.fields:
            off = str(offset) if offset >= 0 else "—"
            out.append(
                f"| {off} | `{f.name}` | {_wire_type(f)} | {f.unit or '—'} | {_range(f)} | {f.enum or '—'} | {f.description} |"
            )
            if f.is_scalar and offset >= 0:
                offset += SCALAR_TYPES[f.type][1]
            else:
                offset = -1
            if f.type == "array":
                out.append("")
                out.append(f"Each `{f.name}` record ({sum(SCALAR_TYPES[r.type][1] for r in f.record)} bytes):\n")
                out.append("| offset | field | wire type | unit | valid range | description |")
                out.append("|---|---|---|---|---|---|")
                roff = 0
                for r in f.record:
                    out.append(f"| {roff} | `{r.name}` | {r.type} | {r.unit or '—'} | {_range(r)} | {r.description} |")
                    roff += SCALAR_TYPES[r.type][1]
        out.append("")
    return "\n".join(out)


def _enum_sections() -> str:
    cat = load_catalogue()
    out = []
    for name, (desc, values) in cat.enums.items():
        out.append(f"**{name}** — {desc}\n")
        out.append("| value | name |\n|---|---|")
        out += [f"| {v} | {k} |" for k, v in values.items()]
        out.append("")
    for title, bits in (("Interlock bits (set = safe)", cat.interlock_bits), ("Capability bits", cat.capability_bits)):
        out.append(f"**{title}**\n\n| bit | mask | name |\n|---|---|---|")
        out += [f"| {b} | 0x{1 << b:02X} | {k} |" for k, b in bits.items()]
        out.append("")
    out.append("**NAK error codes**\n\n| code | name | meaning |\n|---|---|---|")
    out += [f"| {c} | {k} | {t} |" for k, (c, t) in cat.error_codes.items()]
    return "\n".join(out)


def _mermaid(transitions: dict, title: str) -> str:
    lines = ["```mermaid", "stateDiagram-v2", f"    %% {title}"]
    for (state, trigger), nxt in transitions.items():
        s = getattr(state, "name", state)
        n = getattr(nxt, "name", nxt)
        lines.append(f"    {s} --> {n}: {trigger.value}")
    lines.append("```")
    return "\n".join(lines)


def _allowed_table() -> str:
    cat = load_catalogue()
    commands = [m.name for m in cat.messages if m.kind == "command"]
    states = list(DeviceState)
    out = ["| command | " + " | ".join(s.name for s in states) + " |", "|---|" + "---|" * len(states)]
    for c in commands:
        cells = ["✔" if device_states.command_allowed(s, c) else "·" for s in states]
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _vector_section() -> str:
    out = []
    for i, v in enumerate(VECTORS, 1):
        out.append(f"**V{i} `{v.name}`** — {v.description}\n")
        if v.message:
            out.append(f"- message: {v.message}, seq 0x{v.seq:04X}, flags 0x{v.flags:02X}")
            msg = v.build_message()
            shown = {k: (f"[{len(val)} records]" if isinstance(val, list) and len(val) > 3 else val)
                     for k, val in msg.to_dict().items()}
            out.append(f"- fields: `{shown}`")
            frame = v.frame()
            assert frame is not None
            out.append(f"- frame before stuffing ({len(frame)} bytes): `{_short_hex(frame)}`")
        out.append(f"- on the wire ({len(v.wire())} bytes): `{_short_hex(v.wire())}`")
        out.append(f"- receiver: {v.receiver}\n")
    out.append("The full hex of every vector is in `protocols/wire/test_vectors.yaml`.")
    return "\n".join(out)


def _short_hex(b: bytes, limit: int = 96) -> str:
    h = b.hex(" ")
    if len(b) <= limit:
        return h
    return b[:48].hex(" ") + f" … ({len(b) - 64} bytes) … " + b[-16:].hex(" ")


def render_spec() -> str:
    """The text of SPEC.md."""
    cat = load_catalogue()
    cfg = link.LinkConfig()
    return SPEC_TEMPLATE.format(
        version=cat.protocol_version,
        min_version=cat.min_supported_version,
        header_size=framing.HEADER_SIZE,
        max_payload=framing.MAX_PAYLOAD,
        max_frame=framing.MAX_FRAME,
        max_encoded=framing.MAX_ENCODED,
        max_bits=(framing.HEADER_SIZE + framing.MAX_PAYLOAD) * 8,
        poly=crc.POLY,
        poly_r=crc.POLY_REFLECTED,
        check=crc.CHECK,
        residue=crc.RESIDUE,
        hb_ms=round(cfg.heartbeat_period_s * 1000),
        peer_ms=round(cfg.peer_timeout_s * 1000),
        ack_ms=round(cfg.ack_timeout_s * 1000),
        retries=cfg.max_retries,
        queue=cfg.max_queue,
        window=cfg.dedup_window,
        messages=_message_sections(),
        enums=_enum_sections(),
        sender_diagram=_mermaid(link.SENDER_TRANSITIONS, "sender side of the link"),
        peer_diagram=_mermaid(link.PEER_TRANSITIONS, "peer liveness watch"),
        device_diagram=_mermaid(device_states.TRANSITIONS, "device states"),
        allowed=_allowed_table(),
        vectors=_vector_section(),
        dc_max_line=data_channel.MAX_LINE,
        dc_max_frame_mib=data_channel.MAX_FRAME_BYTES // (1024 * 1024),
    )


def render_vectors() -> str:
    """The text of test_vectors.yaml."""
    data = []
    for v in VECTORS:
        item: dict[str, object] = {"name": v.name, "description": v.description, "receiver": v.receiver}
        if v.message:
            msg = v.build_message()
            item.update(message=v.message, seq=v.seq, flags=v.flags, fields=msg.to_dict(), frame_hex=v.frame().hex())  # type: ignore[union-attr]
        item["wire_hex"] = v.wire().hex()
        data.append(item)
    head = "# Generated by `python -m protocols.wire.specgen` from protocols/wire/vectors.py. Do not edit.\n"
    return head + yaml.safe_dump({"crc32c_check": {"input": "123456789", "crc": crc.CHECK}, "vectors": data},
                                 sort_keys=False, width=120)


def render_c_header() -> str:
    """A C header with ids, enums, error codes and packed payload structs."""
    cat = load_catalogue()
    out = [
        "/* Crescent wire protocol - generated by `python -m protocols.wire.specgen`. Do not edit. */",
        "#ifndef CRESCENT_WIRE_H", "#define CRESCENT_WIRE_H", "#include <stdint.h>", "",
        f"#define CRESCENT_PROTOCOL_VERSION {cat.protocol_version}u",
        f"#define CRESCENT_HEADER_SIZE {framing.HEADER_SIZE}u",
        f"#define CRESCENT_MAX_PAYLOAD {framing.MAX_PAYLOAD}u",
        f"#define CRESCENT_MAX_FRAME {framing.MAX_FRAME}u",
        f"#define CRESCENT_MAX_ENCODED {framing.MAX_ENCODED}u",
        f"#define CRESCENT_CRC32C_POLY_REFLECTED 0x{crc.POLY_REFLECTED:08X}u",
        f"#define CRESCENT_CRC32C_CHECK 0x{crc.CHECK:08X}u",
        "#define CRESCENT_FLAG_ACK_REQ 0x01u", "#define CRESCENT_FLAG_RESPONSE 0x02u",
        "#define CRESCENT_FLAG_SYN 0x04u", "#define CRESCENT_FLAG_RETRANSMIT 0x08u", "",
    ]
    for m in cat.messages:
        out.append(f"#define CRESCENT_MSG_{m.name} 0x{m.id:02X}u")
    out.append("")
    for name, (_, values) in cat.enums.items():
        out.append(f"enum crescent_{name.lower()} {{")
        out += [f"    CRESCENT_{name.upper()}_{k} = {v}," for k, v in values.items()]
        out.append("};")
    out.append("enum crescent_error_code {")
    out += [f"    CRESCENT_ERR_{k} = {c}," for k, (c, _) in cat.error_codes.items()]
    out.append("};")
    out += [f"#define CRESCENT_INTERLOCK_{k} (1u << {b})" for k, b in cat.interlock_bits.items()]
    out += [f"#define CRESCENT_CAP_{k} (1u << {b})" for k, b in cat.capability_bits.items()]
    out += ["", "#pragma pack(push, 1)", "/* Little-endian on the wire; these structs match on little-endian targets. */"]
    for m in cat.messages:
        scalars = [f for f in m.fields if f.is_scalar]
        tail = next((f for f in m.fields if not f.is_scalar), None)
        if tail is not None and tail.type == "array":
            out.append(f"typedef struct {{")
            out += [f"    {C_TYPES[r.type]} {r.name};" for r in tail.record]
            out.append(f"}} crescent_{m.name.lower()}_{tail.name}_t;")
        out.append(f"typedef struct {{")
        if not scalars and tail is None:
            out.append("    uint8_t _empty[1]; /* zero-length payload; do not send this byte */")
        out += [f"    {C_TYPES[f.type]} {f.name};" for f in scalars]
        if tail is not None:
            out.append(f"    uint8_t {tail.name}_len;")
            if tail.type == "str":
                out.append(f"    char {tail.name}[{tail.max_len}];")
            else:
                out.append(f"    crescent_{m.name.lower()}_{tail.name}_t {tail.name}[{tail.max_count}];")
        out.append(f"}} crescent_{m.name.lower()}_t;")
    out += ["#pragma pack(pop)", "", "#endif /* CRESCENT_WIRE_H */", ""]
    return "\n".join(out)


OUTPUTS = ((SPEC_PATH, render_spec), (VECTORS_PATH, render_vectors), (HEADER_PATH, render_c_header))


def main() -> int:
    for path, render in OUTPUTS:
        path.write_text(render(), encoding="utf-8")
        print(f"wrote {path}")
    return 0


SPEC_TEMPLATE = """\
# Crescent wire protocol, version {version}

<!-- Generated by `python -m protocols.wire.specgen` from protocols/wire/catalogue.yaml, link.py,
     device_states.py and vectors.py. Do not edit by hand: edit those and regenerate. -->

This is the contract between a host and a DBT gantry (simulated or real) over a serial line
(UART 921600 baud 8N1 by default, or any byte stream: pty, TCP). It is written so that a firmware
engineer can implement the device side in C from this page alone; `protocols/wire/crescent_wire.h`
is the matching header. Images never travel on this link: it carries commands, telemetry and
*image-ready* events; pixels go over a separate data channel named in DEVICE_INFO:

* `file:///dir`: a directory the host can read; the frame is the file `dir/<locator>`.
* `tcp://host:port`: a frame server. The host sends the ASCII line `GET <locator>` (LF-terminated);
  the device answers the line `OK <size>` followed by exactly `size` bytes of raw frame, or the line
  `NO <reason>` when it has no such frame (yet). The connection stays open for the next request.
  A locator is 1-200 characters from `[A-Za-z0-9_.-]` and does not start with `.`; lines are at
  most {dc_max_line} bytes; a frame at most {dc_max_frame_mib} MiB. A malformed request is answered with `NO` and the
  connection closed. (Reference codec: `protocols/data_channel.py`.)

The frame bytes are raw little-endian pixels, `rows x cols` at `bits` per pixel, as IMAGE_READY
describes them. Either way the host checks size and CRC-32C against IMAGE_READY.

Versions: this is version {version}; a receiver accepts versions {min_version}..{version}.

## 1. Frame

All integers are little-endian. An unstuffed frame is:

| offset | size | field | meaning |
|---|---|---|---|
| 0 | 1 | version | protocol version ({version}) |
| 1 | 1 | flags | bit0 ACK_REQ (receiver must answer), bit1 RESPONSE (answers `seq`), bit2 SYN (first request of a session), bit3 RETRANSMIT (repeat of an earlier frame), bits 4–7 reserved, must be 0 |
| 2 | 2 | seq | sequence number, u16, wraps; a response carries its request's seq |
| 4 | 1 | msg_id | message id (section 4) |
| 5 | 2 | length | payload length n, 0..{max_payload} |
| 7 | n | payload | message fields (section 4) |
| 7+n | 4 | crc | CRC-32C of bytes 0..7+n−1 |

Sizes: header {header_size} bytes, maximum payload {max_payload} bytes, maximum frame {max_frame} bytes
unstuffed, {max_encoded} bytes stuffed, plus the two delimiters.

### 1.1 CRC

CRC-32C (Castagnoli; "CRC-32/ISCSI"): width 32, polynomial 0x{poly:08X} (reflected 0x{poly_r:08X}),
init 0xFFFFFFFF, reflected input and output, xor-out 0xFFFFFFFF. Check value of the ASCII string
"123456789": **0x{check:08X}**; residue 0x{residue:08X}. Transmitted least significant byte first.

Why: for data words up to 5,243 bits CRC-32C has Hamming distance 6 (every pattern of up to 5 bit
errors is detected), and HD 4 up to 2^31 bits (Koopman, "32-Bit Cyclic Redundancy Codes for
Internet Applications", DSN 2002). Our largest data word (header + maximum payload) is
{max_bits} bits, inside the HD 6 range; this is why the payload is capped at {max_payload} bytes. CRC-32C
also has hardware support on x86 (SSE 4.2), ARMv8 and the configurable CRC units of common MCUs.

### 1.2 Byte stuffing and delimiting

The frame is encoded with COBS (Cheshire & Baker, "Consistent Overhead Byte Stuffing", IEEE/ACM ToN
1999), which removes every 0x00 at a cost of at most one byte in 254. On the wire a frame is
`0x00, COBS(frame), 0x00`: the leading delimiter ends whatever noise the line picked up since the
last frame, so a frame that follows noise is not lost with it. A receiver:

1. accumulates bytes until 0x00; an empty run (consecutive delimiters) is idle fill, not an error;
2. if more than {max_encoded} bytes arrive without a delimiter, reports one TOO_LONG error, discards
   them and everything up to the next 0x00 (bounded memory);
3. COBS-decodes the run (error: drop), checks the size (≥ 11 bytes), the CRC (error: drop) and that
   the length field equals the frame size − 11 (error: drop);
4. never answers a frame that failed these checks — its header cannot be trusted. The sender's
   retransmission recovers. Resynchronisation is automatic at the next delimiter.

## 2. Link layer

Three kinds of message (section 4 says which is which):

- **requests** — *commands* (host → device) and *events* (device → host) are sent with ACK_REQ and
  answered by exactly one *response* frame (RESPONSE flag, same seq): a command by its typed reply,
  ACK or NAK; an event by ACK.
- **responses** — never answered.
- **stream** — HEARTBEAT and TELEMETRY: no ACK_REQ, never answered, never retransmitted.

### 2.1 Sending: stop-and-wait

Each side keeps its own request queue (bounded, {queue} requests) and has at most one request in
flight. The request gets the next seq; if its response does not arrive within the ACK timeout the
identical frame is sent again with RETRANSMIT set, up to the retry limit; then the request is
reported failed and the next one goes. One request in flight means requests execute in order.

The first request of a session (the host's HELLO; the device's first event after it) carries SYN.

### 2.2 Receiving: exactly once

A receiver remembers the last {window} requests it accepted: seq, msg_id, payload and the encoded
response it sent. A request whose (seq, msg_id, payload) equals one of them is a **retransmission**:
the cached response frame is sent again (nothing is sent if the application has not answered yet)
and the request is **not executed again**. This is what makes a retransmitted FIRE fire once. A
request that differs in any of the three is new. SYN clears the memory (a new peer session).

A request whose CRC is good but which cannot be executed as sent is answered with NAK and not
executed: unknown msg id (UNKNOWN_MESSAGE), payload size wrong for the layout (BAD_LENGTH), a field
outside its valid range (OUT_OF_RANGE, detail = field index; for array records 1000 × (record + 1)
+ field index), an undefined enum value (BAD_ENUM), version not spoken (VERSION_MISMATCH), reserved
flags set (BAD_FLAGS). A device adds its own refusals (state, limits, interlocks: section 5).

### 2.3 Liveness and the watchdog

Both sides send HEARTBEAT every heartbeat period (any frame also proves liveness). A side that has
received no valid frame for the watchdog timeout declares the peer lost. **The device then enters
SAFE_HOLD within 100 ms: motion stopped, any exposure terminated, the plan disarmed**; a host
reports the loss to its user. HELLO sets the device's watchdog timeout for the session.

The watchdog is judged on when frames **arrived** at the device (the time its receiver took them off
the line), not on when its control loop got round to processing them: a device that was late itself
never declares a live host lost. A device that cannot keep real time reports FAULT
`REALTIME_OVERRUN` (detail = lag in ms): not latched when its control loop has fallen behind the
wall clock by more than 250 ms (a host notes it and goes on); latched (X-rays off, motion braked,
state FAULT) when the lag passes 1 s while motion, an armed plan or an exposure is under way. Every
host path of this project asks for a 500 ms watchdog.

### 2.4 Timing constants (defaults)

| constant | value | note |
|---|---|---|
| heartbeat period | {hb_ms} ms | HELLO.heartbeat_period_ms |
| watchdog timeout | {peer_ms} ms | HELLO.watchdog_timeout_ms (50..10000 ms) |
| ACK timeout | {ack_ms} ms | per attempt; fixed, no back-off |
| retries | {retries} | after the first attempt; then the request fails |
| request queue | {queue} | per side |
| de-duplication memory | {window} requests | |
| UART | 921600 baud, 8N1 | a byte costs 10 bit times (10.85 µs) |

### 2.5 Link state diagrams

Sender:

{sender_diagram}

Peer liveness:

{peer_diagram}

## 3. Device state machine

A gantry is in one of the DeviceState states. It moves between them as the table says; any other
command is refused with NAK BAD_STATE (NO_SESSION before HELLO), and the device reports every
change with STATE_CHANGED.

{device_diagram}

Commands accepted per state (✔ accepted, · refused):

{allowed}

Safety rules the device enforces on its own, whatever the host sends:

- X-rays only inside an armed plan's entries, fired by FIRE carrying that plan's id and digest,
  with every interlock bit set (door closed, e-stop released, hand switch held, paddle in range,
  detector ready, generator ready). An interlock opening ends the exposure at once.
- ARM_PLAN's digest is the CRC-32C of the ARM_PLAN payload with its 4 digest bytes removed; a
  mismatch is refused with DIGEST_MISMATCH.
- Every value is checked against the device's limits (DEVICE_INFO); the compression force never
  exceeds the powered-drive limit, whatever the target; an independent backup timer ends any
  exposure that overruns; the anode heat budget is checked before FIRE.
- A retransmitted command is answered from the cache and never executed twice (section 2.2).
- Watchdog: section 2.3.

## 4. Messages

{messages}

## 5. Enumerations, bits and error codes

{enums}

## 6. Test vectors

Every vector below is checked by the test suite in both directions.

{vectors}
"""

if __name__ == "__main__":
    sys.exit(main())
