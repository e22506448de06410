"""Readings during a dosing session: validation, alarms, and which planned readings are due,
done or missed.

A reading is one time point with any of: systolic and diastolic BP, heart rate, SpO2,
respiratory rate, MOAA/S sedation (0-5, Chernik 1990) and the CADSS-6 dissociation rating
(0-24, Rodrigues 2021; reference §3). A wrong reading is never changed: it is voided with a
reason (see `rules.void_reading`) and a corrected one is entered that names it.

Pure: no database, no clock (`now` is a parameter), no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, time, timedelta, tzinfo
from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from ketaflow.treatment.errors import InvalidReading
from ketaflow.treatment.protocols import (
    SEVERITY_RANK,
    AlarmThreshold,
    Anchor,
    Comparator,
    Measure,
    MonitoringPlan,
    Phase,
    PlannedReading,
    Protocol,
    Severity,
)

__all__ = [
    "PLAUSIBLE_RANGES",
    "AdverseEvent",
    "AdverseEventAction",
    "AdverseEventKind",
    "AdverseEventOutcome",
    "AdverseEventSeverity",
    "Alarm",
    "DueReading",
    "DueStatus",
    "Reading",
    "active_readings",
    "evaluate_alarms",
    "latest_reading_with",
    "missed_readings",
    "phase_at",
    "pre_dose_readings_since",
    "reading_schedule",
    "validate_reading",
]


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadingValues(_Value):
    """What a clinician enters for one time point; field names are the `Measure` values."""

    systolic_mmhg: int | None = None
    diastolic_mmhg: int | None = None
    heart_rate_bpm: int | None = None
    spo2_percent: int | None = None
    respiratory_rate_per_min: int | None = None
    moaa_s: int | None = None
    cadss6: int | None = None
    note: str | None = Field(default=None, max_length=500)
    # The voided reading this one corrects, if any.
    corrects_reading_id: str | None = None


class Reading(ReadingValues):
    """One time point as stored, so `reading.value(measure)` works for every measure."""

    id: str = Field(min_length=1, max_length=64)
    taken_at: datetime
    recorded_by: str = Field(min_length=1, max_length=64)
    voided_at: datetime | None = None
    voided_by: str | None = None
    void_reason: str | None = None

    def value(self, measure: Measure) -> int | None:
        return getattr(self, measure.value)

    @property
    def measures(self) -> frozenset[Measure]:
        return frozenset(m for m in Measure if self.value(m) is not None)

    @property
    def voided(self) -> bool:
        return self.voided_at is not None


# Data-entry plausibility, not clinical thresholds: a value outside these ranges is a typing
# error or a faulty device, and is refused (422) rather than stored.
PLAUSIBLE_RANGES: dict[Measure, tuple[int, int]] = {
    Measure.systolic: (50, 300),
    Measure.diastolic: (20, 200),
    Measure.heart_rate: (20, 250),
    Measure.spo2: (50, 100),
    Measure.respiratory_rate: (0, 70),
    # MOAA/S 0-5 (Chernik 1990, reference §3).
    Measure.moaa_s: (0, 5),
    # CADSS-6: six items 0-4 (Rodrigues 2021, reference §3).
    Measure.dissociation: (0, 24),
}


def validate_reading(reading: Reading) -> None:
    """Raise `InvalidReading` (422) listing every impossible value; return None if fine."""
    errors: list[tuple[str, str]] = []
    if not reading.measures:
        errors.append(("reading", "a reading needs at least one value"))
    for measure, (low, high) in PLAUSIBLE_RANGES.items():
        value = reading.value(measure)
        if value is not None and not low <= value <= high:
            errors.append((measure.value, f"{measure.value} {value} is outside {low}-{high}"))
    if (reading.systolic_mmhg is None) != (reading.diastolic_mmhg is None):
        errors.append(("diastolic_mmhg", "blood pressure needs both systolic and diastolic"))
    elif (
        reading.systolic_mmhg is not None
        and reading.diastolic_mmhg is not None
        and reading.diastolic_mmhg >= reading.systolic_mmhg
    ):
        errors.append(("diastolic_mmhg", "diastolic must be below systolic"))
    if reading.taken_at.tzinfo is None:
        errors.append(("taken_at", "taken_at must be timezone-aware"))
    if errors:
        raise InvalidReading(errors)


def active_readings(readings: Iterable[Reading]) -> list[Reading]:
    """Readings that count (not voided), oldest first."""
    return sorted((r for r in readings if not r.voided), key=lambda r: r.taken_at)


def latest_reading_with(
    readings: Iterable[Reading],
    measure: Measure,
    *,
    not_after: datetime | None = None,
    not_before: datetime | None = None,
) -> Reading | None:
    """The most recent non-voided reading carrying `measure` within the bounds."""
    found = None
    for reading in active_readings(readings):
        if reading.value(measure) is None:
            continue
        if not_after is not None and reading.taken_at > not_after:
            continue
        if not_before is not None and reading.taken_at < not_before:
            continue
        found = reading
    return found


def phase_at(
    taken_at: datetime, dose_started_at: datetime | None, dose_ended_at: datetime | None
) -> Phase:
    """The session phase a reading belongs to, from when it was taken."""
    if dose_started_at is None or taken_at < dose_started_at:
        return Phase.pre_dose
    if dose_ended_at is None or taken_at < dose_ended_at:
        return Phase.dosing
    return Phase.monitoring


class Alarm(_Value):
    """A threshold crossed by a reading, with what the protocol says to do."""

    id: str
    reading_id: str
    threshold_id: str
    measure: Measure
    value: int
    comparator: Comparator
    limit: Decimal
    severity: Severity
    phase: Phase
    action: str
    source: str
    unconfirmed: bool
    raised_at: datetime


def evaluate_alarms(reading: Reading, protocol: Protocol, phase: Phase) -> tuple[Alarm, ...]:
    """Alarms the reading raises in `phase`: for each measure only the most severe crossed
    threshold (SpO2 85 raises `spo2_critical`, not also `spo2_low`). Voided readings raise
    none."""
    if reading.voided:
        return ()
    strongest: dict[Measure, AlarmThreshold] = {}
    for threshold in protocol.alarms:
        if phase not in threshold.phases:
            continue
        value = reading.value(threshold.measure)
        if value is None or not threshold.comparator.crossed(Decimal(value), threshold.limit):
            continue
        current = strongest.get(threshold.measure)
        if current is None or SEVERITY_RANK[threshold.severity] > SEVERITY_RANK[current.severity]:
            strongest[threshold.measure] = threshold
    alarms = []
    for measure in Measure:
        threshold = strongest.get(measure)
        if threshold is None:
            continue
        value = reading.value(measure)
        assert value is not None
        alarms.append(
            Alarm(
                id=f"{reading.id}:{threshold.id}",
                reading_id=reading.id,
                threshold_id=threshold.id,
                measure=measure,
                value=value,
                comparator=threshold.comparator,
                limit=threshold.limit,
                severity=threshold.severity,
                phase=phase,
                action=threshold.action,
                source=threshold.source,
                unconfirmed=threshold.unconfirmed,
                raised_at=reading.taken_at,
            )
        )
    return tuple(alarms)


class DueStatus(StrEnum):
    upcoming = "upcoming"
    due = "due"
    done = "done"
    missed = "missed"


class DueReading(_Value):
    point_id: str
    label: str
    measures: frozenset[Measure]
    # When it is due; None for pre-dose (due before the dose) and pre-discharge readings.
    due_at: datetime | None
    window_start: datetime | None
    window_end: datetime | None
    status: DueStatus
    required_for_discharge: bool
    reading_ids: tuple[str, ...] = ()


def _satisfying(
    readings: Sequence[Reading], measures: frozenset[Measure], start: datetime, end: datetime
) -> tuple[str, ...] | None:
    """Ids of readings that together cover every measure inside [start, end], or None."""
    ids: list[str] = []
    for measure in sorted(measures):
        match = next(
            (r for r in readings if start <= r.taken_at <= end and r.value(measure) is not None),
            None,
        )
        if match is None:
            return None
        if match.id not in ids:
            ids.append(match.id)
    return tuple(ids)


# A safety bound on repeating points (a 24-hour session at one reading a minute).
_MAX_REPEATS = 24 * 60


def reading_schedule(
    plan: MonitoringPlan,
    *,
    readings: Iterable[Reading],
    checked_in_at: datetime | None,
    dose_started_at: datetime | None,
    dose_ended_at: datetime | None,
    closed_at: datetime | None,
    now: datetime,
    clinic_tz: tzinfo | None,
) -> list[DueReading]:
    """Every planned reading known so far with its status at `now`.

    `closed_at` is the discharge or stop time (None while the session is open). Timed points
    appear once their anchor has happened; an open-ended repeat is listed up to the next one
    after `now`. A point is done when non-voided readings inside its window cover all its
    measures; missed when its window has passed (or, for pre-dose, the dose started) without
    that. Pre-discharge readings stay `due` until the session closes.

    `clinic_tz` is the clinic's time zone: a pre-dose point counts only readings taken on the
    clinic day of the dose (before it, of `now`), as the pre-dose checks do, so a session
    deferred one day shows its pre-dose readings due again the next. None counts every reading
    since check-in, whatever the day (discharge: a reading dated before the dose cannot be added
    once it has started, and the dose's checks already held the readings to that day).
    """
    active = active_readings(readings)
    horizon = min(now, closed_at) if closed_at is not None else now
    result: list[DueReading] = []
    if checked_in_at is None:
        return result
    for point in plan.points:
        if point.anchor is Anchor.pre_dose:
            result.append(
                _pre_dose_status(point, active, checked_in_at, dose_started_at, now, clinic_tz)
            )
        elif point.anchor is Anchor.pre_discharge:
            if dose_ended_at is None:
                continue
            result.append(_pre_discharge_status(point, active, closed_at, now))
        else:
            anchor_at = dose_started_at if point.anchor is Anchor.dose_start else dose_ended_at
            if anchor_at is None:
                continue
            result.extend(
                _timed_statuses(point, active, anchor_at, dose_ended_at, closed_at, horizon, now)
            )
    return result


def pre_dose_readings_since(
    checked_in_at: datetime | None, at: datetime, clinic_tz: tzinfo
) -> datetime:
    """From when pre-dose readings count at `at` (a check run, a dose start, the display's
    `now`): since check-in, and on `at`'s own clinic day in `clinic_tz`. A session deferred one
    day and re-run the next needs that day's readings, never yesterday's (pre-dose checks on
    the day of the dose, label sections 2 and 5, reference §1)."""
    day_start = datetime.combine(at.astimezone(clinic_tz).date(), time.min, tzinfo=clinic_tz)
    return day_start if checked_in_at is None or checked_in_at < day_start else checked_in_at


def _pre_dose_status(
    point: PlannedReading,
    active: Sequence[Reading],
    checked_in_at: datetime,
    dose_started_at: datetime | None,
    now: datetime,
    clinic_tz: tzinfo | None,
) -> DueReading:
    end = dose_started_at if dose_started_at is not None else now
    start = checked_in_at
    if clinic_tz is not None:
        start = pre_dose_readings_since(checked_in_at, end, clinic_tz)
    ids = _satisfying(active, point.measures, start, end)
    if ids is not None:
        status = DueStatus.done
    elif dose_started_at is not None:
        status = DueStatus.missed
    else:
        status = DueStatus.due
    return DueReading(
        point_id=point.id,
        label=point.label,
        measures=point.measures,
        due_at=dose_started_at,
        window_start=start,
        window_end=dose_started_at,
        status=status,
        required_for_discharge=point.required_for_discharge,
        reading_ids=ids or (),
    )


def _pre_discharge_status(
    point: PlannedReading,
    active: Sequence[Reading],
    closed_at: datetime | None,
    now: datetime,
) -> DueReading:
    reference = closed_at if closed_at is not None else now
    start = reference - timedelta(minutes=point.window_min)
    ids = _satisfying(active, point.measures, start, reference)
    if ids is not None:
        status = DueStatus.done
    elif closed_at is not None:
        status = DueStatus.missed
    else:
        status = DueStatus.due
    return DueReading(
        point_id=point.id,
        label=point.label,
        measures=point.measures,
        due_at=closed_at,
        window_start=start,
        window_end=reference,
        status=status,
        required_for_discharge=point.required_for_discharge,
        reading_ids=ids or (),
    )


def _timed_statuses(
    point: PlannedReading,
    active: Sequence[Reading],
    anchor_at: datetime,
    dose_ended_at: datetime | None,
    closed_at: datetime | None,
    horizon: datetime,
    now: datetime,
) -> list[DueReading]:
    window = timedelta(minutes=point.window_min)
    first = anchor_at + timedelta(minutes=point.offset_min)
    if point.repeat_every_min is None:
        due_times = [first] if closed_at is None or first <= closed_at else []
    else:
        step = timedelta(minutes=point.repeat_every_min)
        if point.repeat_until is Anchor.dose_end and dose_ended_at is not None:
            stop, open_ended = dose_ended_at, False
        elif closed_at is not None:
            stop, open_ended = closed_at, False
        else:
            stop, open_ended = horizon, True
        due_times = []
        due = first
        while len(due_times) < _MAX_REPEATS:
            if open_ended:
                # Everything up to now, and the next one as upcoming.
                if due > stop and (due_times and due_times[-1] > stop):
                    break
            elif due >= stop:
                break
            due_times.append(due)
            due += step
    statuses = []
    for due in due_times:
        start, end = due - window, due + window
        ids = _satisfying(active, point.measures, start, end)
        if ids is not None:
            status = DueStatus.done
        elif end < now:
            status = DueStatus.missed
        elif start <= now:
            status = DueStatus.due
        else:
            status = DueStatus.upcoming
        statuses.append(
            DueReading(
                point_id=point.id,
                label=point.label,
                measures=point.measures,
                due_at=due,
                window_start=start,
                window_end=end,
                status=status,
                required_for_discharge=point.required_for_discharge,
                reading_ids=ids or (),
            )
        )
    return statuses


def missed_readings(schedule: Iterable[DueReading]) -> list[DueReading]:
    """The planned readings whose window passed without a reading (for flags and worklists)."""
    return [d for d in schedule if d.status is DueStatus.missed]


# ---------------------------------------------------------------------------------------------
# Adverse events


class AdverseEventKind(StrEnum):
    nausea = "nausea"
    vomiting = "vomiting"
    headache = "headache"
    dizziness = "dizziness"
    hypertension = "hypertension"
    tachycardia = "tachycardia"
    respiratory_depression = "respiratory_depression"
    excessive_sedation = "excessive_sedation"
    severe_dissociation = "severe_dissociation"
    emergence_reaction = "emergence_reaction"
    anxiety = "anxiety"
    other = "other"


class AdverseEventSeverity(StrEnum):
    mild = "mild"
    moderate = "moderate"
    severe = "severe"
    life_threatening = "life_threatening"


class AdverseEventAction(StrEnum):
    none = "none"
    observation = "observation"
    dose_paused = "dose_paused"
    dose_reduced = "dose_reduced"
    dose_stopped = "dose_stopped"
    medication_given = "medication_given"
    oxygen_given = "oxygen_given"
    emergency_transfer = "emergency_transfer"
    other = "other"


class AdverseEventOutcome(StrEnum):
    ongoing = "ongoing"
    resolved = "resolved"
    resolved_with_sequelae = "resolved_with_sequelae"
    transferred = "transferred"


class AdverseEvent(_Value):
    id: str = Field(min_length=1, max_length=64)
    kind: AdverseEventKind
    # Free text, required when kind is other.
    description: str | None = Field(default=None, max_length=1000)
    severity: AdverseEventSeverity
    onset_at: datetime
    recorded_at: datetime
    recorded_by: str = Field(min_length=1, max_length=64)
    actions: tuple[AdverseEventAction, ...] = ()
    outcome: AdverseEventOutcome = AdverseEventOutcome.ongoing
    resolved_at: datetime | None = None

    @property
    def open(self) -> bool:
        return self.outcome is AdverseEventOutcome.ongoing

    @property
    def serious(self) -> bool:
        return self.severity in (
            AdverseEventSeverity.severe,
            AdverseEventSeverity.life_threatening,
        )
