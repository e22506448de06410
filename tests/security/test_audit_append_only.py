"""The database itself refuses to change or remove an audit event, on both stores (migration
0004), and the revision upgrades and downgrades cleanly."""

from __future__ import annotations

import pytest
from alembic import command
from alembic.migration import MigrationContext
from sqlalchemy import delete, inspect, text, update
from sqlalchemy.exc import IntegrityError

from ketaflow.core.migrate import alembic_config, schema_is_current, upgrade_to_head
from ketaflow.security import audit
from ketaflow.security.permissions import Actor, Role
from ketaflow.security.service import verify_audit_chain
from ketaflow.security.tables import AuditEvent

NURSE = Actor(7, "nurse.test", Role.nurse, "10.0.0.1")


def _write_events(db, count=3):
    with db.transaction() as session:
        for i in range(count):
            audit.record(session, NURSE, "patient.read", "patient", f"p{i}", patient_id=f"p{i}")


def _refused(db, statement, params=None) -> str:
    with pytest.raises(IntegrityError) as caught, db.transaction() as session:
        session.execute(statement, params or {})
    return str(caught.value.orig)


def test_updating_an_event_is_refused(fresh_db):
    _write_events(fresh_db)
    message = _refused(
        fresh_db, update(AuditEvent).where(AuditEvent.id == 2).values(actor_username="x")
    )
    assert "audit_events is append-only: UPDATE refused" in message
    # the ORM's unit of work as well as a bulk UPDATE
    with pytest.raises(IntegrityError, match="append-only"), fresh_db.transaction() as session:
        session.get(AuditEvent, 3).allowed = False
    assert verify_audit_chain(fresh_db).intact


def test_deleting_events_is_refused(fresh_db):
    _write_events(fresh_db)
    message = _refused(fresh_db, delete(AuditEvent).where(AuditEvent.id > 1))
    assert "audit_events is append-only: DELETE refused" in message
    assert "DELETE refused" in _refused(fresh_db, text("DELETE FROM audit_events"))
    with pytest.raises(IntegrityError, match="append-only"), fresh_db.transaction() as session:
        session.delete(session.get(AuditEvent, 3))
    report = verify_audit_chain(fresh_db)
    assert report.intact and report.events_checked == 3


def test_the_store_specific_back_doors_are_shut(fresh_db):
    _write_events(fresh_db)
    if fresh_db.dialect == "postgresql":
        # TRUNCATE fires no row trigger: a statement trigger refuses it
        assert "TRUNCATE refused" in _refused(fresh_db, text("TRUNCATE audit_events"))
    else:
        # SQLite's REPLACE deletes the old row without firing delete triggers
        message = _refused(
            fresh_db,
            text(
                "INSERT OR REPLACE INTO audit_events (id, occurred_at, actor_username, "
                "actor_role, action, resource_type, allowed, prev_hash, hash) VALUES "
                "(2, '2020-01-01 00:00:00', 'x', 'nurse', 'forged', 'patient', 1, '', '')"
            ),
        )
        assert "INSERT over an existing event refused" in message
    report = verify_audit_chain(fresh_db)
    assert report.intact and report.events_checked == 3


def test_appending_still_works_after_a_refusal(fresh_db):
    _write_events(fresh_db, 2)
    _refused(fresh_db, text("DELETE FROM audit_events"))
    _write_events(fresh_db, 2)
    report = verify_audit_chain(fresh_db)
    assert report.intact and report.events_checked == 4


def _revision(db) -> str | None:
    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _downgrade(db, revision: str) -> None:
    config = alembic_config(db.url)
    with db.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
        connection.commit()


def test_the_revision_downgrades_and_upgrades_again(fresh_db):
    _write_events(fresh_db)
    _downgrade(fresh_db, "0003")
    assert _revision(fresh_db) == "0003"
    columns = {c["name"] for c in inspect(fresh_db.engine).get_columns("audit_events")}
    assert "key_id" not in columns
    with fresh_db.transaction() as session:  # no trigger left behind
        session.execute(text("UPDATE audit_events SET action = action WHERE id = 1"))
    upgrade_to_head(fresh_db)
    assert schema_is_current(fresh_db)
    assert "UPDATE refused" in _refused(fresh_db, text("UPDATE audit_events SET action = 'x'"))
    _write_events(fresh_db, 1)
    report = verify_audit_chain(fresh_db)
    assert report.intact and report.events_checked == 4
