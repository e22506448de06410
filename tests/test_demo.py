"""The demo clinic builds whenever it is run: an evening, a weekend, far from the clinic's
zone. Its present is a weekday around noon, never after the real time."""

from __future__ import annotations

from datetime import datetime

import pytest

from ketaflow.core.db import Database
from ketaflow.core.migrate import upgrade_to_head
from ketaflow.core.settings import Settings
from ketaflow.demo import build_demo_clinic, demo_now
from ketaflow.security.service import verify_audit_chain
from ketaflow.treatment.clinic import load_clinic_config

NY = "America/New_York"


def _hours(timezone: str = NY):
    return load_clinic_config(Settings(database_url="sqlite://", clinic_timezone=timezone))


@pytest.mark.parametrize(
    ("real", "expected"),
    [
        ("2032-06-08T12:30:00-04:00", "2032-06-08T12:30:00-04:00"),  # open 4.5 h: now
        ("2032-06-08T17:30:00-04:00", "2032-06-08T13:00:00-04:00"),  # capped at 5 h
        ("2032-06-08T10:00:00-04:00", "2032-06-07T13:00:00-04:00"),  # too early: yesterday
        ("2032-06-07T21:30:00-04:00", "2032-06-07T13:00:00-04:00"),  # evening
        ("2032-06-06T11:00:00-04:00", "2032-06-04T13:00:00-04:00"),  # Sunday: Friday
        ("2032-06-05T12:00:00-04:00", "2032-06-04T13:00:00-04:00"),  # Saturday: short day
    ],
)
def test_the_demo_present_is_a_weekday_around_noon_never_ahead(real, expected):
    at = demo_now(datetime.fromisoformat(real), _hours().opening_hours)
    assert at == datetime.fromisoformat(expected)
    assert at <= datetime.fromisoformat(real)


@pytest.mark.parametrize(
    ("real", "timezone"),
    [("2032-06-08T01:30:00+00:00", NY), ("2032-06-06T03:00:00+00:00", "Asia/Tokyo")],
    ids=["new-york-evening", "tokyo-sunday-noon"],
)
def test_the_demo_builds_at_any_time(tmp_path, real, timezone):
    url = f"sqlite:///{tmp_path / 'demo.db'}"
    settings = Settings(
        database_url=url, argon2_time_cost=1, argon2_memory_kib=256, clinic_timezone=timezone
    )
    db = Database(url, settings)
    upgrade_to_head(db)
    summary = build_demo_clinic(db, settings, clock=lambda: datetime.fromisoformat(real))
    assert summary.created and summary.patients == 40
    assert any(note.startswith("today discharged") for note in summary.notes), summary.notes
    report = verify_audit_chain(db)
    assert report.intact, report.first_break
    db.dispose()
