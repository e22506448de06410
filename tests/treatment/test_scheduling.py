"""Scheduling: the label's and Murrough's series, opening hours, closed days, chairs that are
never double-booked, boosters, maintenance and missed sessions."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketaflow.treatment import rules as R
from ketaflow.treatment.errors import RuleViolation
from ketaflow.treatment.protocols import DEFAULT_PROTOCOLS, ProtocolId, apply_overrides
from ketaflow.treatment.scheduling import (
    Booking,
    OpeningHours,
    chair_conflicts,
    find_missed,
    find_slot_on_day,
    next_free_slots,
    propose_booster,
    propose_induction,
    propose_maintenance,
)

IV = DEFAULT_PROTOCOLS[ProtocolId.iv_racemic_infusion]
ESK = DEFAULT_PROTOCOLS[ProtocolId.intranasal_esketamine_trd]
ORAL = DEFAULT_PROTOCOLS[ProtocolId.oral_racemic]
NY = ZoneInfo("America/New_York")
WEEKDAYS = OpeningHours(
    timezone="America/New_York", weekly={d: (time(8), time(17)) for d in range(5)}
)
MONDAY = date(2026, 3, 2)


def local(instant: datetime) -> datetime:
    return instant.astimezone(NY)


def at_ny(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime.combine(day, time(hour, minute), tzinfo=NY).astimezone(UTC)


def test_iv_series_is_six_infusions_three_a_week_mon_wed_fri():
    series = propose_induction(
        IV, start_on=MONDAY, hours=WEEKDAYS, chairs=["A"], bookings=[], preferred_time=time(9)
    )
    assert [local(s.start).strftime("%a %d") for s in series] == [
        "Mon 02",
        "Wed 04",
        "Fri 06",
        "Mon 09",
        "Wed 11",
        "Fri 13",
    ]
    assert all(local(s.start).time() == time(9) for s in series)
    assert all(s.end - s.start == timedelta(minutes=IV.chair_minutes) for s in series)


def test_esketamine_series_follows_the_label():
    series = propose_induction(
        ESK, start_on=MONDAY, hours=WEEKDAYS, chairs=["A"], bookings=[], preferred_time=time(9)
    )
    assert [s.phase for s in series] == ["weeks 1-4"] * 8 + ["weeks 5-8"] * 4
    weeks = [(local(s.start).date() - MONDAY).days // 7 for s in series]
    assert weeks == [0, 0, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7]
    gaps = [(b.start.date() - a.start.date()).days for a, b in pairwise(series)]
    assert min(gaps) >= ESK.min_days_between_doses
    # Booked for the whole 2 h 15 min.
    assert all(s.end - s.start == timedelta(minutes=135) for s in series)


def test_dst_keeps_the_local_time():
    series = propose_induction(
        ESK, start_on=MONDAY, hours=WEEKDAYS, chairs=["A"], bookings=[], preferred_time=time(9)
    )
    # US clocks change on 8 March 2026: the UTC hour moves, the local hour does not.
    assert {local(s.start).hour for s in series} == {9}
    assert len({s.start.hour for s in series}) == 2


def test_closed_days_move_a_session_to_the_next_open_day():
    hours = WEEKDAYS.model_copy(update={"closed_dates": frozenset({date(2026, 3, 4)})})
    series = propose_induction(IV, start_on=MONDAY, hours=hours, chairs=["A"], bookings=[])
    assert [local(s.start).strftime("%a %d") for s in series][:3] == ["Mon 02", "Thu 05", "Mon 09"]


def test_a_booked_chair_moves_to_another_chair_then_another_time():
    day_bookings = [
        Booking(chair_id="A", start=at_ny(MONDAY, 8), end=at_ny(MONDAY, 12)),
        Booking(chair_id="B", start=at_ny(MONDAY, 8), end=at_ny(MONDAY, 10)),
    ]
    slot = find_slot_on_day(
        MONDAY,
        duration_minutes=135,
        hours=WEEKDAYS,
        chairs=["A", "B"],
        bookings=day_bookings,
        preferred_time=time(9),
    )
    assert (slot.chair_id, local(slot.start).time()) == ("B", time(10))
    full = [
        *day_bookings,
        Booking(chair_id="B", start=at_ny(MONDAY, 10), end=at_ny(MONDAY, 17)),
        Booking(chair_id="A", start=at_ny(MONDAY, 12), end=at_ny(MONDAY, 17)),
    ]
    assert (
        find_slot_on_day(
            MONDAY, duration_minutes=135, hours=WEEKDAYS, chairs=["A", "B"], bookings=full
        )
        is None
    )
    assert (
        find_slot_on_day(
            date(2026, 3, 7), duration_minutes=30, hours=WEEKDAYS, chairs=["A"], bookings=[]
        )
        is None
    )


def test_a_session_must_fit_before_closing():
    slot = find_slot_on_day(
        MONDAY,
        duration_minutes=135,
        hours=WEEKDAYS,
        chairs=["A"],
        bookings=[],
        preferred_time=time(16),
    )
    # 16:00 + 2 h 15 min runs past 17:00: the day's first fitting slot is taken instead.
    assert local(slot.start).time() == time(8)


booking_strategy = st.lists(
    st.tuples(
        st.sampled_from(["A", "B"]),
        st.integers(min_value=0, max_value=27),  # day offset
        st.integers(min_value=7, max_value=16),  # local start hour
        st.integers(min_value=1, max_value=6),  # hours long
    ),
    max_size=25,
)


@settings(max_examples=60, deadline=None)
@given(raw=booking_strategy, protocol=st.sampled_from([IV, ESK]))
def test_proposals_never_double_book_a_chair_and_stay_in_opening_hours(raw, protocol):
    bookings = [
        Booking(
            chair_id=chair,
            start=at_ny(MONDAY + timedelta(days=offset), hour),
            end=at_ny(MONDAY + timedelta(days=offset), hour) + timedelta(hours=length),
        )
        for chair, offset, hour, length in raw
    ]
    series = propose_induction(
        protocol,
        start_on=MONDAY,
        hours=WEEKDAYS,
        chairs=["A", "B"],
        bookings=bookings,
        preferred_time=time(9),
    )
    assert len(series) == protocol.series_sessions
    placed: list[Booking] = []
    for proposal in series:
        candidate = Booking(chair_id=proposal.chair_id, start=proposal.start, end=proposal.end)
        assert chair_conflicts([*bookings, *placed], candidate) == []
        opens, closes = WEEKDAYS.window(local(proposal.start).date())
        assert opens <= proposal.start and proposal.end <= closes
        placed.append(candidate)
    days = [local(p.start).date() for p in series]
    assert all((b - a).days >= protocol.min_days_between_doses for a, b in pairwise(days))


def test_restarting_a_course_respects_the_last_dose():
    series = propose_induction(
        IV,
        start_on=MONDAY,
        hours=WEEKDAYS,
        chairs=["A"],
        bookings=[],
        last_dose_at=at_ny(MONDAY, 10),
    )
    assert local(series[0].start).date() == date(2026, 3, 4)


def test_no_free_slot_is_a_rule_violation():
    closed = OpeningHours(timezone="UTC", weekly={0: (time(8), time(9))})
    with pytest.raises(RuleViolation) as caught:
        propose_induction(ESK, start_on=MONDAY, hours=closed, chairs=["A"], bookings=[])
    assert caught.value.code == "no_free_slot"


def test_maintenance_only_protocols_have_no_induction():
    assert propose_induction(ORAL, start_on=MONDAY, hours=WEEKDAYS, chairs=["A"], bookings=[]) == []


def test_next_free_slots():
    after = at_ny(MONDAY, 12)
    slots = next_free_slots(
        ESK, hours=WEEKDAYS, chairs=["A"], bookings=[], after=after, count=3, step_minutes=60
    )
    # 12:00, 13:00, 14:00 fit (14:00 + 2 h 15 min = 16:15); then Tuesday 08:00.
    assert [local(s.start).strftime("%a %H:%M") for s in slots] == [
        "Mon 12:00",
        "Mon 13:00",
        "Mon 14:00",
    ]
    per_day = next_free_slots(
        ESK, hours=WEEKDAYS, chairs=["A"], bookings=[], after=after, count=3, one_per_day=True
    )
    assert [local(s.start).strftime("%a %H:%M") for s in per_day] == [
        "Mon 12:00",
        "Tue 08:00",
        "Wed 08:00",
    ]


def test_booster_waits_for_the_minimum_spacing():
    booster = propose_booster(
        IV,
        last_dose_at=at_ny(date(2026, 3, 5), 10),  # Thursday
        hours=WEEKDAYS,
        chairs=["A"],
        bookings=[],
        preferred_time=time(10),
    )
    # Thursday + 2 days = Saturday (closed) -> Monday.
    assert local(booster.start).strftime("%a %d %H:%M") == "Mon 09 10:00"
    assert booster.phase == "booster"
    later = propose_booster(
        IV,
        last_dose_at=at_ny(date(2026, 3, 5), 10),
        hours=WEEKDAYS,
        chairs=["A"],
        bookings=[],
        earliest=at_ny(date(2026, 3, 10), 13),
    )
    assert local(later.start).strftime("%a %d %H:%M") == "Tue 10 13:00"


def test_maintenance_every_one_or_two_weeks_for_esketamine():
    sessions = propose_maintenance(
        ESK,
        last_dose_at=at_ny(MONDAY, 9),
        count=3,
        interval_days=14,
        hours=WEEKDAYS,
        chairs=["A"],
        bookings=[],
        preferred_time=time(9),
    )
    assert [local(s.start).date() for s in sessions] == [
        date(2026, 3, 16),
        date(2026, 3, 30),
        date(2026, 4, 13),
    ]
    with pytest.raises(RuleViolation) as caught:
        propose_maintenance(
            ESK,
            last_dose_at=at_ny(MONDAY, 9),
            count=1,
            interval_days=21,
            hours=WEEKDAYS,
            chairs=["A"],
            bookings=[],
        )
    assert caught.value.code == "interval_not_allowed"
    weekly = propose_maintenance(
        ESK, last_dose_at=at_ny(MONDAY, 9), count=1, hours=WEEKDAYS, chairs=["A"], bookings=[]
    )
    assert local(weekly[0].start).date() == date(2026, 3, 9)


def test_maintenance_slides_past_a_closed_day_and_keeps_the_interval_from_there():
    hours = WEEKDAYS.model_copy(update={"closed_dates": frozenset({date(2026, 3, 9)})})
    sessions = propose_maintenance(
        ESK, last_dose_at=at_ny(MONDAY, 9), count=2, hours=hours, chairs=["A"], bookings=[]
    )
    assert [local(s.start).date() for s in sessions] == [date(2026, 3, 10), date(2026, 3, 17)]


def test_chair_conflicts_ignore_the_same_session_and_other_chairs():
    existing = [
        Booking(chair_id="A", start=at_ny(MONDAY, 9), end=at_ny(MONDAY, 11), session_id="s1"),
        Booking(chair_id="B", start=at_ny(MONDAY, 9), end=at_ny(MONDAY, 11), session_id="s2"),
    ]
    moved = Booking(chair_id="A", start=at_ny(MONDAY, 10), end=at_ny(MONDAY, 12), session_id="s1")
    assert chair_conflicts(existing, moved) == []
    other = moved.model_copy(update={"session_id": "s3"})
    assert [b.session_id for b in chair_conflicts(existing, other)] == ["s1"]
    touching = Booking(chair_id="A", start=at_ny(MONDAY, 11), end=at_ny(MONDAY, 12))
    assert chair_conflicts(existing, touching) == []


def test_opening_hours_validation():
    with pytest.raises(ValueError):
        OpeningHours(weekly={0: (time(17), time(8))})
    with pytest.raises(ValueError):
        OpeningHours(weekly={7: (time(8), time(17))})
    with pytest.raises(ValueError):
        OpeningHours(timezone="Mars/Olympus", weekly={})


def test_find_missed_lists_only_passed_scheduled_sessions():
    start = at_ny(MONDAY, 9)
    passed = R.new_session(session_id="a", patient_id="p", protocol_id=IV.id, scheduled_start=start)
    future = passed.model_copy(update={"id": "b", "scheduled_start": start + timedelta(hours=5)})
    attended = R.check_in(
        passed.model_copy(update={"id": "c"}),
        actor=R.Actor(user_id="n", role=R.Role.nurse),
        now=start,
    ).session
    now = start + timedelta(minutes=61)
    assert find_missed([passed, future, attended], now=now, grace_minutes=60) == ["a"]
    assert R.mark_missed(passed, now=now, grace_minutes=60).session.state is R.SessionState.missed


def test_clinic_can_shorten_the_iv_series():
    four = apply_overrides(IV, {"schedule.induction.induction.sessions": 4})
    series = propose_induction(four, start_on=MONDAY, hours=WEEKDAYS, chairs=["A"], bookings=[])
    assert len(series) == 4
