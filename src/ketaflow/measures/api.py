"""HTTP endpoints for measurement-based care: scales, assessments, safety alerts, outcomes,
trajectories and one-time questionnaire links (all under /api/v1)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ketaflow.core.pagination import Page, PageDep
from ketaflow.core.settings import Settings
from ketaflow.measures import service
from ketaflow.security.dependencies import ActorDep, ClockDep, DbDep, SettingsDep

router = APIRouter(tags=["measures"])


def get_catalogue(request: Request) -> service.InstrumentCatalogue:
    """The scales with the clinic's licensed wording, loaded once per app."""
    catalogue = getattr(request.app.state, "measures_catalogue", None)
    if catalogue is None:
        settings: Settings = request.app.state.settings
        catalogue = service.InstrumentCatalogue.from_settings(settings)
        request.app.state.measures_catalogue = catalogue
    return catalogue


CatalogueDep = Annotated[service.InstrumentCatalogue, Depends(get_catalogue)]
InstrumentCode = Annotated[
    str, StringConstraints(strip_whitespace=True, min_length=1, max_length=32)
]


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Timing(StrEnum):
    pre_dose = "pre_dose"
    post_dose = "post_dose"
    standalone = "standalone"


class AssessmentIn(_Input):
    instrument: InstrumentCode = Field(description="a scale code, e.g. PHQ-9 (see /instruments)")
    answers: dict[str, Any] = Field(
        max_length=64,
        description='item id -> answer value, e.g. {"1": 2, "2": 0, ...}; yes/no items '
        "take 1/0 or true/false",
    )
    taken_at: datetime | None = Field(default=None, description="defaults to now")
    dosing_session_id: str | None = Field(default=None, max_length=36)
    timing: Timing | None = Field(
        default=None,
        description="pre_dose or post_dose with a dosing session; standalone without one",
    )


class AlertOut(BaseModel):
    id: str
    patient_id: str
    assessment_id: str
    instrument: str | None
    flag_code: str
    severity: str
    message: str
    created_at: datetime
    status: str
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    acknowledgement_note: str | None


class AssessmentOut(BaseModel):
    id: str
    patient_id: str
    instrument: str
    instrument_version: str
    answers: dict[str, int]
    total: int | None
    band: str | None
    flags: list[dict[str, Any]]
    subscores: dict[str, int]
    imputed_items: list[str]
    missing_rule_applied: str | None
    taken_at: datetime
    source: str
    timing: str
    dosing_session_id: str | None
    questionnaire_link_id: str | None
    recorded_by: int | None
    created_at: datetime
    alerts: list[AlertOut]


class AcknowledgeIn(_Input):
    note: Annotated[str, StringConstraints(strip_whitespace=True, min_length=5, max_length=2000)]


class AlertStatus(StrEnum):
    open = "open"
    acknowledged = "acknowledged"
    all = "all"


class LinkCreate(_Input):
    instruments: list[InstrumentCode] = Field(
        default_factory=lambda: ["PHQ-9"], min_length=1, max_length=8
    )
    available_from: datetime | None = Field(
        default=None, description="when the link opens; defaults to now"
    )
    valid_hours: int | None = Field(
        default=None, ge=1, le=24 * 60, description="defaults to the clinic setting"
    )


class LinkSchedule(_Input):
    instruments: list[InstrumentCode] = Field(
        default_factory=lambda: ["PHQ-9"], min_length=1, max_length=8
    )
    horizon_days: int = Field(default=28, ge=1, le=366)


class LinkOut(BaseModel):
    id: str
    patient_id: str
    instruments: list[str]
    purpose: str
    dosing_session_id: str | None
    created_at: datetime
    available_from: datetime
    expires_at: datetime
    used_at: datetime | None
    status: str
    url: str | None = Field(
        default=None, description="with the token: returned once, when the link is created"
    )


class ScheduleOut(BaseModel):
    created: list[LinkOut]
    already_planned: int


# -- scales ------------------------------------------------------------------------------------


@router.get("/instruments")
def list_instruments(catalogue: CatalogueDep) -> list[dict[str, Any]]:
    """Every scale: items (full wording where licensed), options, bands, flag rules, LOINC."""
    return [
        {**instrument.describe(), "self_report": service.is_self_report(instrument)}
        for instrument in catalogue.all()
    ]


@router.get("/instruments/{code}")
def get_instrument(code: str, catalogue: CatalogueDep) -> dict[str, Any]:
    instrument = catalogue.get(code)
    return {**instrument.describe(), "self_report": service.is_self_report(instrument)}


# -- assessments -------------------------------------------------------------------------------


@router.post("/patients/{patient_id}/assessments", response_model=AssessmentOut, status_code=201)
def record_assessment(
    patient_id: str,
    body: AssessmentIn,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    catalogue: CatalogueDep,
) -> AssessmentOut:
    """Score and store one administration: total, band, flags. A flag that needs a clinician
    opens an alert. Bad answers are 422 naming `answers.<item>`; nothing is saved."""
    view = service.record_assessment(
        db,
        actor,
        patient_id,
        instrument=body.instrument,
        answers=body.answers,
        taken_at=body.taken_at,
        dosing_session_id=body.dosing_session_id,
        timing=body.timing.value if body.timing else None,
        catalogue=catalogue,
        clock=clock,
    )
    return AssessmentOut.model_validate(view.as_dict())


@router.get("/patients/{patient_id}/assessments", response_model=Page[AssessmentOut])
def list_assessments(
    patient_id: str,
    actor: ActorDep,
    db: DbDep,
    page: PageDep,
    instrument: Annotated[str | None, Query(max_length=32)] = None,
) -> Page[AssessmentOut]:
    views, total = service.list_assessments(
        db, actor, patient_id, instrument=instrument, limit=page.limit, offset=page.offset
    )
    return Page[AssessmentOut](
        items=[AssessmentOut.model_validate(v.as_dict()) for v in views],
        total=total,
        **page.model_dump(),
    )


@router.get("/assessments/{assessment_id}", response_model=AssessmentOut)
def get_assessment(assessment_id: str, actor: ActorDep, db: DbDep) -> AssessmentOut:
    return AssessmentOut.model_validate(service.get_assessment(db, actor, assessment_id).as_dict())


# -- safety alerts -----------------------------------------------------------------------------


@router.get("/alerts", response_model=Page[AlertOut])
def list_alerts(
    actor: ActorDep,
    db: DbDep,
    page: PageDep,
    status: AlertStatus = AlertStatus.open,
    patient_id: Annotated[str | None, Query(max_length=36)] = None,
) -> Page[AlertOut]:
    views, total = service.list_alerts(
        db, actor, status=status.value, patient_id=patient_id, limit=page.limit, offset=page.offset
    )
    return Page[AlertOut](
        items=[AlertOut.model_validate(v.as_dict()) for v in views],
        total=total,
        **page.model_dump(),
    )


@router.post("/alerts/{alert_id}/acknowledge", response_model=AlertOut)
def acknowledge_alert(
    alert_id: str, body: AcknowledgeIn, actor: ActorDep, db: DbDep, clock: ClockDep
) -> AlertOut:
    """A clinician acknowledges a safety alert with a note; acknowledging twice is 409."""
    return AlertOut.model_validate(
        service.acknowledge_alert(db, actor, alert_id, body.note, clock=clock).as_dict()
    )


# -- outcomes and trajectories -----------------------------------------------------------------


@router.get("/patients/{patient_id}/outcomes")
def patient_outcomes(
    patient_id: str,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    catalogue: CatalogueDep,
    instrument: Annotated[str, Query(max_length=32)] = "PHQ-9",
) -> dict[str, Any]:
    """Per course: the baseline used, the rule version, status, response, remission, relapse,
    time to response and durability; and the active course's booster / non-response
    suggestions."""
    return service.patient_outcomes(
        db, actor, patient_id, instrument, catalogue=catalogue, clock=clock
    )


@router.get("/patients/{patient_id}/trajectory")
def patient_trajectory(
    patient_id: str,
    actor: ActorDep,
    db: DbDep,
    clock: ClockDep,
    catalogue: CatalogueDep,
    instrument: Annotated[str, Query(max_length=32)] = "PHQ-9",
) -> dict[str, Any]:
    """Scores over time with dose markers, the current course's response/remission status, and
    the Plotly figure (JSON) the web page draws."""
    return service.patient_trajectory(
        db, actor, patient_id, instrument, catalogue=catalogue, clock=clock
    )


# -- questionnaire links -----------------------------------------------------------------------


@router.post("/patients/{patient_id}/questionnaire-links", response_model=LinkOut, status_code=201)
def create_link(
    patient_id: str,
    body: LinkCreate,
    actor: ActorDep,
    db: DbDep,
    settings: SettingsDep,
    clock: ClockDep,
    catalogue: CatalogueDep,
) -> LinkOut:
    """A one-time link for the patient to answer from home. The URL carries the token and is
    shown only in this answer: send it to the patient, it cannot be read back."""
    view = service.create_link(
        db,
        actor,
        settings,
        patient_id,
        instruments=body.instruments,
        available_from=body.available_from,
        valid_hours=body.valid_hours,
        catalogue=catalogue,
        clock=clock,
    )
    return LinkOut.model_validate(view.as_dict())


@router.get("/patients/{patient_id}/questionnaire-links", response_model=list[LinkOut])
def list_links(patient_id: str, actor: ActorDep, db: DbDep, clock: ClockDep) -> list[LinkOut]:
    return [
        LinkOut.model_validate(v.as_dict())
        for v in service.list_links(db, actor, patient_id, clock=clock)
    ]


@router.post("/patients/{patient_id}/questionnaire-links/schedule", response_model=ScheduleOut)
def schedule_links(
    patient_id: str,
    body: LinkSchedule,
    actor: ActorDep,
    db: DbDep,
    settings: SettingsDep,
    clock: ClockDep,
    catalogue: CatalogueDep,
) -> ScheduleOut:
    """Plan links 24 h and 7 days after each dose and weekly during maintenance. Idempotent:
    links already planned are counted, not made again; new ones carry their URL once."""
    created, existing = service.schedule_links(
        db,
        actor,
        settings,
        patient_id,
        instruments=body.instruments,
        horizon_days=body.horizon_days,
        catalogue=catalogue,
        clock=clock,
    )
    return ScheduleOut(
        created=[LinkOut.model_validate(v.as_dict()) for v in created], already_planned=existing
    )
