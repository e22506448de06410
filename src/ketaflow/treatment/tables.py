"""Courses, dosing sessions, chairs, consents and at-home doses.

A dosing session is stored as the pure `DosingSession` value (a JSON document, the source of
truth for the state machine) plus the columns worklists and schedules query on. `version`
makes two nurses acting on one session at once unable to both succeed.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import Boolean, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ketaflow.core.db import Base, JSONDocument, UTCDateTime, new_id


class Chair(Base):
    __tablename__ = "chairs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True)


class Consent(Base):
    """Informed consent for treatment, and (esketamine) the patient's REMS enrollment."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    signed_on: Mapped[date] = mapped_column(Date)
    reference: Mapped[str | None] = mapped_column(String(128), nullable=True)
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Course(Base):
    __tablename__ = "courses"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    drug: Mapped[str] = mapped_column(String(16))
    route: Mapped[str] = mapped_column(String(16))
    protocol_id: Mapped[str] = mapped_column(String(32))
    # The protocol as it was when the course began (clinic overrides applied), so a later
    # settings change never rewrites what a past course followed.
    protocol: Mapped[dict] = mapped_column(JSONDocument)
    screening_id: Mapped[str] = mapped_column(ForeignKey("screenings.id"))
    phase: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), index=True)
    # Oral/sublingual maintenance: the prescribed at-home dose (a Decimal, kept exact as text).
    home_dose_mg: Mapped[str | None] = mapped_column(String(16), nullable=True)
    started_on: Mapped[date] = mapped_column(Date)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    end_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    prescribed_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class DosingSessionRow(Base):
    __tablename__ = "dosing_sessions"

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    course_id: Mapped[str] = mapped_column(ForeignKey("courses.id"), index=True)
    # induction, booster or maintenance; sequence counts sessions within the course.
    kind: Mapped[str] = mapped_column(String(16))
    sequence: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), index=True)
    scheduled_start: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    expected_end: Mapped[datetime] = mapped_column(UTCDateTime)
    chair_id: Mapped[str | None] = mapped_column(ForeignKey("chairs.id"), nullable=True)
    dose_started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    document: Mapped[dict] = mapped_column(JSONDocument)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)

    __mapper_args__ = {"version_id_col": version}  # noqa: RUF012


class HomeDose(Base):
    """An oral or sublingual maintenance dose the patient took at home and reported."""

    __tablename__ = "home_doses"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    patient_id: Mapped[str] = mapped_column(ForeignKey("patients.id"), index=True)
    course_id: Mapped[str] = mapped_column(ForeignKey("courses.id"), index=True)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime)
    dose_mg: Mapped[str] = mapped_column(String(16))  # a Decimal, kept exact as text
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Rules the report broke (above the prescription, too soon), kept with the record.
    flags: Mapped[list] = mapped_column(JSONDocument)
    recorded_by: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime)
