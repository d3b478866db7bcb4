"""crescent validate: shipped exams accepted, a suite of unsafe exams rejected with the problem named."""

from __future__ import annotations

import copy
import math
from pathlib import Path

import pytest
import xmlschema
import yaml

from crescent.cli import main as crescent_main
from hil.junit import JUNIT_XSD
from hil.validate_exam import REFERENCE_BREASTS, STANDARD_BREAST, focal_spot_mm, projection_mgd_mgy, validate_file
from protocols.exams.standard import list_standard_exams, standard_exam_yaml
from protocols.exams.violations import Code
from protocols.geometry import AcquisitionGeometry
from protocols.records import ExposureRecord

STANDARD = tuple(b for b in REFERENCE_BREASTS if b.name == STANDARD_BREAST)

MANUAL_FFDM = {
    "kind": "ffdm", "name": "ffdm-manual", "view": "CC", "angle_deg": 0.0,
    "technique": {"mode": "manual", "anode_filter": "W/Rh", "kvp": 29.0, "mas_per_projection": 60.0},
    "compression": {"target_force_n": 100.0},
}
STEP_DBT = yaml.safe_load(standard_exam_yaml("dbt-step"))


def write(tmp_path: Path, data: dict, name: str = "exam.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data))
    return p


@pytest.mark.parametrize("name", list_standard_exams())
def test_shipped_exam_is_accepted(name: str, tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_load(standard_exam_yaml(name)), f"{name}.yaml")
    report = validate_file(path, breasts=STANDARD)
    assert report.ok, report.text()
    assert report.runs and report.runs[0].record.status == "complete"
    dose = report.doses[0]
    assert 0.05 < dose.total_mgy <= 3.0


def test_cli_validate_aec_exam_per_breast_with_junit(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, yaml.safe_load(standard_exam_yaml("dbt-standard")), "dbt-standard.yaml")
    junit = tmp_path / "validate.xml"
    two = [REFERENCE_BREASTS[1].name, REFERENCE_BREASTS[3].name]  # 45 mm / 50 % and 60 mm / 20 %: two AEC dry runs
    rc = crescent_main(["validate", str(path), "--junit", str(junit), "--breast", two[0], "--breast", two[1]])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "SAFE" in out and "scan time" in out and "anode heat" in out and "travel" in out
    for name in two:
        assert f"MGD {name}" in out
    # the AEC picked a harder technique for the thicker breast
    kv = [float(line.split("technique: ")[1].split()[1]) for line in out.splitlines() if "technique:" in line]
    assert len(kv) == 2 and kv[1] > kv[0]
    assert crescent_main(["validate", str(path), "--breast", "70 mm / 3 %"]) == 2
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(junit))
    assert 'failures="0"' in junit.read_text()


# ------------------------------------------------------------------------------------ unsafe exams
def _with(base: dict, **changes: object) -> dict:
    data = copy.deepcopy(base)
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for p in parents:
            node = node[p]
        if value is None:
            node.pop(leaf)
        else:
            node[leaf] = value
    return data


BAD_STATIC = {
    "over-range kVp": (_with(MANUAL_FFDM, technique__kvp=55.0), Code.KVP_RANGE, "technique.kvp"),
    "arc beyond travel": (_with(STEP_DBT, arc__start_deg=-35.0, arc__stop_deg=35.0), Code.ARC_TRAVEL, "arc.start_deg"),
    "too little time for the motion": (_with(STEP_DBT, motion__sweep_time_s=1.0), Code.MOTION_TIME, "motion"),
    "heat budget exceeded": (
        _with(STEP_DBT, arc__count=40, technique__mas_per_projection=150.0, technique__kvp=49.0, motion__sweep_time_s=300.0,
              motion__settle_ms=150.0),
        Code.HEAT_BUDGET, "",
    ),
    "missing fields": (_with(MANUAL_FFDM, compression=None), Code.SCHEMA, "compression"),
    "misspelt field": (_with(MANUAL_FFDM, technique__kvpp=29.0), Code.SCHEMA, "technique.kvpp"),
}


@pytest.mark.parametrize("case", sorted(BAD_STATIC))
def test_unsafe_exam_rejected_naming_the_problem(case: str, tmp_path: Path, capsys) -> None:
    data, code, field = BAD_STATIC[case]
    path = write(tmp_path, data)
    report = validate_file(path)
    assert not report.ok
    assert not report.runs, "an exam that fails the static checks never reaches the gantry"
    hits = [v for v in report.violations if v.code == code]
    assert hits, report.text()
    assert any(v.field.startswith(field) for v in hits), [v.field for v in hits]
    assert crescent_main(["validate", str(path)]) == 1
    out = capsys.readouterr().out
    assert "UNSAFE" in out and str(code) in out


def test_dose_over_the_limit_is_rejected_after_the_dry_run(tmp_path: Path, capsys) -> None:
    path = write(tmp_path, _with(MANUAL_FFDM, technique__mas_per_projection=300.0, technique__kvp=32.0))
    report = validate_file(path)
    assert report.runs and report.runs[0].record.status == "complete"  # the device would run it...
    dose = [v for v in report.violations if v.code == Code.DOSE]
    assert len(dose) == 1 and STANDARD_BREAST in dose[0].message and "3.0 mGy" in dose[0].message  # ...but it is unsafe
    assert dose[0].value > 3.0
    assert crescent_main(["validate", str(path), "--junit", str(tmp_path / "j.xml")]) == 1
    xmlschema.XMLSchema(str(JUNIT_XSD)).validate(str(tmp_path / "j.xml"))
    assert "exceeds the limit 3.0 mGy" in capsys.readouterr().out


def test_unreadable_files(tmp_path: Path, capsys) -> None:
    (tmp_path / "bad.yaml").write_text("kind: [unclosed")
    assert crescent_main(["validate", str(tmp_path / "bad.yaml")]) == 1
    out = capsys.readouterr().out
    assert "bad.yaml: invalid YAML" in out and "UNSAFE" not in out
    assert crescent_main(["validate", str(tmp_path / "none.yaml")]) == 1
    out = capsys.readouterr().out
    assert "none.yaml: exam file not found; shipped exams are in" in out and "UNSAFE" not in out


# ------------------------------------------------------------------------------------ dose geometry
def _exposure(angle: float, mas: float = 10.0) -> ExposureRecord:
    return ExposureRecord(
        index=0, frame_id=0, planned_angle_deg=angle, angle_start_deg=angle, angle_end_deg=angle, kvp=29.0, mas=mas,
        anode_filter="W/Rh", window_start_s=0.0, window_end_s=0.1,
    )


def test_dose_follows_mas_inverse_square_and_arc_symmetry() -> None:
    from physics.dose import g_factor, s_factor
    from physics.spectra import air_kerma_mgy_per_mas, beam_spectrum, half_value_layer_mm_al

    geo = AcquisitionGeometry(sid_mm=650.0, pivot_height_mm=0.0, support_height_mm=20.0)
    # focal spot by hand: 650 mm above the detector at 0 deg; at 30 deg, (325, 0, 562.9)
    assert focal_spot_mm(geo, 0.0) == pytest.approx((0.0, 0.0, 650.0))
    assert focal_spot_mm(geo, 30.0) == pytest.approx((325.0, 0.0, 650.0 * math.sqrt(3) / 2))
    d0 = projection_mgd_mgy(_exposure(0.0), geo, 45.0, 0.5)
    # by hand at 0 deg / 50 %: K at the upper surface (z = 65 mm, 60 mm from the chest wall) times g and s,
    # K and the HVL of the beam through the compression paddle (Dance's convention)
    from physics.beam_path import DEFAULT_BEAM_PATH

    spec = DEFAULT_BEAM_PATH.incident_spectrum("W/Rh", 29.0)
    dist = math.hypot(650.0 - 65.0, 60.0)
    k = air_kerma_mgy_per_mas(spec) * (spec.distance_mm / dist) ** 2 * 10.0
    assert d0 == pytest.approx(k * g_factor(45.0, half_value_layer_mm_al(spec)) * s_factor("W/Rh", 45.0), rel=1e-9)
    assert projection_mgd_mgy(_exposure(0.0, 20.0), geo, 45.0, 0.5) == pytest.approx(2 * d0)
    plus, minus = (projection_mgd_mgy(_exposure(a), geo, 45.0, 0.5) for a in (12.0, -12.0))
    assert plus == pytest.approx(minus, rel=1e-9)
    assert plus < d0  # farther focal spot and oblique path


def test_manual_technique_dose_at_each_reference_thickness_and_informative_labels(tmp_path: Path) -> None:
    """One fixed technique, applied to each reference breast at its own thickness; only 45 mm / 50 % is held
    to a limit; the others say INFORMATIVE in the text and are skipped (not passed) cases in the JUnit."""
    heavy = copy.deepcopy(MANUAL_FFDM)
    heavy["technique"]["mas_per_projection"] = 150.0  # over the 1.5 mGy level of the thin breast
    report = validate_file(write(tmp_path, heavy))
    by_name = {d.breast.name: d for d in report.doses}
    for b in REFERENCE_BREASTS:
        assert by_name[b.name].thickness_mm == b.thickness_mm  # the reference thickness, not the dry run's
    thin = by_name["32 mm / 67 %"]
    assert thin.over_limit and thin.informative
    text = report.text()
    line = next(l for l in text.splitlines() if "MGD 32 mm / 67 %" in l)
    assert "INFORMATIVE" in line and "above the 1.5 mGy" in line and "within" not in line
    assert "at 32.0 mm with the manual technique" in line
    steps = {s.name: s.status for s in report.steps}
    assert steps["dose 32 mm / 67 % (informative)"] == "skip"
    assert steps[f"dose {STANDARD_BREAST}"] == "pass"
    std_line = next(l for l in text.splitlines() if f"MGD {STANDARD_BREAST}" in l)
    assert "manual technique" in std_line and "AEC" not in std_line


def test_aec_dose_is_computed_at_the_thickness_the_dry_run_compressed_to(tmp_path: Path) -> None:
    path = write(tmp_path, yaml.safe_load(standard_exam_yaml("ffdm-cc")), "ffdm-cc.yaml")
    report = validate_file(path, breasts=STANDARD)
    d = report.doses[0]
    run_th = report.runs[0].record.compressed_thickness_mm
    assert d.thickness_mm == run_th and abs(run_th - 45.0) < 3.0
    e = [x for x in report.runs[0].record.exposures if not x.is_scout][0]
    assert d.per_projection_mgy[0] == pytest.approx(projection_mgd_mgy(e, AcquisitionGeometry(), run_th, 0.5), rel=1e-9)
    assert f"at {run_th:.1f} mm" in report.text()


def test_dry_runs_in_reuse_phantoms_build_each_breast_once_and_run_the_same(monkeypatch) -> None:
    """``crescent validate`` runs its dry runs in :func:`simulator.gantry.detector.reuse_phantoms`: a breast
    already built for an earlier dry run is reused, and the run (AEC technique from the scout image, every
    exposure) is the one a fresh phantom gives; another thickness is another breast."""
    from hil.validate_exam import dry_run
    from protocols.exams.io import exam_from_data
    from simulator.gantry.detector import reuse_phantoms
    from simulator.imaging import imager

    built: list[float] = []
    real = imager.make_phantom

    def counting(name, thickness_mm, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(round(float(thickness_mm), 1))
        return real(name, thickness_mm, *args, **kwargs)

    monkeypatch.setattr(imager, "make_phantom", counting)
    exam = exam_from_data(yaml.safe_load(standard_exam_yaml("ffdm-cc")), "ffdm-cc")

    def exposures(run):  # type: ignore[no-untyped-def]
        assert run.record.status == "complete", run.record.reason
        return [e.model_dump() for e in run.record.exposures]

    fresh = exposures(dry_run(exam, None, 45.0))
    assert len(built) == 1
    with reuse_phantoms():
        first = exposures(dry_run(exam, None, 45.0))
        again = exposures(dry_run(exam, None, 45.0))
        thicker = exposures(dry_run(exam, None, 60.0))
    assert len(built) == 3 and built[1] == built[0] and built[2] > built[0] + 10, built
    assert first == fresh and again == fresh
    assert thicker != fresh  # the AEC saw another breast
    dry_run(exam, None, 45.0)  # outside the block: built again
    assert len(built) == 4
