"""The per-client login throttle against password spraying (one client, one password, many
accounts), on both stores: a client at the limit is refused with 429 before any password is
checked; clients count apart; the window slides; a success resets nothing; the table keeps
digests, not addresses, and prunes itself; parallel attempts never get past the limit; each
refusal is audited without address or password; migration 0005 upgrades an existing store.

Over real HTTP the client address is what uvicorn reports: the servers here trust the
loopback's X-Forwarded-For (--proxy-headers --forwarded-allow-ips=127.0.0.1), as a server behind
a reverse proxy must, so each test names its clients in that header."""

from __future__ import annotations

import contextlib
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from alembic import command
from argon2 import PasswordHasher
from pydantic import ValidationError
from sqlalchemy import inspect, select, text, update

from ketaflow.app import create_app
from ketaflow.core.db import Database
from ketaflow.core.errors import Unauthorized
from ketaflow.core.migrate import alembic_config, schema_is_current, upgrade_to_head
from ketaflow.core.settings import Settings
from ketaflow.security import service as security
from ketaflow.security.permissions import Role
from ketaflow.security.tables import AuditEvent, User
from support.clock import SettableClock
from support.server import LiveServer

PASSWORD = "correct horse battery staple"
WRONG = "Spring2031!-spray"
PROBLEM = "application/problem+json"
LIMIT = 4
WINDOW_MINUTES = 15
WINDOW_S = WINDOW_MINUTES * 60
T0 = datetime(2031, 5, 6, 9, 0, tzinfo=UTC)
CLIENT = "203.0.113.7"
OTHER = "198.51.100.20"


def _settings(db: Database, **overrides) -> Settings:
    values = {
        "database_url": db.url,
        "argon2_time_cost": 1,
        "argon2_memory_kib": 256,
        "max_failed_logins": 5,
        "login_throttle_failures": LIMIT,
        "login_throttle_window_minutes": WINDOW_MINUTES,
    }
    return Settings(**{**values, **overrides})


def _new_user(db: Database, settings: Settings) -> str:
    username = "u-" + uuid.uuid4().hex[:10]
    security.create_user(
        db, settings, security.SYSTEM_ACTOR, username=username, password=PASSWORD, role=Role.nurse
    )
    return username


class VerifyCalls:
    """Counts every argon2 verification (PasswordHasher.verify), in this process's server
    threads too; runs `during` (if set) while each is in progress."""

    def __init__(self, monkeypatch, during=None) -> None:
        self.count = 0
        self.during = during
        self._lock = threading.Lock()
        original = PasswordHasher.verify
        calls = self

        def verify(hasher, password_hash, password):
            with calls._lock:
                calls.count += 1
            if calls.during is not None:
                calls.during()
            return original(hasher, password_hash, password)

        monkeypatch.setattr(PasswordHasher, "verify", verify)


@dataclass
class Served:
    """One store served over HTTP with a small throttle and a clock the test moves."""

    db: Database
    settings: Settings
    server: LiveServer
    clock: SettableClock

    def login(self, username: str, password: str, client: str = CLIENT) -> httpx.Response:
        return httpx.post(
            self.server.base_url + "/api/v1/auth/token",
            data={"username": username, "password": password},
            headers={"X-Forwarded-For": client},
            timeout=30,
        )

    def fail(self, count: int, client: str = CLIENT) -> None:
        """`count` failed logins from `client` (unknown accounts)."""
        for _ in range(count):
            response = self.login("nobody-" + uuid.uuid4().hex[:8], WRONG, client)
            assert response.status_code == 401, response.text

    def user(self) -> str:
        return _new_user(self.db, self.settings)

    def rows(self) -> list[dict]:
        with self.db.engine.connect() as connection:
            result = connection.execute(text("SELECT * FROM login_failures ORDER BY id"))
            return [dict(row._mapping) for row in result]

    def throttle_events(self) -> list[AuditEvent]:
        with self.db.transaction() as session:
            events = session.scalars(
                select(AuditEvent).where(AuditEvent.action == "auth.login").order_by(AuditEvent.id)
            )
            return [e for e in events if (e.detail or {}).get("why") == "client throttled"]


@contextlib.contextmanager
def _served(db: Database, settings: Settings, **uvicorn_options) -> Iterator[Served]:
    clock = SettableClock()
    clock.set(T0)
    options = {"proxy_headers": True, "forwarded_allow_ips": "127.0.0.1", **uvicorn_options}
    server = LiveServer(create_app(settings, db, clock=clock), **options).start()
    try:
        yield Served(db, settings, server, clock)
    finally:
        server.stop()
    assert server.log.errors == []
    assert security.verify_audit_chain(db).intact


@pytest.fixture
def served(fresh_db) -> Iterator[Served]:
    with _served(fresh_db, _settings(fresh_db)) as built:
        yield built


def _assert_throttled(response: httpx.Response, retry_after_s: int) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.headers["retry-after"] == str(retry_after_s)
    body = response.json()
    assert body["type"].endswith("/login-throttled")
    assert body["status"] == 429
    assert body["title"] == "Too many failed logins from this client"
    assert "too many failed logins from this client address" in body["detail"]
    assert body["retry_after_s"] == retry_after_s
    assert "access_token" not in body


# -- the limit -------------------------------------------------------------------------------


def test_a_client_at_the_limit_is_refused_with_429_problem_json_and_retry_after(served):
    wrong, inactive, locked = served.user(), served.user(), served.user()
    with served.db.transaction() as session:
        session.execute(update(User).where(User.username == inactive).values(active=False))
        session.execute(
            update(User)
            .where(User.username == locked)
            .values(locked_until=datetime.now(UTC) + timedelta(hours=1))
        )
    # every kind of failure counts against the client
    failures = [
        ("nobody-" + uuid.uuid4().hex[:8], PASSWORD),  # unknown account
        (wrong, WRONG),  # wrong password
        (inactive, PASSWORD),  # deactivated account, right password
        (locked, PASSWORD),  # locked account, right password
    ]
    assert len(failures) == LIMIT
    for username, password in failures:
        response = served.login(username, password)
        assert response.status_code == 401, (username, response.text)
        assert response.headers.get("retry-after") is None

    # at the limit: refused, even the right password of a valid account
    valid = served.user()
    _assert_throttled(served.login(valid, PASSWORD), WINDOW_S)
    served.clock.advance(minutes=5)
    _assert_throttled(served.login(valid, PASSWORD), WINDOW_S - 300)


def test_once_throttled_no_password_is_checked_and_no_account_is_counted(served, monkeypatch):
    target = served.user()
    calls = VerifyCalls(monkeypatch)
    served.fail(LIMIT - 1)
    assert served.login(target, WRONG).status_code == 401
    assert calls.count == LIMIT  # one verification per attempt until the limit
    for password in (WRONG, PASSWORD, WRONG, PASSWORD, "x" * 200):
        _assert_throttled(served.login(target, password), WINDOW_S)
    for _ in range(5):
        _assert_throttled(served.login("nobody-" + uuid.uuid4().hex[:8], WRONG), WINDOW_S)
    assert calls.count == LIMIT  # not one argon2 run more
    with served.db.transaction() as session:
        stored = session.scalar(select(User).where(User.username == target))
    # refused before the account was looked at: its own failure count saw one attempt only
    assert (stored.failed_login_count, stored.locked_until) == (1, None)
    assert len(served.rows()) == LIMIT  # refusals add no rows


def test_clients_are_counted_apart(served):
    valid = served.user()
    served.fail(LIMIT, CLIENT)
    _assert_throttled(served.login(valid, PASSWORD, CLIENT), WINDOW_S)
    # another address is not affected, nor affects the first
    assert served.login(valid, WRONG, OTHER).status_code == 401
    assert served.login(valid, PASSWORD, OTHER).status_code == 200
    _assert_throttled(served.login(valid, PASSWORD, CLIENT), WINDOW_S)

    # an IPv6 client counts by its /64: hopping addresses inside it does not help
    for i in range(LIMIT):
        served.fail(1, f"2001:db8:a:b::{i + 1:x}")
    _assert_throttled(served.login(valid, PASSWORD, "2001:db8:a:b:ffff::1"), WINDOW_S)
    assert served.login(valid, PASSWORD, "2001:db8:a:c::1").status_code == 200
    # an IPv4-mapped IPv6 address is that IPv4 client
    _assert_throttled(served.login(valid, PASSWORD, "::ffff:" + CLIENT), WINDOW_S)


def test_the_window_slides_and_frees_one_failure_at_a_time(served):
    valid = served.user()
    for minute in range(LIMIT):  # failures at T0, T0+1 min, ...
        served.clock.set(T0 + timedelta(minutes=minute))
        served.fail(1)
    served.clock.set(T0 + timedelta(minutes=LIMIT - 1, seconds=1))
    _assert_throttled(served.login(valid, PASSWORD), WINDOW_S - (LIMIT - 1) * 60 - 1)
    served.clock.set(T0 + timedelta(minutes=WINDOW_MINUTES) - timedelta(seconds=1))
    _assert_throttled(served.login(valid, PASSWORD), 1)
    # the failure at T0 has left the window: one attempt may be made, and it fails again
    served.clock.set(T0 + timedelta(minutes=WINDOW_MINUTES))
    assert served.login(valid, WRONG).status_code == 401
    # ...and the next slot frees when the failure at T0 + 1 min leaves
    _assert_throttled(served.login(valid, PASSWORD), 60)
    served.clock.advance(seconds=60)
    assert served.login(valid, PASSWORD).status_code == 200
    # once the whole window has passed, the client has its full allowance again
    served.clock.advance(minutes=WINDOW_MINUTES)
    served.fail(LIMIT)
    _assert_throttled(served.login(valid, PASSWORD), WINDOW_S)


def test_a_successful_login_does_not_reset_the_clients_count(served):
    valid = served.user()
    served.fail(LIMIT - 1)
    # successes neither count as failures nor wipe the ones before
    for _ in range(3):
        assert served.login(valid, PASSWORD).status_code == 200
    assert served.login(valid, WRONG).status_code == 401
    _assert_throttled(served.login(valid, PASSWORD), WINDOW_S)
    assert len(served.rows()) == LIMIT


def test_the_app_itself_does_not_trust_x_forwarded_for(fresh_db):
    # Without --proxy-headers uvicorn reports the connecting address (the loopback here):
    # a new X-Forwarded-For on every attempt does not make a new client.
    with _served(fresh_db, _settings(fresh_db), proxy_headers=False) as served:
        valid = served.user()
        for i in range(LIMIT):
            served.fail(1, f"192.0.2.{i + 1}")
        _assert_throttled(served.login(valid, PASSWORD, "192.0.2.200"), WINDOW_S)


# -- what is stored and audited ----------------------------------------------------------------


def test_the_table_stores_digests_never_addresses(served):
    served.fail(2, CLIENT)
    served.fail(1, "2001:db8:a:b::1")
    rows = served.rows()
    assert len(rows) == 3
    assert set(rows[0]) == {"id", "client_digest", "failed_at"}
    for row in rows:
        cells = " ".join(str(value) for value in row.values())
        assert "203.0.113" not in cells and "2001:db8" not in cells and "2001:0db8" not in cells
        assert len(row["client_digest"]) == 64
        int(row["client_digest"], 16)
    assert rows[0]["client_digest"] == rows[1]["client_digest"] != rows[2]["client_digest"]


def test_each_refusal_is_audited_without_address_username_or_password(served):
    served.fail(LIMIT, CLIENT)
    served.fail(LIMIT, OTHER)
    typed = "target-" + uuid.uuid4().hex[:8]
    for client in (CLIENT, CLIENT, CLIENT, OTHER):
        assert served.login(typed, WRONG, client).status_code == 429
    events = served.throttle_events()
    assert len(events) == 4
    for event in events:
        assert event.allowed is False
        assert event.actor_username == "(throttled client)"
        assert event.actor_id is None and event.client_address is None
        assert event.resource_type == "user" and event.resource_id is None
        assert event.detail["retry_after_s"] == WINDOW_S
        assert event.detail["failures"] == LIMIT
        everything = " ".join(str(getattr(event, c.key)) for c in AuditEvent.__table__.columns)
        for secret in (WRONG, typed, CLIENT, OTHER, "203.0.113", "198.51.100"):
            assert secret not in everything
    # the client is named by its digest, as in login_failures, so refusals can be grouped
    named = [event.detail["client"] for event in events]
    assert named[0] == named[1] == named[2] != named[3]
    digests = {row["client_digest"][:16] for row in served.rows()}
    assert set(named) == digests


def test_old_rows_are_pruned_so_the_table_does_not_grow(served):
    from ketaflow.security.throttle import PRUNE_BATCH, client_digest

    # many clients' failures long ago, and a few of this window
    served.clock.set(T0 - timedelta(hours=1))
    for i in range(PRUNE_BATCH + 20):
        served.fail(1, f"192.0.2.{i % 250 + 1}")
    assert len(served.rows()) == PRUNE_BATCH + 20  # within their window: all kept
    served.clock.set(T0)
    # each attempt removes at most PRUNE_BATCH expired rows (the oldest first) and adds its own
    served.fail(1, OTHER)
    assert len(served.rows()) == 20 + 1
    served.fail(1, CLIENT)
    rows = served.rows()
    assert len(rows) == 2
    assert {row["client_digest"] for row in rows} == {
        client_digest(OTHER, None),
        client_digest(CLIENT, None),
    }
    # after another window, this window's rows go the same way
    served.clock.advance(minutes=WINDOW_MINUTES)
    assert served.login("nobody-here", WRONG, "192.0.2.77").status_code == 401
    assert len(served.rows()) == 1


# -- under concurrency -------------------------------------------------------------------------


def test_parallel_attempts_from_one_client_check_no_more_than_the_limit(fresh_db, monkeypatch):
    # A spray: one client, one password, a different account each time, all at once.
    settings = _settings(fresh_db, login_throttle_failures=5)
    accounts = [_new_user(fresh_db, settings) for _ in range(24)]
    # Each verification takes a moment, as a real argon2 run does, so the attempts overlap.
    calls = VerifyCalls(monkeypatch, during=lambda: time.sleep(0.05))
    barrier = threading.Barrier(len(accounts))
    outcomes: list[int] = []
    now = datetime.now(UTC)

    def attempt(username: str) -> None:
        barrier.wait()
        try:
            security.login(fresh_db, settings, username, WRONG, CLIENT, throttle_clock=lambda: now)
            outcomes.append(200)
        except Unauthorized:
            outcomes.append(401)
        except Exception as exc:
            outcomes.append(getattr(exc, "status", 500))

    threads = [threading.Thread(target=attempt, args=(name,)) for name in accounts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    limit = settings.login_throttle_failures
    assert sorted(outcomes) == [401] * limit + [429] * (len(accounts) - limit)
    assert calls.count == limit  # not one password checked past the limit
    with fresh_db.engine.connect() as connection:
        stored = connection.execute(text("SELECT count(*) FROM login_failures")).scalar()
    assert stored == limit
    with fresh_db.transaction() as session:
        refused = session.scalars(select(AuditEvent).where(AuditEvent.action == "auth.login"))
        whys = [(e.detail or {}).get("why") for e in refused]
    assert whys.count("client throttled") == len(accounts) - limit
    assert whys.count("wrong password") == limit
    assert security.verify_audit_chain(fresh_db).intact


# -- the migration ---------------------------------------------------------------------------


def _revision(db: Database) -> str | None:
    from alembic.migration import MigrationContext

    with db.engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def _downgrade(db: Database, revision: str) -> None:
    config = alembic_config(db.url)
    with db.engine.connect() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)
        connection.commit()


def test_the_migration_adds_the_table_to_an_existing_database(fresh_db):
    # a store at 0004 with an account and its audit events, as a clinic has it today
    _downgrade(fresh_db, "0004")
    assert _revision(fresh_db) == "0004"
    assert "login_failures" not in inspect(fresh_db.engine).get_table_names()
    settings = _settings(fresh_db)
    username = _new_user(fresh_db, settings)
    assert not schema_is_current(fresh_db)

    upgrade_to_head(fresh_db)
    assert _revision(fresh_db) == "0005" and schema_is_current(fresh_db)
    assert "login_failures" in inspect(fresh_db.engine).get_table_names()
    # the account and its history came through, and the throttle works on the upgraded store
    with _served(fresh_db, settings) as served:
        assert served.login(username, PASSWORD).status_code == 200
        served.fail(LIMIT)
        _assert_throttled(served.login(username, PASSWORD), WINDOW_S)
    # and the revision goes back and forth cleanly
    _downgrade(fresh_db, "0004")
    assert "login_failures" not in inspect(fresh_db.engine).get_table_names()
    upgrade_to_head(fresh_db)
    assert security.login(fresh_db, settings, username, PASSWORD, CLIENT).actor.username


# -- settings and the pure parts -------------------------------------------------------------


def test_the_settings_come_from_the_environment_and_are_validated(monkeypatch):
    defaults = Settings(_env_file=None)
    assert (defaults.login_throttle_failures, defaults.login_throttle_window_minutes) == (20, 15)
    monkeypatch.setenv("KETAFLOW_LOGIN_THROTTLE_FAILURES", "50")
    monkeypatch.setenv("KETAFLOW_LOGIN_THROTTLE_WINDOW_MINUTES", "60")
    configured = Settings(_env_file=None)
    assert (configured.login_throttle_failures, configured.login_throttle_window_minutes) == (
        50,
        60,
    )
    for name, bad in [
        ("KETAFLOW_LOGIN_THROTTLE_FAILURES", "0"),
        ("KETAFLOW_LOGIN_THROTTLE_FAILURES", "-3"),
        ("KETAFLOW_LOGIN_THROTTLE_FAILURES", "100001"),
        ("KETAFLOW_LOGIN_THROTTLE_FAILURES", "many"),
        ("KETAFLOW_LOGIN_THROTTLE_WINDOW_MINUTES", "0"),
        ("KETAFLOW_LOGIN_THROTTLE_WINDOW_MINUTES", "1441"),
    ]:
        with monkeypatch.context() as env:
            env.setenv(name, bad)
            with pytest.raises(ValidationError):
                Settings(_env_file=None)


def test_client_keys_digests_and_retry_after():
    from pydantic import SecretStr

    from ketaflow.security.throttle import (
        UNKNOWN_CLIENT,
        client_digest,
        client_key,
        seconds_until,
    )

    assert client_key("203.0.113.7") == "203.0.113.7"
    assert (
        client_key("2001:db8:a:b:1:2:3:4") == client_key("2001:db8:a:b::9") == ("2001:db8:a:b::/64")
    )
    assert client_key("2001:db8:a:c::1") != client_key("2001:db8:a:b::1")
    assert client_key("::ffff:203.0.113.7") == "203.0.113.7"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key(None) == client_key("") == UNKNOWN_CLIENT
    assert client_key("testclient") == "testclient"

    plain = client_digest(CLIENT, None)
    keyed = client_digest(CLIENT, SecretStr("k" * 40))
    assert len(plain) == len(keyed) == 64 and plain != keyed
    assert CLIENT not in plain + keyed
    assert (
        keyed
        == client_digest(CLIENT, SecretStr("k" * 40))
        != client_digest(CLIENT, SecretStr("j" * 40))
    )
    assert client_digest("2001:db8:a:b::1", None) == client_digest("2001:db8:a:b::2", None)

    now = T0
    assert seconds_until(now + timedelta(seconds=90), now) == 90
    assert seconds_until(now + timedelta(seconds=89, microseconds=1), now) == 90
    assert seconds_until(now, now) == 1
    assert seconds_until(now - timedelta(seconds=5), now) == 1
