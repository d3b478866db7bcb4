"""Protocol conformance suite: checks a gantry on any port against protocols/SPEC.md.

``crescent conformance --port URL [--junit out.xml] [--rig FILE]``; see
:mod:`hil.conformance.checks` for the checks and :func:`run_suite` for the API.
"""

from hil.conformance.runner import SuiteReport, open_port, run_suite

__all__ = ["SuiteReport", "open_port", "run_suite"]
