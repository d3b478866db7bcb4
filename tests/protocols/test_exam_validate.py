"""Static validation: every shipped exam is clean; each bad exam is rejected with field, value and limit named."""

import copy

import pytest
import yaml

from protocols.exams import Code, list_standard_exams, load_standard_exam, validate_exam, validate_exam_data
from protocols.exams.standard import standard_exam_yaml
from protocols.limits import DeviceLimits
from protocols.records import Technique


def data(name: str) -> dict:
    return copy.deepcopy(yaml.safe_load(standard_exam_yaml(name)))


def only(violations, code):
    """The violations of one code; fails if there are others."""
    assert violations, "expected a violation"
    assert {v.code for v in violations} == {code}, [v.message for v in violations]
    return violations


@pytest.mark.parametrize("name", list_standard_exams())
def test_every_shipped_exam_is_valid_against_default_limits(name):
    assert validate_exam(load_standard_exam(name), DeviceLimits()) == []


# --------------------------------------------------------------------------- generator and tube


def test_over_range_kvp_manual():
    d = data("dbt-wide")
    d["technique"]["kvp"] = 55.0
    (v,) = only(validate_exam_data(d), Code.KVP_RANGE)
    assert (v.field, v.value, v.limit) == ("technique.kvp", 55.0, 49.0)
    assert v.message == "technique.kvp = 55.0 exceeds the generator limit 49.0 kV"


def test_over_range_kvp_aec_bounds_and_scout():
    d = data("dbt-standard")
    d["technique"]["kvp_max"] = 52.0
    d["technique"]["scout_kvp"] = 18.0
    d["technique"]["mas_max_per_projection"] = 6.0  # 100 mA in the 60 ms pulse: within 6 kW even at 52 kV
    vs = only(validate_exam_data(d), Code.KVP_RANGE)
    assert {(v.field, v.limit) for v in vs} == {("technique.kvp_max", 49.0), ("technique.scout_kvp", 22.0)}
    assert any("18.0 is below the generator limit 22.0 kV" in v.message for v in vs)


def test_mas_total_split_below_minimum():
    d = data("dbt-step")
    d["technique"] = {"mode": "manual", "anode_filter": "W/Rh", "kvp": 29.0, "mas_total": 3.6}  # 0.4 < 0.5 mAs
    (v,) = only(validate_exam_data(d), Code.MAS_RANGE)
    assert v.field == "technique.mas_total" and v.value == pytest.approx(0.4)
    assert "split evenly" in v.message and "0.5" in v.message


def test_continuous_pulse_needs_too_much_current():
    d = data("dbt-wide")
    d["technique"]["mas_total"] = 500.0  # 20 mAs in 60 ms = 333 mA
    (v, *more) = only(validate_exam_data(d), Code.TUBE_CURRENT)
    assert v.field == "technique.mas_total" and v.limit == 200.0
    assert "333.3333 mA" in v.message


def test_exposure_longer_than_the_tube_allows():
    d = data("ffdm-cc")
    d["technique"] = {"mode": "manual", "anode_filter": "W/Rh", "kvp": 28.0, "mas_per_projection": 450.0,
                      "tube_current_ma": 100.0}
    (v,) = only(validate_exam_data(d), Code.EXPOSURE_TIME)
    assert (v.field, v.limit) == ("technique.mas_per_projection", 4000.0)
    assert "4500.0 ms" in v.message


def test_unsupported_anode_filter_and_focal_spot():
    lim = DeviceLimits(anode_filters=("W/Rh", "W/Ag", "W/Al"))
    d = data("dbt-step")  # Rh/Rh
    d["technique"]["focal_spot_mm"] = 0.2
    vs = validate_exam_data(d, lim)
    assert {(v.code, v.field) for v in vs} == {
        (Code.ANODE_FILTER, "technique.anode_filter"), (Code.FOCAL_SPOT, "technique.focal_spot_mm")}


# --------------------------------------------------------------------------- arc


def test_arc_beyond_travel():
    d = data("dbt-wide")
    d["arc"]["stop_deg"] = 35.0
    (v,) = only(validate_exam_data(d), Code.ARC_TRAVEL)
    assert (v.field, v.value, v.limit) == ("arc.stop_deg", 35.0, 30.0)
    assert v.message == "arc.stop_deg = 35.0 exceeds the arc travel limit 30.0 deg"


def test_explicit_angle_beyond_travel_names_its_index():
    d = data("dbt-wide")
    d["arc"] = {"angles_deg": [-31.0, -10.0, 0.0, 10.0]}
    d["technique"] = {"mode": "manual", "anode_filter": "W/Rh", "kvp": 29.0, "mas_per_projection": 2.0}
    (v,) = only(validate_exam_data(d), Code.ARC_TRAVEL)
    assert v.field == "arc.angles_deg.0" and v.limit == -30.0 and "below the arc travel limit -30.0" in v.message


def test_continuous_runup_beyond_travel():
    d = data("dbt-wide")
    d["arc"].update(start_deg=-29.9, stop_deg=29.9)
    d["motion"]["sweep_time_s"] = 10.0  # ~6 deg/s: run-up ~1.2 deg beyond the last angle
    (v,) = only(validate_exam_data(d), Code.ARC_TRAVEL)
    assert v.field == "motion.sweep_time_s" and "run-up" in v.message


def test_stereo_offset_beyond_travel():
    d = data("stereo-biopsy")
    d["offset_deg"] = 35.0
    vs = only(validate_exam_data(d), Code.ARC_TRAVEL)
    assert [v.field for v in vs] == ["offset_deg"] and "-35.0 deg" in vs[0].message


def test_too_many_projections():
    d = data("dbt-step")
    d["arc"]["count"] = 60
    d["motion"].pop("sweep_time_s")
    (v,) = only(validate_exam_data(d), Code.PROJECTIONS)
    assert (v.field, v.value, v.limit) == ("arc.count", 60, 49)


# --------------------------------------------------------------------------- time for the motion


def test_continuous_too_fast_for_the_arc_and_detector():
    d = data("dbt-standard")
    d["motion"]["sweep_time_s"] = 1.0  # 25 deg/s; 1.786 deg steps every 71 ms
    vs = validate_exam_data(d)
    assert {v.code for v in vs} >= {Code.ARC_SPEED, Code.MOTION_TIME}
    speed = next(v for v in vs if v.code == Code.ARC_SPEED)
    assert speed.field == "motion.sweep_time_s" and "25.0 deg/s" in speed.message and "10.0 deg/s" in speed.message


def test_continuous_frames_too_close_for_the_detector():
    d = data("dbt-standard")
    d["arc"]["count"] = 49  # 0.52 deg steps at 25/7 deg/s = 146 ms apart; needs 60 + 150 ms
    (v,) = only(validate_exam_data(d), Code.MOTION_TIME)
    assert v.field == "motion.sweep_time_s" and v.limit == 210.0
    assert "145.8333 ms between projections" in v.message and "needs 210.0 ms" in v.message


def test_step_and_shoot_sweep_budget_too_short():
    d = data("dbt-step")
    d["motion"]["sweep_time_s"] = 3.0
    (v,) = only(validate_exam_data(d), Code.MOTION_TIME)
    assert (v.field, v.value) == ("motion.sweep_time_s", 3.0) and v.limit > 3.0
    assert "too short" in v.message and "9 step-and-shoot exposures" in v.message


def test_settle_shorter_than_the_arc_needs():
    d = data("dbt-step")
    d["motion"]["settle_ms"] = 20.0
    (v,) = only(validate_exam_data(d), Code.SETTLE)
    assert (v.field, v.limit) == ("motion.settle_ms", 100.0)


# --------------------------------------------------------------------------- compression, heat, dose


def test_compression_force_over_the_limit():
    d = data("ffdm-cc")
    d["compression"]["target_force_n"] = 250.0
    d["compression"]["max_thickness_mm"] = 200.0
    vs = validate_exam_data(d)
    force = next(v for v in vs if v.code == Code.COMPRESSION_FORCE)
    assert force.message == "compression.target_force_n = 250.0 exceeds the powered compression force limit 200.0 N"
    thick = next(v for v in vs if v.code == Code.COMPRESSION_THICKNESS)
    assert (thick.field, thick.limit) == ("compression.max_thickness_mm", 150.0)


def test_heat_budget_exceeded():
    d = data("dbt-step")
    d["arc"]["count"] = 49
    d["motion"].pop("sweep_time_s")
    d["technique"].update(kvp=49.0, mas_per_projection=100.0)
    (v,) = only(validate_exam_data(d), Code.HEAT_BUDGET)
    assert v.value == pytest.approx(49 * 49.0 * 100.0) and v.limit == 210000.0
    assert "240100.0 J" in v.message and "49 exposures x 49.0 kV x 100.0 mAs" in v.message


def test_heat_counts_the_aec_scout_worst_case_and_stored_heat():
    exam = load_standard_exam("dbt-standard")  # worst case 15 x 36 kV x 9.9 mAs + scout 28 kV x 1 mAs
    need = 15 * 36.0 * 9.9 + 28.0 * 1.0
    assert validate_exam(exam, DeviceLimits(anode_heat_capacity_j=need)) == []
    (v,) = validate_exam(exam, DeviceLimits(anode_heat_capacity_j=need - 1.0))
    assert v.code == Code.HEAT_BUDGET and v.value == pytest.approx(need)
    (v,) = validate_exam(exam, initial_heat_j=210000.0 - need + 1.0)
    assert "already stored" in v.message


def test_chosen_aec_technique_replaces_the_worst_case():
    exam = load_standard_exam("dbt-standard")
    lim = DeviceLimits(anode_heat_capacity_j=1000.0)
    assert [v.code for v in validate_exam(exam, lim)] == [Code.HEAT_BUDGET]
    assert validate_exam(exam, lim, technique=Technique(anode_filter="W/Rh", kvp=28.0, mas=2.0)) == []


def test_dose_hook_checks_supplied_estimates_only():
    exam = load_standard_exam("dbt-wide")
    assert validate_exam(exam, dose_mgd_mgy=[0.2] * 25) == []  # no limit given: nothing to check
    (v,) = validate_exam(exam, dose_mgd_mgy=[0.2] * 25, dose_limit_mgy=3.0)
    assert v.code == Code.DOSE and v.value == pytest.approx(5.0) and "3.0 mGy" in v.message
    assert validate_exam(exam, dose_mgd_mgy=[0.1] * 25, dose_limit_mgy=3.0) == []
    with pytest.raises(ValueError, match="24 values for 25"):
        validate_exam(exam, dose_mgd_mgy=[0.1] * 24, dose_limit_mgy=3.0)


def test_aec_dose_target_over_the_limit():
    d = data("ffdm-cc")
    d["technique"].pop("target_signal_fraction")
    d["technique"]["target_mgd_mgy"] = 3.5
    (v,) = validate_exam_data(d, dose_limit_mgy=3.0)
    assert (v.code, v.field) == (Code.DOSE, "technique.target_mgd_mgy")


# --------------------------------------------------------------------------- schema problems


def test_missing_fields():
    d = data("dbt-standard")
    del d["arc"]
    del d["compression"]["target_force_n"]
    vs = only(validate_exam_data(d), Code.SCHEMA)
    assert {v.field: v.message for v in vs} == {
        "arc": "arc: required field is missing",
        "compression.target_force_n": "compression.target_force_n: required field is missing",
    }


def test_both_arc_forms_given():
    d = data("dbt-standard")
    d["arc"]["angles_deg"] = [-5.0, 0.0, 5.0]
    (v,) = only(validate_exam_data(d), Code.SCHEMA)
    assert v.field == "arc" and "not both" in v.message and "start_deg, stop_deg, count" in v.message


def test_unknown_keys():
    d = data("dbt-standard")
    d["arc"]["stop_dge"] = 12.5
    d["colour"] = "blue"
    vs = only(validate_exam_data(d), Code.SCHEMA)
    assert {v.field for v in vs} == {"arc.stop_dge", "colour"}
    assert all("unknown field" in v.message for v in vs)


def test_wrong_kind_and_types():
    assert "kind" in validate_exam_data({**data("ffdm-cc"), "kind": "ct"})[0].message
    d = data("dbt-wide")
    d["technique"]["kvp"] = "high"
    (v,) = validate_exam_data(d)
    assert v.field == "technique.kvp" and "'high'" in v.message


def test_non_monotonic_angles_and_speed_forms():
    d = data("dbt-wide")
    d["arc"] = {"angles_deg": [0.0, 5.0, 3.0]}
    d["motion"]["speed_deg_s"] = 2.0  # with sweep_time_s too
    vs = only(validate_exam_data(d), Code.SCHEMA)
    assert {v.field for v in vs} == {"arc", "motion"}
    assert any("strictly increasing" in v.message for v in vs)
    assert any("speed_deg_s / sweep_time_s" in v.message for v in vs)
