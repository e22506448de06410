"""Logging in under attack: the lock-out holds against parallel guesses, every refusal looks the
same, every attempt costs exactly one argon2 verification, and hashing never holds the store's
write lock."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher
from sqlalchemy import func, select, update

from ketaflow.core.db import Database
from ketaflow.core.errors import Unauthorized
from ketaflow.core.migrate import upgrade_to_head
from ketaflow.core.settings import Settings
from ketaflow.security import passwords
from ketaflow.security import service as security
from ketaflow.security.permissions import Role
from ketaflow.security.tables import AuditEvent, User

PASSWORD = "correct horse battery staple"
GENERIC = "incorrect username or password"


def _settings(db: Database, **overrides) -> Settings:
    # These tests are about one account: every attempt comes from one client address, so the
    # per-client throttle (test_login_throttle.py) is set out of their way.
    cheap = {
        "argon2_time_cost": 1,
        "argon2_memory_kib": 256,
        "max_failed_logins": 5,
        "login_throttle_failures": 100_000,
    }
    return Settings(database_url=db.url, **{**cheap, **overrides})


def _new_user(db: Database, settings: Settings) -> str:
    username = "u-" + uuid.uuid4().hex[:10]
    security.create_user(
        db, settings, security.SYSTEM_ACTOR, username=username, password=PASSWORD, role=Role.nurse
    )
    return username


def _stored(db: Database, username: str) -> User:
    with db.transaction() as session:
        return session.scalar(select(User).where(User.username == username))


def _refusal(db: Database, settings: Settings, username: str, password: str, **kw) -> str:
    with pytest.raises(Unauthorized) as refused:
        security.login(db, settings, username, password, "10.0.0.9", **kw)
    return refused.value.detail


def _login_events(db: Database, username: str, why: str | None = None) -> list[AuditEvent]:
    query = select(AuditEvent).where(
        AuditEvent.action == "auth.login", AuditEvent.actor_username == username
    )
    with db.transaction() as session:
        events = list(session.scalars(query.order_by(AuditEvent.id)))
    return [e for e in events if why is None or (e.detail or {}).get("why") == why]


class VerifyCalls:
    """Wraps argon2's PasswordHasher.verify: counts every call and which hash it was given, and
    runs `during` (if set) while the call is in progress."""

    def __init__(self, monkeypatch, during=None) -> None:
        self.hashes: list[str] = []
        self.during = during
        self._lock = threading.Lock()
        original = PasswordHasher.verify
        calls = self

        def verify(hasher, password_hash, password):
            with calls._lock:
                calls.hashes.append(password_hash)
            if calls.during is not None:
                calls.during()
            return original(hasher, password_hash, password)

        monkeypatch.setattr(PasswordHasher, "verify", verify)

    def reset(self) -> None:
        self.hashes.clear()


# -- 1. the lock-out holds against parallel guesses (it did not on PostgreSQL) ---------------


def test_parallel_wrong_passwords_check_at_most_the_allowed_number(fresh_db, monkeypatch):
    settings = _settings(fresh_db)
    username = _new_user(fresh_db, settings)
    real_hash = _stored(fresh_db, username).password_hash
    # Each verification takes a moment, as a real argon2 run does, so the guesses overlap.
    calls = VerifyCalls(monkeypatch, during=lambda: time.sleep(0.05))
    guesses = 20
    barrier = threading.Barrier(guesses)
    outcomes: list[str] = []

    def guess(i: int) -> None:
        barrier.wait()
        try:
            security.login(fresh_db, settings, username, f"guess-number-{i:04d}", "10.0.0.9")
            outcomes.append("token")
        except Unauthorized as exc:
            outcomes.append(exc.detail)

    threads = [threading.Thread(target=guess, args=(i,)) for i in range(guesses)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes == [GENERIC] * guesses
    # exactly one verification per attempt, but only the allowed number against the account
    assert len(calls.hashes) == guesses
    assert calls.hashes.count(real_hash) == settings.max_failed_logins
    assert len(_login_events(fresh_db, username, "wrong password")) == settings.max_failed_logins
    assert len(_login_events(fresh_db, username)) == guesses
    # the account is locked now: even the right password is refused
    assert _stored(fresh_db, username).locked_until is not None
    calls.during = None
    assert _refusal(fresh_db, settings, username, PASSWORD) == GENERIC
    assert security.verify_audit_chain(fresh_db).intact


def test_a_reservation_left_by_a_dead_request_locks_for_a_while_not_for_ever(fresh_db):
    # A request that died between counting its attempt and finishing leaves the count at the
    # limit: the next attempt is refused unchecked and locks, and the lock expires as usual.
    settings = _settings(fresh_db)
    username = _new_user(fresh_db, settings)
    with fresh_db.transaction() as session:
        session.execute(
            update(User)
            .where(User.username == username)
            .values(failed_login_count=settings.max_failed_logins)
        )
    now = datetime.now(UTC)
    assert _refusal(fresh_db, settings, username, PASSWORD, clock=lambda: now) == GENERIC
    stored = _stored(fresh_db, username)
    assert stored.locked_until == now + timedelta(minutes=settings.lockout_minutes)
    assert stored.failed_login_count == 0
    later = stored.locked_until + timedelta(seconds=1)
    assert security.login(fresh_db, settings, username, PASSWORD, None, clock=lambda: later)


def test_consecutive_failures_lock_for_the_lockout_time_and_a_success_resets_the_count(fresh_db):
    settings = _settings(fresh_db, max_failed_logins=3, lockout_minutes=15)
    username = _new_user(fresh_db, settings)
    for _ in range(2):
        _refusal(fresh_db, settings, username, "wrong password!")
    security.login(fresh_db, settings, username, PASSWORD, None)
    assert _stored(fresh_db, username).failed_login_count == 0
    for _ in range(2):
        _refusal(fresh_db, settings, username, "wrong password!")
    assert _stored(fresh_db, username).locked_until is None

    now = datetime.now(UTC)
    _refusal(fresh_db, settings, username, "wrong password!", clock=lambda: now)
    locked_until = _stored(fresh_db, username).locked_until
    assert locked_until == now + timedelta(minutes=15)
    assert _login_events(fresh_db, username, "wrong password")[-1].detail["locked"] is True
    almost = locked_until - timedelta(seconds=1)
    assert _refusal(fresh_db, settings, username, PASSWORD, clock=lambda: almost) == GENERIC
    assert _login_events(fresh_db, username)[-1].detail == {"why": "locked"}
    after = locked_until + timedelta(seconds=1)
    issued = security.login(fresh_db, settings, username, PASSWORD, None, clock=lambda: after)
    assert issued.actor.username == username
    assert _login_events(fresh_db, username)[-1].allowed is True
    stored = _stored(fresh_db, username)
    assert (stored.failed_login_count, stored.locked_until) == (0, None)


# -- 2. every refusal looks the same --------------------------------------------------------


def test_unknown_wrong_locked_and_inactive_get_the_same_answer(stack, api):
    settings, db = stack.settings, stack.db
    locked = _new_user(db, settings)
    inactive = _new_user(db, settings)
    wrong = _new_user(db, settings)
    with db.transaction() as session:
        session.execute(update(User).where(User.username == inactive).values(active=False))
    client = api()

    def attempt(username: str, password: str):
        return client.post("/api/v1/auth/token", data={"username": username, "password": password})

    for _ in range(settings.max_failed_logins):
        assert attempt(locked, "wrong-wrong-wrong").status_code == 401
    answers = {
        "unknown": attempt("nobody-" + uuid.uuid4().hex[:8], PASSWORD),
        "wrong password": attempt(wrong, "wrong-wrong-wrong"),
        "locked, right password": attempt(locked, PASSWORD),
        "locked, wrong password": attempt(locked, "wrong-wrong-wrong"),
        "inactive, right password": attempt(inactive, PASSWORD),
    }
    for case, response in answers.items():
        assert response.status_code == 401, case
        assert response.headers["www-authenticate"] == "Bearer", case
        assert response.json() == answers["unknown"].json(), case
    assert answers["unknown"].json()["detail"] == GENERIC
    # staff still see why in the audit log
    assert [e.detail["why"] for e in _login_events(db, locked)][-2:] == ["locked", "locked"]


# -- 3. exactly one argon2 verification per attempt ------------------------------------------


def test_every_attempt_runs_exactly_one_verification(fresh_db, monkeypatch):
    settings = _settings(fresh_db, max_failed_logins=2)
    username = _new_user(fresh_db, settings)
    inactive = _new_user(fresh_db, settings)
    with fresh_db.transaction() as session:
        session.execute(update(User).where(User.username == inactive).values(active=False))
    calls = VerifyCalls(monkeypatch)
    hashes = 0
    original_hash = PasswordHasher.hash

    def counting_hash(hasher, password, **kw):
        nonlocal hashes
        hashes += 1
        return original_hash(hasher, password, **kw)

    monkeypatch.setattr(PasswordHasher, "hash", counting_hash)

    def verifications(username: str, password: str) -> int:
        calls.reset()
        with contextlib.suppress(Unauthorized):
            security.login(fresh_db, settings, username, password, None)
        return len(calls.hashes)

    assert verifications("nobody-here", PASSWORD) == 1
    assert verifications("nobody-here", PASSWORD) == 1
    assert verifications(inactive, PASSWORD) == 1
    assert verifications(username, "wrong-wrong-wrong") == 1
    assert verifications(username, PASSWORD) == 1
    for _ in range(settings.max_failed_logins):
        assert verifications(username, "wrong-wrong-wrong") == 1
    assert _stored(fresh_db, username).locked_until is not None
    assert verifications(username, PASSWORD) == 1
    assert verifications(username, "wrong-wrong-wrong") == 1
    # and no attempt computed a new hash: the dummy one is made once and kept
    assert hashes <= 1


def test_the_dummy_hash_is_computed_once_lazily_with_the_configured_cost(monkeypatch):
    settings = Settings(argon2_time_cost=1, argon2_memory_kib=512)
    passwords.forget_dummy_hashes()
    made = 0
    original_hash = PasswordHasher.hash

    def counting_hash(hasher, password, **kw):
        nonlocal made
        made += 1
        return original_hash(hasher, password, **kw)

    monkeypatch.setattr(PasswordHasher, "hash", counting_hash)
    assert made == 0
    first = passwords.dummy_hash(settings)
    assert [passwords.dummy_hash(settings) for _ in range(5)] == [first] * 5
    assert made == 1
    # an attempt against it costs what an attempt against a real account costs
    assert not passwords.needs_rehash(settings, first)
    assert not passwords.verify_password(settings, first, PASSWORD)
    other = Settings(argon2_time_cost=2, argon2_memory_kib=512)
    assert not passwords.needs_rehash(other, passwords.dummy_hash(other))
    assert made == 2


# -- 4. hashing never holds SQLite's write lock ----------------------------------------------


def test_a_login_does_not_hold_the_sqlite_write_lock_while_hashing(tmp_path, monkeypatch):
    path = tmp_path / "kf.db"
    db = Database(f"sqlite:///{path}")
    upgrade_to_head(db)
    settings = _settings(db, max_failed_logins=2)
    username = _new_user(db, settings)
    could_write: list[bool] = []

    def another_writer() -> None:
        # what a patient registration does meanwhile: BEGIN IMMEDIATE, without waiting
        other = sqlite3.connect(path, timeout=0, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
            could_write.append(True)
        except sqlite3.OperationalError:
            could_write.append(False)
        finally:
            other.close()

    VerifyCalls(monkeypatch, during=another_writer)
    try:
        for name, password in [
            ("nobody-here", PASSWORD),
            (username, "wrong-wrong-wrong"),
            (username, PASSWORD),
            (username, "wrong-wrong-wrong"),
            (username, "wrong-wrong-wrong"),  # locks
            (username, PASSWORD),  # locked
        ]:
            with contextlib.suppress(Unauthorized):
                security.login(db, settings, name, password, None)
        assert could_write == [True] * 6
        assert _stored(db, username).locked_until is not None
        with db.transaction() as session:
            assert session.scalar(select(func.count()).select_from(AuditEvent)) >= 6
    finally:
        db.dispose()
