"""Inputs and outputs of the therapy use cases."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from ketaflow.therapy.policy import Modality, TherapyKind, TherapyNote


class TherapySessionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: TherapyKind
    modality: Modality
    modality_other: str | None = Field(default=None, max_length=200)
    held_at: datetime
    duration_min: int = Field(ge=1, le=600)
    dosing_session_id: str | None = Field(
        default=None,
        description="the dose it serves; by default the next dose (preparation) or the last "
        "dose given (integration)",
    )
    note: TherapyNote = TherapyNote()


class TherapySessionOut(BaseModel):
    id: str
    patient_id: str
    kind: str
    modality: str
    modality_other: str | None
    held_at: datetime
    duration_min: int
    dosing_session_id: str | None
    note: TherapyNote
    recorded_at: datetime
