"""Where the host finds the rig's link key (I/O: environment and files; SPEC 2.6).

* ``CRESCENT_LINK_KEY``: 64 hex digits in the environment, or
* a key file (the rig file's ``link_key_file``, or ``CRESCENT_LINK_KEY_FILE``): 64 hex digits, whitespace
  ignored; it should be readable by its owner only (a key file others can read is refused).

Error messages name the source and what is wrong with it, never the key's text. A key is shown in
logs only by its fingerprint (:meth:`protocols.wire.signing.LinkKey.fingerprint`).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Mapping
from pathlib import Path

from protocols.wire.signing import LinkKey

ENV_KEY = "CRESCENT_LINK_KEY"
ENV_KEY_FILE = "CRESCENT_LINK_KEY_FILE"
#: CA certificate (PEM) the host verifies a tls:// data channel against.
ENV_DATA_CA = "CRESCENT_DATA_TLS_CA"


class LinkKeyError(ValueError):
    """The link key could not be read (the message says from where and why, never the key)."""


def read_key_file(path: str | os.PathLike[str]) -> LinkKey:
    """A link key from a file of 64 hex digits, readable by its owner only."""
    p = Path(path)
    try:
        mode = p.stat().st_mode
        text = p.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise LinkKeyError(f"link key file {p}: {exc.__class__.__name__}: cannot read it") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise LinkKeyError(f"link key file {p}: readable by others (mode {stat.S_IMODE(mode):04o}); chmod 600 it")
    try:
        return LinkKey.from_hex(text, source=f"link key file {p}")
    except ValueError as exc:
        raise LinkKeyError(str(exc)) from None


def load_link_key(key_file: str | os.PathLike[str] | None = None,
                  environ: Mapping[str, str] | None = None) -> LinkKey | None:
    """The link key: ``key_file`` if given, else ``CRESCENT_LINK_KEY``, else ``CRESCENT_LINK_KEY_FILE``; None if none."""
    env = os.environ if environ is None else environ
    if key_file is not None:
        return read_key_file(key_file)
    if env.get(ENV_KEY):
        try:
            return LinkKey.from_hex(env[ENV_KEY], source=f"environment variable {ENV_KEY}")
        except ValueError as exc:
            raise LinkKeyError(str(exc)) from None
    if env.get(ENV_KEY_FILE):
        return read_key_file(env[ENV_KEY_FILE])
    return None
