"""A course as the scheduling roles see it, over HTTP on both stores: what booking needs, never
the home dose, the free-text end reason or when doses were given."""

from __future__ import annotations

from datetime import datetime

from support.clinic import add_chairs, enrolled_patient, ok, start_course

MONDAY = datetime.fromisoformat("2032-03-01T09:00:00-05:00")
CLINICAL_ONLY = {"home_dose_mg", "end_reason", "screening_id"}


def test_front_desk_and_managers_see_a_course_as_bookings(api, clinic_clock):
    add_chairs(api)
    clinic_clock.set(MONDAY)
    pid = enrolled_patient(api, clinic_clock, "ketamine", "oral")
    course = start_course(api, pid, MONDAY.date(), "ketamine", "oral", home_dose_mg="100")
    assert course["home_dose_mg"] == "100"
    for role in ("front_desk", "manager"):
        client = api(role)
        for shown in (
            ok(client.get(f"/api/v1/courses/{course['id']}")),
            ok(client.get(f"/api/v1/patients/{pid}/courses"))[0],
        ):
            assert not CLINICAL_ONLY & shown.keys(), (role, shown)
            assert shown["protocol_id"] == course["protocol_id"]
            assert [x["id"] for x in shown["sessions"]] == [x["id"] for x in course["sessions"]]
            assert all("dose_started_at" not in x for x in shown["sessions"])
    for role in ("prescriber", "nurse"):
        shown = ok(api(role).get(f"/api/v1/courses/{course['id']}"))
        assert shown["home_dose_mg"] == "100" and "end_reason" in shown
