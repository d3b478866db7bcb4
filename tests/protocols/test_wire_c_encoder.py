"""A C program written from SPEC.md and built on crescent_wire.h alone encodes every test vector.

The program (generated below from the vectors' *fields*, never from their bytes) fills the
header's packed payload structs, takes payload lengths from the header's ``CRESCENT_LEN_*``
macros, computes the ARM_PLAN digest, the CRC-32C (bitwise, from the spec's parameters), the
COBS stuffing and the ``0x00 .. 0x00`` delimiting itself, and prints each frame in hex; the test
compares those bytes with the vectors' ``wire_hex``. The raw vectors (noise, a flipped bit, a bad
length field) are fed to the program's decoder, written from section 1.2's receiver rules.

Signed vectors (SPEC 2.6): the C program lays out header, payload, link id and u48 timestamp
itself and prints that signed part; the tag is computed by ``openssl dgst -sha256 -mac HMAC`` (an
HMAC independent of Python's) and handed back to the program, which then finishes the frame
(tag, CRC, COBS). A signed raw vector's tag is checked the same way by the receiver.

It is independent of the Python codec: the only shared input is the generated header, which is
what a C engineer would be given. ``test_c_encoder_catches_a_wrong_header`` shows the check fails
when a header constant or layout is wrong.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from protocols.wire import specgen
from protocols.wire.catalogue import load_catalogue

pytestmark = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("openssl") is None,
                                reason="gcc or openssl not installed")

VECTORS = yaml.safe_load(specgen.VECTORS_PATH.read_text())["vectors"]
CAT = load_catalogue()

C_LIB = r"""
#include <stdint.h>
#include <stdio.h>
#include <stddef.h>
#include <string.h>
#include "crescent_wire.h"

/* CRC-32C as SPEC.md 1.1 defines it: reflected, init and xor-out 0xFFFFFFFF. */
static uint32_t crc32c(const uint8_t *p, size_t n) {
    uint32_t c = 0xFFFFFFFFu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++) c = (c & 1u) ? (c >> 1) ^ CRESCENT_CRC32C_POLY_REFLECTED : c >> 1;
    }
    return c ^ 0xFFFFFFFFu;
}

/* COBS (Cheshire & Baker): every block is a code byte (1 + bytes up to the next zero, at most 254). */
static size_t cobs_encode(const uint8_t *in, size_t n, uint8_t *out) {
    size_t o = 1, code_at = 0;
    uint8_t code = 1;
    for (size_t i = 0; i < n; i++) {
        if (in[i] == 0) {
            out[code_at] = code; code_at = o++; code = 1;
        } else {
            out[o++] = in[i]; code++;
            if (code == 0xFF) { out[code_at] = code; code_at = o++; code = 1; }
        }
    }
    out[code_at] = code;
    return o;
}

static size_t cobs_decode(const uint8_t *in, size_t n, uint8_t *out, int *ok) {
    size_t i = 0, o = 0;
    *ok = 1;
    while (i < n) {
        uint8_t code = in[i++];
        if (code == 0 || i + code - 1 > n) { *ok = 0; return 0; }
        for (int k = 1; k < code; k++) { if (in[i] == 0) { *ok = 0; return 0; } out[o++] = in[i++]; }
        if (code < 0xFF && i < n) out[o++] = 0;
    }
    return o;
}

static uint8_t frame_buf[CRESCENT_MAX_FRAME + 16];
static uint8_t wire_buf[CRESCENT_MAX_ENCODED + 16];
static int g_argc;
static char **g_argv;

/* The tag of vector `name` given on the command line as name=<16 hex digits>; 0 if none. */
static int find_tag(const char *name, uint8_t *tag) {
    size_t k = strlen(name);
    for (int i = 1; i < g_argc; i++) {
        if (strncmp(g_argv[i], name, k) == 0 && g_argv[i][k] == '=') {
            const char *h = g_argv[i] + k + 1;
            if (strlen(h) != 2 * CRESCENT_TAG_SIZE) return 0;
            for (unsigned j = 0; j < CRESCENT_TAG_SIZE; j++) { unsigned v; sscanf(h + 2 * j, "%2x", &v); tag[j] = (uint8_t)v; }
            return 1;
        }
    }
    return 0;
}

/* Section 1: header, payload, [signature block,] CRC; then 0x00, COBS(frame), 0x00. Prints the wire bytes in hex.
   A signed frame (link_id >= 0) without its tag on the command line prints "need <name> <signed part hex>". */
static void emit_frame(const char *name, uint8_t msg_id, uint16_t seq, uint8_t flags, const void *payload, size_t len,
                       int link_id, uint64_t timestamp) {
    uint8_t *f = frame_buf;
    if (link_id >= 0) flags |= CRESCENT_FLAG_SIGNED;
    f[0] = CRESCENT_PROTOCOL_VERSION; f[1] = flags; f[2] = (uint8_t)seq; f[3] = (uint8_t)(seq >> 8);
    f[4] = msg_id; f[5] = (uint8_t)len; f[6] = (uint8_t)(len >> 8);
    if (len) memcpy(f + CRESCENT_HEADER_SIZE, payload, len);
    size_t n = CRESCENT_HEADER_SIZE + len;
    if (link_id >= 0) {
        f[n++] = (uint8_t)link_id;
        for (int k = 0; k < 6; k++) f[n++] = (uint8_t)(timestamp >> (8 * k));
        if (!find_tag(name, f + n)) {
            printf("need %s ", name);
            for (size_t k = 0; k < n; k++) printf("%02x", f[k]);
            printf("\n");
            return;
        }
        n += CRESCENT_TAG_SIZE;
        if (n != CRESCENT_HEADER_SIZE + len + CRESCENT_SIGNATURE_SIZE) { printf("%s signature-size\n", name); return; }
    }
    uint32_t c = crc32c(f, n);
    for (int k = 0; k < 4; k++) f[n + k] = (uint8_t)(c >> (8 * k));
    n += 4;
    wire_buf[0] = 0;
    size_t m = 1 + cobs_encode(f, n, wire_buf + 1);
    wire_buf[m++] = 0;
    printf("%s ", name);
    for (size_t k = 0; k < m; k++) printf("%02x", wire_buf[k]);
    printf("\n");
}

static void emit(const char *name, uint8_t msg_id, uint16_t seq, uint8_t flags, const void *payload, size_t len) {
    emit_frame(name, msg_id, seq, flags, payload, len, -1, 0);
}

/* Section 1.2 receiver: split at 0x00, decode, check size, CRC and length; print one word per run. */
static void receive(const char *name, const uint8_t *w, size_t n) {
    printf("%s", name);
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && w[i] != 0) continue;
        size_t run = i - start;
        if (run > 0) {
            int ok;
            size_t m = cobs_decode(w + start, run, frame_buf, &ok);
            if (!ok) printf(" cobs");
            else if (m < CRESCENT_HEADER_SIZE + 4) printf(" short");
            else {
                uint32_t got = frame_buf[m - 4] | (uint32_t)frame_buf[m - 3] << 8 | (uint32_t)frame_buf[m - 2] << 16
                               | (uint32_t)frame_buf[m - 1] << 24;
                size_t len = frame_buf[5] | (size_t)frame_buf[6] << 8;
                size_t sig = (frame_buf[1] & CRESCENT_FLAG_SIGNED) ? CRESCENT_SIGNATURE_SIZE : 0;
                if (crc32c(frame_buf, m - 4) != got) printf(" crc");
                else if (len != m - CRESCENT_HEADER_SIZE - 4 - sig) printf(" length");
                else {
                    printf(" ok:%02x%02x:%02x", frame_buf[3], frame_buf[2], frame_buf[4]);
                    if (sig) {  /* the signed part and the tag, for the caller's HMAC */
                        size_t tag_at = CRESCENT_HEADER_SIZE + len + 7;
                        printf(" signed:");
                        for (size_t k = 0; k < tag_at; k++) printf("%02x", frame_buf[k]);
                        printf(":");
                        for (size_t k = 0; k < CRESCENT_TAG_SIZE; k++) printf("%02x", frame_buf[tag_at + k]);
                    }
                }
            }
        }
        start = i + 1;
    }
    printf("\n");
}
"""


def _flags_expr(flags: int) -> str:
    names = [("ACK_REQ", 1), ("RESPONSE", 2), ("SYN", 4), ("RETRANSMIT", 8), ("SIGNED", 16)]
    parts = [f"CRESCENT_FLAG_{n}" for n, b in names if flags & b]
    assert sum(b for _, b in names if flags & b) == flags
    return "(uint8_t)(" + (" | ".join(parts) or "0") + ")"


def _c_int(v: int) -> str:
    return f"{v}LL" if v < 0 else f"{v}ULL"


def _vector_code(i: int, vec: dict) -> str:
    """C statements that build vector ``vec`` from its fields and emit it."""
    msg = CAT.by_name[vec["message"]]
    name = msg.name
    lname = name.lower()
    fields = vec["fields"]
    head = f'    /* {vec["name"]} */\n'
    call = f'"{vec["name"]}", CRESCENT_MSG_{name}, {vec["seq"]}u, {_flags_expr(vec["flags"])}'
    sig = vec.get("signature")
    emit, sig_args = ("emit_frame", f', {sig["link_id"]}, {sig["timestamp"]}ULL') if sig else ("emit", "")
    if not msg.fields:
        return head + f"    {emit}({call}, NULL, CRESCENT_LEN_{name}{sig_args});\n"
    v = f"v{i}"
    lines = [f"    {{ static crescent_{lname}_t {v}; memset(&{v}, 0, sizeof {v});"]
    tail = next((f for f in msg.fields if not f.is_scalar), None)
    for f in msg.fields:
        if f.is_scalar:
            lines.append(f"      {v}.{f.name} = {_c_int(fields[f.name])};")
    length = f"CRESCENT_LEN_{name}"
    if tail is None:
        lines.append(f"      _Static_assert(sizeof {v} == CRESCENT_LEN_{name}, \"{name} layout\");")
    elif tail.type == "str":
        text = fields[tail.name].encode()
        lit = "".join(f"\\x{b:02x}" for b in text)
        lines.append(f'      {v}.{tail.name}_len = {len(text)}; memcpy({v}.{tail.name}, "{lit}", {len(text)});')
        length = f"CRESCENT_LEN_{name} + 1 + {len(text)}"
    else:
        recs = fields[tail.name]
        lines.append(f"      {v}.{tail.name}_len = {len(recs)};")
        for r, rec in enumerate(recs):
            for rf in tail.record:
                lines.append(f"      {v}.{tail.name}[{r}].{rf.name} = {_c_int(rec[rf.name])};")
        length = f"CRESCENT_LEN_{name} + 1 + {len(recs)} * sizeof {v}.{tail.name}[0]"
    if name == "ARM_PLAN":  # the digest: CRC-32C of the payload without its 4 digest bytes (SPEC ARM_PLAN)
        lines.append(f"      {{ size_t len = {length}; static uint8_t tmp[CRESCENT_MAX_PAYLOAD]; size_t d = offsetof(crescent_arm_plan_t, digest);")
        lines.append(f"        memcpy(tmp, &{v}, d); memcpy(tmp + d, (uint8_t *)&{v} + d + 4, len - d - 4);")
        lines.append(f"        {v}.digest = crc32c(tmp, len - 4); }}")
    lines.append(f"      {emit}({call}, &{v}, {length}{sig_args}); }}")
    return head + "\n".join(lines) + "\n"


def _raw_code(vec: dict) -> str:
    data = bytes.fromhex(vec["wire_hex"])
    lit = "".join(f"\\x{b:02x}" for b in data)
    return f'    receive("{vec["name"]}", (const uint8_t *)"{lit}", {len(data)});\n'


def c_program() -> str:
    body = ['int main(int argc, char **argv) {', '    g_argc = argc; g_argv = argv;',
            '    if (crc32c((const uint8_t *)"123456789", 9) != CRESCENT_CRC32C_CHECK) { printf("crc-check\\n"); return 1; }']
    for i, vec in enumerate(VECTORS):
        body.append(_vector_code(i, vec) if "message" in vec else _raw_code(vec))
    body.append("    return 0;\n}\n")
    return C_LIB + "\n".join(body)


def run_c(tmp_path: Path, header_dir: Path) -> dict[str, str]:
    """Compile the program against the header in ``header_dir``, run it, return {vector: output}."""
    src = tmp_path / "vectors.c"
    src.write_text(c_program())
    exe = tmp_path / "vectors"
    subprocess.run(["gcc", "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I", str(header_dir), str(src),
                    "-o", str(exe)], check=True, capture_output=True, text=True)
    out = subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout
    tags = [f"{name}={openssl_hmac_sha256(SIGNING_KEY_HEX, bytes.fromhex(part))[:8].hex()}"
            for kind, name, part in (line.split(" ") for line in out.splitlines() if line.startswith("need "))]
    if tags:  # second run: the signed vectors' tags, computed by openssl from the C program's signed parts
        out = subprocess.run([str(exe), *tags], check=True, capture_output=True, text=True).stdout
    return {line.split(" ", 1)[0]: line.split(" ", 1)[1] if " " in line else "" for line in out.splitlines()}


def openssl_hmac_sha256(key_hex: str, data: bytes) -> bytes:
    """HMAC-SHA256 by the openssl command line tool (independent of Python's hmac)."""
    return subprocess.run(["openssl", "dgst", "-sha256", "-mac", "HMAC", "-macopt", f"hexkey:{key_hex}", "-binary"],
                          input=data, capture_output=True, check=True).stdout


SIGNING_KEY_HEX = next(v["signature"]["key_hex"] for v in VECTORS if "signature" in v)


EXPECTED_RAW = {
    "corrupted_hello": {"crc", "cobs"},  # one run, dropped
    "garbage_then_frame": None,  # checked below
    "length_mismatch": {"length"},
}


def _mismatches(got: dict[str, str]) -> list[str]:
    bad = []
    for vec in VECTORS:
        name = vec["name"]
        out = got.get(name)
        if "message" in vec:
            if out != vec["wire_hex"]:
                bad.append(name)
        elif name == "forged_signed_get_status":  # frame good; openssl says the tag is not the HMAC
            words = (out or "").split()
            if len(words) != 2 or words[0] != "ok:0111:06" or not words[1].startswith("signed:"):
                bad.append(name)
            else:
                part, tag = words[1].split(":")[1:]
                if openssl_hmac_sha256(SIGNING_KEY_HEX, bytes.fromhex(part))[:8].hex() == tag:
                    bad.append(name)
        elif name == "garbage_then_frame":
            words = (out or "").split()
            if len(words) != 2 or words[0] == "ok" or words[1] != "ok:0102:06":
                bad.append(name)
        else:
            words = (out or "").split()
            if len(words) != 1 or words[0] not in EXPECTED_RAW[name]:
                bad.append(name)
    return bad


def test_c_program_encodes_every_vector(tmp_path: Path) -> None:
    got = run_c(tmp_path, specgen.HEADER_PATH.parent)
    assert {v["name"] for v in VECTORS} <= set(got)
    assert _mismatches(got) == []
    assert sum("message" in v for v in VECTORS) >= 14


@pytest.mark.parametrize(
    "pattern,replacement",
    [
        (r"#define CRESCENT_PROTOCOL_VERSION \d+u", "#define CRESCENT_PROTOCOL_VERSION 1u"),  # the v1 header
        (r"uint32_t mas_nas;", "uint16_t mas_nas;"),  # a record layout off by two bytes
        (r"#define CRESCENT_MSG_NAK 0x04u", "#define CRESCENT_MSG_NAK 0x05u"),
        (r"#define CRESCENT_LEN_GET_STATUS 0u", "#define CRESCENT_LEN_GET_STATUS 1u"),  # the old _empty[1]
        (r"#define CRESCENT_CRC32C_POLY_REFLECTED 0x[0-9A-F]+u", "#define CRESCENT_CRC32C_POLY_REFLECTED 0xEDB88320u"),
        (r"#define CRESCENT_FLAG_SIGNED 0x10u", "#define CRESCENT_FLAG_SIGNED 0x20u"),  # signed flag bit wrong
        (r"#define CRESCENT_SIGNATURE_SIZE 15u", "#define CRESCENT_SIGNATURE_SIZE 14u"),  # signature block size wrong
    ],
    ids=["version", "layout", "msg-id", "empty-length", "crc-poly", "signed-flag", "signature-size"],
)
def test_c_encoder_catches_a_wrong_header(tmp_path: Path, pattern: str, replacement: str) -> None:
    header = specgen.HEADER_PATH.read_text()
    broken, n = re.subn(pattern, replacement, header, count=1)
    assert n == 1, pattern
    (tmp_path / "crescent_wire.h").write_text(broken)
    try:
        got = run_c(tmp_path, tmp_path)
    except subprocess.CalledProcessError as exc:  # e.g. the CRC check value no longer matches
        assert exc.returncode != 0
        return
    assert _mismatches(got), "a broken header still reproduced every vector"


def test_c_encoder_catches_a_wrong_signing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The signed vectors are checked: with another key the openssl tags no longer give the vectors' bytes."""
    monkeypatch.setitem(globals(), "SIGNING_KEY_HEX", "ff" * 32)
    got = run_c(tmp_path, specgen.HEADER_PATH.parent)
    assert {"signed_hello", "signed_nak_replayed"} <= set(_mismatches(got))
