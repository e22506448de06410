"""The worklist marks unattended sessions missed while a late patient is being checked in, on
both stores: the check-in wins or is told, and the worklist never fails (on PostgreSQL it was a
500: its write of the session it read as scheduled lost the version race)."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

from ketaflow.security import audit
from ketaflow.treatment import service as treatment_service
from support.clinic import add_chairs, enrolled_patient, ok, start_course

MONDAY = datetime.fromisoformat("2032-05-03T09:00:00-04:00")


def test_a_late_check_in_racing_the_worklist_never_fails_it(stack, api, clinic_clock, monkeypatch):
    add_chairs(api)
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock)
    first = start_course(api, pid, MONDAY.date())["sessions"][0]
    # past the grace period, yet the session is still scheduled: the patient arrives late
    clinic_clock.set(datetime.fromisoformat(first["scheduled_start"]) + timedelta(minutes=75))
    nurse = api("nurse")
    version = ok(nurse.get(f"/api/v1/sessions/{first['id']}"))["session"]["version"]

    writing = threading.Event()
    real = audit.record

    def slow_check_in(session, actor, action, *args, **kwargs):
        event = real(session, actor, action, *args, **kwargs)
        if action == "session.check_in":
            writing.set()  # the session row is written and locked: hold the transaction open
            time.sleep(0.5)
        return event

    monkeypatch.setattr(treatment_service.audit, "record", slow_check_in)
    results: dict[str, int] = {}

    def check_in() -> None:
        with stack.client("nurse") as client:
            results["check_in"] = client.post(
                f"/api/v1/sessions/{first['id']}/check-in", json={"version": version}
            ).status_code

    worker = threading.Thread(target=check_in)
    worker.start()
    assert writing.wait(10)
    results["worklist"] = api("nurse").get("/api/v1/worklists/today").status_code
    worker.join(10)
    assert results["worklist"] == 200, results
    assert results["check_in"] in (200, 409), results
    state = ok(nurse.get(f"/api/v1/sessions/{first['id']}"))["session"]["state"]
    assert state == ("checked_in" if results["check_in"] == 200 else "missed")
