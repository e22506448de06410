"""Patient records that stay right, on both stores: racing writers, the clinic's calendar,
dates a history cannot hold, trials that are no trials, and errors that name their field."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from ketaflow.patients import screening_service
from ketaflow.patients import service as patients_service
from ketaflow.patients.tables import HistoryRevision
from ketaflow.security import audit
from ketaflow.security.tables import AuditEvent
from measures.measures_builders import phq9, record
from support.clinic import add_chairs, enrolled_patient, ok

MDD = [{"code": "major_depressive_disorder"}]
TRIALS = [
    {"drug": "sertraline", "weeks": 10, "adequate": True, "outcome": "no_response"},
    {"drug": "bupropion", "weeks": 8, "adequate": True, "outcome": "partial_response"},
]


def _patient(client, history=None, **fields) -> str:
    body = {
        "family_name": "Integ" + uuid.uuid4().hex[:6],
        "given_name": "Ida",
        "birth_date": "1981-03-03",
        "sex": "female",
        "weight_kg": 66,
        "height_cm": 168,
    }
    body.update(fields)
    pid = ok(client.post("/api/v1/patients", json=body), 201)["id"]
    if history is not None:
        ok(
            client.put(
                f"/api/v1/patients/{pid}/history",
                json={"expected_revision": 0, "history": history},
            )
        )
    return pid


def _field(response) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    return response.json()["errors"][0]["field"]


def _slow_audit(monkeypatch, module, action: str, seconds: float = 0.4) -> None:
    """Widen a race window: the audit write of `action` sleeps inside its transaction."""
    real = audit.record

    def slow(session, actor, act, *args, **kwargs):
        if act == action:
            time.sleep(seconds)
        return real(session, actor, act, *args, **kwargs)

    monkeypatch.setattr(module.audit, "record", slow)


def _ineligible_screening(prescriber) -> tuple[str, dict]:
    """A TRD patient with a label contraindication, screened for esketamine: ineligible."""
    pid = _patient(
        prescriber,
        {
            "diagnoses": MDD,
            "antidepressant_trials": TRIALS,
            "conditions": ["aneurysmal_vascular_disease"],
        },
    )
    screening = ok(
        prescriber.post(
            f"/api/v1/patients/{pid}/screenings",
            json={"drug": "esketamine", "route": "intranasal"},
        ),
        201,
    )
    return pid, screening


def test_two_racing_overrides_keep_one_reason_and_refuse_the_other(stack, api, monkeypatch):
    prescriber = api("prescriber")
    pid, screening = _ineligible_screening(prescriber)
    assert screening["decision"] == "ineligible"
    url = f"/api/v1/patients/{pid}/screenings/{screening['id']}/override"
    _slow_audit(monkeypatch, screening_service, "screening.override")
    start = threading.Barrier(2)

    def override(reason: str):
        with stack.client("prescriber") as client:
            start.wait()
            return client.post(url, json={"reason": reason})

    reasons = ["Cleared by vascular surgery in 2020 (A).", "Cleared by vascular surgery (B)."]
    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(override, reasons))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200, 409], [r.text for r in responses]
    winner = next(r for r in responses if r.status_code == 200).json()["override_reason"]
    stored = ok(prescriber.get(f"/api/v1/patients/{pid}/screenings/{screening['id']}"))
    assert stored["override_reason"] == winner
    with stack.db.transaction() as session:
        overrides = session.scalars(
            select(AuditEvent).where(
                AuditEvent.resource_id == screening["id"],
                AuditEvent.action == "screening.override",
                AuditEvent.allowed.is_(True),
            )
        ).all()
    assert len(overrides) == 1


def test_two_patients_racing_for_one_mrn_get_a_conflict_not_a_server_error(stack, api, monkeypatch):
    prescriber = api("prescriber")
    first, second = _patient(prescriber), _patient(prescriber)
    mrn = "RACE-" + uuid.uuid4().hex[:8]
    _slow_audit(monkeypatch, patients_service, "patient.update")
    start = threading.Barrier(2)

    def take(pid: str):
        with stack.client("prescriber") as client:
            start.wait()
            return client.patch(f"/api/v1/patients/{pid}", json={"version": 1, "mrn": mrn})

    with ThreadPoolExecutor(max_workers=2) as pool:
        responses = list(pool.map(take, [first, second]))
    assert sorted(r.status_code for r in responses) == [200, 409], [r.text for r in responses]


def test_an_evening_assessment_does_not_block_screening(api, clinic_clock):
    # 23:30 in New York is 03:30 UTC the next day: the PHQ-9 is dated by the clinic's day
    clinic_clock.set(datetime.fromisoformat("2031-03-10T23:30:00-04:00"))
    prescriber = api("prescriber")
    pid = _patient(prescriber, {"diagnoses": MDD, "antidepressant_trials": TRIALS})
    record(prescriber, pid, "PHQ-9", phq9(12, item9=1))
    result = prescriber.post(
        f"/api/v1/patients/{pid}/screenings", json={"drug": "ketamine", "route": "iv"}
    )
    assert result.status_code == 201, result.text
    assert any("2031-03-10" in r["message"] for r in result.json()["reasons"])


def test_an_earlier_positive_item_9_is_not_hidden_by_a_later_negative(api, clinic_clock):
    clinic_clock.set(datetime.fromisoformat("2031-04-05T10:00:00-04:00"))
    prescriber = api("prescriber")
    pid = _patient(prescriber, {"diagnoses": MDD, "antidepressant_trials": TRIALS})
    record(prescriber, pid, "PHQ-9", phq9(14, item9=2))
    clinic_clock.set(datetime.fromisoformat("2031-04-08T10:00:00-04:00"))
    record(prescriber, pid, "PHQ-9", phq9(8, item9=0))
    clinic_clock.set(datetime.fromisoformat("2031-04-10T10:00:00-04:00"))
    result = ok(
        prescriber.post(
            f"/api/v1/patients/{pid}/screenings", json={"drug": "ketamine", "route": "iv"}
        ),
        201,
    )
    item9 = [r for r in result["reasons"] if r["rule_id"].endswith("phq9.item9_positive")]
    assert item9 and "2031-04-05" in item9[0]["message"], result["reasons"]
    assert result["urgent"] is True


@pytest.mark.parametrize(
    ("history", "field"),
    [
        ({"current_episode_started_on": "1800-01-01"}, "history.current_episode_started_on"),
        ({"suicidality": {"last_attempt_on": "2099-01-01"}}, "history.suicidality.last_attempt_on"),
        (
            {
                "blood_pressure_readings": [
                    {"measured_on": "2099-05-05", "systolic_mmhg": 120, "diastolic_mmhg": 80}
                ]
            },
            "history.blood_pressure_readings[0].measured_on",
        ),
    ],
)
def test_a_history_with_impossible_dates_is_refused_when_saved(api, history, field):
    prescriber = api("prescriber")
    pid = _patient(prescriber)
    response = prescriber.put(
        f"/api/v1/patients/{pid}/history", json={"expected_revision": 0, "history": history}
    )
    assert _field(response) == field
    assert ok(prescriber.get(f"/api/v1/patients/{pid}/history"))["revision"] == 0


def test_a_birth_date_correction_cannot_come_after_the_stored_record(api):
    prescriber = api("prescriber")
    pid = _patient(prescriber, {"current_episode_started_on": "2001-02-02"})
    response = prescriber.patch(
        f"/api/v1/patients/{pid}", json={"version": 1, "birth_date": "2005-01-01"}
    )
    assert _field(response) == "birth_date"
    assert "current_episode_started_on" in response.json()["detail"]
    assert ok(prescriber.get(f"/api/v1/patients/{pid}"))["birth_date"] == "1981-03-03"


def test_registration_and_screening_share_one_age_bound(api, clinic_clock):
    clinic_clock.set(datetime.fromisoformat("2031-06-01T10:00:00-04:00"))
    prescriber = api("prescriber")
    body = {"family_name": "Old", "given_name": "Ona", "sex": "female"}
    # 121 today is refused; 120 today (the oldest registration allows) can still be screened
    too_old = prescriber.post("/api/v1/patients", json={**body, "birth_date": "1910-05-31"})
    assert _field(too_old) == "birth_date"
    pid = _patient(prescriber, {"diagnoses": MDD}, birth_date="1911-05-31")
    screened = prescriber.post(
        f"/api/v1/patients/{pid}/screenings", json={"drug": "ketamine", "route": "iv"}
    )
    assert screened.status_code == 201, screened.text


def test_blank_and_too_short_trials_do_not_make_depression_treatment_resistant(api):
    prescriber = api("prescriber")
    blank = prescriber.put(
        f"/api/v1/patients/{_patient(prescriber)}/history",
        json={
            "expected_revision": 0,
            "history": {
                "antidepressant_trials": [
                    {"drug": "  ", "weeks": 8, "adequate": True, "outcome": "no_response"}
                ]
            },
        },
    )
    assert _field(blank) == "history.antidepressant_trials[0].drug"
    short = [
        {"drug": "sertraline", "weeks": 0, "adequate": True, "outcome": "no_response"},
        {"drug": "bupropion", "weeks": 5, "adequate": True, "outcome": "partial_response"},
    ]
    pid = _patient(prescriber, {"diagnoses": MDD, "antidepressant_trials": short})
    result = ok(
        prescriber.post(
            f"/api/v1/patients/{pid}/screenings", json={"drug": "ketamine", "route": "iv"}
        ),
        201,
    )
    assert result["treatment_resistant"] is False
    assert result["adequate_failed_trials"] == 0
    not_counted = next(r for r in result["reasons"] if r["rule_id"].endswith("trd.not_counted"))
    assert "2 marked adequate but shorter than 6 weeks" in not_counted["message"]


def test_weights_and_birth_dates_use_the_clinic_calendar(api, clinic_clock):
    # 22:00 in New York on 10 March is already 11 March in UTC, the server's clock
    clinic_clock.set(datetime.fromisoformat("2031-03-11T02:00:00+00:00"))
    nurse, prescriber = api("nurse"), api("prescriber")
    pid = _patient(prescriber)
    assert ok(prescriber.get(f"/api/v1/patients/{pid}"))["weight_measured_on"] == "2031-03-10"
    weighed = ok(nurse.post(f"/api/v1/patients/{pid}/measurements", json={"weight_kg": 67}), 201)
    assert weighed["measured_on"] == "2031-03-10"
    tomorrow = nurse.post(
        f"/api/v1/patients/{pid}/measurements",
        json={"weight_kg": 67, "measured_on": "2031-03-11"},
    )
    assert _field(tomorrow) == "measured_on"
    born_tomorrow = prescriber.post(
        "/api/v1/patients",
        json={"family_name": "New", "given_name": "Ned", "sex": "male", "birth_date": "2031-03-11"},
    )
    assert _field(born_tomorrow) == "birth_date"


def test_history_is_stamped_by_the_clinic_clock(api, clinic_clock):
    clinic_clock.set(datetime.fromisoformat("2031-07-07T09:15:00-04:00"))
    prescriber = api("prescriber")
    pid = _patient(prescriber, {"diagnoses": MDD})
    history = ok(prescriber.get(f"/api/v1/patients/{pid}/history"))
    assert datetime.fromisoformat(history["recorded_at"]) == clinic_clock()


def test_a_height_without_a_weight_is_refused_not_dropped(api):
    response = api("front_desk").post(
        "/api/v1/patients",
        json={
            "family_name": "Tall",
            "given_name": "Tia",
            "birth_date": "1990-01-01",
            "sex": "female",
            "height_cm": 170,
        },
    )
    assert _field(response) == "height_cm"


def test_removing_a_required_field_names_it(api):
    prescriber = api("prescriber")
    pid = _patient(prescriber)
    response = prescriber.patch(f"/api/v1/patients/{pid}", json={"version": 1, "mrn": None})
    assert _field(response) == "mrn"


def _events(stack, **where) -> list[AuditEvent]:
    query = select(AuditEvent)
    for name, value in where.items():
        query = query.where(getattr(AuditEvent, name) == value)
    with stack.db.transaction() as session:
        return list(session.scalars(query.order_by(AuditEvent.id)))


def test_a_search_that_finds_nobody_on_this_page_is_still_audited(stack, api):
    manager = api("manager")
    name = "Nobody" + uuid.uuid4().hex[:8]
    _patient(api("front_desk"), family_name=name)
    page = ok(manager.get("/api/v1/patients", params={"name": name, "offset": 1000}))
    assert page["items"] == [] and page["total"] == 1
    searches = _events(stack, action="patient.search", actor_role="manager")
    assert searches and searches[-1].detail == {"returned": 0, "total": 1}
    # counts only: the search terms are PHI
    assert name not in str(searches[-1].detail)


def test_screening_audit_events_carry_no_decision(stack, api):
    prescriber = api("prescriber")
    pid, screening = _ineligible_screening(prescriber)
    ok(
        prescriber.post(
            f"/api/v1/patients/{pid}/screenings/{screening['id']}/override",
            json={"reason": "Repaired in 2020; vascular surgery agrees."},
        )
    )
    events = _events(stack, resource_id=screening["id"])
    assert {e.action for e in events} >= {"screening.create", "screening.override"}
    for event in events:
        assert "ineligible" not in str(event.detail) and "decision" not in str(event.detail)


def test_a_course_needs_a_screening_of_the_history_as_it_stands(api, clinic_clock):
    clinic_clock.set(datetime.fromisoformat("2033-09-05T09:00:00-04:00"))
    add_chairs(api, 1)
    prescriber = api("prescriber")
    pid = enrolled_patient(api, clinic_clock, drug="esketamine", route="intranasal")
    # after the favourable screening, a contraindication of the label is recorded
    history = ok(prescriber.get(f"/api/v1/patients/{pid}/history"))
    revised = {**history["history"], "conditions": ["aneurysmal_vascular_disease"]}
    ok(
        prescriber.put(
            f"/api/v1/patients/{pid}/history",
            json={"expected_revision": history["revision"], "history": revised},
        )
    )
    body = {"drug": "esketamine", "route": "intranasal", "start_on": "2033-09-06"}
    refused = prescriber.post(f"/api/v1/patients/{pid}/courses", json=body)
    assert refused.status_code == 409, refused.text
    assert refused.json()["reasons"][0]["rule_id"] == "course.screening_required"
    rescreened = ok(
        prescriber.post(
            f"/api/v1/patients/{pid}/screenings",
            json={"drug": "esketamine", "route": "intranasal"},
        ),
        201,
    )
    assert rescreened["decision"] == "ineligible"
    assert prescriber.post(f"/api/v1/patients/{pid}/courses", json=body).status_code == 409


def test_a_history_stored_before_names_were_required_still_reads(stack, api):
    prescriber = api("prescriber")
    pid = _patient(prescriber)
    old = {
        "antidepressant_trials": [
            {"drug": "  ", "weeks": 8, "adequate": True, "outcome": "no_response"},
            {"drug": " sertraline ", "weeks": 8, "adequate": True, "outcome": "no_response"},
        ],
        "current_medications": [{"name": " ", "medication_class": "other"}],
        "substance_use": {"disorder": "none", "substances": ["", " alcohol "]},
    }
    with stack.db.transaction() as session:  # as the previous release stored it
        session.add(
            HistoryRevision(
                patient_id=pid,
                revision=1,
                document=old,
                recorded_by=None,
                recorded_at=datetime.now(UTC),
            )
        )
    history = ok(prescriber.get(f"/api/v1/patients/{pid}/history"))["history"]
    assert [t["drug"] for t in history["antidepressant_trials"]] == ["(not named)", "sertraline"]
    assert history["current_medications"][0]["name"] == "(not named)"
    assert history["substance_use"]["substances"] == ["alcohol"]
    ok(
        prescriber.post(
            f"/api/v1/patients/{pid}/screenings", json={"drug": "ketamine", "route": "iv"}
        ),
        201,
    )


def test_an_assessment_stamped_just_past_the_clinics_midnight_does_not_block_screening(
    api, clinic_clock
):
    # 23:58 in New York; a tablet's clock 4 minutes ahead stamps the PHQ-9 tomorrow
    now = clinic_clock.set(datetime.fromisoformat("2031-08-12T23:58:00-04:00"))
    prescriber = api("prescriber")
    pid = _patient(prescriber, {"diagnoses": MDD, "antidepressant_trials": TRIALS})
    record(prescriber, pid, "PHQ-9", phq9(9, item9=1), taken_at=now + timedelta(minutes=4))
    result = prescriber.post(
        f"/api/v1/patients/{pid}/screenings", json={"drug": "ketamine", "route": "iv"}
    )
    assert result.status_code == 201, result.text
    assert any("2031-08-12" in r["message"] for r in result.json()["reasons"])


def test_a_birth_date_correction_cannot_come_after_a_stored_assessment(api, clinic_clock):
    clinic_clock.set(datetime.fromisoformat("2031-09-01T10:00:00-04:00"))
    prescriber = api("prescriber")
    pid = _patient(prescriber, birth_date="1990-01-01")
    record(
        prescriber,
        pid,
        "PHQ-9",
        phq9(6),
        taken_at=datetime.fromisoformat("2025-06-01T10:00:00-04:00"),
    )
    response = prescriber.patch(
        f"/api/v1/patients/{pid}", json={"version": 1, "birth_date": "2025-12-01"}
    )
    assert _field(response) == "birth_date"
    assert "first assessment (2025-06-01)" in response.json()["detail"]
    assert ok(prescriber.get(f"/api/v1/patients/{pid}"))["birth_date"] == "1990-01-01"


def test_a_birth_date_correction_cannot_come_after_a_signed_consent(api, clinic_clock):
    clinic_clock.set(datetime.fromisoformat("2031-09-01T10:00:00-04:00"))
    prescriber = api("prescriber")
    pid = _patient(prescriber, birth_date="1990-01-01")
    ok(
        prescriber.post(
            f"/api/v1/patients/{pid}/consents",
            json={"kind": "treatment", "signed_on": "2024-03-03"},
        ),
        201,
    )
    response = prescriber.patch(
        f"/api/v1/patients/{pid}", json={"version": 1, "birth_date": "2025-01-01"}
    )
    assert _field(response) == "birth_date"
    assert "first consent (2024-03-03)" in response.json()["detail"]
