"""A signed `crescent acquire --port socket://...` against `crescent gantry --tcp` (issue 19).

Product defaults, the key in the environment (``CRESCENT_LINK_KEY``) of both processes, images over
the TCP data channel inside TLS with a self-signed certificate made here by the ``openssl`` command
line tool (the ``cryptography`` package is not installed). The exam completes; the gantry's event
log shows signed frames only; the key appears in no output file, log or capture.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from host_pty import PTY_EXAMS, PtyGantry

KEY_HEX = "5a" * 16 + "c3" * 16


def self_signed_cert(tmp: Path) -> tuple[Path, Path]:
    """A throw-away certificate for 127.0.0.1 (subjectAltName IP, so host-name verification applies)."""
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True)
    return cert, key


def files_containing(root: Path, needle: bytes) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and needle in p.read_bytes()]


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl not installed")
def test_signed_acquire_over_socket_with_tls_data_channel(tmp_path) -> None:
    exam_file = tmp_path / "dbt-pty.yaml"
    exam_file.write_text(yaml.safe_dump(PTY_EXAMS["dbt"].model_dump(mode="json")))
    cert, key = self_signed_cert(tmp_path)
    env = {**os.environ, "CRESCENT_LINK_KEY": KEY_HEX, "CRESCENT_DATA_TLS_CA": str(cert)}
    state = tmp_path / "signing-state.json"
    gantry = PtyGantry(tmp_path, data_channel="tcp", tcp=True, env=env,
                       extra=("--signing-state", str(state), "--data-tls-cert", str(cert), "--data-tls-key", str(key)))
    try:
        assert gantry.path.startswith("socket://127.0.0.1:")
        host = subprocess.run([sys.executable, "-m", "crescent", "acquire", "--port", gantry.path,
                               "--exam", str(exam_file), "--out", str(tmp_path / "out"), "--seed", "2",
                               "--watchdog-ms", "8000", "--no-progress"],
                              capture_output=True, text=True, timeout=600, env=env)
    finally:
        gantry.stop()
        device_err = gantry.proc.stderr.read() if gantry.proc.stderr else ""
    assert host.returncode == 0, host.stdout[-3000:] + host.stderr[-3000:]
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["status"] == "complete" and summary["projections"] == 7
    hello = next(r for r in gantry.records("command") if r["msg"] == "HELLO")
    assert hello["fields"]["host_capabilities"] & (1 << 7)  # SIGNED_LINK announced
    assert gantry.records("auth_rejected") == []  # every frame of the exam verified
    assert json.loads(state.read_text())["marks"]["1"] > 0  # the host's high-water mark, persisted
    info = next(r for r in gantry.records("answer") if r["msg"] == "DEVICE_INFO")
    assert info["fields"]["data_channel"].startswith("tls://127.0.0.1:")
    # the key is nowhere: outputs (audit, capture, record), the device's files, either process's output
    for needle in (bytes.fromhex(KEY_HEX), KEY_HEX.encode(), KEY_HEX.upper().encode()):
        assert files_containing(tmp_path / "out", needle) == []
        assert files_containing(gantry.data_dir, needle) == [] and needle not in gantry.event_log.read_bytes()
        assert needle not in (host.stdout + host.stderr + device_err).encode()


@pytest.mark.slow
def test_unsigned_host_against_signed_gantry_is_refused_clearly(tmp_path) -> None:
    """The check above can fail: without the key the host gets no session, and says why."""
    env = {**os.environ, "CRESCENT_LINK_KEY": KEY_HEX}
    gantry = PtyGantry(tmp_path, tcp=True, env=env, extra=("--signing-state", str(tmp_path / "s.json")))
    try:
        host_env = {k: v for k, v in os.environ.items() if not k.startswith("CRESCENT_LINK_KEY")}
        host = subprocess.run([sys.executable, "-m", "crescent", "acquire", "--port", gantry.path, "--exam",
                               "dbt-standard", "--out", str(tmp_path / "out"), "--no-progress"],
                              capture_output=True, text=True, timeout=300, env=host_env)
    finally:
        gantry.stop()
    assert host.returncode != 0
    assert "UNSIGNED" in host.stdout + host.stderr
    assert gantry.records("auth_rejected") and not any(r["msg"] == "HELLO" for r in gantry.records("command"))
