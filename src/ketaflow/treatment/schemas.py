"""Validated inputs and outputs of the treatment use cases, shared by the API and the web pages.

Every action on a dosing session names the `version` it read: two nurses acting on one session
at once cannot both succeed (the second gets 409)."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
)

from ketaflow.core.errors import InvalidInput
from ketaflow.pharmacology.doses import DOSE_MAX_MG, DOSE_MIN_MG
from ketaflow.treatment.monitoring import (
    AdverseEventAction,
    AdverseEventKind,
    AdverseEventOutcome,
    AdverseEventSeverity,
    ReadingValues,
)
from ketaflow.treatment.protocols import ProtocolId
from ketaflow.treatment.rules import ConcomitantClass, StopReason

Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=2000)]


class TreatmentDrug(StrEnum):
    """The same codes as screening and pharmacology."""

    ketamine = "ketamine"
    esketamine = "esketamine"


class TreatmentRoute(StrEnum):
    iv = "iv"
    im = "im"
    sc = "sc"
    intranasal = "intranasal"
    oral = "oral"
    sublingual = "sublingual"


class ConsentKind(StrEnum):
    treatment = "treatment"
    # SPRAVATO REMS: the patient is enrolled before the first session (reference §1, H).
    rems_enrollment = "rems_enrollment"


# The PK engine's sanity limits: under 0.1 mg, or past the hundredth of a mg, a dose is a typing
# slip (ug for mg, a stray digit), not a prescription.
MIN_DOSE_MG = Decimal(str(DOSE_MIN_MG))
MAX_DOSE_MG = Decimal(str(DOSE_MAX_MG))


def _plain(value: Decimal) -> Decimal:
    """1E+3 as 1000: doses are stored and shown as written on a chart."""
    return Decimal(format(value, "f"))


DoseMg = Annotated[
    Decimal, Field(ge=MIN_DOSE_MG, le=MAX_DOSE_MG, decimal_places=2), AfterValidator(_plain)
]
MgPerKg = Annotated[Decimal, Field(gt=0, le=5, decimal_places=3), AfterValidator(_plain)]


# Every date and time a treatment request carries lies in this range: outside it the value is a
# typing slip (year 9999, year 1), and the schedule's date arithmetic would overflow (a 500).
EARLIEST_PLAUSIBLE = datetime(1900, 1, 1, tzinfo=UTC)
LATEST_PLAUSIBLE = datetime(2200, 1, 1, tzinfo=UTC)
# A booking (course start, reschedule, booster, free-slot search) at most this far ahead.
BOOKING_HORIZON = timedelta(days=2 * 366)


def _plausible_time(value: datetime) -> datetime:
    # Aware values compare without converting (no overflow at 0001-01-01+14:00); a naive
    # value (only the free-slot query accepts one) is read as UTC, as the endpoint does.
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    if not EARLIEST_PLAUSIBLE <= aware < LATEST_PLAUSIBLE:
        raise ValueError("must be between 1900-01-01 and 2200-01-01")
    return value


def _plausible_date(value: date) -> date:
    if not EARLIEST_PLAUSIBLE.date() <= value < LATEST_PLAUSIBLE.date():
        raise ValueError("must be between 1900-01-01 and 2200-01-01")
    return value


# A time with its UTC offset (a naive one is ambiguous: 422 naming the field), in range.
TreatmentTime = Annotated[AwareDatetime, AfterValidator(_plausible_time)]
# The free-slot query keeps accepting a naive time (read as UTC), still in range.
QueryTime = Annotated[datetime, AfterValidator(_plausible_time)]
TreatmentDate = Annotated[date, AfterValidator(_plausible_date)]


def check_booking_horizon(value: datetime | date, now: datetime, field_name: str) -> None:
    """A booking more than BOOKING_HORIZON ahead is a typing slip: 422 naming the field."""
    limit = now + BOOKING_HORIZON
    late = value > limit if isinstance(value, datetime) else value > limit.date()
    if late:
        raise InvalidInput(
            f"{field_name} is more than {BOOKING_HORIZON.days} days ahead", field_name=field_name
        )


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Versioned(_Input):
    version: int = Field(ge=1, description="the version you read; a stale one gets 409")


class ChairIn(_Input):
    name: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]


class ChairOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    name: str
    active: bool


class ConsentIn(_Input):
    kind: ConsentKind
    signed_on: TreatmentDate
    reference: str | None = Field(default=None, max_length=128)


class CourseCreate(_Input):
    drug: TreatmentDrug
    route: TreatmentRoute
    protocol_id: ProtocolId | None = Field(
        default=None, description="defaults to the usual protocol for the drug and route"
    )
    start_on: TreatmentDate
    preferred_time: time | None = None
    home_dose_mg: DoseMg | None = Field(
        default=None,
        description="oral/sublingual maintenance: the dose the patient may take at home",
    )


class BoosterIn(_Input):
    earliest: TreatmentTime | None = None
    preferred_time: time | None = None


class MaintenanceIn(_Input):
    count: int = Field(ge=1, le=12)
    interval_days: int | None = Field(default=None, ge=1, le=365)
    preferred_time: time | None = None


class EndCourseIn(_Input):
    reason: Reason


class RescheduleIn(_Versioned):
    scheduled_start: TreatmentTime
    chair_id: str | None = None


class CancelIn(_Versioned):
    reason: Reason


class VersionIn(_Versioned):
    pass


class PreDoseIn(_Versioned):
    escort_confirmed: bool
    no_driving_confirmed: bool
    fasting_asked: bool = False
    last_food_at: TreatmentTime | None = None
    last_liquid_at: TreatmentTime | None = None
    nasal_product_at: TreatmentTime | None = None
    concomitant_medications: list[ConcomitantClass] | None = Field(
        default=None,
        max_length=20,
        description="asked this visit; empty = none taken; omitted = not asked",
    )


class CheckOverrideIn(_Versioned):
    rule_id: str = Field(min_length=1, max_length=64)
    reason: Reason


class StartDoseIn(_Versioned):
    mg_per_kg: MgPerKg | None = None
    dose_mg: DoseMg | None = None
    concentration_mg_per_ml: Decimal | None = Field(default=None, gt=0, le=500)
    lot_number: str | None = Field(default=None, min_length=1, max_length=64)


class DeviceIn(_Versioned):
    lot_number: str | None = Field(default=None, min_length=1, max_length=64)


class EndDoseIn(_Versioned):
    reason: str | None = Field(default=None, max_length=2000)


class PauseIn(_Versioned):
    reason: Reason


class TitrateIn(_Versioned):
    new_dose_mg: DoseMg
    reason: Reason


class ReadingIn(ReadingValues):
    model_config = ConfigDict(extra="forbid", frozen=False)

    version: int = Field(ge=1, description="the version you read; a stale one gets 409")
    taken_at: TreatmentTime | None = Field(default=None, description="defaults to now")


class VoidIn(_Versioned):
    reason: Reason


class AcknowledgeIn(_Versioned):
    note: str | None = Field(default=None, max_length=2000)


class AdverseEventIn(_Versioned):
    kind: AdverseEventKind
    description: str | None = Field(default=None, max_length=1000)
    severity: AdverseEventSeverity
    onset_at: TreatmentTime | None = None
    actions: list[AdverseEventAction] = Field(default_factory=list, max_length=20)


class AdverseEventUpdateIn(_Versioned):
    outcome: AdverseEventOutcome
    resolved_at: TreatmentTime | None = None
    add_actions: list[AdverseEventAction] = Field(default_factory=list, max_length=20)


class DischargeIn(_Versioned):
    escort_present: bool
    clinician_judges_stable: bool | None = None
    ready_without_minimum_min: int | None = Field(default=None, ge=0, le=24 * 60)


class StopIn(_Versioned):
    reason: StopReason
    note: Reason


class HomeDoseIn(_Input):
    taken_at: TreatmentTime
    dose_mg: DoseMg
    note: str | None = Field(default=None, max_length=1000)


class HomeDoseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    course_id: str
    taken_at: datetime
    dose_mg: str
    note: str | None
    flags: list[dict[str, str]]
    recorded_at: datetime


class ScheduledSessionSummary(BaseModel):
    """A dosing session as booking, check-in and cancelling need it (front desk, clinic
    managers): who, when, which chair, its state and version; nothing clinical."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")

    id: str
    patient_id: str
    course_id: str
    kind: str
    sequence: int
    state: str
    scheduled_start: datetime
    expected_end: datetime
    chair_id: str | None
    version: int


class SessionSummary(ScheduledSessionSummary):
    """The booking, with when the dose started (clinical readers)."""

    dose_started_at: datetime | None


class SessionScheduleOut(BaseModel):
    """The session for a role without clinical read (SESSION_CLINICAL_READ): no document,
    readings, alarms or discharge criteria."""

    model_config = ConfigDict(extra="forbid")

    session: ScheduledSessionSummary


class CourseOut(BaseModel):
    id: str
    patient_id: str
    drug: str
    route: str
    protocol_id: str
    protocol_name: str
    phase: str
    status: str
    started_on: date
    screening_id: str
    home_dose_mg: str | None
    ended_at: datetime | None
    end_reason: str | None
    version: int
    sessions: list[SessionSummary]


class CourseScheduleOut(BaseModel):
    """The course for a role without clinical read (front desk, clinic managers): what booking
    needs (the protocol sets the chair time), its sessions as bookings; no home dose, no end
    reason (free text), no screening, no dose times."""

    model_config = ConfigDict(extra="forbid")

    id: str
    patient_id: str
    drug: str
    route: str
    protocol_id: str
    protocol_name: str
    phase: str
    status: str
    started_on: date
    ended_at: datetime | None
    version: int
    sessions: list[ScheduledSessionSummary]


CourseOrBooking = CourseOut | CourseScheduleOut


class SessionOut(BaseModel):
    session: SessionSummary
    protocol_id: str
    document: dict[str, Any]
    # Planned readings whose window is open now, and those whose window passed unmet.
    due_readings: list[dict[str, Any]]
    missed_readings: list[dict[str, Any]]
    open_alarms: list[dict[str, Any]]
    # Alarms raised by the action just taken.
    new_alarms: list[dict[str, Any]] = Field(default_factory=list)
    # In monitoring: what would still block discharge now.
    discharge_unmet: list[dict[str, str]]
    deferred_reasons: list[dict[str, str]]
    observation_ends_at: datetime | None


class DoseCalculationOut(BaseModel):
    protocol_id: str
    kind: str
    dose_mg: Decimal
    detail: dict[str, Any]


class SlotOut(BaseModel):
    chair_id: str
    start: datetime
    end: datetime
