"""Planning questionnaire links (pure, with Hypothesis), course windows, the patient form's
skip-logic helpers, and a clinic's licensed wording reaching /instruments and the patient page."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketaflow.app import create_app
from ketaflow.core.db import Database
from ketaflow.core.migrate import upgrade_to_head
from ketaflow.core.settings import Settings
from ketaflow.measures import service
from ketaflow.measures.instruments import get_instrument
from ketaflow.measures.wording import WORDING_FORMAT
from ketaflow.security import service as security
from ketaflow.security.permissions import Role
from ketaflow.treatment.service import CourseMarker, DoseMarker
from support.server import LiveServer

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
DAY = timedelta(days=1)
VALID_FOR = timedelta(hours=72)


def dose(at: datetime, course: str = "c1", kind: str = "induction", n: int = 1) -> DoseMarker:
    return DoseMarker(f"s-{course}-{n}", course, "ketamine", "iv", kind, n, at)


def course(course_id: str = "c1", phase: str = "induction", status: str = "active"):
    return CourseMarker(course_id, "ketamine", "iv", "p", phase, status, date(2026, 3, 1), None)


def test_after_dose_links_are_planned_24h_and_7d_after_each_dose():
    doses = [dose(T0, n=1), dose(T0 + 2 * DAY, n=2)]
    plan = service.plan_links(doses, [course()], now=T0 + 2 * DAY, valid_for=VALID_FOR)
    assert [(p.purpose, p.available_from, p.dosing_session_id) for p in plan] == [
        ("24h_after_dose", T0 + DAY, "s-c1-1"),  # opened a day ago, still 48 h to go
        ("24h_after_dose", T0 + 3 * DAY, "s-c1-2"),
        ("7d_after_dose", T0 + 7 * DAY, "s-c1-1"),
        ("7d_after_dose", T0 + 9 * DAY, "s-c1-2"),
    ]


def test_links_that_would_already_have_expired_are_not_planned():
    plan = service.plan_links([dose(T0)], [course()], now=T0 + 5 * DAY, valid_for=VALID_FOR)
    assert [p.purpose for p in plan] == ["7d_after_dose"]
    assert service.plan_links([dose(T0)], [course()], T0 + 11 * DAY, VALID_FOR) == []


def test_weekly_links_follow_the_first_maintenance_dose_of_active_maintenance_courses():
    doses = [
        dose(T0, n=1),
        dose(T0 + 20 * DAY, kind="maintenance", n=2),
        dose(T0 + 34 * DAY, kind="maintenance", n=3),
    ]
    now = T0 + 40 * DAY
    plan = service.plan_links(doses, [course(phase="maintenance")], now, VALID_FOR, 14 * DAY)
    weekly = [p for p in plan if p.purpose == "weekly_maintenance"]
    # Weeks 1 and 2 have expired by day 40; week 3 (day 41) is the day-34 dose's 7-day link
    # already; week 5 (day 55) is past the 14-day horizon.
    assert [p.available_from for p in weekly] == [T0 + (20 + 7 * 4) * DAY]
    assert [p.schedule_key for p in weekly] == ["weekly_maintenance:c1:4"]
    assert T0 + 41 * DAY in [p.available_from for p in plan if p.purpose == "7d_after_dose"]
    ended = service.plan_links(
        doses, [course(phase="maintenance", status="ended")], now, VALID_FOR, 14 * DAY
    )
    assert not [p for p in ended if p.purpose == "weekly_maintenance"]


@settings(max_examples=60, deadline=None)
@given(
    offsets_h=st.lists(st.integers(0, 24 * 90), min_size=0, max_size=12, unique=True),
    now_h=st.integers(0, 24 * 120),
    horizon_d=st.integers(1, 60),
    maintenance=st.booleans(),
)
def test_plans_are_unique_open_in_time_and_stable(offsets_h, now_h, horizon_d, maintenance):
    doses = [
        dose(T0 + timedelta(hours=h), kind="maintenance" if maintenance and i else "induction", n=i)
        for i, h in enumerate(sorted(offsets_h))
    ]
    now = T0 + timedelta(hours=now_h)
    horizon = timedelta(days=horizon_d)
    courses = [course(phase="maintenance" if maintenance else "induction")]
    plan = service.plan_links(doses, courses, now, VALID_FOR, horizon)
    keys = [p.schedule_key for p in plan]
    assert len(keys) == len(set(keys))  # one key per planned link: idempotent by construction
    for p in plan:
        assert p.available_from + VALID_FOR > now  # never planned dead
        assert p.available_from <= now + horizon
    # a weekly link never asks the day an after-dose link asks
    for weekly in (p for p in plan if p.purpose == "weekly_maintenance"):
        assert all(
            abs(p.available_from - weekly.available_from) >= DAY
            for p in plan
            if p.dosing_session_id
        )
    assert service.plan_links(doses, courses, now, VALID_FOR, horizon) == plan
    # Planning later never brings back a link planned earlier with a different time.
    later = service.plan_links(doses, courses, now + DAY, VALID_FOR, horizon)
    earlier_times = {p.schedule_key: p.available_from for p in plan}
    assert all(
        earlier_times.get(p.schedule_key, p.available_from) == p.available_from for p in later
    )


def test_course_windows_end_at_the_next_courses_first_dose():
    doses = [dose(T0, "a", n=1), dose(T0 + DAY, "a", n=2), dose(T0 + 30 * DAY, "b", n=1)]
    windows = service.course_windows([course("a", status="ended"), course("b"), course("c")], doses)
    assert [(w.course.course_id, len(w.doses), w.window_end) for w in windows] == [
        ("a", 2, T0 + 30 * DAY),
        ("b", 1, None),
        ("c", 0, None),
    ]


def test_skipped_cssrs_answers_are_dropped_and_missing_ones_named():
    cssrs = get_instrument("C-SSRS")
    answers = {"1": 1, "2": 0, "3": 1, "6": 1}
    assert service.asked_answers(cssrs, answers) == {"1": 1, "2": 0, "6": 1}
    assert service.missing_items(cssrs, service.asked_answers(cssrs, answers)) == ["6b"]
    phq9 = get_instrument("PHQ-9")
    # Item 10 (difficulty) is optional and unscored (Kroenke 2001).
    assert service.missing_items(phq9, {str(i): 0 for i in range(1, 10)}) == []
    assert service.missing_items(phq9, {"1": 0}) == [str(i) for i in range(2, 10)]


@pytest.mark.parametrize(
    ("answers", "flagged"),
    [
        # a "Yes" to a question skipped after "No" to 2 (or to 6) is never dropped
        ({"1": 1, "2": 0, "3": 1, "6": 0}, {"2", "3"}),
        ({"1": 0, "2": 0, "4": 0, "5": 1, "6": 0}, {"2", "5"}),
        ({"1": 0, "2": 0, "6": 0, "6b": 1}, {"6", "6b"}),
        ({"1": 0, "3": 1, "6": 0}, {"2", "3"}),  # question 2 not answered at all
        # a "No" to a skipped question loses nothing
        ({"1": 1, "2": 0, "3": 0, "4": 0, "5": 0, "6": 0, "6b": 0}, set()),
        ({"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "6": 1, "6b": 1}, set()),
        ({"1": 1, "2": 1, "6": 0}, {"3", "4", "5"}),  # asked and not answered
    ],
)
def test_answer_problems_never_lose_a_skipped_yes(answers, flagged):
    cssrs = get_instrument("C-SSRS")
    problems = service.answer_problems(cssrs, answers)
    assert set(problems) == flagged
    if flagged - {"3", "4", "5"} and "2" in flagged:
        assert problems["2"].startswith("Please check this answer.")
    if not problems:
        kept = service.asked_answers(cssrs, answers)
        dropped = {k: v for k, v in answers.items() if k not in kept}
        assert set(dropped.values()) <= {0}
        cssrs.score(kept)  # and what is left scores


def test_answer_problems_name_every_unanswered_qids_pair():
    qids = get_instrument("QIDS-SR16")
    answers = {str(i): 1 for i in range(1, 17) if i not in (6, 7, 8, 9)}
    assert service.answer_problems(qids, answers) == {
        "6": "Please answer question 6 or question 7.",
        "7": "Please answer question 6 or question 7.",
        "8": "Please answer question 8 or question 9.",
        "9": "Please answer question 8 or question 9.",
    }
    assert service.answer_problems(qids, {**answers, "6": 0, "9": 0}) == {}


def test_only_patient_rated_scales_are_self_report():
    assert service.is_self_report(get_instrument("PHQ-9"))
    assert service.is_self_report(get_instrument("C-SSRS"))
    assert not service.is_self_report(get_instrument("MADRS"))
    assert not service.is_self_report(get_instrument("MOAA/S"))


def test_licensed_wording_reaches_the_api_and_the_patient_page(tmp_path):
    wording = tmp_path / "wording.json"
    items = {
        item_id: {"text": f"Licensed C-SSRS question {item_id}?"}
        for item_id in ("1", "2", "3", "4", "5", "6", "6b")
    }
    wording.write_text(
        json.dumps(
            {
                "format": WORDING_FORMAT,
                "licence": "C-SSRS electronic sublicence 7, Test Clinic",
                "instruments": [{"code": "C-SSRS", "items": items}],
            }
        ),
        encoding="utf-8",
    )
    url = f"sqlite:///{tmp_path / 'wording.db'}"
    app_settings = Settings(
        database_url=url,
        argon2_time_cost=1,
        argon2_memory_kib=256,
        instrument_wording_file=str(wording),
    )
    db = Database(url, app_settings)
    upgrade_to_head(db)
    security.create_user(
        db,
        app_settings,
        security.SYSTEM_ACTOR,
        username="wording-prescriber",
        password="correct horse battery staple",
        role=Role.prescriber,
    )
    server = LiveServer(create_app(app_settings, db)).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            token = client.post(
                "/api/v1/auth/token",
                data={"username": "wording-prescriber", "password": "correct horse battery staple"},
            ).json()["access_token"]
            client.headers["Authorization"] = f"Bearer {token}"
            cssrs = client.get("/api/v1/instruments/C-SSRS").json()
            assert cssrs["full_wording"] is True
            assert cssrs["wording_source"] == "C-SSRS electronic sublicence 7, Test Clinic"
            assert cssrs["items"][0]["text"] == "Licensed C-SSRS question 1?"
            patient = client.post(
                "/api/v1/patients",
                json={
                    "family_name": "Word",
                    "given_name": "Ing",
                    "birth_date": "1985-01-01",
                    "sex": "male",
                },
            ).json()
            link = client.post(
                f"/api/v1/patients/{patient['id']}/questionnaire-links",
                json={"instruments": ["C-SSRS"]},
            ).json()
            del client.headers["Authorization"]
            page = client.get(link["url"].removeprefix(app_settings.public_base_url))
            assert page.status_code == 200
            assert "Licensed C-SSRS question 6b?" in page.text
    finally:
        server.stop()
        db.dispose()
