"""Assessments, safety alerts and one-time questionnaire links.

An assessment keeps the raw item answers next to what was computed from them (total, band,
flags, subscores, any prorated items and the rule applied), so a score can be recomputed and
audited (reference §3: store raw answers, the baseline chosen and the rule version). A
questionnaire link stores only the SHA-256 of its token: the token itself is shown once.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ketaflow.core.db import Base, JSONDocument, UTCDateTime, new_id

# Where an assessment came from, and when it was taken relative to a dose.
SOURCES = ("staff", "self_report")
TIMINGS = ("pre_dose", "post_dose", "standalone")
LINK_PURPOSES = ("ad_hoc", "24h_after_dose", "7d_after_dose", "weekly_maintenance")


class QuestionnaireLink(Base):
    __tablename__ = "questionnaire_links"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    # SHA-256 (hex) of the random token; the token is never stored.
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    instrument_codes: Mapped[list] = mapped_column(JSONDocument)
    purpose: Mapped[str] = mapped_column(String(32))
    # A scheduled link names what it was planned for, e.g. "24h_after_dose:<session id>"; the
    # unique key is what makes planning the schedule twice create nothing new.
    schedule_key: Mapped[str | None] = mapped_column(String(128), unique=True, nullable=True)
    dosing_session_id: Mapped[str | None] = mapped_column(
        ForeignKey("dosing_sessions.id"), nullable=True
    )
    created_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    available_from: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Assessment(Base):
    __tablename__ = "assessments"
    __table_args__ = (
        Index(
            "ix_assessments_patient_instrument_taken", "patient_id", "instrument_code", "taken_at"
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    instrument_code: Mapped[str] = mapped_column(String(16))
    instrument_version: Mapped[str] = mapped_column(String(128))
    answers: Mapped[dict] = mapped_column(JSONDocument)
    total: Mapped[int | None] = mapped_column(Integer, nullable=True)
    band_code: Mapped[str | None] = mapped_column(String(32), nullable=True)
    flags: Mapped[list] = mapped_column(JSONDocument)
    subscores: Mapped[dict] = mapped_column(JSONDocument)
    imputed_items: Mapped[list] = mapped_column(JSONDocument)
    missing_rule_applied: Mapped[str | None] = mapped_column(Text, nullable=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    source: Mapped[str] = mapped_column(String(16))
    dosing_session_id: Mapped[str | None] = mapped_column(
        ForeignKey("dosing_sessions.id"), nullable=True, index=True
    )
    timing: Mapped[str] = mapped_column(String(16))
    questionnaire_link_id: Mapped[str | None] = mapped_column(
        ForeignKey("questionnaire_links.id"), nullable=True
    )
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class SafetyAlert(Base):
    """A flag that needs a clinician: open until acknowledged with a note."""

    __tablename__ = "safety_alerts"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    assessment_id: Mapped[str] = mapped_column(ForeignKey("assessments.id"), index=True)
    flag_code: Mapped[str] = mapped_column(String(64))
    severity: Mapped[str] = mapped_column(String(16))
    message: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    acknowledged_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True, index=True)
    acknowledgement_note: Mapped[str | None] = mapped_column(Text, nullable=True)
