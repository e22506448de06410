"""Concurrent requests against the live server, on both stores: the audit chain never forks,
chairs are never double-booked, and one of two racing updates wins cleanly."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import pairwise

from ketaflow.security.service import verify_audit_chain
from support.clinic import add_chairs, enrolled_patient, ok


def test_parallel_reads_and_writes_keep_the_audit_chain_whole(stack, api):
    prescriber = api("prescriber")
    patient = ok(
        prescriber.post(
            "/api/v1/patients",
            json={
                "family_name": "Busy" + uuid.uuid4().hex[:6],
                "given_name": "Bo",
                "birth_date": "1970-05-05",
                "sex": "male",
            },
        ),
        201,
    )
    url = f"/api/v1/patients/{patient['id']}"

    def work(index: int) -> int:
        with stack.client("nurse" if index % 2 else "prescriber") as client:
            if index % 3 == 0:
                return client.post(
                    url + "/measurements", json={"weight_kg": 70 + index % 5}
                ).status_code
            return client.get(url).status_code

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(work, range(48)))
    assert set(statuses) <= {200, 201}
    report = verify_audit_chain(stack.db)
    assert report.intact, report.first_break


def test_racing_updates_one_wins_the_other_is_told(stack, api):
    prescriber = api("prescriber")
    patient = ok(
        prescriber.post(
            "/api/v1/patients",
            json={
                "family_name": "Race" + uuid.uuid4().hex[:6],
                "given_name": "Ray",
                "birth_date": "1971-06-06",
                "sex": "female",
            },
        ),
        201,
    )
    url = f"/api/v1/patients/{patient['id']}"

    def rename(name: str) -> int:
        with stack.client("prescriber") as client:
            return client.patch(url, json={"version": 1, "given_name": name}).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(rename, [f"Name{i}" for i in range(6)]))
    assert statuses.count(200) == 1
    assert statuses.count(409) == 5
    assert ok(prescriber.get(url))["version"] == 2


def test_parallel_courses_never_double_book_a_chair(stack, api, clinic_clock):
    add_chairs(api, 1)
    clinic_clock.set(datetime.fromisoformat("2033-05-02T08:00:00-04:00"))
    patients = [enrolled_patient(api, clinic_clock) for _ in range(4)]

    def start(pid: str) -> dict:
        with stack.client("prescriber") as client:
            return ok(
                client.post(
                    f"/api/v1/patients/{pid}/courses",
                    json={"drug": "ketamine", "route": "iv", "start_on": "2033-05-02"},
                ),
                201,
            )

    with ThreadPoolExecutor(max_workers=4) as pool:
        courses = list(pool.map(start, patients))
    bookings: dict[str, list[tuple[datetime, datetime]]] = {}
    for course in courses:
        for s in course["sessions"]:
            bookings.setdefault(s["chair_id"], []).append(
                (
                    datetime.fromisoformat(s["scheduled_start"]),
                    datetime.fromisoformat(s["expected_end"]),
                )
            )
    for spans in bookings.values():
        spans.sort()
        for (_, end), (next_start, _) in pairwise(spans):
            assert next_start >= end, "a chair was double-booked"
