"""Clinic settings that would loosen the esketamine label, and the ideal-body-weight option,
over HTTP on both stores (the live server's clinic configuration swapped for the test) and at
start-up (the configuration file)."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime

import pytest

from ketaflow.core.errors import InvalidInput
from ketaflow.core.settings import Settings
from ketaflow.treatment.clinic import load_clinic_config
from support.clinic import BASELINE, READY, act, add_chairs, enrolled_patient, ok, start_course

MONDAY = datetime.fromisoformat("2032-02-02T09:00:00-05:00")

# Each loosens a fact of the SPRAVATO label (clinical reference §1, H).
LOOSENING = {
    "TRD first dose 84 mg": ("intranasal_esketamine_trd", {"dose_rule.first_dose_mg": 84}),
    "TRD any first dose": ("intranasal_esketamine_trd", {"dose_rule.first_dose_mg": None}),
    "a 112 mg dose": (
        "intranasal_esketamine_trd",
        {"dose_rule.allowed_doses_mg": [28, 56, 84, 112]},
    ),
    "a 28 mg dose": ("intranasal_esketamine_mdd_si", {"dose_rule.allowed_doses_mg": [28, 56, 84]}),
    "40-min BP not required": (
        "intranasal_esketamine_trd",
        {"monitoring.points.bp_40_min.required_for_discharge": False},
    ),
    "40-min BP at 90 min": (
        "intranasal_esketamine_mdd_si",
        {"monitoring.points.bp_40_min.offset_min": 90},
    ),
    "40-min BP without BP": (
        "intranasal_esketamine_trd",
        {"monitoring.points.bp_40_min.measures": ["spo2_percent", "moaa_s"]},
    ),
    "40-min BP window 60 min": (
        "intranasal_esketamine_trd",
        {"monitoring.points.bp_40_min.window_min": 60},
    ),
}

TIGHTENING = {
    "56 mg only": ("intranasal_esketamine_trd", {"dose_rule.allowed_doses_mg": [56]}),
    "40-min BP window 5 min": (
        "intranasal_esketamine_trd",
        {"monitoring.points.bp_40_min.window_min": 5},
    ),
    "MDD-SI 84 mg first": ("intranasal_esketamine_mdd_si", {"dose_rule.first_dose_mg": 84}),
}


def _load(tmp_path, overrides):
    path = tmp_path / "clinic.json"
    path.write_text(json.dumps({"protocol_overrides": overrides}), encoding="utf-8")
    return load_clinic_config(Settings(clinic_timezone="America/New_York"), path)


@pytest.mark.parametrize("case", list(LOOSENING))
def test_a_clinic_file_loosening_the_esketamine_label_is_refused(tmp_path, case):
    protocol_id, override = LOOSENING[case]
    with pytest.raises(InvalidInput) as refused:
        _load(tmp_path, {protocol_id: override})
    assert refused.value.field_name == "clinic_config_file"


@pytest.mark.parametrize("case", list(TIGHTENING))
def test_a_clinic_file_may_tighten_the_esketamine_label(tmp_path, case):
    protocol_id, override = TIGHTENING[case]
    _load(tmp_path, {protocol_id: override}).protocol(protocol_id)


@contextmanager
def clinic_overrides(stack, overrides):
    """The live server's clinic configuration with `overrides`, for the test's duration."""
    app = stack.server.log.app
    original = app.state.clinic
    # model_copy does not validate: the overrides reach the protocol as they would from a file
    # read before the floors existed.
    app.state.clinic = original.model_copy(update={"protocol_overrides": overrides})
    try:
        yield
    finally:
        app.state.clinic = original


@pytest.fixture
def chairs(api):
    return add_chairs(api)


def test_a_trd_course_cannot_start_on_a_loosened_first_dose(api, chairs, clinic_clock, stack):
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(
        api, clinic_clock, "esketamine", "intranasal", consents=("treatment", "rems_enrollment")
    )
    body = {"drug": "esketamine", "route": "intranasal", "start_on": MONDAY.date().isoformat()}
    with clinic_overrides(stack, {"intranasal_esketamine_trd": {"dose_rule.first_dose_mg": 84}}):
        refused = api("prescriber").post(f"/api/v1/patients/{pid}/courses", json=body)
    assert refused.status_code == 422, refused.text
    assert refused.json()["errors"][0]["field"].startswith("protocol")
    assert ok(api("prescriber").get(f"/api/v1/patients/{pid}/courses")) == []


IDEAL_WEIGHT = {"iv_racemic_infusion": {"dose_rule.use_ideal_body_weight_when_obese": True}}


def test_ideal_body_weight_only_over_bmi_30_and_the_lower_formula_without_a_sex(
    api, chairs, clinic_clock, stack
):
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock)  # 72 kg, 168 cm: BMI 25.5
    prescriber, nurse = api("prescriber"), api("nurse")
    patient = ok(prescriber.get(f"/api/v1/patients/{pid}"))
    ok(
        prescriber.patch(
            f"/api/v1/patients/{pid}", json={"version": patient["version"], "sex": "other"}
        )
    )
    with clinic_overrides(stack, IDEAL_WEIGHT):
        course = start_course(api, pid, MONDAY.date())
    planned = course["sessions"][0]
    clinic_clock.set(datetime.fromisoformat(planned["scheduled_start"]))
    session = act(nurse, ok(nurse.get(f"/api/v1/sessions/{planned['id']}")), "check-in")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    url = f"/api/v1/sessions/{planned['id']}/dose-calculation"
    body = {"version": session["session"]["version"], "concentration_mg_per_ml": 50}
    dose = ok(nurse.post(url, json=body))
    assert dose["dosing_weight_kg"] == "72.0" and dose["dose_mg"] == "36.0"  # actual weight
    ok(nurse.post(f"/api/v1/patients/{pid}/measurements", json={"weight_kg": 100}), 201)
    obese = ok(nurse.post(url, json=body))  # BMI 35.4: neither female nor male recorded
    # the lower (female) Devine weight for 168 cm: 45.5 + 2.3 x (168 / 2.54 - 60)
    assert obese["dosing_weight_kg"] == "59.6" and obese["dose_mg"] == "30.0"  # to the step
