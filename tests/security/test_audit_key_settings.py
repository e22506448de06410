"""The audit log is signed with the key of the Settings an app (or a CLI command) was built
with, not with whatever KETAFLOW_AUDIT_KEY the process environment holds: writing events,
verifying the chain and refusing to write into a log signed with another key all follow the
app's settings. Over real HTTP, on both stores."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from ketaflow.app import create_app
from ketaflow.cli import app as cli
from ketaflow.core.db import Database
from ketaflow.core.settings import Settings, get_settings
from ketaflow.security import service as security
from ketaflow.security.chain import GENESIS_HASH, HASHED_FIELDS, AuditKey, event_hash
from ketaflow.security.permissions import Role
from ketaflow.security.tables import AuditEvent
from support.server import LiveServer

K1 = "k1" + "a" * 38
K2 = "k2" + "b" * 38
PASSWORD = "correct horse battery staple"


@pytest.fixture
def environment_key(monkeypatch):
    """Set (or, with None, unset) KETAFLOW_AUDIT_KEY in the process environment."""

    def set_key(secret: str | None) -> None:
        if secret is None:
            monkeypatch.delenv("KETAFLOW_AUDIT_KEY", raising=False)
        else:
            monkeypatch.setenv("KETAFLOW_AUDIT_KEY", secret)
        get_settings.cache_clear()

    yield set_key
    monkeypatch.delenv("KETAFLOW_AUDIT_KEY", raising=False)
    get_settings.cache_clear()


def settings_with(url: str, audit_key: str | None) -> Settings:
    return Settings(
        database_url=url, argon2_time_cost=1, argon2_memory_kib=256, audit_key=audit_key
    )


@contextmanager
def store(url: str, audit_key: str | None) -> Iterator[Database]:
    db = Database(url, settings_with(url, audit_key))
    try:
        yield db
    finally:
        db.dispose()


@contextmanager
def served(app) -> Iterator[LiveServer]:
    server = LiveServer(app).start()
    try:
        yield server
    finally:
        server.stop()


def add_nurse(url: str, audit_key: str | None) -> str:
    with store(url, audit_key) as db:
        user = security.create_user(
            db,
            settings_with(url, audit_key),
            security.SYSTEM_ACTOR,
            username="nurse.key",
            password=PASSWORD,
            role=Role.nurse,
        )
    return user.username


def log_in(server: LiveServer, username: str) -> httpx.Response:
    return httpx.post(
        server.base_url + "/api/v1/auth/token",
        data={"username": username, "password": PASSWORD},
        timeout=30,
    )


def events(url: str) -> list[AuditEvent]:
    with store(url, None) as db, db.transaction() as session:
        return list(session.scalars(select(AuditEvent).order_by(AuditEvent.id)))


def verify(url: str, audit_key: str | None):
    with store(url, audit_key) as db:
        return security.verify_audit_chain(db)


@pytest.mark.parametrize("in_environment", [None, K2], ids=["env-unset", "env-other-key"])
def test_an_app_signs_with_its_settings_key_whatever_the_environment(
    fresh_db, environment_key, in_environment
):
    environment_key(in_environment)
    url = fresh_db.url
    username = add_nurse(url, K1)  # the first event: creating the account, signed with k1
    with served(create_app(settings_with(url, K1))) as server:
        response = log_in(server, username)
    assert response.status_code == 200, response.text

    k1 = AuditKey.from_secret(K1)
    rows = events(url)
    assert [row.action for row in rows] == ["user.create", "auth.login"]
    assert {row.key_id for row in rows} == {k1.id}
    prev = GENESIS_HASH
    for row in rows:
        assert row.hash == event_hash({n: getattr(row, n) for n in HASHED_FIELDS}, prev, k1)
        prev = row.hash

    assert verify(url, K1).intact
    wrong = verify(url, K2)
    assert not wrong.intact and wrong.first_break.event_id == 1
    assert wrong.first_break.problem == (
        f"signed with audit key {k1.id}, not the configured key {AuditKey.from_secret(K2).id}"
    )
    assert not verify(url, None).intact


def test_ketaflow_audit_verify_uses_the_key_of_its_own_settings(
    fresh_db, environment_key, monkeypatch
):
    url = fresh_db.url
    add_nurse(url, K1)
    monkeypatch.setenv("KETAFLOW_DATABASE_URL", url)
    for secret, exit_code in ((K1, 0), (K2, 1), (None, 1)):
        environment_key(secret)
        result = CliRunner().invoke(cli, ["audit", "verify"])
        assert result.exit_code == exit_code, (secret, result.output)


@pytest.mark.parametrize("store_key", [None, K2], ids=["store-unkeyed", "store-other-key"])
def test_an_app_given_a_store_opened_with_other_settings_signs_with_its_own(
    fresh_db, environment_key, store_key
):
    environment_key(None)
    url = fresh_db.url
    username = add_nurse(url, K1)
    with store(url, store_key) as db:
        with served(create_app(settings_with(url, K1), db)) as server:
            response = log_in(server, username)
        assert response.status_code == 200, response.text
        assert events(url)[-1].key_id == AuditKey.from_secret(K1).id
        assert verify(url, K1).intact
        # the store itself keeps its own key for whoever else uses it
        assert db.audit_key == settings_with(url, store_key).audit_key


@pytest.mark.parametrize("app_key", [None, K2], ids=["app-without-key", "app-other-key"])
def test_an_app_without_the_logs_key_refuses_to_write_even_if_the_environment_has_it(
    fresh_db, environment_key, app_key
):
    environment_key(K1)  # the log's key is in the environment, not in the app's settings
    url = fresh_db.url
    username = add_nurse(url, K1)
    app = create_app(settings_with(url, app_key))
    with served(app) as server:
        response = log_in(server, username)
        server.log.errors.clear()  # the 503 is the point
    assert response.status_code == 503, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert "KETAFLOW_AUDIT_KEY" in response.json()["detail"]
    assert [row.action for row in events(url)] == ["user.create"]  # nothing appended
    assert verify(url, K1).intact
