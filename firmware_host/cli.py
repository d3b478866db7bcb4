"""The ``crescent`` command: one entry point gathering every subcommand.

Each subcommand's code lives next to what it drives; this module only knows
where to find it. A subcommand module exposes ``register(subparsers)``, which
adds its parser and sets ``func`` (called with the parsed namespace, returning
an exit status).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from importlib.metadata import PackageNotFoundError, version

#: Modules that contribute subcommands, in the order ``--help`` lists them.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "firmware_host.acquire_cli",  # crescent acquire
    "firmware_host.exam_cli",  # crescent exam ...
    "simulator.cli",  # crescent gantry
    "hil.cli",  # crescent conformance / validate / replay / check-capture / timing
    "firmware_host.demo_cli",  # crescent demo
)


def _version() -> str:
    try:
        return version("crescent")
    except PackageNotFoundError:  # running from a source tree without install
        return "0+unknown"


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every available subcommand."""
    parser = argparse.ArgumentParser(
        prog="crescent",
        description="Crescent: DBT acquisition simulator and gantry control harness.",
    )
    parser.add_argument("--version", action="version", version=f"crescent {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue  # subcommand not present in this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``crescent`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
