"""The one place that reads the wall clock. Services take a Clock so tests can pin time."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


def as_utc(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything we store is UTC, so say so."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def clinic_today(now: datetime, timezone: str) -> date:
    """The calendar date at the clinic, which is what a screening or a dose is dated by."""
    return now.astimezone(ZoneInfo(timezone)).date()
