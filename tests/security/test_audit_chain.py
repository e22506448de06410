"""The audit log is a hash chain: tampering with any row is found and named."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, update
from typer.testing import CliRunner

from ketaflow.cli import app
from ketaflow.security import audit
from ketaflow.security.chain import GENESIS_HASH, event_hash, verify_chain
from ketaflow.security.permissions import Actor, Role
from ketaflow.security.service import verify_audit_chain
from ketaflow.security.tables import AuditEvent

NURSE = Actor(7, "nurse.test", Role.nurse, "10.0.0.1")


def _write_events(db, count=5):
    with db.transaction() as session:
        for i in range(count):
            audit.record(
                session,
                NURSE,
                "patient.read",
                "patient",
                f"p{i}",
                patient_id=f"p{i}",
                detail={"i": i},
            )


def _cli_verify(db, monkeypatch):
    monkeypatch.setenv("KETAFLOW_DATABASE_URL", db.url)
    from ketaflow.core.settings import get_settings

    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["audit", "verify"])
    finally:
        get_settings.cache_clear()


def test_intact_chain_verifies(fresh_db, monkeypatch):
    _write_events(fresh_db)
    report = verify_audit_chain(fresh_db)
    assert report.intact and report.events_checked == 5
    result = _cli_verify(fresh_db, monkeypatch)
    assert result.exit_code == 0
    assert "5 events verified" in result.output


def test_a_clock_with_an_offset_still_gives_a_chain_that_verifies(fresh_db):
    # the clinic's clock may run in local time (tests and the demo set one): stored in UTC,
    # the event must hash the same instant the same way
    eastern = timezone(timedelta(hours=-5))
    with fresh_db.transaction() as session:
        audit.record(session, NURSE, "patient.read", "patient", "p1", now=datetime.now(eastern))
        audit.record(session, NURSE, "patient.read", "patient", "p2", now=datetime.now(UTC))
    report = verify_audit_chain(fresh_db)
    assert report.intact, report.first_break
    assert report.events_checked == 2


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("action", "patient.update"),
        ("actor_username", "someone.else"),
        ("allowed", False),
        ("detail", {"i": 99}),
        ("occurred_at", datetime(2020, 1, 1, tzinfo=UTC)),
    ],
)
def test_tampering_a_row_is_named(fresh_db, monkeypatch, column, value):
    _write_events(fresh_db)
    with fresh_db.transaction() as session:
        session.execute(update(AuditEvent).where(AuditEvent.id == 3).values({column: value}))
    report = verify_audit_chain(fresh_db)
    assert not report.intact
    assert report.first_break.event_id == 3
    result = _cli_verify(fresh_db, monkeypatch)
    assert result.exit_code == 1
    assert "event 3" in result.output


def test_deleting_a_row_is_found(fresh_db):
    _write_events(fresh_db)
    with fresh_db.transaction() as session:
        session.delete(session.get(AuditEvent, 2))
    report = verify_audit_chain(fresh_db)
    assert report.first_break.event_id == 3
    assert "missing" in report.first_break.problem


def test_rehashing_a_row_still_breaks_the_link_to_the_next(fresh_db):
    _write_events(fresh_db)
    with fresh_db.transaction() as session:
        event = session.get(AuditEvent, 2)
        fields = {
            name: getattr(event, name)
            for name in (
                "id",
                "occurred_at",
                "actor_id",
                "actor_username",
                "actor_role",
                "action",
                "resource_type",
                "resource_id",
                "patient_id",
                "allowed",
                "client_address",
                "detail",
            )
        }
        fields["action"] = "forged"
        event.action = "forged"
        event.hash = event_hash(fields, event.prev_hash)
    assert verify_audit_chain(fresh_db).first_break.event_id == 3


def test_events_link_in_order(fresh_db):
    _write_events(fresh_db, 3)
    with fresh_db.transaction() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert [r.id for r in rows] == [1, 2, 3]
    assert rows[0].prev_hash == GENESIS_HASH
    assert rows[1].prev_hash == rows[0].hash and rows[2].prev_hash == rows[1].hash


EVENT = st.fixed_dictionaries(
    {
        "occurred_at": st.datetimes(timezones=st.just(UTC)),
        "actor_id": st.none() | st.integers(1, 10**6),
        "actor_username": st.text(min_size=1, max_size=20),
        "actor_role": st.sampled_from([r.value for r in Role]),
        "action": st.text(min_size=1, max_size=30),
        "resource_type": st.text(min_size=1, max_size=20),
        "resource_id": st.none() | st.text(max_size=36),
        "patient_id": st.none() | st.uuids().map(str),
        "allowed": st.booleans(),
        "client_address": st.none() | st.ip_addresses().map(str),
        "detail": st.none() | st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    }
)


def _chain(events):
    prev, chained = GENESIS_HASH, []
    for i, fields in enumerate(events, start=1):
        row = {**fields, "id": i, "prev_hash": prev}
        row["hash"] = event_hash(row, prev)
        prev = row["hash"]
        chained.append(row)
    return chained


@settings(max_examples=60, deadline=None)
@given(st.lists(EVENT, min_size=1, max_size=8), st.data())
def test_any_single_field_change_breaks_the_chain_at_that_event(events, data):
    chain = _chain(events)
    assert verify_chain(chain).intact
    index = data.draw(st.integers(0, len(chain) - 1))
    field = data.draw(st.sampled_from(["action", "actor_username", "allowed", "patient_id"]))
    original = chain[index][field]
    tampered = (not original) if field == "allowed" else f"{original}x"
    chain[index] = {**chain[index], field: tampered}
    report = verify_chain(chain)
    assert report.first_break is not None
    assert report.first_break.event_id == index + 1
