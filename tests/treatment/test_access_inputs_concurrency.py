"""Course actions at once, over HTTP on both stores: one active course per patient, an ended
course gets no new session, and a concurrent change is a 409, never a 500.

The races are forced by wrapping the schedule lock of the server (same process). On SQLite
every transaction holds the write lock from its start, so the races cannot happen there and
the tests pass as plain sequential checks; on PostgreSQL they fail without the locks."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta

import pytest
from sqlalchemy import text

from ketaflow.treatment import service
from support.clinic import BASELINE, READY, act, add_chairs, enrolled_patient, ok, start_course

MONDAY = datetime.fromisoformat("2032-02-02T09:00:00-05:00")


@pytest.fixture
def chairs(api):
    return add_chairs(api)


def _dosed_course(api, clinic_clock):
    """A course whose first session was dosed and discharged (a booster may follow)."""
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock)
    course = start_course(api, pid, MONDAY.date())
    planned = course["sessions"][0]
    clinic_clock.set(datetime.fromisoformat(planned["scheduled_start"]))
    nurse = api("nurse")
    session = act(nurse, ok(nurse.get(f"/api/v1/sessions/{planned['id']}")), "check-in")
    session = act(nurse, session, "readings", BASELINE, status=201)
    session = act(nurse, session, "pre-dose-checks", READY)
    session = act(nurse, session, "dose/start", {"concentration_mg_per_ml": 50})
    clinic_clock.advance(minutes=41)
    session = act(nurse, session, "dose/end")
    clinic_clock.advance(minutes=61)
    session = act(nurse, session, "readings", BASELINE, status=201)
    act(nurse, session, "discharge", {"escort_present": True})
    return pid, course


def test_two_course_starts_at_once_leave_one_active_course(
    api, chairs, clinic_clock, monkeypatch, stack
):
    clinic_clock.set(MONDAY - timedelta(days=3))
    pid = enrolled_patient(api, clinic_clock)
    if stack.backend == "postgres":
        # Both requests reach the lock together: a check made before it sees no course.
        barrier = threading.Barrier(2, timeout=10)
        original = service._lock_schedule

        def together(session):
            barrier.wait()
            original(session)

        monkeypatch.setattr(service, "_lock_schedule", together)
    statuses: list[int] = []

    def start() -> None:
        with stack.client("prescriber") as client:
            statuses.append(
                client.post(
                    f"/api/v1/patients/{pid}/courses",
                    json={"drug": "ketamine", "route": "iv", "start_on": MONDAY.date().isoformat()},
                ).status_code
            )

    threads = [threading.Thread(target=start) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    monkeypatch.undo()
    courses = ok(api("prescriber").get(f"/api/v1/patients/{pid}/courses"))
    assert sorted(statuses) == [201, 409]
    assert [c["status"] for c in courses] == ["active"]


@pytest.mark.parametrize("planning", ["boosters", "maintenance"])
def test_an_ended_course_gets_no_session_booked_meanwhile(
    api, chairs, clinic_clock, monkeypatch, stack, planning
):
    _, course = _dosed_course(api, clinic_clock)
    original = service._lock_schedule
    calls: list[int] = []
    guard = threading.Lock()
    holding = threading.Event()

    def slow_first(session):
        # The first to take the lock (the planning request) holds it a while.
        original(session)
        with guard:
            calls.append(1)
            first = len(calls) == 1
        if first:
            holding.set()
            time.sleep(1.5)

    monkeypatch.setattr(service, "_lock_schedule", slow_first)
    answers = {}

    def plan() -> None:
        body = {"count": 2, "interval_days": 14} if planning == "maintenance" else {}
        with stack.client("prescriber") as client:
            answers["plan"] = client.post(f"/api/v1/courses/{course['id']}/{planning}", json=body)

    planner = threading.Thread(target=plan)
    planner.start()
    assert holding.wait(30)  # the planning request holds the schedule lock
    answers["end"] = api("prescriber").post(
        f"/api/v1/courses/{course['id']}/end", json={"reason": "patient moved away"}
    )
    planner.join()
    monkeypatch.undo()
    assert answers["end"].status_code == 200, answers["end"].text
    assert answers["plan"].status_code in (200, 201, 409), answers["plan"].text
    final = ok(api("prescriber").get(f"/api/v1/courses/{course['id']}"))
    assert final["status"] == "ended"
    assert [x["kind"] for x in final["sessions"] if x["state"] == "scheduled"] == []


def test_a_concurrent_change_while_a_course_ends_is_a_409(api, chairs, clinic_clock, monkeypatch):
    clinic_clock.set(MONDAY - timedelta(days=3))
    pid = enrolled_patient(api, clinic_clock)
    course = start_course(api, pid, MONDAY.date())
    original = service._course_sessions

    def changed_meanwhile(session, course_id):
        rows = original(session, course_id)
        # Someone else moves one of the course's sessions after it was read (a check-in, a
        # reschedule): its version is no longer the one about to be written.
        session.execute(
            text("UPDATE dosing_sessions SET version = version + 1 WHERE id = :id"),
            {"id": rows[0].id},
        )
        return rows

    monkeypatch.setattr(service, "_course_sessions", changed_meanwhile)
    ended = api("prescriber").post(
        f"/api/v1/courses/{course['id']}/end", json={"reason": "patient moved away"}
    )
    monkeypatch.undo()
    assert ended.status_code == 409, ended.text
    assert ended.headers["content-type"].startswith("application/problem+json")
    assert ok(api("prescriber").get(f"/api/v1/courses/{course['id']}"))["status"] == "active"
