"""Shared fixtures: the stores (SQLite and a throwaway PostgreSQL), a live HTTP server, staff.

Under CI=true a skipped test is a failure: CI must run everything, on both stores."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, text

from ketaflow.app import create_app
from ketaflow.core.db import Database
from ketaflow.core.migrate import upgrade_to_head
from ketaflow.core.settings import Settings
from ketaflow.security import service as security
from ketaflow.security.permissions import Actor, Role
from support.clock import SettableClock
from support.postgres import ThrowawayCluster, find_pg_bin
from support.server import LiveServer

IN_CI = os.environ.get("CI", "").lower() == "true"
STAFF_PASSWORD = "correct horse battery staple"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if IN_CI and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = f"skipped under CI=true, which must run every test: {report.longrepr}"


def make_settings(url: str) -> Settings:
    # Cheap argon2 parameters keep the suite fast; production keeps RFC 9106's defaults. Every
    # test of a shared stack logs in from the loopback address, so the per-client login
    # throttle is set out of reach there (tests/security/test_login_throttle.py tests it).
    return Settings(
        database_url=url,
        argon2_time_cost=1,
        argon2_memory_kib=256,
        max_failed_logins=5,
        login_throttle_failures=100_000,
    )


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    external = os.environ.get("KETAFLOW_TEST_POSTGRES_URL")
    if external:
        yield external
        return
    bindir = find_pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    cluster = ThrowawayCluster(bindir)
    try:
        url = cluster.start()
    except Exception as exc:  # pragma: no cover - reported as a skip, a failure under CI
        cluster.stop()
        pytest.skip(f"could not start a throwaway PostgreSQL cluster: {exc}")
    yield url
    cluster.stop()


def _new_postgres_database(server_url: str) -> str:
    name = "kf_" + uuid.uuid4().hex[:12]
    admin = create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return server_url.rsplit("/", 1)[0] + "/" + name


def new_database(backend: str, tmp_dir: Path, request: pytest.FixtureRequest) -> Database:
    if backend == "sqlite":
        url = f"sqlite:///{tmp_dir / ('kf-' + uuid.uuid4().hex[:8] + '.db')}"
    else:
        url = _new_postgres_database(request.getfixturevalue("postgres_url"))
    db = Database(url, make_settings(url))
    upgrade_to_head(db)
    return db


BACKENDS = [pytest.param("sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)]


@dataclass
class Stack:
    """One store with the app served over real HTTP and a staff member for every role."""

    backend: str
    db: Database
    settings: Settings
    server: LiveServer
    clock: SettableClock
    actors: dict[Role, Actor] = field(default_factory=dict)
    _tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def token(self, username: str, password: str = STAFF_PASSWORD) -> str:
        if username not in self._tokens:
            response = httpx.post(
                self.base_url + "/api/v1/auth/token",
                data={"username": username, "password": password},
            )
            response.raise_for_status()
            self._tokens[username] = response.json()["access_token"]
        return self._tokens[username]

    def client(self, role: Role | str | None = None) -> httpx.Client:
        headers = {}
        if role is not None:
            headers["Authorization"] = f"Bearer {self.token(self.actors[Role(role)].username)}"
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)


def _build_stack(backend: str, tmp_dir: Path, request: pytest.FixtureRequest) -> Stack:
    db = new_database(backend, tmp_dir, request)
    settings = make_settings(db.url)
    actors = {}
    for role in Role:
        user = security.create_user(
            db,
            settings,
            security.SYSTEM_ACTOR,
            username=f"test-{role.value.replace('_', '-')}",
            password=STAFF_PASSWORD,
            role=role,
        )
        actors[role] = security.actor_for(user, "127.0.0.1")
    clock = SettableClock()
    server = LiveServer(create_app(settings, db, clock=clock)).start()
    return Stack(backend, db, settings, server, clock, actors)


@pytest.fixture(scope="session")
def pharmacology_kernels() -> None:
    """Compile the PK kernels once, as `ketaflow serve` does at start-up: on a cold Numba cache
    the first PK request would otherwise wait about 30 s for the compiler, past the client's
    timeout."""
    from ketaflow.pharmacology.clinical import warm_up

    warm_up()


@pytest.fixture(scope="session", params=BACKENDS)
def stack(request, tmp_path_factory, pharmacology_kernels) -> Iterator[Stack]:
    built = _build_stack(request.param, tmp_path_factory.mktemp("stack"), request)
    yield built
    built.server.stop()
    # Everything the suite did over HTTP left a chain that verifies (an event hashed with a
    # local-time clock once did not).
    report = security.verify_audit_chain(built.db)
    built.db.dispose()
    assert report.intact, report.first_break
    # and no request of the whole suite got a server error
    assert built.server.log.errors == [], built.server.log.errors


@pytest.fixture(params=BACKENDS)
def fresh_db(request, tmp_path) -> Iterator[Database]:
    """An empty, migrated store of its own, for tests that must not share one."""
    db = new_database(request.param, tmp_path, request)
    yield db
    db.dispose()


@pytest.fixture
def api(stack: Stack):
    """Clients by role: `api("prescriber").get(...)`; `api()` has no token."""
    clients: list[httpx.Client] = []

    def make(role: Role | str | None = None) -> httpx.Client:
        client = stack.client(role)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def clinic_clock(stack: Stack) -> Iterator[SettableClock]:
    """The clinic's clock on the live server, to set and move; back to real time after."""
    yield stack.clock
    stack.clock.reset()
