"""Assessments over real HTTP, on both stores: scoring, bands, flags, 422 naming the item,
dosing-session timing, reading back, permissions and the audit log."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ketaflow.security import permissions as p
from ketaflow.security.permissions import Role
from measures.measures_builders import (
    PROBLEM,
    add_course,
    add_scheduled_session,
    audit_events,
    phq9,
    post_assessment,
    record,
    register_patient,
)


@pytest.fixture
def patient_id(api):
    return register_patient(api("prescriber"))


def _count(client, patient_id: str) -> int:
    response = client.get(f"/api/v1/patients/{patient_id}/assessments")
    assert response.status_code == 200, response.text
    return response.json()["total"]


def test_phq9_is_scored_banded_and_read_back(api, patient_id):
    nurse = api("nurse")
    answers = {"1": 1, "2": 2, "3": 0, "4": 1, "5": 1, "6": 1, "7": 1, "8": 1, "9": 0}
    created = record(nurse, patient_id, "phq9", answers)  # any spelling of the code
    assert created["instrument"] == "PHQ-9"
    assert created["total"] == 8  # Kroenke 2001: 5-9 is mild
    assert created["band"] == "mild"
    assert created["flags"] == [] and created["alerts"] == []
    assert created["source"] == "staff" and created["timing"] == "standalone"
    assert created["answers"] == answers
    read = nurse.get(f"/api/v1/assessments/{created['id']}")
    assert read.status_code == 200
    assert read.json() == created


def test_item9_positive_raises_a_flag_and_an_open_alert(api, patient_id):
    nurse = api("nurse")
    created = record(nurse, patient_id, "PHQ-9", phq9(6, item9=1))
    assert created["band"] == "mild"
    assert [f["code"] for f in created["flags"]] == ["suicidality_item_positive"]
    (alert,) = created["alerts"]
    assert alert["status"] == "open" and alert["severity"] == "critical"
    listed = nurse.get("/api/v1/alerts", params={"status": "open", "patient_id": patient_id})
    assert [a["id"] for a in listed.json()["items"]] == [alert["id"]]
    assert listed.json()["items"][0]["instrument"] == "PHQ-9"


def test_cssrs_high_risk_has_no_total_and_opens_an_alert(api, patient_id):
    created = record(
        api("therapist"), patient_id, "C-SSRS", {"1": 1, "2": 1, "3": 1, "4": 1, "5": 0, "6": 0}
    )
    assert created["total"] is None
    assert created["band"] == "high"  # intent without plan: high (Columbia triage, ref §3)
    assert [a["flag_code"] for a in created["alerts"]] == ["cssrs_risk_high"]


def test_cssrs_low_risk_is_flagged_without_an_alert(api, patient_id):
    created = record(api("nurse"), patient_id, "C-SSRS", {"1": 1, "2": 0, "6": 0})
    assert created["band"] == "low"
    assert [f["code"] for f in created["flags"]] == ["cssrs_risk_low"]
    assert created["alerts"] == []


@pytest.mark.parametrize(
    ("answers", "field"),
    [
        ({**phq9(10), "3": 4}, "answers.3"),  # out of range
        ({**phq9(10), "3": -1}, "answers.3"),
        ({**phq9(10), "3": "two"}, "answers.3"),  # not a number
        ({k: v for k, v in phq9(10).items() if k != "7"}, "answers.7"),  # missing
        ({**phq9(10), "11": 1}, "answers.11"),  # no such item
    ],
)
def test_bad_answers_are_422_naming_the_item_and_save_nothing(api, patient_id, answers, field):
    nurse = api("nurse")
    before = _count(nurse, patient_id)
    response = post_assessment(nurse, patient_id, "PHQ-9", answers)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["errors"][0]["field"] == field
    assert _count(nurse, patient_id) == before


def test_unknown_instrument_is_422_naming_instrument(api, patient_id):
    response = post_assessment(api("nurse"), patient_id, "HAMD-99", {"1": 1})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "instrument"


def test_future_time_and_unknown_patient_are_refused(api, patient_id):
    nurse = api("nurse")
    later = datetime.now(UTC) + timedelta(hours=2)
    response = post_assessment(nurse, patient_id, "PHQ-9", phq9(5), taken_at=later)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "taken_at"
    assert post_assessment(nurse, "no-such-patient", "PHQ-9", phq9(5)).status_code == 404
    # before the patient was born: a slip in the year, refused and not stored
    long_ago = datetime(1800, 1, 1, tzinfo=UTC)
    response = post_assessment(nurse, patient_id, "PHQ-9", phq9(5), taken_at=long_ago)
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "taken_at"
    assert _count(nurse, patient_id) == 0


def test_pre_and_post_dose_assessments_are_tied_to_the_session(api, stack, patient_id):
    nurse = api("nurse")
    dose_at = datetime.now(UTC) - timedelta(hours=3)
    _, (session_id,) = add_course(stack.db, patient_id, [dose_at])
    pre = record(
        nurse,
        patient_id,
        "PHQ-9",
        phq9(18),
        taken_at=dose_at - timedelta(minutes=30),
        dosing_session_id=session_id,
        timing="pre_dose",
    )
    assert (pre["timing"], pre["dosing_session_id"]) == ("pre_dose", session_id)
    post = record(
        nurse,
        patient_id,
        "PHQ-9",
        phq9(12),
        taken_at=dose_at + timedelta(hours=2),
        dosing_session_id=session_id,
        timing="post_dose",
    )
    assert post["timing"] == "post_dose"
    # A post-dose score before the dose, or a pre-dose one after it, is a typing error.
    wrong_post = post_assessment(
        nurse,
        patient_id,
        "PHQ-9",
        phq9(12),
        taken_at=dose_at - timedelta(hours=1),
        dosing_session_id=session_id,
        timing="post_dose",
    )
    assert wrong_post.status_code == 422
    assert wrong_post.json()["errors"][0]["field"] == "taken_at"
    wrong_pre = post_assessment(
        nurse,
        patient_id,
        "PHQ-9",
        phq9(12),
        taken_at=dose_at + timedelta(hours=1),
        dosing_session_id=session_id,
        timing="pre_dose",
    )
    assert wrong_pre.status_code == 422
    no_timing = post_assessment(nurse, patient_id, "PHQ-9", phq9(12), dosing_session_id=session_id)
    assert no_timing.json()["errors"][0]["field"] == "timing"
    no_session = post_assessment(nurse, patient_id, "PHQ-9", phq9(12), timing="pre_dose")
    assert no_session.json()["errors"][0]["field"] == "dosing_session_id"


def test_post_dose_needs_a_dose_and_the_session_must_be_the_patients(api, stack, patient_id):
    nurse = api("nurse")
    course_id, _ = add_course(stack.db, patient_id, [datetime.now(UTC) - timedelta(days=1)])
    booked = add_scheduled_session(stack.db, patient_id, course_id)
    response = post_assessment(
        nurse, patient_id, "PHQ-9", phq9(9), dosing_session_id=booked, timing="post_dose"
    )
    assert response.status_code == 422
    other = register_patient(api("prescriber"))
    foreign = post_assessment(
        nurse, other, "PHQ-9", phq9(9), dosing_session_id=booked, timing="pre_dose"
    )
    assert foreign.status_code == 422
    assert foreign.json()["errors"][0]["field"] == "dosing_session_id"


def test_list_is_newest_first_and_filters_by_instrument(api, patient_id):
    nurse = api("nurse")
    now = datetime.now(UTC)
    record(nurse, patient_id, "PHQ-9", phq9(20), taken_at=now - timedelta(days=3))
    record(nurse, patient_id, "GAD-7", {str(i): 1 for i in range(1, 8)})
    record(nurse, patient_id, "PHQ-9", phq9(10), taken_at=now - timedelta(days=1))
    listed = nurse.get(
        f"/api/v1/patients/{patient_id}/assessments", params={"instrument": "PHQ-9"}
    ).json()
    assert listed["total"] == 2
    assert [a["total"] for a in listed["items"]] == [10, 20]
    page = nurse.get(f"/api/v1/patients/{patient_id}/assessments", params={"limit": 1}).json()
    assert page["total"] == 3 and len(page["items"]) == 1


@pytest.mark.parametrize("role", [Role.front_desk, Role.manager, Role.auditor, Role.admin])
def test_roles_without_the_permission_are_refused_and_audited(api, stack, patient_id, role):
    client = api(role)
    response = post_assessment(client, patient_id, "PHQ-9", phq9(5))
    assert response.status_code == 403
    assert response.headers["content-type"].startswith(PROBLEM)
    refusals = audit_events(
        stack.db,
        action="assessment.create",
        allowed=False,
        patient_id=patient_id,
        actor_username=stack.actors[role].username,
    )
    assert len(refusals) == 1
    assert client.get(f"/api/v1/patients/{patient_id}/assessments").status_code == 403


def test_reads_and_writes_are_audited(api, stack, patient_id):
    nurse = api("nurse")
    created = record(nurse, patient_id, "PHQ-9", phq9(3, item9=1))
    nurse.get(f"/api/v1/assessments/{created['id']}")
    nurse.get(f"/api/v1/patients/{patient_id}/assessments")
    actions = [e.action for e in audit_events(stack.db, patient_id=patient_id, allowed=True)]
    for action in ("assessment.create", "alert.create", "assessment.read", "assessment.list"):
        assert action in actions
    (create,) = audit_events(stack.db, action="assessment.create", resource_id=created["id"])
    # record ids only: the scale and its alert are clinical content (README, audit log)
    assert create.detail is None
    (alert,) = audit_events(stack.db, action="alert.create", patient_id=patient_id)
    assert alert.resource_id == created["alerts"][0]["id"]
    assert alert.detail == {"assessment_id": created["id"]}


def test_answer_keys_naming_one_item_twice_are_422(api, patient_id):
    nurse = api("nurse")
    # " 1" once silently overwrote "1" (both normalise to item 1)
    response = post_assessment(nurse, patient_id, "PHQ-9", {**phq9(10), " 1": 0})
    assert response.status_code == 422, response.text
    (error,) = response.json()["errors"]
    assert error["field"] == "answers.1"
    assert "given twice" in error["message"] and "' 1'" in error["message"]
    assert _count(nurse, patient_id) == 0


def test_a_pre_dose_score_at_the_dose_start_is_refused(api, stack, patient_id):
    nurse = api("nurse")
    dose_at = (datetime.now(UTC) - timedelta(days=2)).replace(microsecond=0)
    _, (session_id, _) = add_course(stack.db, patient_id, [dose_at, dose_at + timedelta(days=1)])
    at_start = post_assessment(
        nurse,
        patient_id,
        "PHQ-9",
        phq9(20),
        taken_at=dose_at,
        dosing_session_id=session_id,
        timing="pre_dose",
    )
    # The outcomes take the baseline strictly before the first dose: a "pre-dose" score at the
    # dose start would never be the baseline, so it is refused, naming the time.
    assert at_start.status_code == 422, at_start.text
    assert at_start.json()["errors"][0]["field"] == "taken_at"
    post = record(
        nurse,
        patient_id,
        "PHQ-9",
        phq9(20),
        taken_at=dose_at,
        dosing_session_id=session_id,
        timing="post_dose",
    )
    assert post["timing"] == "post_dose"
    record(
        nurse,
        patient_id,
        "PHQ-9",
        phq9(18),
        taken_at=dose_at - timedelta(seconds=1),
        dosing_session_id=session_id,
        timing="pre_dose",
    )
    outcomes = nurse.get(
        f"/api/v1/patients/{patient_id}/outcomes", params={"instrument": "PHQ-9"}
    ).json()
    baseline = outcomes["courses"][0]["baseline"]  # the pre-dose score is the baseline
    assert datetime.fromisoformat(baseline["taken_at"]) == dose_at - timedelta(seconds=1)
    assert baseline["total"] == 18


def test_a_refused_read_of_an_assessment_is_in_its_patients_access_log(api, stack, patient_id):
    created = record(api("nurse"), patient_id, "C-SSRS", {"1": 0, "2": 0, "6": 0})
    auditor = api("auditor")
    assert auditor.get(f"/api/v1/assessments/{created['id']}").status_code == 403
    # an unknown id is refused the same way: nothing tells the caller it does not exist
    assert auditor.get("/api/v1/assessments/no-such-id").status_code == 403
    (refusal,) = audit_events(
        stack.db, action="assessment.read", allowed=False, resource_id=created["id"]
    )
    assert refusal.patient_id == patient_id
    log = api("prescriber").get(f"/api/v1/patients/{patient_id}/access-log").json()
    assert any(e["action"] == "assessment.read" and e["allowed"] is False for e in log["items"]), (
        log
    )


def test_instruments_are_listed_with_codes_and_wording(api):
    client = api("nurse")
    listed = client.get("/api/v1/instruments").json()
    codes = [i["code"] for i in listed]
    assert {"PHQ-9", "GAD-7", "MADRS", "QIDS-SR16", "C-SSRS", "CADSS", "MOAA/S"} <= set(codes)
    by_code = {i["code"]: i for i in listed}
    assert by_code["PHQ-9"]["full_wording"] is True
    assert by_code["PHQ-9"]["items"][0]["text"]
    assert by_code["C-SSRS"]["full_wording"] is False  # sublicence needed (reference §3)
    assert by_code["MADRS"]["self_report"] is False and by_code["PHQ-9"]["self_report"] is True
    one = client.get("/api/v1/instruments/qids-sr16")
    assert one.status_code == 200 and one.json()["code"] == "QIDS-SR16"
    assert client.get("/api/v1/instruments/NOPE").status_code == 422


# action -> requests exercising it: (method, path template, json body)
MEASURES_ENDPOINTS = {
    p.ASSESSMENT_CREATE: [
        ("POST", "/api/v1/patients/{pid}/assessments", {"instrument": "GAD-7", "answers": {}}),
    ],
    p.ASSESSMENT_READ: [
        ("GET", "/api/v1/patients/{pid}/assessments", None),
        ("GET", "/api/v1/assessments/no-such-assessment", None),
        ("GET", "/api/v1/alerts", None),
        ("GET", "/api/v1/patients/{pid}/outcomes", None),
        ("GET", "/api/v1/patients/{pid}/trajectory", None),
    ],
    p.ALERT_ACKNOWLEDGE: [
        ("POST", "/api/v1/alerts/no-such-alert/acknowledge", {"note": "checked with patient"}),
    ],
    p.QUESTIONNAIRE_LINK_CREATE: [
        ("POST", "/api/v1/patients/{pid}/questionnaire-links", {"instruments": ["NOPE"]}),
        ("GET", "/api/v1/patients/{pid}/questionnaire-links", None),
        ("POST", "/api/v1/patients/{pid}/questionnaire-links/schedule", {"instruments": ["NOPE"]}),
    ],
}
MATRIX = [(role, action) for role in Role for action in MEASURES_ENDPOINTS]


@pytest.fixture(scope="module")
def matrix_patient(stack):
    with stack.client(Role.prescriber) as client:
        return register_patient(client)


@pytest.mark.parametrize(("role", "action"), MATRIX, ids=[f"{r}-{a}" for r, a in MATRIX])
def test_every_role_against_the_permission_table(stack, matrix_patient, role, action):
    with stack.client(role) as client:
        for method, path, body in MEASURES_ENDPOINTS[action]:
            response = client.request(method, path.format(pid=matrix_patient), json=body)
            if p.is_allowed(role, action):
                # Allowed: anything but a refusal (the bodies are deliberately wrong: 404/422).
                assert response.status_code not in (401, 403), (method, path, response.text)
            else:
                assert response.status_code == 403, (method, path, response.text)


def test_every_unanswered_qids_pair_is_named_at_once(api, patient_id):
    answers = {str(i): 1 for i in range(1, 17) if i not in (6, 7, 8, 9)}
    response = post_assessment(api("nurse"), patient_id, "QIDS-SR16", answers)
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["answers.6", "answers.8"]
