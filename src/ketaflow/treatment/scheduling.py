"""Proposing session dates and chairs: the induction series, boosters, maintenance, and the
next free slots.

The series follows the protocol's schedule phases (esketamine TRD: twice weekly in weeks 1-4,
weekly in weeks 5-8, then every 1 or 2 weeks: label section 2, reference §1; IV racemic: 6
infusions, 3 a week: Murrough 2013, reference §2), never closer than the protocol's minimum
spacing, on days the clinic is open, inside opening hours, and in a chair that is free for the
session's whole expected length (`Protocol.chair_minutes`: esketamine at least 2 h 15 min; an IV
infusion plus its recovery). A chair is never double-booked.

Spacing: inside a phase, sessions aim for an even spread (7 // sessions_per_week days apart:
Mon/Wed/Fri at 3 a week, Mon/Thu at 2 a week) and never exceed sessions_per_week in a 7-day week
of the phase (weeks counted from the phase's first day). A closed day moves a session to the
next open day; the next phase starts in the week after the previous phase's last session.

Pure: no database, no clock (`now` and dates are parameters), no I/O.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ketaflow.core.timezones import TimeZoneName
from ketaflow.treatment.errors import Reason, RuleViolation
from ketaflow.treatment.protocols import Protocol
from ketaflow.treatment.rules import DosingSession, SessionState

__all__ = [
    "Booking",
    "OpeningHours",
    "ProposedSession",
    "Slot",
    "chair_conflicts",
    "find_missed",
    "find_slot_on_day",
    "next_free_slots",
    "propose_booster",
    "propose_induction",
    "propose_maintenance",
    "spacing_conflicts",
]

_SRC_SCHEDULE = "protocol schedule (issue 3 §2)"


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class OpeningHours(_Value):
    """The clinic's week in its own time zone: weekday (0 = Monday) -> (open, close). A
    weekday not listed, or a date in `closed_dates`, is closed."""

    timezone: TimeZoneName = "UTC"
    weekly: dict[int, tuple[time, time]]
    closed_dates: frozenset[date] = frozenset()

    @model_validator(mode="after")
    def _hours(self) -> OpeningHours:
        for weekday, (opens, closes) in self.weekly.items():
            if not 0 <= weekday <= 6:
                raise ValueError("weekday must be 0 (Monday) to 6 (Sunday)")
            if opens >= closes:
                raise ValueError(f"weekday {weekday}: opening must precede closing")
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def window(self, day: date) -> tuple[datetime, datetime] | None:
        """Opening and closing instants (UTC) of a local date, or None when closed."""
        if day in self.closed_dates or day.weekday() not in self.weekly:
            return None
        opens, closes = self.weekly[day.weekday()]
        zone = self.zone
        return (
            datetime.combine(day, opens, tzinfo=zone).astimezone(UTC),
            datetime.combine(day, closes, tzinfo=zone).astimezone(UTC),
        )

    def local_date(self, instant: datetime) -> date:
        return instant.astimezone(self.zone).date()


class Booking(_Value):
    chair_id: str = Field(min_length=1, max_length=64)
    start: datetime
    end: datetime
    session_id: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Booking:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError("booking times must be timezone-aware")
        if self.end <= self.start:
            raise ValueError("a booking must end after it starts")
        return self

    def overlaps(self, start: datetime, end: datetime) -> bool:
        return self.start < end and start < self.end


class Slot(_Value):
    chair_id: str
    start: datetime
    end: datetime


class ProposedSession(_Value):
    sequence: int
    phase: str
    chair_id: str
    start: datetime
    end: datetime


def chair_conflicts(bookings: Iterable[Booking], candidate: Booking) -> list[Booking]:
    """Existing bookings of the same chair that overlap `candidate` (another session's)."""
    return [
        b
        for b in bookings
        if b.chair_id == candidate.chair_id
        and (candidate.session_id is None or b.session_id != candidate.session_id)
        and b.overlaps(candidate.start, candidate.end)
    ]


def spacing_conflicts(
    protocol: Protocol,
    day: date,
    patient_sessions: Iterable[datetime],
    hours: OpeningHours,
) -> list[datetime]:
    """The patient's own sessions (planned, in progress or dosed) closer to the local date
    `day` than the protocol's minimum spacing between doses, either side: a patient is never
    booked for two doses inside it (one chair each is not the point; one patient is)."""
    return [
        t
        for t in patient_sessions
        if abs((hours.local_date(t) - day).days) < protocol.min_days_between_doses
    ]


def find_slot_on_day(
    day: date,
    *,
    duration_minutes: int,
    hours: OpeningHours,
    chairs: Sequence[str],
    bookings: Sequence[Booking],
    not_before: datetime | None = None,
    preferred_time: time | None = None,
    step_minutes: int = 15,
) -> Slot | None:
    """The first slot on a local date where a chair is free for the whole duration: from the
    preferred time onwards first, then from opening; chairs in the given order."""
    window = hours.window(day)
    if window is None or not chairs:
        return None
    opens, closes = window
    length = timedelta(minutes=duration_minutes)
    step = timedelta(minutes=step_minutes)
    starts: list[datetime] = []
    t = opens
    while t + length <= closes:
        if not_before is None or t >= not_before:
            starts.append(t)
        t += step
    if preferred_time is not None:
        preferred = datetime.combine(day, preferred_time, tzinfo=hours.zone).astimezone(UTC)
        starts = [s for s in starts if s >= preferred] + [s for s in starts if s < preferred]
    for start in starts:
        end = start + length
        for chair in chairs:
            if not any(b.chair_id == chair and b.overlaps(start, end) for b in bookings):
                return Slot(chair_id=chair, start=start, end=end)
    return None


def next_free_slots(
    protocol: Protocol,
    *,
    hours: OpeningHours,
    chairs: Sequence[str],
    bookings: Sequence[Booking],
    after: datetime,
    count: int = 5,
    step_minutes: int = 15,
    horizon_days: int = 60,
    one_per_day: bool = False,
) -> list[Slot]:
    """The next `count` free slots for the protocol's chair time, starting at `after`.
    Several may fall on one day (different times or chairs) unless `one_per_day`."""
    length = timedelta(minutes=protocol.chair_minutes)
    step = timedelta(minutes=step_minutes)
    found: list[Slot] = []
    first_day = hours.local_date(after)
    for offset in range(horizon_days + 1):
        day = first_day + timedelta(days=offset)
        window = hours.window(day)
        if window is None:
            continue
        opens, closes = window
        t = opens
        while t + length <= closes and len(found) < count:
            if t >= after:
                end = t + length
                for chair in chairs:
                    if not any(b.chair_id == chair and b.overlaps(t, end) for b in bookings):
                        found.append(Slot(chair_id=chair, start=t, end=end))
                        break
                if one_per_day and found and hours.local_date(found[-1].start) == day:
                    break
            t += step
        if len(found) >= count:
            break
    return found


def _no_slot(what: str, horizon_days: int, spacing_days: int = 0) -> RuleViolation:
    spaced = (
        f" ({spacing_days} day(s) passed over: too close to the patient's other sessions)"
        if spacing_days
        else ""
    )
    return RuleViolation(
        "no_free_slot",
        [
            Reason(
                "no_free_slot",
                f"no free chair for {what} within {horizon_days} days{spaced}",
                _SRC_SCHEDULE,
            )
        ],
    )


def propose_induction(
    protocol: Protocol,
    *,
    start_on: date,
    hours: OpeningHours,
    chairs: Sequence[str],
    bookings: Sequence[Booking],
    preferred_time: time | None = None,
    last_dose_at: datetime | None = None,
    not_before: datetime | None = None,
    step_minutes: int = 15,
    horizon_days: int = 180,
) -> list[ProposedSession]:
    """The induction series from `start_on` (a local date), phase by phase. `last_dose_at`
    (a previous dose, e.g. when a course restarts) pushes the first session past the minimum
    spacing; no session starts before `not_before` (now: a course started in the afternoon
    never books the morning that has passed). Raises `RuleViolation("no_free_slot")` if a
    session cannot be placed within `horizon_days`. Returns [] for a protocol without an
    induction series."""
    proposals: list[ProposedSession] = []
    taken = list(bookings)
    limit = start_on + timedelta(days=horizon_days)
    previous: date | None = hours.local_date(last_dose_at) if last_dose_at is not None else None
    phase_start = start_on
    if previous is not None:
        phase_start = max(phase_start, previous + timedelta(days=protocol.min_days_between_doses))
    for phase in protocol.schedule.induction:
        per_week = phase.sessions_per_week
        gap_days = max(protocol.min_days_between_doses, 7 // per_week)
        week_counts: Counter[int] = Counter()
        day = phase_start
        placed_in_phase = 0
        last_week = 0
        while placed_in_phase < phase.sessions:
            if day > limit:
                raise _no_slot(f"session {len(proposals) + 1} ({phase.name})", horizon_days)
            if previous is not None:
                day = max(day, previous + timedelta(days=protocol.min_days_between_doses))
            week = (day - phase_start).days // 7
            if week_counts[week] >= per_week:
                day = phase_start + timedelta(days=7 * (week + 1))
                continue
            slot = find_slot_on_day(
                day,
                duration_minutes=protocol.chair_minutes,
                hours=hours,
                chairs=chairs,
                bookings=taken,
                not_before=not_before,
                preferred_time=preferred_time,
                step_minutes=step_minutes,
            )
            if slot is None:
                day += timedelta(days=1)
                continue
            proposals.append(
                ProposedSession(
                    sequence=len(proposals) + 1,
                    phase=phase.name,
                    chair_id=slot.chair_id,
                    start=slot.start,
                    end=slot.end,
                )
            )
            taken.append(Booking(chair_id=slot.chair_id, start=slot.start, end=slot.end))
            week_counts[week] += 1
            last_week = week
            placed_in_phase += 1
            previous = day
            day = day + timedelta(days=gap_days)
        phase_start = phase_start + timedelta(days=7 * (last_week + 1))
    return proposals


def _place_from(
    day: date,
    protocol: Protocol,
    *,
    hours: OpeningHours,
    chairs: Sequence[str],
    bookings: Sequence[Booking],
    not_before: datetime | None,
    preferred_time: time | None,
    step_minutes: int,
    horizon_days: int,
    what: str,
    patient_sessions: Sequence[datetime] = (),
) -> Slot:
    too_close = 0
    for offset in range(horizon_days + 1):
        candidate = day + timedelta(days=offset)
        if spacing_conflicts(protocol, candidate, patient_sessions, hours):
            too_close += 1  # the patient has another session too close to this day
            continue
        slot = find_slot_on_day(
            candidate,
            duration_minutes=protocol.chair_minutes,
            hours=hours,
            chairs=chairs,
            bookings=bookings,
            not_before=not_before,
            preferred_time=preferred_time,
            step_minutes=step_minutes,
        )
        if slot is not None:
            return slot
    raise _no_slot(what, horizon_days, too_close)


def propose_booster(
    protocol: Protocol,
    *,
    last_dose_at: datetime,
    hours: OpeningHours,
    chairs: Sequence[str],
    bookings: Sequence[Booking],
    earliest: datetime | None = None,
    preferred_time: time | None = None,
    step_minutes: int = 15,
    horizon_days: int = 60,
    patient_sessions: Sequence[datetime] = (),
) -> ProposedSession:
    """The first free slot for a booster, no earlier than `earliest` and never inside the
    protocol's minimum spacing after the last dose or around the patient's other sessions
    (`patient_sessions`: their planned and given sessions' starts)."""
    first_day = hours.local_date(last_dose_at) + timedelta(days=protocol.min_days_between_doses)
    not_before = earliest
    if earliest is not None:
        first_day = max(first_day, hours.local_date(earliest))
    slot = _place_from(
        first_day,
        protocol,
        hours=hours,
        chairs=chairs,
        bookings=bookings,
        not_before=not_before,
        preferred_time=preferred_time,
        step_minutes=step_minutes,
        horizon_days=horizon_days,
        what="a booster",
        patient_sessions=patient_sessions,
    )
    return ProposedSession(
        sequence=1, phase="booster", chair_id=slot.chair_id, start=slot.start, end=slot.end
    )


def propose_maintenance(
    protocol: Protocol,
    *,
    last_dose_at: datetime,
    count: int,
    hours: OpeningHours,
    chairs: Sequence[str],
    bookings: Sequence[Booking],
    interval_days: int | None = None,
    preferred_time: time | None = None,
    step_minutes: int = 15,
    horizon_days: int = 30,
    not_before: datetime | None = None,
    patient_sessions: Sequence[datetime] = (),
) -> list[ProposedSession]:
    """`count` maintenance sessions every `interval_days` (one of the protocol's
    maintenance intervals; its first by default). A session whose day is full or closed, or
    inside the minimum spacing around another of the patient's sessions (`patient_sessions`),
    moves to the next free day, and the following ones keep the interval from it. No session
    starts before `not_before` (now)."""
    options = protocol.schedule.maintenance_interval_days
    interval = options[0] if interval_days is None else interval_days
    if interval not in options:
        raise RuleViolation(
            "interval_not_allowed",
            [
                Reason(
                    "maintenance_interval",
                    f"every {interval} days is not one of the protocol's intervals "
                    f"({', '.join(str(d) for d in options)})",
                    "protocol maintenance schedule",
                )
            ],
        )
    if count < 1:
        raise ValueError("count must be at least 1")
    interval = max(interval, protocol.min_days_between_doses)
    taken = list(bookings)
    proposals: list[ProposedSession] = []
    previous = hours.local_date(last_dose_at)
    for n in range(1, count + 1):
        slot = _place_from(
            previous + timedelta(days=interval),
            protocol,
            hours=hours,
            chairs=chairs,
            bookings=taken,
            not_before=not_before,
            preferred_time=preferred_time,
            step_minutes=step_minutes,
            horizon_days=horizon_days,
            what=f"maintenance session {n}",
            patient_sessions=patient_sessions,
        )
        proposals.append(
            ProposedSession(
                sequence=n,
                phase="maintenance",
                chair_id=slot.chair_id,
                start=slot.start,
                end=slot.end,
            )
        )
        taken.append(Booking(chair_id=slot.chair_id, start=slot.start, end=slot.end))
        previous = hours.local_date(slot.start)
    return proposals


def find_missed(
    sessions: Iterable[DosingSession], *, now: datetime, grace_minutes: int = 60
) -> list[str]:
    """Ids of scheduled sessions whose start passed more than `grace_minutes` ago without a
    check-in; mark each with `rules.mark_missed`."""
    cutoff = now - timedelta(minutes=grace_minutes)
    return [
        s.id for s in sessions if s.state is SessionState.scheduled and s.scheduled_start < cutoff
    ]
