"""Validated inputs and outputs of the patient use cases, shared by the API and the web pages."""

from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ketaflow.patients.history import PatientHistory
from ketaflow.patients.screening import Drug, Route, ScreeningVitals

PersonName = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
MRN = Annotated[str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9-]{3,32}$")]
# Adult weights a clinic can plausibly record; outside this is a typing error (issue 2).
WeightKg = Annotated[float, Field(ge=20, le=400)]
HeightCm = Annotated[float, Field(ge=100, le=250)]


class Sex(StrEnum):
    female = "female"
    male = "male"
    other = "other"
    unknown = "unknown"


class _Input(BaseModel):
    model_config = ConfigDict(extra="forbid")


class PatientCreate(_Input):
    family_name: PersonName
    given_name: PersonName
    birth_date: date
    sex: Sex
    mrn: MRN | None = None
    weight_kg: WeightKg | None = None
    height_cm: HeightCm | None = None

    @field_validator("height_cm")
    @classmethod
    def _height_with_weight(cls, height: float | None, info: ValidationInfo) -> float | None:
        # a measurement is a weight, with a height if taken: a height alone would be dropped
        if height is not None and info.data.get("weight_kg", 0.0) is None:  # absent: invalid
            raise ValueError("a height is recorded with a weight: give weight_kg too")
        return height


class PatientUpdate(_Input):
    version: int = Field(ge=1, description="the version you read; a stale one gets 409")
    family_name: PersonName | None = None
    given_name: PersonName | None = None
    birth_date: date | None = None
    sex: Sex | None = None
    mrn: MRN | None = None

    @field_validator("family_name", "given_name", "birth_date", "sex", "mrn", mode="before")
    @classmethod
    def _no_removals(cls, value: object, info: ValidationInfo) -> object:
        # Omit a field to keep it; null would remove something every patient must have. A
        # field validator, so the error names the field.
        if value is None:
            raise ValueError(f"{info.field_name} cannot be removed: omit it to keep it")
        return value


class MeasurementIn(_Input):
    weight_kg: WeightKg
    height_cm: HeightCm | None = None
    measured_on: date | None = Field(default=None, description="defaults to today")


class HistoryIn(_Input):
    expected_revision: int = Field(
        ge=0, description="the revision you read (0 when there is none); a stale one gets 409"
    )
    history: PatientHistory


class ScreeningRequest(_Input):
    drug: Drug
    route: Route
    vitals: ScreeningVitals | None = Field(default=None, description="today's vitals, if taken")


class OverrideIn(_Input):
    reason: Annotated[str, StringConstraints(strip_whitespace=True, min_length=10, max_length=2000)]


class PatientOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    mrn: str
    family_name: str
    given_name: str
    birth_date: date
    sex: Sex
    version: int
    created_at: datetime
    updated_at: datetime
    weight_kg: float | None = None
    weight_measured_on: date | None = None
    height_cm: float | None = None


class MeasurementOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    weight_kg: float
    height_cm: float | None
    measured_on: date
    recorded_at: datetime


class HistoryOut(BaseModel):
    patient_id: str
    revision: int
    recorded_at: datetime | None
    history: PatientHistory


class ScreeningReasonOut(BaseModel):
    rule_id: str
    severity: str
    message: str
    source: str


class ScreeningOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str
    patient_id: str
    drug: str
    route: str
    screened_on: date
    expires_on: date
    decision: str
    reasons: list[ScreeningReasonOut]
    treatment_resistant: bool
    adequate_failed_trials: int
    urgent: bool
    rule_version: str
    history_revision: int | None
    inputs: dict
    created_at: datetime
    overridden: bool = False
    override_reason: str | None = None
    overridden_at: datetime | None = None
    # What a course may rely on: eligible, or ineligible with a prescriber's override.
    effective_decision: str = ""

    @model_validator(mode="after")
    def _derive(self) -> ScreeningOut:
        self.overridden = self.overridden_at is not None
        self.effective_decision = "overridden" if self.overridden else self.decision
        return self


class AccessLogEntry(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    occurred_at: datetime
    actor_username: str
    actor_role: str
    action: str
    resource_type: str
    allowed: bool
