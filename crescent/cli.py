"""The ``crescent`` command: one entry point gathering every subcommand, loaded lazily.

Each command lives in a folder of its own under :mod:`crescent`; its ``command``
module exposes ``register(subparsers)``, which adds the parser(s) and sets
``func`` (called with the parsed namespace, returning an exit status).

``crescent --help`` lists the commands from the table below without importing
any of them; ``crescent CMD ...`` imports only CMD's ``command`` module, and
that module imports the libraries it drives only when the command runs. So
``crescent --help`` and ``crescent CMD --help`` load no numba, scipy,
matplotlib or simulator module.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: command name -> (module that registers it, one-line help), in the order ``--help`` lists them.
COMMANDS: dict[str, tuple[str, str]] = {
    "acquire": ("crescent.acquire.command", "run a whole DBT exam (simulated gantry by default) and write every output"),
    "exam": ("crescent.exam.command", "run, list, show, recover and verify exam protocols"),
    "validate": ("crescent.validate.command", "validate exam files for CI: static checks, dry run, dose"),
    "gantry": ("crescent.gantry.command", "run the simulated gantry on a pty or TCP socket (real time)"),
    "conformance": ("crescent.conformance.command", "run the protocol conformance suite against a gantry port"),
    "check-capture": ("crescent.capture.command", "check safety/protocol invariants over a capture (pcap)"),
    "timing": ("crescent.capture.command", "round-trip latency histogram and telemetry jitter of a capture"),
    "replay": ("crescent.capture.command", "feed a capture back to a host controller or a gantry"),
    "send": ("crescent.send.command", "store a folder of DICOM objects on a PACS (C-STORE)"),
    "qc": ("crescent.qc.command", "run the DBT quality-control protocol (simulated gantry or a rig) and report"),
    "campaign": ("crescent.campaign.command", "seeded fault campaign on the virtual-time gantry: invariants, JUnit, HTML"),
    "trial": ("crescent.trial.command", "virtual clinical trials: cohort x arms on dask, model observers (CHO, NPW)"),
    "demo": ("crescent.demo.command", "show the reliable link across a real pseudo-terminal pair"),
}


class _VersionAction(argparse.Action):
    """``--version``: looks the installed version up only when asked (importlib.metadata is slow to load)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs: object) -> None:
        super().__init__(option_strings, dest=dest, nargs=0, help="show the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            text = version("crescent")
        except PackageNotFoundError:  # running from a source tree without install
            text = "0+unknown"
        parser.exit(message=f"crescent {text}\n")


def _chosen_command(argv: list[str]) -> str | None:
    """The subcommand named in ``argv`` (the first word that is not an option), if it is one of ours."""
    for word in argv:
        if not word.startswith("-"):
            return word if word in COMMANDS else None
    return None


def build_parser(load: str | None = None) -> argparse.ArgumentParser:
    """The top-level parser; the commands of ``load``'s module get their full parsers, the rest a one-line entry.

    ``load="*"`` registers every command in full (for tests and documentation).
    """
    parser = argparse.ArgumentParser(
        prog="crescent",
        description="Crescent: DBT acquisition simulator and gantry control harness.",
    )
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = ({module for module, _ in COMMANDS.values()} if load == "*"
               else {COMMANDS[load][0]} if load in COMMANDS else set())
    registered: set[str] = set()
    for name, (module, help_text) in COMMANDS.items():
        if name in registered:
            continue
        if module in modules:
            before = set(sub.choices)
            importlib.import_module(module).register(sub)
            registered |= set(sub.choices) - before
        else:
            sub.add_parser(name, help=help_text, description=help_text)
            registered.add(name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``crescent`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(_chosen_command(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        sys.stderr.close()
        return 0


if __name__ == "__main__":
    sys.exit(main())
