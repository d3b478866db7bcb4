"""`crescent exam ...` subcommands that need no device: list, show, schema, verify; and a missing port."""

from __future__ import annotations

import json

from crescent.cli import main
from host_sim import run_virtual


def test_list_show_schema(capsys) -> None:
    assert main(["exam", "list"]) == 0
    out = capsys.readouterr().out
    assert "dbt-standard" in out and "stereo-biopsy" in out
    assert main(["exam", "show", "stereo-biopsy"]) == 0
    out = capsys.readouterr().out
    assert "-15.000" in out and "15.000" in out and "validation: ok" in out
    assert main(["exam", "show", "no-such-exam"]) == 2
    err = capsys.readouterr().err
    assert "no-such-exam" in err and "not found: no exam file and no shipped exam of that name" in err


def test_schema_is_json(capsys) -> None:
    main(["exam", "schema"])
    schema = json.loads(capsys.readouterr().out)
    assert "$schema" in schema


def test_run_on_a_missing_port_is_a_clear_error(capsys, tmp_path) -> None:
    assert main(["exam", "run", "ffdm-cc", "--port", str(tmp_path / "no-such-tty")]) == 2
    err = capsys.readouterr().err
    assert "cannot open port" in err and "no-such-tty" in err


def test_verify_reports_a_corrupted_image(capsys, tmp_path) -> None:
    result, _, _ = run_virtual("stereo-biopsy", tmp_path)
    assert main(["exam", "verify", str(result.out_dir)]) == 0
    p = result.image_paths[0]
    raw = bytearray(p.read_bytes())
    raw[-2] ^= 0xFF
    p.write_bytes(bytes(raw))
    assert main(["exam", "verify", str(result.out_dir)]) == 1
    out = capsys.readouterr().out.split("audit log")[-2]  # the second run's report
    assert "BAD projections/proj_000.npy" in out and "CRC-32C" in out and "ok  projections/proj_001.npy" in out
