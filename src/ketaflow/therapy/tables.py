"""Preparation and integration sessions."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ketaflow.core.db import Base, JSONDocument, UTCDateTime, new_id


class TherapySessionRow(Base):
    """A preparation or integration session, tied to the dosing session it serves."""

    __tablename__ = "therapy_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    course_id: Mapped[str | None] = mapped_column(ForeignKey("courses.id"), nullable=True)
    dosing_session_id: Mapped[str | None] = mapped_column(
        ForeignKey("dosing_sessions.id"), nullable=True
    )
    kind: Mapped[str] = mapped_column(String(16))
    modality: Mapped[str] = mapped_column(String(32))
    held_at: Mapped[datetime] = mapped_column(UTCDateTime)
    duration_min: Mapped[int] = mapped_column(Integer)
    note: Mapped[dict] = mapped_column(JSONDocument)
    therapist_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
