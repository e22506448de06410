"""The audit log is a hash chain: tampering with any row is found and named.

The database refuses UPDATE and DELETE on the table (test_audit_append_only.py), so these
tests tamper as an intruder who may lift those triggers first: the table's owner, or anyone
holding the SQLite file."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from ketaflow.cli import app
from ketaflow.core.errors import Misconfigured
from ketaflow.core.settings import get_settings
from ketaflow.security import audit
from ketaflow.security.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    AuditKey,
    Checkpoint,
    event_hash,
    verify_chain,
)
from ketaflow.security.permissions import Actor, Role
from ketaflow.security.service import verify_audit_chain
from ketaflow.security.tables import AuditEvent

NURSE = Actor(7, "nurse.test", Role.nurse, "10.0.0.1")
KEY = "k" * 16 + "0123456789abcdef0123"
OTHER_KEY = "o" * 40


@contextmanager
def intruder(db) -> Iterator[Session]:
    """A transaction with the append-only triggers lifted."""
    with db.transaction() as session:
        if db.dialect == "postgresql":
            session.execute(text("ALTER TABLE audit_events DISABLE TRIGGER USER"))
        else:
            names = session.scalars(
                text(
                    "SELECT name FROM sqlite_master "
                    "WHERE type = 'trigger' AND tbl_name = 'audit_events'"
                )
            ).all()
            for name in names:
                session.execute(text(f'DROP TRIGGER "{name}"'))
        yield session


@pytest.fixture
def use_key(monkeypatch, fresh_db):
    """Run what follows as a process with this audit key (None: without one): `fresh_db`
    signs and verifies with it, as a store opened with settings holding it would, and the CLI
    reads it from KETAFLOW_AUDIT_KEY."""

    def set_key(secret: str | None) -> None:
        if secret is None:
            monkeypatch.delenv("KETAFLOW_AUDIT_KEY", raising=False)
        else:
            monkeypatch.setenv("KETAFLOW_AUDIT_KEY", secret)
        get_settings.cache_clear()
        fresh_db.audit_key = None if secret is None else SecretStr(secret)

    yield set_key
    monkeypatch.delenv("KETAFLOW_AUDIT_KEY", raising=False)
    get_settings.cache_clear()


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


def _cli_verify(db, monkeypatch, *args: str):
    monkeypatch.setenv("KETAFLOW_DATABASE_URL", db.url)
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(app, ["audit", "verify", *args])
    finally:
        get_settings.cache_clear()


def _printed_head(result) -> str:
    (line,) = [line for line in result.output.splitlines() if line.startswith("head: ")]
    return line.removeprefix("head: ")


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
    with intruder(fresh_db) as session:
        session.execute(update(AuditEvent).where(AuditEvent.id == 3).values({column: value}))
    report = verify_audit_chain(fresh_db)
    assert not report.intact
    assert report.first_break.event_id == 3
    result = _cli_verify(fresh_db, monkeypatch)
    assert result.exit_code == 1
    assert "event 3" in result.output


def test_deleting_a_row_is_found(fresh_db):
    _write_events(fresh_db)
    with intruder(fresh_db) as session:
        session.delete(session.get(AuditEvent, 2))
    report = verify_audit_chain(fresh_db)
    assert report.first_break.event_id == 3
    assert "missing" in report.first_break.problem


def test_rehashing_a_row_still_breaks_the_link_to_the_next(fresh_db):
    _write_events(fresh_db)
    with intruder(fresh_db) as session:
        event = session.get(AuditEvent, 2)
        fields = {name: getattr(event, name) for name in HASHED_FIELDS}
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


def _chain(events, key=None):
    prev, chained = GENESIS_HASH, []
    for i, fields in enumerate(events, start=1):
        row = {**fields, "id": i, "prev_hash": prev, "key_id": None if key is None else key.id}
        row["hash"] = event_hash(row, prev, key)
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


# --- the head: a truncated or wiped log ------------------------------------------------------


def _rehash_from(session: Session, first_id: int, key: AuditKey | None = None) -> None:
    """Recompute every hash from `first_id` on, as anyone holding the table can without a key."""
    rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    prev = GENESIS_HASH
    for row in rows:
        if row.id >= first_id:
            row.prev_hash = prev
            row.hash = event_hash({n: getattr(row, n) for n in HASHED_FIELDS}, prev, key)
            row.key_id = None if key is None else key.id
        prev = row.hash


def test_verify_prints_the_head_as_a_checkpoint(fresh_db, monkeypatch):
    _write_events(fresh_db, 4)
    result = _cli_verify(fresh_db, monkeypatch)
    assert result.exit_code == 0, result.output
    with fresh_db.transaction() as session:
        last = session.get(AuditEvent, 4)
        assert _printed_head(result) == f"4:{last.hash}"
    again = _cli_verify(fresh_db, monkeypatch, "--expect-head", _printed_head(result))
    assert again.exit_code == 0, again.output
    assert f"checkpoint 4:{last.hash} still holds" in again.output


def test_a_checkpoint_stays_valid_as_the_log_grows(fresh_db, monkeypatch):
    _write_events(fresh_db, 3)
    checkpoint = _printed_head(_cli_verify(fresh_db, monkeypatch))
    _write_events(fresh_db, 3)
    result = _cli_verify(fresh_db, monkeypatch, "--expect-head", checkpoint)
    assert result.exit_code == 0, result.output
    assert "6 events verified" in result.output and _printed_head(result).startswith("6:")


def test_a_truncated_tail_is_found_with_a_checkpoint(fresh_db, monkeypatch):
    _write_events(fresh_db, 6)
    checkpoint = _printed_head(_cli_verify(fresh_db, monkeypatch))
    with intruder(fresh_db) as session:
        session.execute(delete(AuditEvent).where(AuditEvent.id > 3))
    # what is left still links: only the checkpoint kept elsewhere can tell
    assert verify_audit_chain(fresh_db).intact
    result = _cli_verify(fresh_db, monkeypatch, "--expect-head", checkpoint)
    assert result.exit_code == 1
    assert "audit chain broken at event 6: missing" in result.output
    assert "the log ends at event 3" in result.output


def test_a_wiped_log_is_not_intact_with_a_checkpoint(fresh_db, monkeypatch):
    _write_events(fresh_db, 3)
    checkpoint = _printed_head(_cli_verify(fresh_db, monkeypatch))
    with intruder(fresh_db) as session:
        session.execute(delete(AuditEvent))
    result = _cli_verify(fresh_db, monkeypatch, "--expect-head", checkpoint)
    assert result.exit_code == 1
    assert "event 3: missing" in result.output and "the log is empty" in result.output
    assert "intact" not in result.output


def test_an_empty_new_log_is_not_called_intact(fresh_db, monkeypatch):
    result = _cli_verify(fresh_db, monkeypatch)
    assert result.exit_code == 0
    assert result.output.strip() == "audit log empty: 0 events, nothing to verify"


def test_a_wiped_log_with_staff_accounts_is_found_without_a_checkpoint(fresh_db, monkeypatch):
    from ketaflow.core.settings import Settings
    from ketaflow.security import service as security

    cheap = Settings(database_url=fresh_db.url, argon2_time_cost=1, argon2_memory_kib=256)
    security.create_user(
        fresh_db,
        cheap,
        security.SYSTEM_ACTOR,
        username="nurse.wiped",
        password="correct horse battery staple",
        role=Role.nurse,
    )
    with intruder(fresh_db) as session:
        session.execute(delete(AuditEvent))
    report = verify_audit_chain(fresh_db)
    assert not report.intact and "wiped" in report.first_break.problem
    result = _cli_verify(fresh_db, monkeypatch)
    assert result.exit_code == 1 and "1 staff account(s) exist" in result.output


def test_a_rewritten_chain_without_a_key_is_found_by_a_later_checkpoint(fresh_db, monkeypatch):
    _write_events(fresh_db, 5)
    checkpoint = _printed_head(_cli_verify(fresh_db, monkeypatch))
    with intruder(fresh_db) as session:
        session.execute(
            update(AuditEvent).where(AuditEvent.id == 2).values(actor_username="someone.else")
        )
        _rehash_from(session, 2)
    assert verify_audit_chain(fresh_db).intact  # the limit of an unkeyed chain
    result = _cli_verify(fresh_db, monkeypatch, "--expect-head", checkpoint)
    assert result.exit_code == 1
    assert "broken at event 5" in result.output and "not the checkpoint's" in result.output


@pytest.mark.parametrize("bad", ["5", "x:" + "0" * 64, "0:" + "0" * 64, "3:abc", "3:" + "g" * 64])
def test_a_malformed_checkpoint_is_one_line_and_exit_2(fresh_db, monkeypatch, bad):
    result = _cli_verify(fresh_db, monkeypatch, "--expect-head", bad)
    assert result.exit_code == 2
    assert (
        result.output.startswith("error: --expect-head: ") and len(result.output.splitlines()) == 1
    )


def test_a_checkpoint_reads_back_what_verify_prints():
    digest = "ab" * 32
    assert Checkpoint.parse(f"12:{digest.upper()}") == Checkpoint(12, digest)
    assert str(Checkpoint(12, digest)) == f"12:{digest}"


# --- the key: a recomputed chain -------------------------------------------------------------


def test_with_a_key_events_are_hmacs_and_verify(fresh_db, monkeypatch, use_key):
    use_key(KEY)
    _write_events(fresh_db, 3)
    key = AuditKey.from_secret(KEY)
    with fresh_db.transaction() as session:
        rows = session.scalars(select(AuditEvent).order_by(AuditEvent.id)).all()
    assert {row.key_id for row in rows} == {key.id}
    first = {name: getattr(rows[0], name) for name in HASHED_FIELDS}
    assert rows[0].hash == event_hash(first, GENESIS_HASH, key)
    assert rows[0].hash != event_hash(first, GENESIS_HASH)  # not the plain SHA-256
    result = _cli_verify(fresh_db, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "3 events verified (signed with the audit key from event 1 on)" in result.output
    assert KEY not in result.output


@pytest.mark.parametrize("forger_key", [None, AuditKey.from_secret(OTHER_KEY)])
def test_a_recomputed_chain_fails_with_the_key(fresh_db, monkeypatch, use_key, forger_key):
    use_key(KEY)
    _write_events(fresh_db, 5)
    real_id = AuditKey.from_secret(KEY).id
    with intruder(fresh_db) as session:
        session.execute(
            update(AuditEvent).where(AuditEvent.id == 3).values(actor_username="someone.else")
        )
        _rehash_from(session, 3, forger_key)
        # the forger keeps the real key's id on what they rewrote
        session.execute(update(AuditEvent).values(key_id=real_id))
    report = verify_audit_chain(fresh_db)
    assert report.first_break.event_id == 3
    assert report.first_break.problem == "contents do not match its hash"
    result = _cli_verify(fresh_db, monkeypatch)
    assert result.exit_code == 1 and "broken at event 3" in result.output


def test_a_chain_recomputed_as_unkeyed_fails_with_the_key(fresh_db, use_key):
    use_key(KEY)
    _write_events(fresh_db, 5)
    with intruder(fresh_db) as session:  # the reviewer's attack: edit, re-hash every later row
        session.execute(
            update(AuditEvent).where(AuditEvent.id == 3).values(actor_username="someone.else")
        )
        _rehash_from(session, 3)
    report = verify_audit_chain(fresh_db)
    assert report.first_break.event_id == 3
    assert "not signed with the audit key" in report.first_break.problem
    with intruder(fresh_db) as session:  # ... or re-hash them all, from the first
        _rehash_from(session, 1)
    report = verify_audit_chain(fresh_db)
    assert report.first_break.event_id == 5
    assert "no event is signed with the configured audit key" in report.first_break.problem


def test_an_unkeyed_event_appended_after_keyed_ones_fails(fresh_db, use_key):
    use_key(KEY)
    _write_events(fresh_db, 2)
    # an intruder appends a plain event straight into the table (the app itself refuses to
    # write without the key: test_a_process_without_the_logs_key_cannot_write_...)
    with fresh_db.transaction() as session:
        head = session.scalars(select(AuditEvent).order_by(AuditEvent.id.desc())).first()
        fields = {name: getattr(head, name) for name in HASHED_FIELDS} | {"id": head.id + 1}
        session.add(AuditEvent(**fields, prev_hash=head.hash, hash=event_hash(fields, head.hash)))
    report = verify_audit_chain(fresh_db)
    assert report.first_break.event_id == 3
    assert "not signed with the audit key, although events from 1 on are" in (
        report.first_break.problem
    )


def test_events_written_before_the_key_still_verify(fresh_db, monkeypatch, use_key):
    _write_events(fresh_db, 3)  # before the clinic set a key
    use_key(KEY)
    _write_events(fresh_db, 2)
    with fresh_db.transaction() as session:
        assert [e.key_id for e in session.scalars(select(AuditEvent).order_by(AuditEvent.id))] == [
            None,
            None,
            None,
            AuditKey.from_secret(KEY).id,
            AuditKey.from_secret(KEY).id,
        ]
    report = verify_audit_chain(fresh_db)
    assert report.intact and report.events_checked == 5 and report.keyed_from == 4
    result = _cli_verify(fresh_db, monkeypatch)
    assert result.exit_code == 0, result.output
    assert "5 events verified (signed with the audit key from event 4 on)" in result.output


def test_the_first_keyed_event_anchors_the_older_plain_ones(fresh_db, use_key):
    _write_events(fresh_db, 3)
    use_key(KEY)
    _write_events(fresh_db, 2)
    with intruder(fresh_db) as session:  # rewrite the plain part, which needs no key
        session.execute(
            update(AuditEvent).where(AuditEvent.id == 2).values(actor_username="someone.else")
        )
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.id <= 3).order_by(AuditEvent.id)
        ).all()
        prev = rows[0].hash
        for row in rows[1:]:
            row.prev_hash = prev
            row.hash = event_hash({n: getattr(row, n) for n in HASHED_FIELDS}, prev)
            prev = row.hash
    report = verify_audit_chain(fresh_db)
    assert report.first_break.event_id == 4  # its MAC covers the hash before it


def test_a_key_set_just_now_fails_until_the_next_event(fresh_db, use_key):
    _write_events(fresh_db, 2)
    use_key(KEY)
    report = verify_audit_chain(fresh_db)
    assert report.first_break.event_id == 2
    assert "none was written since the key was set" in report.first_break.problem
    _write_events(fresh_db, 1)
    assert verify_audit_chain(fresh_db).intact


def test_keyed_events_need_the_same_key_to_verify(fresh_db, monkeypatch, use_key):
    use_key(KEY)
    _write_events(fresh_db, 2)
    key_id = AuditKey.from_secret(KEY).id
    use_key(None)
    result = _cli_verify(fresh_db, monkeypatch)
    assert result.exit_code == 1
    assert f"event 1: signed with audit key {key_id}, but no key is configured" in result.output
    use_key(OTHER_KEY)
    report = verify_audit_chain(fresh_db)
    other_id = AuditKey.from_secret(OTHER_KEY).id
    assert report.first_break.problem == (
        f"signed with audit key {key_id}, not the configured key {other_id}"
    )


def test_a_short_key_is_refused_as_a_setting(fresh_db, monkeypatch, use_key):
    use_key("too short")
    result = _cli_verify(fresh_db, monkeypatch)
    assert result.exit_code == 2
    assert result.output.strip() == (
        "error: KETAFLOW_AUDIT_KEY: Value error, must be at least 32 characters "
        "(for example `openssl rand -hex 32`)"
    )


def test_the_key_never_shows_in_a_repr():
    key = AuditKey.from_secret(KEY)
    assert KEY not in repr(key) and key.id in repr(key)
    from ketaflow.core.settings import Settings

    assert KEY not in repr(Settings(audit_key=KEY)) and KEY not in str(Settings(audit_key=KEY))


@settings(max_examples=40, deadline=None)
@given(st.lists(EVENT, min_size=1, max_size=6), st.data())
def test_a_keyed_chain_cut_anywhere_fails_its_checkpoint(events, data):
    key = AuditKey.from_secret(KEY)
    chain = _chain(events, key)
    report = verify_chain(chain, key)
    assert report.intact and report.head == Checkpoint(len(chain), chain[-1]["hash"])
    cut = data.draw(st.integers(0, len(chain) - 1))
    shorter = verify_chain(chain[:cut], key, report.head)
    assert not shorter.intact and shorter.first_break.event_id == len(chain)


@pytest.mark.parametrize("other", [None, OTHER_KEY])
def test_a_process_without_the_logs_key_cannot_write_into_a_signed_log(
    fresh_db, monkeypatch, use_key, other
):
    use_key(KEY)
    _write_events(fresh_db, 2)
    use_key(other)  # a shell without KETAFLOW_AUDIT_KEY, or with another key
    with pytest.raises(Misconfigured, match="KETAFLOW_AUDIT_KEY"):
        _write_events(fresh_db, 1)
    use_key(KEY)
    _write_events(fresh_db, 1)
    report = verify_audit_chain(fresh_db)
    assert report.intact and report.events_checked == 3
