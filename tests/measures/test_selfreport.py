"""Patient self-report end to end over HTTP: staff create a one-time link, the patient answers at
/q/{token} without logging in, the answers become assessments; used, expired, not-yet-open and
unknown tokens get a clear page and save nothing; scheduling is idempotent."""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import threading
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from urllib.parse import urlsplit

import httpx
import pytest
from sqlalchemy import select

from ketaflow.core.access_log import RedactAccessLog
from ketaflow.measures.tables import Assessment, QuestionnaireLink
from ketaflow.treatment.tables import DosingSessionRow
from measures.measures_builders import add_course, audit_events, phq9, register_patient

DAY = timedelta(days=1)


@pytest.fixture
def patient_id(api):
    return register_patient(api("prescriber"))


def _create_link(client: httpx.Client, patient_id: str, **body) -> dict:
    response = client.post(f"/api/v1/patients/{patient_id}/questionnaire-links", json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _page_path(link: dict) -> str:
    return urlsplit(link["url"]).path


def _form(answers_by_scale: list[dict[str, int]]) -> dict[str, str]:
    return {
        f"s{index}-{item}": str(value)
        for index, answers in enumerate(answers_by_scale)
        for item, value in answers.items()
    }


def _assessments(stack, patient_id: str) -> list[Assessment]:
    with stack.db.transaction() as session:
        return list(
            session.scalars(
                select(Assessment)
                .where(Assessment.patient_id == patient_id)
                .order_by(Assessment.created_at)
            )
        )


def test_link_answered_once_from_a_phone(api, stack, patient_id):
    link = _create_link(api("front_desk"), patient_id, instruments=["PHQ-9", "GAD-7"])
    assert link["status"] == "open" and link["purpose"] == "ad_hoc"
    assert link["url"].startswith(stack.settings.public_base_url + "/q/")
    token = _page_path(link).removeprefix("/q/")
    assert len(token) >= 43  # secrets.token_urlsafe(32)
    with stack.db.transaction() as session:
        stored = session.get(QuestionnaireLink, link["id"])
        assert stored.token_sha256 == hashlib.sha256(token.encode()).hexdigest()

    patient = api()  # no login
    page = patient.get(_page_path(link))
    assert page.status_code == 200
    html = page.text
    assert page.headers["content-type"].startswith("text/html")
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in html
    assert "Little interest or pleasure in doing things" in html  # PHQ-9 wording ships
    assert 'name="s0-9"' in html and 'name="s1-7"' in html
    assert page.headers["cache-control"] == "no-store"
    assert page.headers["referrer-policy"] == "no-referrer"
    assert "<script" not in html  # no third-party (or any) script on the patient page
    css = patient.get("/static/ketaflow.css")
    assert css.status_code == 200 and "@media" in css.text

    answers = [phq9(11), {str(i): 1 for i in range(1, 8)}]
    saved = patient.post(_page_path(link), data=_form(answers))
    assert saved.status_code == 200, saved.text
    assert "Thank you" in saved.text

    rows = _assessments(stack, patient_id)
    assert sorted((r.instrument_code, r.total, r.source) for r in rows) == [
        ("GAD-7", 7, "self_report"),
        ("PHQ-9", 11, "self_report"),
    ]
    assert all(r.questionnaire_link_id == link["id"] and r.recorded_by is None for r in rows)
    events = audit_events(stack.db, actor_username="patient via link", patient_id=patient_id)
    assert [e.action for e in events] == [
        "assessment.create",
        "assessment.create",
        "questionnaire_link.use",
    ]
    assert all(token not in str(e.detail) and e.resource_id != token for e in events)

    again = patient.post(_page_path(link), data=_form(answers))
    assert again.status_code == 410 and "Already answered" in again.text
    assert patient.get(_page_path(link)).status_code == 410
    assert len(_assessments(stack, patient_id)) == 2
    (listed,) = api("nurse").get(f"/api/v1/patients/{patient_id}/questionnaire-links").json()
    assert listed["status"] == "used" and listed["url"] is None


def test_expired_link_gets_a_clear_page_and_saves_nothing(api, stack, clinic_clock, patient_id):
    clinic_clock.set(datetime.now(UTC))
    link = _create_link(api("nurse"), patient_id, valid_hours=1)
    clinic_clock.advance(hours=2)
    patient = api()
    page = patient.get(_page_path(link))
    assert page.status_code == 410 and "Link expired" in page.text
    posted = patient.post(_page_path(link), data=_form([phq9(5)]))
    assert posted.status_code == 410
    assert _assessments(stack, patient_id) == []


def test_link_not_open_yet(api, stack, clinic_clock, patient_id):
    now = clinic_clock.set(datetime.now(UTC))
    link = _create_link(api("nurse"), patient_id, available_from=(now + DAY).isoformat())
    assert link["status"] == "scheduled"
    patient = api()
    page = patient.get(_page_path(link))
    assert page.status_code == 404 and "Not open yet" in page.text
    assert patient.post(_page_path(link), data=_form([phq9(5)])).status_code == 404
    assert _assessments(stack, patient_id) == []
    clinic_clock.advance(days=1, minutes=1)
    assert patient.get(_page_path(link)).status_code == 200


def test_unknown_token_is_404(api):
    patient = api()
    page = patient.get("/q/" + "x" * 43)
    assert page.status_code == 404 and "Link not found" in page.text
    assert patient.post("/q/nope", data={"s0-1": "1"}).status_code == 404


def test_incomplete_answers_are_shown_again_and_the_link_stays_usable(api, stack, patient_id):
    link = _create_link(api("nurse"), patient_id)
    patient = api()
    partial = {k: v for k, v in phq9(8).items() if k not in ("4", "9")}
    response = patient.post(_page_path(link), data={**_form([partial]), "s0-2": "7"})
    assert response.status_code == 422
    assert "Please choose one of the answers." in response.text
    assert 'fieldset class="item invalid" id="s0-2"' in response.text
    assert 'class="item invalid" id="s0-4"' in response.text  # every question to fix at once
    assert _assessments(stack, patient_id) == []
    missing = patient.post(_page_path(link), data=_form([partial]))
    assert missing.status_code == 422
    assert 'class="item invalid" id="s0-4"' in missing.text
    assert 'class="item invalid" id="s0-9"' in missing.text
    assert 'class="item invalid" id="s0-1"' not in missing.text
    assert re.search(r'name="s0-1" value="3"[^>]*checked', missing.text)  # answers are kept
    done = patient.post(_page_path(link), data=_form([phq9(8)]))
    assert done.status_code == 200


def test_the_page_keeps_its_own_form_limits_and_the_link_stays_usable(api, stack, patient_id):
    # 400 fields and no file: an app-wide check once parsed the form first, with Starlette's
    # defaults (1000), and the cached parse lifted the page's limit
    link = _create_link(api("nurse"), patient_id)
    patient = api()
    flood = {**_form([phq9(8)]), **{f"x{i}": "1" for i in range(401)}}
    response = patient.post(_page_path(link), data=flood)
    assert response.status_code == 400
    assert "400" in response.text
    assert _assessments(stack, patient_id) == []
    assert patient.post(_page_path(link), data=_form([phq9(8)])).status_code == 200


def test_positive_item9_from_home_opens_an_alert_and_shows_crisis_help(api, stack, patient_id):
    link = _create_link(api("nurse"), patient_id, instruments=["PHQ-9"])
    response = api().post(_page_path(link), data=_form([phq9(14, item9=2)]))
    assert response.status_code == 200
    assert "988" in response.text and "care team will contact you" in response.text
    alerts = api("nurse").get("/api/v1/alerts", params={"patient_id": patient_id}).json()
    (alert,) = alerts["items"]
    assert alert["flag_code"] == "suicidality_item_positive"


def test_cssrs_from_home_follows_its_skip_logic(api, stack, patient_id):
    link = _create_link(api("nurse"), patient_id, instruments=["C-SSRS"])
    patient = api()
    # "No" to question 2 and "No" to the skipped 3-5: nothing is lost by dropping them.
    answers = {"1": 1, "2": 0, "3": 0, "4": 0, "5": 0, "6": 0}
    response = patient.post(_page_path(link), data=_form([answers]))
    assert response.status_code == 200, response.text
    (row,) = _assessments(stack, patient_id)
    assert row.answers == {"1": 1, "2": 0, "6": 0}
    assert row.band_code == "low"


def _fieldsets(html: str) -> dict[str, str]:
    """The inside of each question's fieldset on a questionnaire page, by its id."""
    return dict(re.findall(r'<fieldset class="[^"]*" id="([^"]+)">(.*?)</fieldset>', html, re.S))


def _part(body: str, pattern: str) -> str | None:
    found = re.search(pattern, body, re.S)
    return found.group(1) if found else None


def _errors(html: str) -> dict[str, str]:
    """Error message by question (fieldset id) on a questionnaire page."""
    found = {k: _part(v, r'class="error">([^<]*)<') for k, v in _fieldsets(html).items()}
    return {k: v for k, v in found.items() if v is not None}


def test_a_yes_to_a_skipped_cssrs_question_is_never_lost(api, stack, patient_id):
    link = _create_link(api("nurse"), patient_id, instruments=["C-SSRS"])
    patient = api()
    # "No" to 2 but "Yes" to intent (4) and plan (5): high risk if true, so ask, never drop.
    answers = {"1": 1, "2": 0, "3": 1, "4": 1, "5": 1, "6": 0}
    response = patient.post(_page_path(link), data=_form([answers]))
    assert response.status_code == 422, response.text
    errors = _errors(response.text)
    assert set(errors) == {"s0-2", "s0-3", "s0-4", "s0-5"}
    assert errors["s0-2"].startswith("Please check this answer.")
    assert "questions 3, 4 and 5" in errors["s0-2"]
    assert all("Please check question 2" in errors[f"s0-{i}"] for i in "345")
    for item, value in answers.items():  # every answer is kept, filled in
        assert re.search(rf'name="s0-{item}" value="{value}"[^>]*checked', response.text)
    assert _assessments(stack, patient_id) == []
    assert patient.get(_page_path(link)).status_code == 200  # the link is not used up
    # The patient corrects question 2: saved as high risk, with an alert.
    fixed = patient.post(_page_path(link), data=_form([{**answers, "2": 1}]))
    assert fixed.status_code == 200, fixed.text
    assert "care team will contact you" in fixed.text
    (row,) = _assessments(stack, patient_id)
    assert row.answers == {**answers, "2": 1} and row.band_code == "high"
    alerts = api("nurse").get("/api/v1/alerts", params={"patient_id": patient_id}).json()
    assert [a["flag_code"] for a in alerts["items"]] == ["cssrs_risk_high"]


def test_a_yes_to_the_3_month_question_after_no_to_6_is_asked_again(api, stack, patient_id):
    link = _create_link(api("nurse"), patient_id, instruments=["PHQ-9", "C-SSRS"])
    answers = {"1": 0, "2": 0, "6": 0, "6b": 1}
    response = api().post(_page_path(link), data=_form([phq9(5), answers]))
    assert response.status_code == 422
    errors = _errors(response.text)
    assert set(errors) == {"s1-6", "s1-6b"}
    assert "question 6b" in errors["s1-6"] and "Please check question 6" in errors["s1-6b"]
    assert _assessments(stack, patient_id) == []  # neither scale is saved


def test_the_audit_log_holds_record_ids_never_clinical_content(api, stack, patient_id):
    add_course(stack.db, patient_id, [datetime.now(UTC) - 3 * DAY])
    nurse = api("nurse")
    link = _create_link(nurse, patient_id, instruments=["C-SSRS", "PHQ-9"])
    high = {"1": 1, "2": 1, "3": 1, "4": 1, "5": 1, "6": 0}
    assert api().post(_page_path(link), data=_form([high, phq9(12, 1)])).status_code == 200
    alerts = nurse.get("/api/v1/alerts", params={"patient_id": patient_id}).json()["items"]
    assert len(alerts) == 2
    for alert in alerts:
        done = nurse.post(
            f"/api/v1/alerts/{alert['id']}/acknowledge", json={"note": "Called; safe."}
        )
        assert done.status_code == 200
    for what in ("outcomes", "trajectory"):
        assert nurse.get(
            f"/api/v1/patients/{patient_id}/{what}", params={"instrument": "PHQ-9"}
        ).is_success
    events = audit_events(stack.db, patient_id=patient_id)
    record_ids = {
        "assessment_id",
        "assessment_ids",
        "dosing_session_id",
        "questionnaire_link_id",
        "returned",  # how many rows a list returned
    }
    for event in events:
        assert set(event.detail or {}) <= record_ids, (event.action, event.detail)
        text = str(event.detail or "").lower()
        for clinical in ("c-ssrs", "phq", "cssrs", "suicid", "risk", "flag", "safe"):
            assert clinical not in text, (event.action, event.detail)
    (use,) = [e for e in events if e.action == "questionnaire_link.use"]
    assert sorted(use.detail["assessment_ids"]) == sorted({a["assessment_id"] for a in alerts})


def test_the_cssrs_page_says_which_questions_follow_a_yes(api, patient_id):
    link = _create_link(api("nurse"), patient_id, instruments=["C-SSRS"])
    html = api().get(_page_path(link)).text
    legends = {k: _part(v, r"<legend>(.*?)</legend>") for k, v in _fieldsets(html).items()}
    for item in ("3", "4", "5"):
        assert "Only if you answered Yes to question 2:" in legends[f"s0-{item}"]
    assert "Only if you answered Yes to question 6:" in legends["s0-6b"]
    for item in ("1", "2", "6"):
        assert "Only if" not in legends[f"s0-{item}"]


def test_the_qids_page_asks_one_of_each_pair_and_names_every_missing_pair(api, stack, patient_id):
    link = _create_link(api("nurse"), patient_id, instruments=["QIDS-SR16"])
    patient = api()
    html = patient.get(_page_path(link)).text
    hints = {k: _part(v, r'class="hint">([^<]*)<') for k, v in _fieldsets(html).items()}
    assert "Optional." not in hints.values()
    assert (
        hints["s0-6"] == hints["s0-7"] == "Answer question 6 or question 7: one of them is needed."
    )
    assert (
        hints["s0-8"] == hints["s0-9"] == "Answer question 8 or question 9: one of them is needed."
    )
    answers = {str(i): 1 for i in range(1, 17) if i not in (6, 7, 8, 9)}
    response = patient.post(_page_path(link), data=_form([answers]))
    assert response.status_code == 422
    assert _errors(response.text) == {
        "s0-6": "Please answer question 6 or question 7.",
        "s0-7": "Please answer question 6 or question 7.",
        "s0-8": "Please answer question 8 or question 9.",
        "s0-9": "Please answer question 8 or question 9.",
    }
    done = patient.post(_page_path(link), data=_form([{**answers, "7": 2, "8": 0}]))
    assert done.status_code == 200
    (row,) = _assessments(stack, patient_id)
    assert row.subscores["appetite_weight"] == 2


def test_two_submissions_at_once_save_once(api, stack, patient_id):
    link = _create_link(api("nurse"), patient_id)
    clients = [api(), api()]
    statuses: list[int] = []
    barrier = threading.Barrier(len(clients))

    def go(client):
        barrier.wait()
        statuses.append(client.post(_page_path(link), data=_form([phq9(9)])).status_code)

    threads = [threading.Thread(target=go, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(statuses) == [200, 410]
    assert len(_assessments(stack, patient_id)) == 1


@pytest.mark.parametrize(
    ("instruments", "field"),
    [
        (["MADRS"], "instruments[0]"),  # clinician-rated
        (["PHQ-9", "phq9"], "instruments[1]"),  # twice
        (["PHQ-9", "NOPE"], "instruments[1]"),
        ([], "instruments"),
    ],
)
def test_link_scales_must_be_self_report(api, patient_id, instruments, field):
    response = api("nurse").post(
        f"/api/v1/patients/{patient_id}/questionnaire-links", json={"instruments": instruments}
    )
    assert response.status_code == 422
    assert response.json()["errors"][0]["field"] == field


@pytest.mark.parametrize(
    "available_from",
    [
        "9999-12-31T23:00:00Z",  # once a 500: the expiry overflowed
        "9999-11-01T00:00:00+14:00",
        "1979-06-14T12:00:00Z",  # the day before the patient's birth (1979-06-15)
        "0001-01-01T00:00:00Z",
    ],
)
def test_a_link_opens_within_a_year_and_not_before_birth(api, stack, patient_id, available_from):
    response = api("nurse").post(
        f"/api/v1/patients/{patient_id}/questionnaire-links",
        json={"instruments": ["PHQ-9"], "available_from": available_from, "valid_hours": 1440},
    )
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["errors"][0]["field"] == "available_from"
    assert not audit_events(stack.db, action="questionnaire_link.create", patient_id=patient_id)


def test_a_link_may_open_up_to_366_days_ahead(api, clinic_clock, patient_id):
    now = clinic_clock.set(datetime(2030, 1, 1, 12, tzinfo=UTC))
    url = f"/api/v1/patients/{patient_id}/questionnaire-links"
    nurse = api("nurse")
    latest = nurse.post(url, json={"available_from": (now + 366 * DAY).isoformat()})
    assert latest.status_code == 201, latest.text
    assert latest.json()["status"] == "scheduled"
    later = (now + 366 * DAY + timedelta(seconds=1)).isoformat()
    assert nurse.post(url, json={"available_from": later}).status_code == 422


def test_links_need_permission_and_a_patient(api, stack, patient_id):
    url = f"/api/v1/patients/{patient_id}/questionnaire-links"
    assert api("manager").post(url, json={}).status_code == 403
    assert audit_events(
        stack.db, action="questionnaire_link.create", allowed=False, patient_id=patient_id
    )
    assert (
        api("nurse").post("/api/v1/patients/nobody/questionnaire-links", json={}).status_code == 404
    )


def test_schedule_plans_after_dose_links_once(api, stack, clinic_clock, patient_id):
    now = clinic_clock.set(datetime.now(UTC).replace(microsecond=0))
    recent, older = now - timedelta(hours=2), now - 5 * DAY
    _, (older_session, recent_session) = add_course(stack.db, patient_id, [older, recent])
    nurse = api("nurse")
    url = f"/api/v1/patients/{patient_id}/questionnaire-links/schedule"
    first = nurse.post(url, json={"instruments": ["PHQ-9"]})
    assert first.status_code == 200, first.text
    created = first.json()["created"]
    planned = {
        (link["purpose"], link["dosing_session_id"], link["available_from"]) for link in created
    }
    # The older dose's 24 h link expired (72 h default) so it is not planned.
    assert {(p, s) for p, s, _ in planned} == {
        ("7d_after_dose", older_session),
        ("24h_after_dose", recent_session),
        ("7d_after_dose", recent_session),
    }
    assert all(link["url"] and link["status"] == "scheduled" for link in created)
    opens = {(p, s): datetime.fromisoformat(a) for p, s, a in planned}
    assert opens[("24h_after_dose", recent_session)] == recent + DAY
    assert opens[("7d_after_dose", older_session)] == older + 7 * DAY
    second = nurse.post(url, json={"instruments": ["PHQ-9"]}).json()
    assert second == {"created": [], "already_planned": 3}
    listed = nurse.get(f"/api/v1/patients/{patient_id}/questionnaire-links").json()
    assert len(listed) == 3 and all(link["url"] is None for link in listed)

    # The 24 h link opens a day after the dose; its answers are post-dose for that session.
    (day_link,) = [link for link in created if link["purpose"] == "24h_after_dose"]
    clinic_clock.set(recent + DAY + timedelta(minutes=5))
    answered = api().post(_page_path(day_link), data=_form([phq9(6)]))
    assert answered.status_code == 200
    (row,) = _assessments(stack, patient_id)
    assert (row.timing, row.dosing_session_id) == ("post_dose", recent_session)


def test_schedule_plans_weekly_links_in_maintenance(api, stack, clinic_clock, patient_id):
    now = clinic_clock.set(datetime.now(UTC).replace(microsecond=0))
    doses = [now - 40 * DAY, now - 38 * DAY, now - 9 * DAY]
    add_course(
        stack.db,
        patient_id,
        doses,
        phase="maintenance",
        kinds=["induction", "induction", "maintenance"],
    )
    response = api("nurse").post(
        f"/api/v1/patients/{patient_id}/questionnaire-links/schedule",
        json={"horizon_days": 14},
    )
    weekly = [
        link for link in response.json()["created"] if link["purpose"] == "weekly_maintenance"
    ]
    # From the maintenance dose 9 days ago: weeks 2 and 3. Week 1 (2 days ago, still open)
    # is that dose's own 7-day link, which is not asked twice.
    opens = sorted(datetime.fromisoformat(link["available_from"]) for link in weekly)
    assert opens == [doses[2] + timedelta(weeks=k) for k in (2, 3)]
    after_dose = [
        datetime.fromisoformat(link["available_from"])
        for link in response.json()["created"]
        if link["purpose"] == "7d_after_dose"
    ]
    assert doses[2] + timedelta(weeks=1) in after_dose


def test_access_log_filter_masks_the_token():
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5555", "GET", "/q/SECRET-token", "1.1", 200),
        None,
    )
    assert RedactAccessLog().filter(record)
    assert "SECRET" not in record.getMessage()
    assert "/q/[token]" in record.getMessage()
    assert any(isinstance(f, RedactAccessLog) for f in logging.getLogger("uvicorn.access").filters)


@pytest.mark.browser
def test_the_page_fits_a_phone_and_submits_by_touch(api, stack, patient_id):
    """A 360 x 740 phone screen (CSS pixels): no sideways scrolling, answers big enough to tap,
    and filling the form by tapping saves it."""
    playwright = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("Debian's chromium is not installed")
    link = _create_link(api("nurse"), patient_id, instruments=["PHQ-9"])
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(
                viewport={"width": 360, "height": 740}, device_scale_factor=2, has_touch=True
            )
            page.goto(stack.base_url + _page_path(link))
            assert page.evaluate("document.documentElement.scrollWidth") <= 360
            heights = page.eval_on_selector_all(
                ".options label", "labels => labels.map(l => l.getBoundingClientRect().height)"
            )
            assert heights and min(heights) >= 44  # a comfortable touch target
            for item, value in phq9(10).items():
                page.check(f'input[name="s0-{item}"][value="{value}"]')
            page.click("button[type=submit]")
            page.wait_for_selector("text=Thank you")
        finally:
            browser.close()
    (row,) = _assessments(stack, patient_id)
    assert (row.total, row.source) == (10, "self_report")


@pytest.mark.browser
def test_in_a_browser_a_yes_after_no_to_question_2_is_asked_again_and_kept(api, stack, patient_id):
    """In Debian's chromium: the patient taps No to 2 and Yes to 4; the page comes back with
    the answers still ticked and asks to check question 2; after Yes to 2 it saves high risk."""
    playwright = pytest.importorskip("playwright.sync_api")
    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.skip("Debian's chromium is not installed")
    link = _create_link(api("nurse"), patient_id, instruments=["C-SSRS"])
    answers = {"1": 1, "2": 0, "3": 0, "4": 1, "5": 0, "6": 0}
    with playwright.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 360, "height": 740}, has_touch=True)
            page.goto(stack.base_url + _page_path(link))
            for item, value in answers.items():
                page.check(f'input[name="s0-{item}"][value="{value}"]')
            page.click("button[type=submit]")
            page.wait_for_selector("text=Please check this answer")
            for item, value in answers.items():  # nothing the patient ticked was lost
                assert page.is_checked(f'input[name="s0-{item}"][value="{value}"]')
            assert _assessments(stack, patient_id) == []
            page.check('input[name="s0-2"][value="1"]')
            page.click("button[type=submit]")
            page.wait_for_selector("text=Thank you")
        finally:
            browser.close()
    (row,) = _assessments(stack, patient_id)
    assert row.answers == {**answers, "2": 1} and row.band_code == "high"


def test_a_later_dose_does_not_add_a_link_on_a_day_already_planned(
    api, stack, clinic_clock, patient_id
):
    first = clinic_clock.set(datetime.now(UTC).replace(microsecond=0) - 8 * DAY)
    second = first + 7 * DAY
    _, (_, later) = add_course(
        stack.db,
        patient_id,
        [first, second],
        phase="maintenance",
        kinds=["maintenance", "maintenance"],
    )

    def dosed(at):
        with stack.db.transaction() as session:
            session.get(DosingSessionRow, later).dose_started_at = at

    nurse = api("nurse")
    url = f"/api/v1/patients/{patient_id}/questionnaire-links/schedule"
    dosed(None)  # planned after the first dose, before the second: weekly links weeks ahead
    clinic_clock.set(first + timedelta(hours=1))
    planned = nurse.post(url, json={"horizon_days": 28})
    assert planned.status_code == 200, planned.text
    dosed(second)  # then the second weekly dose is given, and the schedule run again
    clinic_clock.set(second + timedelta(hours=1))
    assert nurse.post(url, json={"horizon_days": 28}).status_code == 200
    links = nurse.get(f"/api/v1/patients/{patient_id}/questionnaire-links").json()
    opens = sorted(datetime.fromisoformat(link["available_from"]) for link in links)
    assert all(b - a >= DAY for a, b in pairwise(opens)), opens
    # the second dose's 7-day day is asked once, by the weekly link already planned
    assert sum(abs(o - (second + 7 * DAY)) < DAY for o in opens) == 1
