"""``crescent demo``: the reliable link across a real pseudo-terminal pair (see :mod:`crescent.demo.link_demo`)."""

from __future__ import annotations

import argparse


def _cmd(args: argparse.Namespace) -> int:
    from crescent.demo.link_demo import run_demo

    counters = run_demo()
    ok = counters["executed_moves"] == 2 and counters["attempts_of_lost"] == 2 and counters["frame_errors"] >= 1
    print("demo " + ("passed" if ok else "FAILED") + f": {counters}")
    return 0 if ok else 1


def register(sub: argparse._SubParsersAction) -> None:
    """Add ``crescent demo``."""
    p = sub.add_parser("demo", help="show the reliable link across a real pseudo-terminal pair",
                       description="Show the reliable link across a real pseudo-terminal pair: framed commands, "
                       "a retransmission answered from the cache (not executed twice), a corrupt frame rejected.")
    p.set_defaults(func=_cmd)
