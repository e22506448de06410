"""Logging in over HTTP: tokens, expiry, lock-out, and problem+json on failure."""

from __future__ import annotations

import uuid

import httpx
from sqlalchemy import update

from ketaflow.security import service as security
from ketaflow.security.permissions import Role
from ketaflow.security.tables import User

PROBLEM = "application/problem+json"


def _new_user(stack, role=Role.nurse, password="a long enough password"):
    username = "u-" + uuid.uuid4().hex[:10]
    security.create_user(
        stack.db,
        stack.settings,
        security.SYSTEM_ACTOR,
        username=username,
        password=password,
        role=role,
    )
    return username, password


def test_login_issues_a_bearer_token_that_identifies_the_user(stack, api):
    username, password = _new_user(stack)
    response = api().post("/api/v1/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == stack.settings.token_ttl_minutes * 60
    me = api().get("/api/v1/auth/me", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert me.status_code == 200
    assert me.json()["username"] == username
    assert me.json()["role"] == "nurse"
    assert "patient.read" in me.json()["permissions"]


def test_wrong_password_is_401_problem_json(stack, api):
    username, _ = _new_user(stack)
    response = api().post("/api/v1/auth/token", data={"username": username, "password": "nope"})
    assert response.status_code == 401
    assert response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["status"] == 401
    assert response.headers["www-authenticate"] == "Bearer"


def test_unknown_user_gets_the_same_answer_as_a_wrong_password(api):
    response = api().post("/api/v1/auth/token", data={"username": "nobody-here", "password": "x"})
    assert response.status_code == 401
    assert response.json()["detail"] == "incorrect username or password"


def test_what_was_typed_for_an_unknown_account_is_not_audited(stack, api):
    typed = "correct-horse-" + uuid.uuid4().hex  # a password typed in the username field
    response = api().post("/api/v1/auth/token", data={"username": typed, "password": "x"})
    assert response.status_code == 401
    events = (
        api("auditor")
        .get("/api/v1/audit", params={"action": "auth.login", "allowed": False, "limit": 200})
        .json()["items"]
    )
    assert events and all(typed not in str(event) for event in events)
    assert events[0]["actor_username"] == "(unknown account)"
    assert events[0]["detail"] == {"why": "unknown account"}


def test_a_deactivated_account_trying_to_log_in_is_audited_by_name(stack, api):
    username, password = _new_user(stack)
    with stack.db.transaction() as session:
        session.execute(update(User).where(User.username == username).values(active=False))
    response = api().post("/api/v1/auth/token", data={"username": username, "password": password})
    assert response.json()["detail"] == "incorrect username or password"
    events = (
        api("auditor")
        .get("/api/v1/audit", params={"action": "auth.login", "actor_username": username})
        .json()["items"]
    )
    assert events[0]["allowed"] is False
    assert events[0]["detail"] == {"why": "inactive account"}


def test_repeated_failures_lock_the_account_even_for_the_right_password(stack, api):
    username, password = _new_user(stack)
    client = api()
    for _ in range(stack.settings.max_failed_logins):
        client.post("/api/v1/auth/token", data={"username": username, "password": "wrong"})
    locked = client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert locked.status_code == 401
    # the answer does not say the account exists and is locked; the audit log does
    assert locked.json()["detail"] == "incorrect username or password"
    auditor = api("auditor")
    events = auditor.get(
        "/api/v1/audit", params={"action": "auth.login", "actor_username": username}
    ).json()["items"]
    assert events[0]["allowed"] is False
    assert events[0]["detail"] == {"why": "locked"}
    assert events[1]["detail"] == {"why": "wrong password", "locked": True}


def test_requests_without_or_with_a_bad_token_are_401(api):
    assert api().get("/api/v1/auth/me").status_code == 401
    bad = api().get("/api/v1/auth/me", headers={"Authorization": "Bearer not-a-token"})
    assert bad.status_code == 401
    assert bad.headers["content-type"].startswith(PROBLEM)


def test_logout_revokes_the_token(stack, api):
    username, password = _new_user(stack)
    token = (
        api()
        .post("/api/v1/auth/token", data={"username": username, "password": password})
        .json()["access_token"]
    )
    headers = {"Authorization": f"Bearer {token}"}
    assert api().post("/api/v1/auth/logout", headers=headers).status_code == 204
    assert api().get("/api/v1/auth/me", headers=headers).status_code == 401


def test_expired_token_is_refused(stack):
    from datetime import UTC, datetime, timedelta

    username, password = _new_user(stack)
    past = datetime.now(UTC) - timedelta(minutes=stack.settings.token_ttl_minutes + 1)
    issued = security.login(stack.db, stack.settings, username, password, None, clock=lambda: past)
    response = httpx.get(
        stack.base_url + "/api/v1/auth/me",
        headers={"Authorization": f"Bearer {issued.access_token}"},
    )
    assert response.status_code == 401


def test_admin_creates_users_and_weak_passwords_are_refused(api):
    admin = api("admin")
    username = "new-" + uuid.uuid4().hex[:8]
    created = admin.post(
        "/api/v1/users", json={"username": username, "password": "short", "role": "nurse"}
    )
    assert created.status_code == 422
    assert created.json()["errors"][0]["field"] == "password"
    created = admin.post(
        "/api/v1/users", json={"username": username, "password": "twelve chars ok", "role": "nurse"}
    )
    assert created.status_code == 201
    assert created.json()["role"] == "nurse"
    again = admin.post(
        "/api/v1/users", json={"username": username, "password": "twelve chars ok", "role": "nurse"}
    )
    assert again.status_code == 409
    assert username in [u["username"] for u in admin.get("/api/v1/users").json()]


def test_passwords_are_stored_as_argon2id(stack):
    username, _ = _new_user(stack)
    from sqlalchemy import select

    from ketaflow.security.tables import User

    with stack.db.transaction() as session:
        stored = session.scalar(select(User.password_hash).where(User.username == username))
    assert stored.startswith("$argon2id$")
