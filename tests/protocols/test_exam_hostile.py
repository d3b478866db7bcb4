"""Hostile exam files are refused fast, in bounded memory, with a message that names the file and the reason.

Issue 20: an alias bomb grew ``crescent validate`` past 2.5 GB; a 50 MB exam was validated after 92 s
and 1.1 GB; ``kvp: true`` was read as 1.0; long values were quoted whole in messages. Every file here is
generated in ``tmp_path``; peak Python memory is measured with tracemalloc as a generous bound (a refused
file is never read, let alone parsed).
"""

from __future__ import annotations

import random
import tracemalloc
from pathlib import Path

import pytest
import yaml

from protocols.exams import ExamFileError, load_exam, parse_exam_yaml
from protocols.exams.standard import standard_exam_yaml
from protocols.exams.violations import Code
from protocols.exams.validate import validate_exam_data

MIB = 1 << 20
MEMORY_BOUND_BYTES = 200 * MIB  # generous: a refused file costs well under 1 MiB

GOOD = standard_exam_yaml("ffdm-cc")


def billion_laughs(levels: int = 9, fan: int = 10) -> str:
    """The classic alias bomb: ``fan ** levels`` leaves from a few hundred bytes, used as the description."""
    lines = ['a0: &a0 "lol"']
    for i in range(1, levels + 1):
        lines.append(f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * fan) + "]")
    return "\n".join(lines) + f"\n{GOOD.replace('description: ', f'description: *a{levels}  #', 1)}"


def write_big(path: Path, head: str, body_line: str, total_bytes: int) -> Path:
    """A file of ``head`` then ``body_line`` repeated up to ``total_bytes``, written in chunks."""
    with open(path, "w", encoding="utf-8") as f:
        f.write(head)
        chunk = body_line * (MIB // len(body_line))
        written = len(head)
        while written < total_bytes:
            f.write(chunk)
            written += len(chunk)
    return path


def refused(fn, *args) -> tuple[str, int]:
    """Call ``fn(*args)`` expecting ExamFileError; return its message and the peak traced memory (bytes)."""
    tracemalloc.start()
    try:
        with pytest.raises(ExamFileError) as err:
            fn(*args)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return str(err.value), peak


# ------------------------------------------------------------------------------------------ alias bombs
def test_alias_bomb_file_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "bomb.yaml"
    path.write_text(billion_laughs())
    assert path.stat().st_size < 2000  # a small file: the size cap does not catch it
    msg, peak = refused(load_exam, path)
    assert msg.startswith(f"{path}: cannot read exam")
    assert "YAML anchors and aliases are not accepted (anchor '&a0' at line 1, column 5)" in msg
    assert len(msg) < 300, msg  # nothing expanded into the message
    assert peak < MEMORY_BOUND_BYTES


def test_alias_bomb_text_and_single_alias_are_refused() -> None:
    msg, peak = refused(parse_exam_yaml, billion_laughs(), "bomb.yaml")
    assert "anchors and aliases are not accepted" in msg and peak < MEMORY_BOUND_BYTES
    # one harmless-looking alias is refused as well: no Crescent input needs them
    text = GOOD.replace("target_force_n: 120.0", "target_force_n: &f 120.0") + "# *f\n"
    line = next(i for i, t in enumerate(text.splitlines(), 1) if "&f" in t)  # the library file's own line
    with pytest.raises(ExamFileError, match=rf"anchor '&f' at line {line}, column 19"):
        parse_exam_yaml(text, "one.yaml")


# ------------------------------------------------------------------------------------------ oversized
@pytest.mark.parametrize(
    "what, head, line",
    [
        ("50 MB description", GOOD.replace("description: ", "description: >-\n  ", 1) + "#", "  " + "x" * 78 + "\n"),
        ("50 MB of unknown keys", GOOD, "unknown_key_0000000000: 1\n"),
    ],
)
def test_fifty_megabyte_exam_is_refused_before_reading(tmp_path: Path, what: str, head: str, line: str) -> None:
    path = write_big(tmp_path / "big.yaml", head, line, 50 * MIB)
    size = path.stat().st_size
    msg, peak = refused(load_exam, path)
    assert f"{path}: cannot read exam\n  file too large: {size} bytes, limit {MIB} bytes" == msg
    assert peak < MEMORY_BOUND_BYTES, f"{what}: peak {peak / MIB:.1f} MiB"


def test_exam_text_over_the_cap_is_refused() -> None:
    text = GOOD + "# " + "x" * MIB + "\n"
    msg, _ = refused(parse_exam_yaml, text, "long.yaml")
    assert f"long.yaml: cannot read exam\n  file too large: {len(text)} characters, limit {MIB} bytes" == msg


def test_flood_of_keys_under_the_size_cap_is_refused_fast() -> None:
    text = GOOD + "".join(f"k{i:07d}: 1\n" for i in range(60_000))  # 660 kB: under 1 MiB, 120 000 nodes
    assert len(text) < MIB
    msg, peak = refused(parse_exam_yaml, text, "flood.yaml")
    assert "too many YAML nodes: more than 20000" in msg
    assert peak < MEMORY_BOUND_BYTES


def test_deep_nesting_is_refused_without_recursion_error() -> None:
    block = "".join(" " * i + f"k{i}:\n" for i in range(40)) + " " * 40 + "leaf: 1\n"
    msg, _ = refused(parse_exam_yaml, GOOD + block, "deep.yaml")
    line = GOOD.count("\n") + 33  # the 33rd line of the block is the 33rd level
    assert f"YAML nested too deep: more than 32 levels (at line {line}, column 33)" in msg
    flow = GOOD.replace("description: ", "description: " + "[" * 100_000 + "#", 1)
    msg, peak = refused(parse_exam_yaml, flow, "deep.yaml")
    assert "invalid YAML" in msg and "nesting depth" in msg and peak < MEMORY_BOUND_BYTES


# ------------------------------------------------------------------------------------------ binary, encoding
def test_binary_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "image.yaml"
    path.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + random.Random(20).randbytes(4096))
    msg, _ = refused(load_exam, path)
    assert msg == f"{path}: cannot read exam\n  binary data, not YAML text (NUL byte at offset 8)"


def test_non_utf8_file_is_named_with_offset_and_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(GOOD.replace("Full-field", "Full-fi\xe9ld").encode("latin-1"))
    offset = GOOD.encode().index(b"Full-field") + len("Full-fi")
    msg, _ = refused(load_exam, path)
    assert msg == f"{path}: cannot read exam\n  not UTF-8 text: byte 0xe9 at offset {offset} (line 4)"


def test_device_without_size_is_capped_while_reading() -> None:
    if not Path("/dev/zero").exists():
        pytest.skip("no /dev/zero")
    msg, peak = refused(load_exam, "/dev/zero")
    assert msg == f"/dev/zero: cannot read exam\n  file too large: more than {MIB} bytes, limit {MIB} bytes"
    assert peak < MEMORY_BOUND_BYTES


# ------------------------------------------------------------------------------------------ duplicate keys
def test_duplicate_key_is_refused_with_its_line_and_truncated_name() -> None:
    with pytest.raises(ExamFileError, match=r"duplicate key 'view' \(line 6, column 1\)"):
        parse_exam_yaml(GOOD.replace("view: CC", "view: CC\nview: MLO"), "dup.yaml")
    long_key = "k" * 1000  # YAML's longest simple key is 1024 characters
    with pytest.raises(ExamFileError) as err:
        parse_exam_yaml(GOOD + f"{long_key}: 1\n{long_key}: 2\n", "dup.yaml")
    assert "duplicate key 'kkkk" in str(err.value) and len(str(err.value)) < 300


def test_merge_keys_are_refused_by_name() -> None:
    with pytest.raises(ExamFileError, match=r"YAML merge keys \('<<'\) are not accepted"):
        parse_exam_yaml(GOOD.replace("compression:\n", "compression:\n  <<: {settle_time_s: 2.0}\n"), "m.yaml")


# ------------------------------------------------------------------------------------------ wrong types
@pytest.mark.parametrize(
    "old, new, field, value",
    [
        ("scout_kvp: 28.0", "scout_kvp: true", "technique.scout_kvp", True),
        ("target_force_n: 120.0", "target_force_n: false", "compression.target_force_n", False),
        ("scout_mas: 5.0", "scout_mas: '5'", "technique.scout_mas", "5"),
        ("scout_mas: 5.0", "scout_mas: .inf", "technique.scout_mas", float("inf")),
        ("compression:\n", "compression:\n  release_on_fault: 1\n", "compression.release_on_fault", 1),
    ],
)
def test_wrong_types_are_refused_not_coerced(old: str, new: str, field: str, value: object) -> None:
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    with pytest.raises(ExamFileError) as err:
        parse_exam_yaml(text, "types.yaml")
    (v,) = err.value.violations
    assert (v.field, v.value, v.code) == (field, value, Code.SCHEMA)
    assert f"{field} = {value!r}" in v.message


def test_count_true_is_not_two_projections() -> None:
    text = standard_exam_yaml("dbt-step").replace("count: 9", "count: true")
    assert text != standard_exam_yaml("dbt-step")
    with pytest.raises(ExamFileError, match=r"arc.count = True: Input should be a valid integer"):
        parse_exam_yaml(text, "count.yaml")


# ------------------------------------------------------------------------------------------ out of range
def test_out_of_range_names_field_value_and_limit() -> None:
    with pytest.raises(ExamFileError) as err:
        parse_exam_yaml(GOOD.replace("kvp_max: 35.0", "kvp_max: 400"), "range.yaml")
    (v,) = err.value.violations
    assert (v.field, v.value, v.limit) == ("technique.kvp_max", 400, 150.0)
    assert v.message == "technique.kvp_max = 400: Input should be less than or equal to 150"
    # a device limit (the default gantry's generator tops out at 49 kV)
    data = yaml.safe_load(GOOD)
    data["technique"]["kvp_max"] = 60.0
    (dev,) = validate_exam_data(data)
    assert (dev.field, dev.value, dev.limit, dev.code) == ("technique.kvp_max", 60.0, 49.0, Code.KVP_RANGE)
    assert dev.message == "technique.kvp_max = 60.0 exceeds the generator limit 49.0 kV"


def test_long_values_are_quoted_truncated() -> None:
    name = "x" * 5000
    with pytest.raises(ExamFileError) as err:
        parse_exam_yaml(GOOD.replace("name: ffdm-cc", f"name: {name}"), "long.yaml")
    (v,) = err.value.violations
    assert v.field == "name" and v.value == name  # the data keeps the value...
    quoted = v.message.split(" = ", 1)[1].split(": ", 1)[0]
    assert quoted == "'" + "x" * 76 + "..."  # ...the message quotes 80 characters of it
    angles = ", ".join(str(a) for a in [0, 1] * 500)  # 1000 angles, not monotonic
    text = standard_exam_yaml("dbt-step").replace("start_deg: -12.5", f"angles_deg: [{angles}]")
    text = text.replace("  stop_deg: 12.5\n", "").replace("  count: 9\n", "")
    with pytest.raises(ExamFileError, match="angles_deg must be strictly increasing") as err:
        parse_exam_yaml(text, "angles.yaml")
    assert max(len(line) for line in str(err.value).splitlines()) <= 400


def test_unknown_key_flood_lists_a_bounded_number_of_problems() -> None:
    text = GOOD + "".join(f"unknown_{i}: {'v' * 200}\n" for i in range(500))
    with pytest.raises(ExamFileError) as err:
        parse_exam_yaml(text, "unknown.yaml")
    assert len(err.value.violations) == 500
    lines = str(err.value).splitlines()
    assert lines[0] == "unknown.yaml: 500 problem(s)" and lines[-1] == "  - ... and 480 more"
    assert len(lines) == 22 and max(len(x) for x in lines) < 200
