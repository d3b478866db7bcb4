"""The conformance suite against ``crescent gantry --pty`` in another process, and against defective gantries."""

from __future__ import annotations

import xmlschema
import pytest

from crescent.cli import main as crescent_main
from hil.conformance import run_suite
from hil.conformance.checks import CHECKS
from hil.defects import DEFECTS, DefectProxy
from hil.junit import FAIL, JUNIT_XSD, PASS, SKIP
from hil.rig import EXAMPLE_RIG_PATH


def relaxed_rig_file(tmp_path) -> str:
    """The example rig with wall-clock margins for a loaded 2-core CI machine (the defects exceed them by far)."""
    import yaml

    data = yaml.safe_load(EXAMPLE_RIG_PATH.read_text())
    data["timeouts"].update(watchdog_margin_ms=200, abort_latency_max_ms=150)
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_simulated_gantry_passes_the_suite_with_valid_junit(gantry_pty: str, tmp_path, capsys) -> None:
    junit = tmp_path / "conformance.xml"
    rc = crescent_main(["conformance", "--port", gantry_pty, "--rig", relaxed_rig_file(tmp_path), "--junit", str(junit)])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "CONFORMANT" in out and "NOT CONFORMANT" not in out
    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    schema.validate(str(junit))  # raises on any schema violation
    doc = schema.to_dict(str(junit))
    suite = doc["testsuite"][0]
    assert int(suite["@tests"]) == len(CHECKS)
    assert suite["@failures"] == "0" and suite["@errors"] == "0"
    # the rig-only interlocks (no simulator input) are skipped, everything else ran
    assert int(suite["@skipped"]) == 2


def test_junit_of_a_failing_run_validates_and_names_the_failure(tmp_path) -> None:
    from hil.junit import CaseResult, write_junit

    path = tmp_path / "f.xml"
    write_junit(path, "s", [CaseResult("a", PASS, "ok"), CaseResult("b", FAIL, "NAK BAD_STATE <&>"), CaseResult("c", SKIP, "rig-only")])
    schema = xmlschema.XMLSchema(str(JUNIT_XSD))
    schema.validate(str(path))
    text = path.read_text()
    assert 'failures="1"' in text and "NAK BAD_STATE &lt;&amp;&gt;" in text
    bad = tmp_path / "bad.xml"
    bad.write_text('<testsuites><testsuite name="x"><testcase name="y"/></testsuite></testsuites>')  # tests= missing
    assert not schema.is_valid(str(bad))


@pytest.mark.parametrize("defect", sorted(DEFECTS))
def test_each_defect_fails_its_matching_check(gantry_pty: str, defect: str) -> None:
    check = DEFECTS[defect]
    control = "fire_without_arm"
    with DefectProxy(gantry_pty, defect) as proxy:
        report = run_suite(proxy.pty_path, only=[check, control])
    results = report.by_name()
    assert results["handshake"].status == PASS
    assert results[check].status == FAIL, results[check].message
    assert results[control].status == PASS, results[control].message  # the proxy itself breaks nothing else
    assert not report.ok


def test_cli_errors(tmp_path, capsys) -> None:
    assert crescent_main(["conformance"]) == 2
    assert crescent_main(["conformance", "--port", str(tmp_path / "no-such-tty")]) == 2
    assert "cannot talk to" in capsys.readouterr().err
    assert crescent_main(["conformance", "--list"]) == 0
    assert "heartbeat_watchdog" in capsys.readouterr().out


def test_device_info_is_checked_against_the_rig_file(gantry_pty: str, tmp_path) -> None:
    from hil.rig import load_rig

    rig = load_rig(EXAMPLE_RIG_PATH)
    ok = run_suite(gantry_pty, rig=rig, only=["device_info_matches_rig"]).by_name()["device_info_matches_rig"]
    assert ok.status == PASS, ok.message
    wrong = rig.model_copy(update={"limits": rig.limits.model_copy(update={"arc_max_deg": 25.0})})
    res = run_suite(gantry_pty, rig=wrong, only=["device_info_matches_rig"]).by_name()["device_info_matches_rig"]
    assert res.status == FAIL and "arc max: device 30 deg, rig file 25 deg" in res.message
    assert "DEVICE_INFO and LIMITS_INFO" in ok.message
    # a generator limit that only LIMITS_INFO carries is compared too
    weak = rig.model_copy(update={"limits": rig.limits.model_copy(update={"tube_current_max_ma": 150.0})})
    res = run_suite(gantry_pty, rig=weak, only=["device_info_matches_rig"]).by_name()["device_info_matches_rig"]
    assert res.status == FAIL and "tube current max: device 200 mA, rig file 150 mA" in res.message
