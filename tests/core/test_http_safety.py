"""What every response carries and what an unexpected failure looks like, over real HTTP: no
caching of patient data, and a 500 that is a problem document whose message (which can hold a
statement's parameters) reaches neither the client nor the log."""

from __future__ import annotations

import logging

import httpx
import pytest

from ketaflow.app import create_app
from ketaflow.core.db import Database
from ketaflow.core.migrate import upgrade_to_head
from ketaflow.core.settings import Settings
from support.server import LiveServer

SECRET = "Smith, 1980-01-01"  # stands for PHI in an exception's message


@pytest.fixture
def server(tmp_path):
    url = f"sqlite:///{tmp_path / 'safety.db'}"
    settings = Settings(database_url=url, argon2_time_cost=1, argon2_memory_kib=256)
    db = Database(url, settings)
    upgrade_to_head(db)
    app = create_app(settings, db)

    @app.get("/api/v1/test-broken", include_in_schema=False)
    def broken() -> None:
        raise RuntimeError(f"INSERT failed [parameters: ({SECRET!r},)]")

    live = LiveServer(app).start()
    yield live
    live.stop()
    db.dispose()


def test_an_unexpected_error_is_a_problem_without_its_message(server, caplog):
    with caplog.at_level(logging.ERROR):
        response = httpx.get(server.base_url + "/api/v1/test-broken")
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == 500 and body["type"].endswith("/internal-error")
    assert SECRET not in response.text
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "RuntimeError" in logged and "broken" in logged  # where, so it can be fixed
    assert SECRET not in logged
    assert server.log.errors == [("GET", "/api/v1/test-broken", 500)]
    server.log.errors.clear()  # this one was on purpose


@pytest.mark.parametrize(
    ("path", "status"), [("/health", 200), ("/api/v1/patients", 401), ("/q/not-a-token", 404)]
)
def test_dynamic_responses_are_never_cached(server, path, status):
    response = httpx.get(server.base_url + path)
    assert response.status_code == status
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["x-content-type-options"] == "nosniff"


def test_static_files_may_be_cached(server):
    response = httpx.get(server.base_url + "/static/ketaflow.css")
    assert response.status_code == 200
    assert "no-store" not in response.headers.get("cache-control", "")


def test_a_problem_about_a_link_never_repeats_its_token(server):
    response = httpx.post(server.base_url + "/q/SECRET-token-123", data={"x": "\x00"})
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "SECRET-token-123" not in response.text
    assert response.json()["instance"] == "/q/[token]"
