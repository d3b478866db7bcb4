"""``crescent gantry``: run the simulated gantry behind a pseudo-terminal or a TCP socket, in real time.

Usage::

    crescent gantry [--pty | --tcp PORT] [--bind ADDR] [--config NAME_OR_FILE] [--faults FILE]
                    [--seed N] [--data-dir DIR] [--data-channel file|tcp] [--data-port PORT]
                    [--data-host NAME] [--event-log FILE] [--quiet] [--exit-with-parent]
                    [--link-key-file FILE] [--signing-state FILE] [--data-tls-cert PEM --data-tls-key PEM]

The first line on stdout says where it listens, machine-readable: ``listening pty /dev/pts/5``
or ``listening tcp 127.0.0.1:5555``. The device event log (JSON lines) is echoed to stderr
unless ``--quiet`` and written to ``<data-dir>/device-events.jsonl`` (or ``--event-log``).
Images go to ``--data-dir``; with ``--data-channel tcp`` a frame server also serves them on
``--bind:--data-port`` and DEVICE_INFO names ``tcp://HOST:PORT`` (HOST: ``--data-host``, else the
bind address, else this machine's name for 0.0.0.0), for hosts that do not share the gantry's
file system. Ctrl-C or SIGTERM stops it cleanly (at once). With ``--exit-with-parent`` (what ``crescent
acquire`` starts it with) it also stops when the process that started it dies: it first lets its
watchdog make the device safe (X-rays off, motion stopped, paddle released, the last plan's images
written), then exits, leaving ``--data-dir`` and the event log for ``crescent exam recover``. SIGHUP
asks for that same exit while the parent lives (``crescent acquire`` leaving after Ctrl-C or SIGTERM:
the paddle may still be rising). Also runnable as ``python -m crescent gantry ...``.

Signed link (protocols/SPEC.md 2.6): with a link key (``--link-key-file``, else the environment
variable ``CRESCENT_LINK_KEY`` (64 hex digits) or ``CRESCENT_LINK_KEY_FILE``) the gantry signs every
frame and refuses unsigned, forged, replayed and stale ones; its high-water marks are kept in
``--signing-state`` (default ``$XDG_STATE_HOME/crescent/gantry-<serial>-signing.json``) so a replay
after a restart is refused too. The key is never printed: logs name it by its fingerprint. The TCP
data channel always requires the session's token; ``--data-tls-cert``/``--data-tls-key`` serve it
over TLS (``tls://`` in DEVICE_INFO).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from typing import Any

from crescent.cli_types import describe_error, int_in
from crescent.exit_codes import EXIT_INPUT, EXIT_OK
from protocols.option_bounds import TCP_PORT_MAX, TCP_PORT_MIN

log = logging.getLogger("crescent.gantry")
PORT = int_in(TCP_PORT_MIN, TCP_PORT_MAX)


#: ``crescent gantry --help``: plain text (the module docstring without its markup).
DESCRIPTION = (__doc__ or "").replace("``", "").replace("::", ":")


def register(subparsers: Any) -> None:
    """Add the ``gantry`` subcommand to the ``crescent`` parser."""
    p = subparsers.add_parser("gantry", help="run the simulated gantry on a pty or TCP socket (real time)",
                              description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--pty", action="store_true", help="serve on a new pseudo-terminal (default)")
    where.add_argument("--tcp", type=PORT, metavar="PORT", help="serve on a TCP port (0 = any free port; 0..65535)")
    p.add_argument("--bind", default="127.0.0.1", help="TCP address to bind (default 127.0.0.1)")
    p.add_argument("--config", default=None,
                   help="gantry config: a YAML file or a preset (default, ge-like, siemens-like, hologic-like)")
    p.add_argument("--faults", default=None, help="fault schedule YAML (see simulator/configs/faults-example.yaml)")
    p.add_argument("--seed", type=int, default=0, help="seed of every random thing (default 0)")
    p.add_argument("--data-dir", default=None, help="image data channel directory (default: a new temp dir)")
    p.add_argument("--data-channel", choices=("file", "tcp"), default="file",
                   help="how the host fetches images: the data directory (file, default) or a TCP frame server "
                        "on --bind:--data-port (tcp; protocol in protocols/data_channel.py)")
    p.add_argument("--data-port", type=PORT, default=0, help="TCP port of the frame server (default 0: any free port)")
    p.add_argument("--data-host", default=None,
                   help="host name DEVICE_INFO gives for the frame server (default: --bind, or this machine's "
                        "name when --bind is 0.0.0.0)")
    p.add_argument("--event-log", default="auto", help="device event log path (default <data-dir>/device-events.jsonl)")
    p.add_argument("--quiet", action="store_true", help="do not echo the event log to stderr")
    p.add_argument("--exit-with-parent", action="store_true",
                   help="exit (after reaching the safe state) when the parent process dies")
    p.add_argument("--link-key-file", default=None,
                   help="file with the rig's 64-hex-digit link key (mode 600): sign the link "
                        "(default: CRESCENT_LINK_KEY / CRESCENT_LINK_KEY_FILE, else unsigned)")
    p.add_argument("--signing-state", default=None,
                   help="file keeping the signed link's high-water marks across restarts "
                        "(default $XDG_STATE_HOME/crescent/gantry-<serial>-signing.json)")
    p.add_argument("--data-tls-cert", default=None, help="PEM certificate: serve the TCP data channel over TLS")
    p.add_argument("--data-tls-key", default=None, help="PEM private key of --data-tls-cert")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the gantry until Ctrl-C / SIGTERM; returns the exit status."""

    from simulator.gantry.config import load_config
    from simulator.gantry.faults import load_faults
    from simulator.gantry.realtime import serve

    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    from firmware_host.keys import load_link_key

    try:
        config = load_config(args.config)
        faults = load_faults(args.faults)
        link_key = load_link_key(args.link_key_file)
        data_tls = None
        if (args.data_tls_cert is None) != (args.data_tls_key is None):
            raise ValueError("--data-tls-cert and --data-tls-key go together")
        if args.data_tls_cert is not None:
            if args.data_channel != "tcp":
                raise ValueError("--data-tls-cert needs --data-channel tcp")
            import ssl

            data_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            try:
                data_tls.load_cert_chain(args.data_tls_cert, args.data_tls_key)
            except (OSError, ssl.SSLError) as exc:
                raise ValueError(f"--data-tls-cert {args.data_tls_cert} / --data-tls-key {args.data_tls_key}: "
                                 f"{exc.__class__.__name__}: {getattr(exc, 'strerror', None) or exc}") from None
    except (OSError, ValueError) as exc:
        print(f"crescent gantry: {describe_error(exc)}", file=sys.stderr)
        return EXIT_INPUT
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        log.info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    leave = threading.Event()

    def _leave(signum: int, _frame: Any) -> None:
        log.info("signal %d: exiting once the device is safe", signum)
        leave.set()

    signal.signal(signal.SIGHUP, _leave)

    def listening(where: str) -> None:
        print(f"listening {where}", flush=True)

    echo = None if args.quiet else (lambda line: log.info("%s", line))
    try:
        serve(config, mode="tcp" if args.tcp is not None else "pty", port=args.tcp or 0, bind=args.bind,
              seed=args.seed, faults=faults, data_dir=args.data_dir,
              event_log=None if args.event_log in ("none", "") else args.event_log,
              on_listening=listening, stop=stop, echo=echo, data_channel=args.data_channel, data_port=args.data_port,
              data_host=args.data_host, exit_with_parent=args.exit_with_parent, link_key=link_key,
              signing_state=args.signing_state, data_tls=data_tls, leave=leave)
    except OSError as exc:  # the port or socket cannot be opened: bad input, as for every command
        print(f"crescent gantry: {exc}", file=sys.stderr)
        return EXIT_INPUT
    log.info("stopped")
    return EXIT_OK
