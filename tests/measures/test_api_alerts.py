"""Safety alerts over HTTP: opened by flags, acknowledged once with a note, audited; and the
plain functions the worklist and the pre-dose checks call."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest

from ketaflow.measures import service
from ketaflow.security.permissions import Role
from measures.measures_builders import (
    PROBLEM,
    audit_events,
    phq9,
    record,
    register_patient,
)

CSSRS_HIGH = {"1": 1, "2": 1, "3": 1, "4": 0, "5": 1, "6": 0}
CSSRS_MODERATE = {"1": 1, "2": 1, "3": 1, "4": 0, "5": 0, "6": 0}


@pytest.fixture
def patient_id(api):
    return register_patient(api("prescriber"))


def _alert(api, patient_id: str, answers: dict | None = None) -> dict:
    created = record(api("nurse"), patient_id, "PHQ-9", answers or phq9(12, item9=2))
    (alert,) = created["alerts"]
    return alert


def test_acknowledge_with_a_note_closes_the_alert_once(api, stack, patient_id):
    alert = _alert(api, patient_id)
    prescriber = api("prescriber")
    url = f"/api/v1/alerts/{alert['id']}/acknowledge"
    done = prescriber.post(url, json={"note": "Called patient; safety plan reviewed."})
    assert done.status_code == 200, done.text
    body = done.json()
    assert body["status"] == "acknowledged"
    assert body["acknowledged_by"] == stack.actors[Role.prescriber].username
    assert body["acknowledgement_note"] == "Called patient; safety plan reviewed."
    again = api("nurse").post(url, json={"note": "Second look at the same alert"})
    assert again.status_code == 409
    assert again.headers["content-type"].startswith(PROBLEM)
    open_ids = [
        a["id"]
        for a in prescriber.get("/api/v1/alerts", params={"patient_id": patient_id}).json()["items"]
    ]
    assert alert["id"] not in open_ids
    closed = prescriber.get(
        "/api/v1/alerts", params={"patient_id": patient_id, "status": "acknowledged"}
    ).json()
    assert [a["id"] for a in closed["items"]] == [alert["id"]]
    (event,) = audit_events(stack.db, action="alert.acknowledge", resource_id=alert["id"])
    assert event.patient_id == patient_id and event.allowed
    # record ids only: never the flag (a suicidality item) or the note (README, audit log)
    assert event.detail == {"assessment_id": alert["assessment_id"]}


@pytest.mark.parametrize("note", ["", "ok", "    ok   "])
def test_a_note_of_under_five_characters_is_422(api, patient_id, note):
    alert = _alert(api, patient_id)
    response = api("nurse").post(f"/api/v1/alerts/{alert['id']}/acknowledge", json={"note": note})
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == "note"
    still_open = api("nurse").get("/api/v1/alerts", params={"patient_id": patient_id}).json()
    assert [a["id"] for a in still_open["items"]] == [alert["id"]]


def test_unknown_alert_is_404_and_front_desk_may_not_acknowledge(api, stack, patient_id):
    assert (
        api("nurse")
        .post("/api/v1/alerts/nope/acknowledge", json={"note": "nothing to see"})
        .status_code
        == 404
    )
    alert = _alert(api, patient_id)
    refused = api("front_desk").post(
        f"/api/v1/alerts/{alert['id']}/acknowledge", json={"note": "front desk trying"}
    )
    assert refused.status_code == 403
    # the refusal is tied to the alert's patient, so it is in that patient's access log
    (refusal,) = audit_events(
        stack.db,
        action="alert.acknowledge",
        allowed=False,
        resource_id=alert["id"],
        actor_username=stack.actors[Role.front_desk].username,
    )
    assert refusal.patient_id == patient_id
    log = api("auditor").get(f"/api/v1/patients/{patient_id}/access-log").json()
    assert any(e["action"] == "alert.acknowledge" and not e["allowed"] for e in log["items"])
    # an unknown alert is refused the same way: nothing tells the caller it does not exist
    unknown = api("front_desk").post("/api/v1/alerts/nope/acknowledge", json={"note": "trying"})
    assert unknown.status_code == 403
    assert api("front_desk").get("/api/v1/alerts").status_code == 403


def test_two_acknowledgements_at_once_one_wins(api, patient_id):
    alert = _alert(api, patient_id)
    url = f"/api/v1/alerts/{alert['id']}/acknowledge"
    clients = [api("nurse"), api("prescriber")]
    statuses: list[int] = []
    barrier = threading.Barrier(len(clients))

    def go(client):
        barrier.wait()
        statuses.append(client.post(url, json={"note": "Reviewed with the patient."}).status_code)

    threads = [threading.Thread(target=go, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 409]


def test_status_filter_is_validated(api):
    response = api("nurse").get("/api/v1/alerts", params={"status": "closed"})
    assert response.status_code == 422


def test_open_alerts_put_the_most_severe_first(api, stack, patient_id):
    nurse = api("nurse")
    record(nurse, patient_id, "C-SSRS", CSSRS_MODERATE)  # warning
    record(nurse, patient_id, "C-SSRS", CSSRS_HIGH)  # critical
    with stack.db.transaction() as session:
        alerts = service.open_alerts(session, patient_id=patient_id)
        limited = service.open_alerts(session, patient_id=patient_id, limit=1)
    assert [a.alert.flag_code for a in alerts] == ["cssrs_risk_high", "cssrs_risk_moderate"]
    assert [a.alert.flag_code for a in limited] == ["cssrs_risk_high"]


def test_safety_inputs_are_the_worst_in_the_window_not_the_latest(api, stack, patient_id):
    nurse = api("nurse")
    with stack.db.transaction() as session:
        assert service.latest_safety_inputs(session, patient_id) == (None, None)
    now = datetime.now(UTC)
    record(nurse, patient_id, "PHQ-9", phq9(9, item9=1), taken_at=now - timedelta(days=20))
    record(nurse, patient_id, "PHQ-9", phq9(9, item9=2), taken_at=now - timedelta(days=2))
    record(nurse, patient_id, "PHQ-9", phq9(7, item9=0), taken_at=now - timedelta(days=1))
    record(nurse, patient_id, "C-SSRS", CSSRS_HIGH, taken_at=now - timedelta(days=3))
    # a later negative screen does not cancel the recent high-risk one
    record(nurse, patient_id, "C-SSRS", {"1": 0, "2": 0, "6": 0}, taken_at=now - timedelta(hours=1))
    record(nurse, patient_id, "C-SSRS", CSSRS_MODERATE, taken_at=now - timedelta(hours=2))
    with stack.db.transaction() as session:
        assert service.latest_safety_inputs(session, patient_id) == (2, "high")
        fortnight = service.latest_safety_inputs(
            session, patient_id, since=now - timedelta(days=14)
        )
        assert fortnight == (2, "high")
        recent = service.latest_safety_inputs(session, patient_id, since=now - timedelta(days=2))
        assert recent == (2, "moderate")  # the high-risk screen is 3 days old
        today = service.latest_safety_inputs(session, patient_id, since=now - timedelta(hours=1))
    assert today == (None, "none")
