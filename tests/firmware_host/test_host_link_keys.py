"""Where the host finds the link key (firmware_host/keys.py): environment or a mode-600 file; errors never show it."""

from __future__ import annotations

import os

import pytest

from firmware_host.keys import LinkKeyError, load_link_key, read_key_file

HEX = "3c" * 32


def test_environment_then_file_then_none(tmp_path) -> None:
    assert load_link_key(environ={}) is None
    key = load_link_key(environ={"CRESCENT_LINK_KEY": HEX})
    assert key is not None and key.tag(b"x") == load_link_key(environ={"CRESCENT_LINK_KEY": HEX.upper()}).tag(b"x")
    f = tmp_path / "k"
    f.write_text(HEX + "\n")
    os.chmod(f, 0o600)
    assert load_link_key(environ={"CRESCENT_LINK_KEY_FILE": str(f)}).tag(b"x") == key.tag(b"x")
    assert load_link_key(f, environ={"CRESCENT_LINK_KEY": "00" * 32}).tag(b"x") == key.tag(b"x")  # the file given wins


def test_errors_name_the_source_never_the_key(tmp_path) -> None:
    bad = "3c" * 30 + "zz11"
    with pytest.raises(LinkKeyError) as exc:
        load_link_key(environ={"CRESCENT_LINK_KEY": bad})
    assert "CRESCENT_LINK_KEY" in str(exc.value) and "3c3c" not in str(exc.value)
    f = tmp_path / "k"
    f.write_text(HEX)
    os.chmod(f, 0o644)
    with pytest.raises(LinkKeyError, match="readable by others \\(mode 0644\\); chmod 600") as exc:
        read_key_file(f)
    assert HEX not in str(exc.value)
    with pytest.raises(LinkKeyError, match="cannot read it"):
        read_key_file(tmp_path / "missing")
    os.chmod(f, 0o600)
    f.write_text(HEX[:-2])
    with pytest.raises(LinkKeyError, match="62 hex digits, expected 64") as exc:
        read_key_file(f)
    assert HEX[:10] not in str(exc.value)
