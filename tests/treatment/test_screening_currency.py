"""A dose rests on a screening that still holds: unexpired (an overridden refusal expires like
any screening) and decided on the history as it stands. Rules, and over HTTP on both stores."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from ketaflow.treatment import rules as R
from support.clinic import BASELINE, READY, act, add_chairs, enrolled_patient, ok, start_course
from treatment.treatment_builders import IV, T0, checked_in, inputs_for


def _screening_check(**inputs) -> R.CheckResult:
    results = R.evaluate_pre_dose_checks(checked_in(IV), IV, inputs_for(IV, **inputs), now=T0)
    return next(r for r in results if r.rule_id == "screening_valid")


@pytest.mark.parametrize("override", [False, True])
def test_an_expired_screening_fails_even_when_it_was_an_overridden_refusal(override):
    check = _screening_check(screening_expires_on=date(2026, 1, 1), screening_override=override)
    assert not check.passed and "expired on 2026-01-01" in check.message


def test_a_screening_of_an_older_history_fails():
    check = _screening_check(screening_on_current_history=False)
    assert not check.passed and "history was revised" in check.message
    assert _screening_check().passed


MONDAY = datetime.fromisoformat("2032-04-05T09:00:00-04:00")


def _revise(prescriber, pid, **changes) -> None:
    current = ok(prescriber.get(f"/api/v1/patients/{pid}/history"))
    ok(
        prescriber.put(
            f"/api/v1/patients/{pid}/history",
            json={
                "expected_revision": current["revision"],
                "history": {**current["history"], **changes},
            },
        )
    )


def _checks(api, clinic_clock, course):
    planned = course["sessions"][0]
    clinic_clock.set(datetime.fromisoformat(planned["scheduled_start"]))
    nurse = api("nurse")
    session = act(nurse, ok(nurse.get(f"/api/v1/sessions/{planned['id']}")), "check-in")
    session = act(nurse, session, "readings", BASELINE, status=201)
    return act(nurse, session, "pre-dose-checks", READY)


def _screening_result(session) -> dict:
    run = session["document"]["check_runs"][-1]
    return next(r for r in run["results"] if r["rule_id"] == "screening_valid")


def test_a_history_revised_after_the_screening_defers_the_dose_until_screened_again(
    api, clinic_clock
):
    add_chairs(api)
    clinic_clock.set(MONDAY)
    prescriber = api("prescriber")
    pid = enrolled_patient(api, clinic_clock)
    course = start_course(api, pid, MONDAY.date())
    _revise(prescriber, pid, notes="new episode of uncontrolled hypertension reported")
    session = _checks(api, clinic_clock, course)
    assert session["session"]["state"] == "deferred"
    assert "history was revised" in _screening_result(session)["message"]
    # screened again on the current history: the next run passes that check
    rescreened = ok(
        prescriber.post(
            f"/api/v1/patients/{pid}/screenings",
            json={
                "drug": "ketamine",
                "route": "iv",
                "vitals": {"systolic_mmhg": 122, "diastolic_mmhg": 76, "heart_rate_bpm": 70},
            },
        ),
        201,
    )
    assert rescreened["decision"] in ("eligible", "eligible_with_cautions"), rescreened
    again = act(api("nurse"), session, "pre-dose-checks", READY)
    assert _screening_result(again)["passed"] is True, _screening_result(again)
    assert again["session"]["state"] == "cleared"
