"""Validated inputs and outputs of the treatment use cases, shared by the API and the web pages.

Every action on a dosing session names the `version` it read: two nurses acting on one session
at once cannot both succeed (the second gets 409)."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

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
    signed_on: date
    reference: str | None = Field(default=None, max_length=128)


class CourseCreate(_Input):
    drug: TreatmentDrug
    route: TreatmentRoute
    protocol_id: ProtocolId | None = Field(
        default=None, description="defaults to the usual protocol for the drug and route"
    )
    start_on: date
    preferred_time: time | None = None
    home_dose_mg: DoseMg | None = Field(
        default=None,
        description="oral/sublingual maintenance: the dose the patient may take at home",
    )


class BoosterIn(_Input):
    earliest: datetime | None = None
    preferred_time: time | None = None


class MaintenanceIn(_Input):
    count: int = Field(ge=1, le=12)
    interval_days: int | None = Field(default=None, ge=1, le=365)
    preferred_time: time | None = None


class EndCourseIn(_Input):
    reason: Reason


class RescheduleIn(_Versioned):
    scheduled_start: datetime
    chair_id: str | None = None


class CancelIn(_Versioned):
    reason: Reason


class VersionIn(_Versioned):
    pass


class PreDoseIn(_Versioned):
    escort_confirmed: bool
    no_driving_confirmed: bool
    fasting_asked: bool = False
    last_food_at: datetime | None = None
    last_liquid_at: datetime | None = None
    nasal_product_at: datetime | None = None
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
    taken_at: datetime | None = Field(default=None, description="defaults to now")


class VoidIn(_Versioned):
    reason: Reason


class AcknowledgeIn(_Versioned):
    note: str | None = Field(default=None, max_length=2000)


class AdverseEventIn(_Versioned):
    kind: AdverseEventKind
    description: str | None = Field(default=None, max_length=1000)
    severity: AdverseEventSeverity
    onset_at: datetime | None = None
    actions: list[AdverseEventAction] = Field(default_factory=list, max_length=20)


class AdverseEventUpdateIn(_Versioned):
    outcome: AdverseEventOutcome
    resolved_at: datetime | None = None
    add_actions: list[AdverseEventAction] = Field(default_factory=list, max_length=20)


class DischargeIn(_Versioned):
    escort_present: bool
    clinician_judges_stable: bool | None = None
    ready_without_minimum_min: int | None = Field(default=None, ge=0, le=24 * 60)


class StopIn(_Versioned):
    reason: StopReason
    note: Reason


class HomeDoseIn(_Input):
    taken_at: datetime
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


class SessionSummary(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    patient_id: str
    course_id: str
    kind: str
    sequence: int
    state: str
    scheduled_start: datetime
    expected_end: datetime
    chair_id: str | None
    dose_started_at: datetime | None
    version: int


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
