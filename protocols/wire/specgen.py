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
from protocols.geometry import AcquisitionGeometry
from protocols.wire import crc, device_states, framing, link, signing
from protocols.wire.catalogue import SCALAR_TYPES, DeviceState, load_catalogue
from protocols.wire.vectors import TEST_LINK_KEY_HEX, VECTORS

ROOT = Path(__file__).resolve().parent
SPEC_PATH = ROOT.parent / "SPEC.md"
VECTORS_PATH = ROOT / "test_vectors.yaml"
HEADER_PATH = ROOT / "crescent_wire.h"

#: Spec constants that are not a property of the codec or the link code.
SAFE_HOLD_WITHIN_MS = 100  # the device enters SAFE_HOLD this soon after its watchdog expires
UART_BAUD = 921600
TELEMETRY_PERIOD_MS = 20  # default TELEMETRY period (SET_TELEMETRY changes it)

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
    out.append("**NAK error codes** (NAK.error_code) and what NAK.detail carries with each\n")
    out.append("| code | name | meaning | NAK.detail |\n|---|---|---|---|")
    out += [f"| {c} | {k} | {t} | {cat.error_details[k]} |" for k, (c, t) in cat.error_codes.items()]
    out.append("")
    out.append("**ACK detail** (ACK.detail) per request answered by ACK\n")
    out.append("| request | ACK.detail |\n|---|---|")
    for m in cat.messages:
        if m.response == "ACK" or m.kind == "event":
            out.append(f"| {m.name} | {m.ack_detail or '0'} |")
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
        cells = []
        for s in states:
            code = device_states.refusal(s, c)
            cells.append("✔" if code is None else code.name)
        out.append(f"| {c} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def _hello_table() -> str:
    """What HELLO does in each state (from the transition table)."""
    effect = {
        DeviceState.BOOT: ("opens the session; a cause latched before it (the e-stop pressed, a fault) takes the "
                           "device on to its hold at once: HELLO_REPLY.state is then SAFE_HOLD or FAULT"),
        DeviceState.IDLE: "new session; nothing else changes",
        DeviceState.BUSY: "new session; the motion in progress continues and its MOTION_DONE goes to the new session",
        DeviceState.ARMED: "new session; the armed plan is disarmed and reported in resumed_plan_id",
        DeviceState.EXPOSING: "new session; the plan is stopped as by ABORT (a window in progress ends with "
                              "EXPOSURE_DONE status ABORTED) and reported in resumed_plan_id / resumed_exposures_done",
        DeviceState.SAFE_HOLD: "new session; the hold is kept. RESET_FAULT (cause gone) leaves it",
        DeviceState.FAULT: "new session; the fault stays latched. RESET_FAULT (cause gone) leaves it",
    }
    out = ["| state | HELLO_REPLY.state | effect |", "|---|---|---|"]
    for st in DeviceState:
        nxt = device_states.next_state(st, device_states.Trigger.HELLO).name
        if st is DeviceState.BOOT:  # the session opens in IDLE, which a cause latched in BOOT leaves at once
            nxt += " (SAFE_HOLD or FAULT with a cause latched)"
        out.append(f"| {st.name} | {nxt} | {effect[st]} |")
    return "\n".join(out)


def _geometry_example() -> str:
    g = AcquisitionGeometry()
    d = g.detector
    x15, _, z15 = g.source_position(15.0)
    c = d.col_centres_mm()
    r = d.row_centres_mm()
    return (
        f"Example (the simulated gantry's default geometry): sid = {g.sid_mm:g} mm, pivot height = "
        f"{g.pivot_height_mm:g} mm (R = {g.arm_radius_mm:g} mm), support height = {g.support_height_mm:g} mm, "
        f"{d.rows} x {d.cols} pixels at {d.native_pitch_mm:g} mm x {d.binning} = {d.pitch_mm:g} mm, offsets 0. "
        f"At +15 deg (`arc_mdeg` = 15000) the focal spot is at x = {x15:.3f} mm, y = 0, z = {z15:.3f} mm; at "
        f"-15 deg at x = {-x15:.3f} mm. Pixel (0, 0) is centred at (x, y) = ({c[0]:.3f}, {r[0]:.3f}) mm and pixel "
        f"({d.rows - 1}, {d.cols - 1}) at ({c[-1]:.3f}, {r[-1]:.3f}) mm."
    )


def _vector_section() -> str:
    out = []
    for i, v in enumerate(VECTORS, 1):
        out.append(f"**V{i} `{v.name}`** — {v.description}\n")
        if v.message:
            out.append(f"- message: {v.message}, seq 0x{v.seq:04X}, flags 0x{v.flags:02X}")
            if v.signature is not None:
                out.append(f"- signed: link id {v.signature[0]}, timestamp {v.signature[1]}, key `{TEST_LINK_KEY_HEX}` (test key)")
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
        max_frame_unsigned=framing.MAX_FRAME_UNSIGNED,
        sig_size=framing.SIGNATURE_SIZE,
        tag_size=framing.TAG_SIZE,
        tag_bits=framing.TAG_SIZE * 8,
        tag_bits_less1=framing.TAG_SIZE * 8 - 1,
        stale_s=signing.STALE_WINDOW // signing.TICKS_PER_S,
        hd6_payload=5243 // 8 - framing.HEADER_SIZE - framing.SIGNATURE_SIZE,
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
        hello_table=_hello_table(),
        safe_hold_ms=SAFE_HOLD_WITHIN_MS,
        baud=UART_BAUD,
        byte_us=10e6 / UART_BAUD,
        tele_ms=TELEMETRY_PERIOD_MS,
        geometry_example=_geometry_example(),
        release_id=load_catalogue().by_name["RELEASE"].id,
        wd_min=load_catalogue().by_name["HELLO"].fields[5].lo,
        wd_max=load_catalogue().by_name["HELLO"].fields[5].hi,
    )


def render_vectors() -> str:
    """The text of test_vectors.yaml."""
    data = []
    for v in VECTORS:
        item: dict[str, object] = {"name": v.name, "description": v.description, "receiver": v.receiver}
        if v.message:
            msg = v.build_message()
            item.update(message=v.message, seq=v.seq, flags=v.flags, fields=msg.to_dict(), frame_hex=v.frame().hex())  # type: ignore[union-attr]
            if v.signature is not None:
                item["signature"] = {"link_id": v.signature[0], "timestamp": v.signature[1],
                                     "key_hex": TEST_LINK_KEY_HEX}
        item["wire_hex"] = v.wire().hex()
        data.append(item)
    head = "# Generated by `python -m protocols.wire.specgen` from protocols/wire/vectors.py. Do not edit.\n"
    return head + yaml.safe_dump({"crc32c_check": {"input": "123456789", "crc": crc.CHECK}, "vectors": data},
                                 sort_keys=False, width=120)


def render_c_header() -> str:
    """A C header with ids, enums, error codes and packed payload structs."""
    cat = load_catalogue()
    cfg = link.LinkConfig()
    wd = cat.by_name["HELLO"].fields[5]
    assert wd.name == "watchdog_timeout_ms"
    out = [
        "/* Crescent wire protocol - generated from the message catalogue (protocols/SPEC.md). Do not edit. */",
        "#ifndef CRESCENT_WIRE_H", "#define CRESCENT_WIRE_H", "#include <stdint.h>", "",
        f"#define CRESCENT_PROTOCOL_VERSION {cat.protocol_version}u",
        f"#define CRESCENT_HEADER_SIZE {framing.HEADER_SIZE}u",
        f"#define CRESCENT_MAX_PAYLOAD {framing.MAX_PAYLOAD}u",
        f"#define CRESCENT_MAX_FRAME {framing.MAX_FRAME}u",
        f"#define CRESCENT_MAX_ENCODED {framing.MAX_ENCODED}u",
        f"#define CRESCENT_CRC32C_POLY_REFLECTED 0x{crc.POLY_REFLECTED:08X}u",
        f"#define CRESCENT_CRC32C_CHECK 0x{crc.CHECK:08X}u",
        "#define CRESCENT_FLAG_ACK_REQ 0x01u", "#define CRESCENT_FLAG_RESPONSE 0x02u",
        "#define CRESCENT_FLAG_SYN 0x04u", "#define CRESCENT_FLAG_RETRANSMIT 0x08u",
        "#define CRESCENT_FLAG_SIGNED 0x10u",
        f"#define CRESCENT_FLAGS_RESERVED 0x{framing.FLAGS_RESERVED:02X}u",
        f"#define CRESCENT_MAX_FRAME_UNSIGNED {framing.MAX_FRAME_UNSIGNED}u", "",
        "/* Signed links (SPEC.md section 2.6): signature block between payload and CRC. */",
        f"#define CRESCENT_SIGNATURE_SIZE {framing.SIGNATURE_SIZE}u /* link_id u8, timestamp u48 LE, tag */",
        f"#define CRESCENT_TAG_SIZE {framing.TAG_SIZE}u /* HMAC-SHA256(key, header+payload+link_id+timestamp)[:8] */",
        f"#define CRESCENT_LINK_KEY_SIZE {signing.KEY_SIZE}u",
        f"#define CRESCENT_DEVICE_LINK_ID {signing.DEVICE_LINK_ID}u",
        f"#define CRESCENT_STALE_WINDOW_TICKS {signing.STALE_WINDOW}u /* 10 us ticks */",
        f"#define CRESCENT_SIGNING_EPOCH_UNIX_S {signing.EPOCH_UNIX_S}u", "",
        "/* Link timing, queue and de-duplication constants (SPEC.md section 2.4): defaults. */",
        f"#define CRESCENT_HEARTBEAT_PERIOD_MS {round(cfg.heartbeat_period_s * 1000)}u",
        f"#define CRESCENT_WATCHDOG_TIMEOUT_MS {round(cfg.peer_timeout_s * 1000)}u",
        f"#define CRESCENT_WATCHDOG_TIMEOUT_MIN_MS {wd.lo}u",
        f"#define CRESCENT_WATCHDOG_TIMEOUT_MAX_MS {wd.hi}u",
        f"#define CRESCENT_SAFE_HOLD_WITHIN_MS {SAFE_HOLD_WITHIN_MS}u",
        f"#define CRESCENT_ACK_TIMEOUT_MS {round(cfg.ack_timeout_s * 1000)}u",
        f"#define CRESCENT_MAX_RETRIES {cfg.max_retries}u",
        f"#define CRESCENT_REQUEST_QUEUE {cfg.max_queue}u",
        f"#define CRESCENT_DEDUP_WINDOW {cfg.dedup_window}u",
        f"#define CRESCENT_UART_BAUD {UART_BAUD}u",
        f"#define CRESCENT_TELEMETRY_PERIOD_MS {TELEMETRY_PERIOD_MS}u",
        f"#define CRESCENT_DATA_CHANNEL_MAX_LINE {data_channel.MAX_LINE}u",
        f"#define CRESCENT_DATA_CHANNEL_MAX_FRAME {data_channel.MAX_FRAME_BYTES}u", "",
        "/* ARM_PLAN NAK details: record r (0-based), field j -> 1000 * (r + 1) + j; PLAN_INVALID -> 1000 * reason + entry. */",
        "#define CRESCENT_RECORD_FIELD_INDEX(r, j) (1000 * ((r) + 1) + (j))",
        "#define CRESCENT_ARM_PLAN_ENTRY_TUBE_CURRENT 4 /* record field index of the implied tube current */",
        "#define CRESCENT_PLAN_INVALID_DETAIL(reason, entry) (1000 * (reason) + (entry))", "",
    ]
    for m in cat.messages:
        out.append(f"#define CRESCENT_MSG_{m.name} 0x{m.id:02X}u")
    out.append("")
    out.append("/* Payload lengths on the wire. A fixed layout's payload is exactly CRESCENT_LEN_<MSG> bytes (0 for")
    out.append("   the empty payloads, which have no struct). A message ending in a string or an array has")
    out.append("   CRESCENT_LEN_<MSG> bytes of scalars plus the u8 length/count byte, then the tail:")
    out.append("   length = CRESCENT_LEN_<MSG> + 1 + n * element size, at most CRESCENT_LEN_MAX_<MSG>. Never send")
    out.append("   sizeof(struct) for those: the struct reserves room for the largest tail. */")
    for m in cat.messages:
        fixed = sum(SCALAR_TYPES[f.type][1] for f in m.fields if f.is_scalar)
        out.append(f"#define CRESCENT_LEN_{m.name} {fixed}u")
        tail = next((f for f in m.fields if not f.is_scalar), None)
        if tail is not None:
            elem = 1 if tail.type == "str" else sum(SCALAR_TYPES[r.type][1] for r in tail.record)
            cap = tail.max_len if tail.type == "str" else tail.max_count
            out.append(f"#define CRESCENT_LEN_MAX_{m.name} {fixed + 1 + cap * elem}u")
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
        if not scalars and tail is None:
            out.append(f"/* {m.name}: empty payload (CRESCENT_LEN_{m.name} = 0), no struct. */")
            continue
        if tail is not None and tail.type == "array":
            out.append(f"typedef struct {{")
            out += [f"    {C_TYPES[r.type]} {r.name};" for r in tail.record]
            out.append(f"}} crescent_{m.name.lower()}_{tail.name}_t;")
        out.append(f"typedef struct {{")
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

<!-- Generated from the message catalogue (protocols/wire/catalogue.yaml) and the project's state and
     vector tables by `python -m protocols.wire.specgen`. Do not edit by hand: edit those and regenerate. -->

This is the contract between a host and a DBT gantry (simulated or real) over a serial line
(UART {baud} baud 8N1 by default, or any byte stream: pty, TCP). It is written so that a firmware
engineer can implement either side in C from this page and `protocols/wire/crescent_wire.h` (the
matching header: ids, enumerations, packed payload structs, payload lengths and the constants of
section 2.4) alone. This page is normative; where any implementation disagrees with it, the
implementation is wrong. Section 7 walks through a complete exposure sequence. Images never travel on this link: it carries commands, telemetry and
*image-ready* events; pixels go over a separate data channel named in DEVICE_INFO:

* `file:///dir`: a directory the host can read; the frame is the file `dir/<locator>`.
* `tcp://host:port`: a frame server. The host sends the ASCII line `GET <locator> <token>` (LF-terminated);
  the device answers the line `OK <size>` followed by exactly `size` bytes of raw frame, or the line
  `NO <reason>` when it has no such frame (yet). The connection stays open for the next request.
  A locator is 1-200 characters from `[A-Za-z0-9_.-]` and does not start with `.`; lines are at
  most {dc_max_line} bytes; a frame at most {dc_max_frame_mib} MiB. A malformed request is answered with `NO` and the
  connection closed. `<token>` is the session's data-channel token (32 hex digits, GET_DATA_TOKEN,
  section 2.6): a request without it, or with the token of an earlier session (every HELLO draws a new
  one), is answered `NO` naming which and the connection closed.
* `tls://host:port`: the same protocol inside TLS (1.2 or later); the device presents a configured
  certificate, the host verifies it against a configured CA (and the host name), so neither the
  token nor the pixels can be read or changed on the network.

The frame bytes are raw pixels, row 0 first, `rows x cols` of them, each little-endian in the
smallest container that holds IMAGE_READY's `bits`: 1 byte for 8 bits, 2 bytes for 9..16, 4 bytes
for 17..32, the value in the low bits and the unused high bits zero (so a 14-bit image is stored
as uint16 and `size_bytes = rows x cols x 2`). Either way the host checks size and CRC-32C against
IMAGE_READY. Pixel (row, col) lies where section 6 says.

Versions: this is version {version}; a receiver accepts versions {min_version}..{version}.

## 1. Frame

All integers are little-endian. An unstuffed frame is:

| offset | size | field | meaning |
|---|---|---|---|
| 0 | 1 | version | protocol version ({version}) |
| 1 | 1 | flags | bit0 ACK_REQ (receiver must answer), bit1 RESPONSE (answers `seq`), bit2 SYN (first request of a session), bit3 RETRANSMIT (repeat of an earlier frame), bit4 SIGNED (a signature block follows the payload, section 2.6), bits 5–7 reserved, must be 0 |
| 2 | 2 | seq | sequence number, u16, wraps; a response carries its request's seq |
| 4 | 1 | msg_id | message id (section 4) |
| 5 | 2 | length | payload length n, 0..{max_payload} |
| 7 | n | payload | message fields (section 4) |
| 7+n | 4 | crc | CRC-32C of bytes 0..7+n−1 (unsigned frame) |

A SIGNED frame carries {sig_size} more bytes between payload and CRC, and its CRC covers them:

| offset | size | field | meaning |
|---|---|---|---|
| 7+n | 1 | link_id | the sender's link id: 0 the device, 1..255 a host |
| 8+n | 6 | timestamp | u48, 10 µs units since 2015-01-01T00:00:00Z, strictly increasing per link id |
| 14+n | {tag_size} | tag | HMAC-SHA256(link key, bytes 0..14+n−1) truncated to its first {tag_size} bytes |
| 14+n+{tag_size} | 4 | crc | CRC-32C of bytes 0..14+n+{tag_size}−1 |

Sizes: header {header_size} bytes, maximum payload {max_payload} bytes, maximum frame {max_frame} bytes
unstuffed (signed; {max_frame_unsigned} unsigned), {max_encoded} bytes stuffed, plus the two delimiters.

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

A receiver remembers the last {window} requests it received with a good CRC: seq, msg_id, payload
and the encoded response it sent. **Every answered request counts, whether it was answered with ACK,
a typed reply or NAK** (a refusal by the codec or by the device). A request whose (seq, msg_id,
payload) equals one of them is a **retransmission**: the cached response frame is sent again
(nothing is sent if the application has not answered yet) and the request is **not executed or
evaluated again** — a retransmitted refused request gets the same NAK even if the device's state
has changed since; to try again, send a new request (a new seq). This is what makes a
retransmitted FIRE fire once. A request that differs in any of the three is new. SYN clears the
memory (a new peer session). When the memory is full the oldest entry is forgotten.

A request whose CRC is good but which cannot be executed as sent is answered with NAK and not
executed: unknown msg id (UNKNOWN_MESSAGE), payload size wrong for the layout (BAD_LENGTH), a field
outside its valid range of section 4 (OUT_OF_RANGE), an undefined enum value (BAD_ENUM), version
not spoken (VERSION_MISMATCH), reserved flags set (BAD_FLAGS). These checks are the same for every
device. A device adds its own refusals (state: section 3; its own limits: BEYOND_LIMITS; interlocks
and the rest: section 5). NAK.detail is defined for every code in section 5.

**Field index** (NAK.detail of OUT_OF_RANGE, BAD_ENUM, BEYOND_LIMITS and UNSUPPORTED): the 0-based
position of the field in the message's field table of section 4 (the `offset` column's order;
a string or array field counts as one field, including for a bad length byte or record count).
A field of record r (0-based) of an array is 1000 × (r + 1) + j, where j is the 0-based position of
the field in the record table: ARM_PLAN entry 0's `kv_ckv` is 1001, entry 3's `pulse_us` is 4003.
For ARM_PLAN, j = 4 (no field of its own) is the tube current the entry implies, `mas_nas` ÷
`pulse_us`, when it exceeds the device's current limit at the entry's kV.

### 2.3 Liveness and the watchdog

Both sides send HEARTBEAT every heartbeat period (any frame also proves liveness). A side that has
received no valid frame for the watchdog timeout declares the peer lost. **The device then enters
SAFE_HOLD within {safe_hold_ms} ms: motion stopped, any exposure terminated, the plan disarmed**; a host
reports the loss to its user.

HELLO sets both for the session. `watchdog_timeout_ms` is the device's watchdog: the only
liveness judgement it makes (every valid frame, not just HEARTBEAT, restarts it). HELLO's
`heartbeat_period_ms` is the period at which both sides send HEARTBEAT from then on: the device
adopts it for its own heartbeats (before a session it uses the default below). The device does not
police the host's heartbeat rate — a late heartbeat matters only through the watchdog — so a host
must pick `watchdog_timeout_ms` ≥ 3 × `heartbeat_period_ms` (two heartbeats may be lost without a
hold). HELLO_REPLY echoes the watchdog timeout in force.

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
| heartbeat period | {hb_ms} ms | `CRESCENT_HEARTBEAT_PERIOD_MS`; HELLO.heartbeat_period_ms sets it per session |
| watchdog timeout | {peer_ms} ms | `CRESCENT_WATCHDOG_TIMEOUT_MS`; HELLO.watchdog_timeout_ms ({wd_min}..{wd_max} ms) sets it per session |
| SAFE_HOLD after the watchdog expires | ≤ {safe_hold_ms} ms | `CRESCENT_SAFE_HOLD_WITHIN_MS` |
| ACK timeout | {ack_ms} ms | `CRESCENT_ACK_TIMEOUT_MS`; per attempt; fixed, no back-off |
| retries | {retries} | `CRESCENT_MAX_RETRIES`; after the first attempt; then the request fails |
| request queue | {queue} | `CRESCENT_REQUEST_QUEUE`; per side; a full queue refuses new requests locally |
| de-duplication memory | {window} requests | `CRESCENT_DEDUP_WINDOW`; ACKed and NAKed requests alike (2.2) |
| telemetry period | {tele_ms} ms | `CRESCENT_TELEMETRY_PERIOD_MS`; SET_TELEMETRY changes it |
| UART | {baud} baud, 8N1 | `CRESCENT_UART_BAUD`; a byte costs 10 bit times ({byte_us:.2f} µs) |

### 2.5 Link state diagrams

Sender:

{sender_diagram}

Peer liveness:

{peer_diagram}

### 2.6 Signed links

Any link can be signed; a link that crosses a network (`socket://`, `rfc2217://`) should be. Host
and device then share a 32-byte **link key** per rig (the host reads it from the environment
variable `CRESCENT_LINK_KEY`, 64 hex digits, or from the file the rig file's `link_key_file` names; the
simulated gantry from `--link-key-file` or the same variable). The key never travels, and no
capture, log or error message carries it (a key is named by its fingerprint, the first 8 hex digits
of SHA-256("crescent-key-id" + key)).

An end that holds the key signs **every** frame it sends (section 1: flag SIGNED, link id,
timestamp, tag) and accepts only frames that pass, in this order (the first failure decides):

| check | refusal | NAK detail |
|---|---|---|
| the frame carries a signature block | `UNSIGNED` | 0 |
| its tag equals HMAC-SHA256(key, header + payload + link_id + timestamp)[:{tag_size}] (constant-time compare) | `BAD_SIGNATURE` | link id |
| its link id is not the receiver's own (a reflected frame) and its timestamp is greater than the last one accepted from that link id (the high-water mark) | `REPLAYED` | link id |
| for a link id not seen before: its timestamp is at most {stale_s} s behind the newest timestamp the receiver knows (sent or received) | `STALE` | link id |

A refused **request** is answered with NAK and that code; a refused response or stream frame is
dropped. A refused frame is never executed, never de-duplicated or cached, moves no high-water mark
and does not count as a sign of life for the watchdog. A NAK with one of these four codes never
completes a request either (it may answer a forged frame that reused the request's seq): the sender
retransmits and, when every attempt is so refused, reports the code. A retransmission, and a response
answered again from the de-duplication memory, is signed again with a new timestamp (a
byte-identical copy is a replay). An end without the key ignores a signature block.

Timestamps sent are `max(last sent + 1, clock)`: the clock is the wall clock in 10 µs units since
2015 (hosts and devices must agree to within {stale_s} s), or nothing (a counter) on a device without
one. **The device keeps its high-water marks across a restart** (non-volatile; written before it
executes a request it accepted), so a frame recorded before a restart is still refused as REPLAYED.

Why a {tag_bits}-bit tag: a tag here is only ever checked online, by a receiver that refuses, counts and
logs every wrong one, and it is worth nothing after its frame (the timestamp makes every frame
single-use). A forger without the key can only guess, one frame per guess. At 10^6 guesses per
second — far beyond a {baud} baud UART (about 1 400 frames/s) or what a gantry answers over TCP —
the expected time to one accepted forgery is 2^{tag_bits_less1} / 10^6 s, about 290 000 years, and the refusals
show in the device's event log long before. MAVLink 2 signing truncates to 48 bits by the same
argument (about 4 years at that rate). RFC 2104 (section 5) recommends keeping at least half the
hash and at least 80 bits; that margin is for tags an attacker can work on offline or store, which
these are not, so we keep {tag_bits} bits ({sig_size} bytes of overhead per frame in all). A deployment that wants
the RFC's margin changes `TAG_SIZE` (and the protocol version). The CRC stays: a line error that
slips it (a signed frame of more than {hd6_payload} payload bytes is beyond the HD 6 range of 1.1, HD 4)
still fails the tag.

**Negotiation.** A host with the key sets capability `SIGNED_LINK` in HELLO.host_capabilities
(signed, like every frame); a device with the key answers with it in device_capabilities. A device
with a key answers an unsigned HELLO with NAK `UNSIGNED` (so an unkeyed host learns why); a host with
a key drops every unsigned frame, so it never talks to a device that does not sign.

**Data-channel token.** After HELLO the host asks GET_DATA_TOKEN; the device answers DATA_TOKEN with
the session's random 16-byte nonce (new at every HELLO). On a signed link the token is
HMAC-SHA256(key, "crescent-data-token" + nonce)[:16] as 32 lower-case hex digits, so it never travels
on the control link; unsigned, it is the nonce's hex. Every data-channel request carries it
(introduction); a token of an earlier session is refused as stale.

## 3. Device state machine

A gantry is in one of the DeviceState states. It moves between them as the diagram says and
reports every change with STATE_CHANGED.

{device_diagram}

Commands accepted per state: ✔ accepted, otherwise the NAK error code the device answers with.
Before HELLO (BOOT) the code is NO_SESSION; FIRE in a state where no plan can be armed is
NOT_ARMED (detail 0), in EXPOSING BAD_STATE; every other refusal is BAD_STATE (detail = the
current DeviceState). ABORT is accepted in every state (in BOOT it does nothing); it stops and
disarms but never leaves SAFE_HOLD or FAULT.

{allowed}

HELLO is accepted in every state. A new session never inherits a plan, and never clears a hold or
a fault:

{hello_table}

SAFE_HOLD and FAULT are left only by RESET_FAULT, and only once every cause is gone (the e-stop
released, the fault's condition cleared; a watchdog hold's cause is gone once the host is heard again, which
the RESET_FAULT itself shows: no new session is needed, and a HELLO ends it too).
While a cause is present RESET_FAULT is refused with FAULT_ACTIVE (detail = the cause's FaultCode).
RELEASE is accepted in SAFE_HOLD and FAULT so that a patient can always be freed.

Safety rules the device enforces on its own, whatever the host sends:

- X-rays only inside an armed plan's entries, fired by FIRE carrying that plan's id and digest,
  with every interlock bit set (door closed, e-stop released, hand switch held, paddle in range,
  detector ready, generator ready). An interlock opening ends the exposure at once.
- Two kinds of interlock, and both latch. The e-stop is a *hold cause*: pressed in any state it
  latches SAFE_HOLD until it is released and RESET_FAULT is accepted (the heartbeat watchdog holds
  the device in SAFE_HOLD the same way, and a latching fault in FAULT). A device reset (power lost)
  forgets the watchdog trip and the latched faults with its RAM; it reads the e-stop input again at
  boot, and a pressed e-stop latches at once. The door, the hand switch, the paddle, detector ready
  and generator ready are *permissives*: while one is open, FIRE is refused (INTERLOCK_OPEN); one
  that opens in EXPOSING ends the window (EXPOSURE_DONE status INTERLOCK), stops and disarms the
  plan, and the device goes to IDLE. What latches is the interruption: closing the interlock
  again never resumes the plan or fires anything; the host arms and fires a new plan (an exposure
  broken by a released hand switch must be taken again, by the operator's decision). They are not
  hold causes, so they need no RESET_FAULT.
- ARM_PLAN's digest is the CRC-32C of the ARM_PLAN payload with its 4 digest bytes removed; a
  mismatch is refused with DIGEST_MISMATCH.
- Every value is checked against the device's own limits (DEVICE_INFO, LIMITS_INFO): a value valid
  on the wire (section 4) but beyond them is refused with BEYOND_LIMITS (OUT_OF_RANGE is only for
  the catalogue's ranges). The compression force never exceeds the powered-drive limit, whatever
  the target (FORCE_LIMIT); an independent backup timer ends any exposure that overruns; the anode
  heat budget is checked at ARM_PLAN and before FIRE (HEAT_LIMIT).
- ARM_PLAN entries are checked in order. A continuous sweep passes each angle once, so its
  angles must be strictly monotonic in firing order (all increasing or all decreasing); otherwise
  PLAN_INVALID with reason NOT_MONOTONIC and the index of the first entry that breaks the order.
  Step-and-shoot stops the arm at each entry, so its entries may come in any order and repeat an
  angle (a stereotactic pair fires 0, +15 and -15 deg in one plan).
- A retransmitted command is answered from the cache and never executed twice (section 2.2).
- Watchdog: section 2.3.

## 4. Messages

{messages}

## 5. Enumerations, bits and error codes

{enums}

## 6. Gantry frame: axes, signs, origin

Every position and angle on the wire (DEVICE_INFO, `*_mdeg` angles, `*_um` heights) is in the
*gantry frame*, in which the detector is stationary:

* **z** is up, normal to the detector; z = 0 is the detector's sensitive surface. The top of the
  breast support is at z = `support_height_um`; STATUS/TELEMETRY `thickness_um` is the paddle's
  height above the support (not above the detector).
* **y** is perpendicular to the chest wall, pointing into the breast (toward the nipple).
* **x** is along the chest wall, the direction in which the focal spot moves for a positive arc
  angle. (x, y, z) is right-handed. Which side of the patient +x is depends on the view and is not
  part of the protocol.
* **Origin**: on the detector surface (z = 0), in the plane y = 0 that contains the focal spot's
  arc, directly below the focal spot at arc angle 0. The arc's rotation axis is parallel to y
  through (0, 0, `pivot_height_um`).
* **Arc angle** θ (`arc_mdeg`, `target_mdeg`, plan `angle_mdeg`, in millidegrees): 0 with the
  focal spot straight above the origin, positive toward +x. The focal spot is at

      x = R sin θ,  y = 0,  z = pivot_height + R cos θ,   R = sid − pivot_height

  so `sid_um` is the focal spot's height above the detector surface at θ = 0.
* **Detector**: `rows` × `cols` pixels at pitch p = `native_pitch_nm` × `binning` (the delivered,
  binned image). `offset_x_um` is the x of the active area's centre and `offset_y_um` the y of its
  chest-wall edge (both 0 when the active area is centred under the arc with its chest-wall edge on
  the origin). Pixel (row, col), 0-based, has its centre at

      x = offset_x + (col − (cols − 1) / 2) × p,   y = offset_y + (row + 0.5) × p,   z = 0

  Row 0 lies along the chest wall; images are stored row by row, row 0 first (see the data
  channel in the introduction).

{geometry_example}

## 7. A complete exposure sequence

One exam as a host runs it. **M** = mandatory, **O** = optional. Every command is a request
answered by one response (section 2); every device event (STATE_CHANGED, MOTION_DONE,
EXPOSURE_DONE, IMAGE_READY, INTERLOCK_CHANGED, FAULT) must be answered with ACK, and HEARTBEATs
flow both ways throughout (section 2.3).

1. **M — HELLO** (SYN set). Check `HELLO_REPLY.protocol_version` and `state`. If the state is
   SAFE_HOLD or FAULT, HELLO has not changed it: read STATUS, have the cause removed (e-stop
   released, door closed) and send **RESET_FAULT** until it is ACKed and STATE_CHANGED says IDLE.
   A non-zero `resumed_plan_id` names a plan the previous session left unfinished (it is not armed
   any more).
2. **M — GET_INFO** → DEVICE_INFO: the geometry of section 6, the device's limits and the data
   channel. **O — GET_LIMITS** → LIMITS_INFO (a device may answer NAK UNKNOWN_MESSAGE; the host
   then plans with conservative limits of its own). **O — SET_TELEMETRY**, **O — GET_STATUS**.
3. **M (once per power-up) — HOME** if `STATUS.homed` is 0 (after power-up or a device reset):
   until the axis is homed, MOVE_ARC and ARM_PLAN are refused with NOT_HOMED. ACK.detail is the
   estimated duration; wait for MOTION_DONE (`ok` = 1) and STATE_CHANGED BUSY → IDLE.
4. **O for the device, M for a clinical exam — COMPRESS** with the target force. The device does
   not condition X-rays on a force, only on the PADDLE_IN_RANGE interlock (paddle mounted and
   within its travel). Wait for MOTION_DONE; its `force_dn` and `thickness_um` (the compressed
   breast thickness) go into the plan.
5. **O — SET_TECHNIQUE**. Not needed for a plan: each ARM_PLAN entry carries its own kV and mAs
   and the plan its anode/filter and focal spot; the device exposes with those, whatever
   SET_TECHNIQUE said. SET_TECHNIQUE only pre-selects the generator's standby kV and current (seen
   in TELEMETRY between exposures) and is checked against the limits like an entry.
6. **O — an AEC scout**: ARM_PLAN with one entry (`final` = 0), FIRE, wait for its EXPOSURE_DONE
   and IMAGE_READY, read the image and compute the main technique from it (the compression holds).
7. **M — ARM_PLAN** with the exposures in firing order (a continuous sweep strictly monotonic, section 3), the plan's
   motion mode, anode/filter, focal spot and `final` = 1 for the exam's last plan, and the digest
   (CRC-32C of the payload without the digest bytes). ACK.detail is the estimated duration once
   fired; state ARMED. Refusals: BEYOND_LIMITS / PLAN_INVALID / HEAT_LIMIT / NOT_HOMED /
   DIGEST_MISMATCH (section 5).
8. **M — FIRE** with the plan id and digest. Every interlock must be safe, including HAND_SWITCH:
   on a real gantry the operator holds the exposure hand switch for the whole sweep and releasing
   it ends the exposure (EXPOSURE_DONE status INTERLOCK). **In the simulated gantry the hand switch
   starts held** (as do door closed, e-stop released and paddle mounted) and stays held unless a
   test releases it with SIM_SET_INPUT HAND_SWITCH 0. State EXPOSING.
9. For every exposure the device sends **EXPOSURE_DONE** (actual angles, kV, delivered mAs in nAs,
   window times; status OK or why it ended) and, once read out, **IMAGE_READY** (frame id, size,
   CRC-32C, locator). The host fetches each frame from the data channel (introduction) and checks
   size and CRC. After the last image the device sends STATE_CHANGED EXPOSING → IDLE. ABORT at any
   time stops the sweep (EXPOSURE_DONE status ABORTED for a window in progress).
10. **M — RELEASE** to lift the paddle, unless the device released on its own: a device configured
   to release after the exam does so when a `final` = 1 plan completes, and reports it with
   MOTION_DONE (`cause_msg_id` = 0x{release_id:02X}) after STATE_CHANGED IDLE → BUSY with cause 0. The simulated
   gantry does this by default. RELEASE is accepted in every state after HELLO except EXPOSING
   (ABORT first), SAFE_HOLD and FAULT included.

```mermaid
sequenceDiagram
    participant H as host
    participant D as device
    H->>D: HELLO (SYN)
    D-->>H: HELLO_REPLY
    H->>D: GET_INFO
    D-->>H: DEVICE_INFO
    H->>D: HOME
    D-->>H: ACK (detail = est. ms)
    D->>H: MOTION_DONE, STATE_CHANGED BUSY→IDLE
    H->>D: COMPRESS
    D-->>H: ACK (detail = -1)
    D->>H: MOTION_DONE (force, thickness)
    H->>D: ARM_PLAN (entries, digest)
    D-->>H: ACK (detail = est. ms)
    H->>D: FIRE (plan id, digest)
    D-->>H: ACK
    loop every entry
        D->>H: EXPOSURE_DONE
        D->>H: IMAGE_READY
        H->>D: data channel: GET locator
    end
    D->>H: STATE_CHANGED EXPOSING→IDLE
    H->>D: RELEASE (unless auto-released)
    D-->>H: ACK
    D->>H: MOTION_DONE
```

(Device events are acknowledged with ACK; the ACKs and heartbeats are left out of the diagram.)

## 8. Test vectors

Every vector below is checked by the test suite in both directions, and a C program built on
`crescent_wire.h` alone encodes each one byte for byte.

{vectors}
"""

if __name__ == "__main__":
    sys.exit(main())
