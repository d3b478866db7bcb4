"""JUnit XML reports for CI (Jenkins, GitLab, GitHub Actions report viewers).

A report is a list of :class:`CaseResult` (pass / fail / skip / error with a
message and a duration in seconds) written as one ``<testsuites>`` document;
``hil/junit.xsd`` is the schema it is validated against in the tests.

Example
-------
>>> xml = junit_xml("demo", [CaseResult("a", PASS, "fine", 0.01), CaseResult("b", FAIL, "bad", 0.2)])
>>> b'failures="1"' in xml
True
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

PASS = "pass"
FAIL = "fail"
SKIP = "skip"
ERROR = "error"

#: The JUnit schema shipped with the package (Jenkins xunit-plugin junit-10.xsd, MIT).
JUNIT_XSD = Path(__file__).with_name("junit.xsd")


@dataclass(frozen=True)
class CaseResult:
    """One check or validation step; ``time_s`` in seconds; ``details`` goes to system-out."""

    name: str
    status: str
    message: str = ""
    time_s: float = 0.0
    classname: str = ""
    details: str = ""


def junit_xml(suite: str, results: list[CaseResult], properties: dict[str, str] | None = None) -> bytes:
    """The JUnit XML document (UTF-8 bytes) of ``results`` as one test suite named ``suite``."""
    counts = {s: sum(r.status == s for r in results) for s in (PASS, FAIL, SKIP, ERROR)}
    total = sum(r.time_s for r in results)
    root = ET.Element(
        "testsuites", name=suite, tests=str(len(results)), failures=str(counts[FAIL]), errors=str(counts[ERROR]),
        time=f"{total:.3f}",
    )
    ts = ET.SubElement(
        root, "testsuite", name=suite, tests=str(len(results)), failures=str(counts[FAIL]), errors=str(counts[ERROR]),
        skipped=str(counts[SKIP]), time=f"{total:.3f}",
    )
    if properties:
        props = ET.SubElement(ts, "properties")
        for k, v in properties.items():
            ET.SubElement(props, "property", name=k, value=str(v))
    for r in results:
        tc = ET.SubElement(ts, "testcase", name=r.name, classname=r.classname or suite, time=f"{r.time_s:.3f}")
        if r.status == FAIL:
            ET.SubElement(tc, "failure", message=r.message, type="failure").text = r.message
        elif r.status == ERROR:
            ET.SubElement(tc, "error", message=r.message, type="error").text = r.message
        elif r.status == SKIP:
            ET.SubElement(tc, "skipped", message=r.message)
        if r.details or (r.status == PASS and r.message):
            ET.SubElement(tc, "system-out").text = r.details or r.message
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)


def write_junit(path: str | Path, suite: str, results: list[CaseResult], properties: dict[str, str] | None = None) -> None:
    """Write :func:`junit_xml` to ``path``."""
    Path(path).write_bytes(junit_xml(suite, results, properties))
