"""HTTP endpoints for logging in, staff accounts and the audit log."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.security import OAuth2PasswordRequestForm
from pydantic import BaseModel, ConfigDict, Field

from ketaflow.core.pagination import Page, PageDep
from ketaflow.core.problems import PROBLEM_MEDIA_TYPE
from ketaflow.security import service
from ketaflow.security.dependencies import (
    ActorDep,
    ClockDep,
    DbDep,
    SettingsDep,
    client_address,
    oauth2_scheme,
)
from ketaflow.security.permissions import ROLE_PERMISSIONS, Role

router = APIRouter(tags=["security"])


class TokenOut(BaseModel):
    access_token: str
    token_type: str = "bearer"  # noqa: S105 - the OAuth2 token type, not a secret
    expires_at: datetime
    expires_in: int = Field(description="seconds until the token expires")


class MeOut(BaseModel):
    user_id: int | None
    username: str
    role: str
    permissions: list[str]


class UserIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    username: str = Field(pattern=service.USERNAME_PATTERN)
    password: str = Field(min_length=12, max_length=256)
    role: Role
    display_name: str | None = Field(default=None, max_length=128)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    display_name: str
    role: str
    active: bool
    is_demo: bool
    created_at: datetime


class AuditEventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    occurred_at: datetime
    actor_id: int | None
    actor_username: str
    actor_role: str
    action: str
    resource_type: str
    resource_id: str | None
    patient_id: str | None
    allowed: bool
    client_address: str | None
    detail: dict | None
    prev_hash: str
    hash: str


@router.post(
    "/auth/token",
    response_model=TokenOut,
    responses={
        401: {
            "description": "incorrect username or password (one answer for every reason)",
            "content": {PROBLEM_MEDIA_TYPE: {}},
        },
        429: {
            "description": "too many failed logins from this client address",
            "content": {PROBLEM_MEDIA_TYPE: {}},
            "headers": {
                "Retry-After": {
                    "description": "seconds until the client may try again",
                    "schema": {"type": "integer"},
                }
            },
        },
    },
)
def issue_token(
    request: Request,
    form: Annotated[OAuth2PasswordRequestForm, Depends()],
    db: DbDep,
    settings: SettingsDep,
    clock: ClockDep,
) -> TokenOut:
    """OAuth2 password flow: exchange a username and password for an expiring bearer token.
    A client address with too many failed logins in the throttle's window is refused with 429
    and Retry-After, before any password is checked."""
    issued = service.login(
        db,
        settings,
        form.username,
        form.password,
        client_address(request),
        # The throttle's window runs on the app's clock. The token's lifetime and the account
        # lock stay on real time, which is what resolve_token checks tokens against.
        throttle_clock=clock,
    )
    ttl = int(settings.token_ttl_minutes * 60)
    return TokenOut(access_token=issued.access_token, expires_at=issued.expires_at, expires_in=ttl)


@router.post("/auth/logout", status_code=204)
def logout(
    actor: ActorDep, db: DbDep, token: Annotated[str | None, Depends(oauth2_scheme)]
) -> None:
    if token:
        service.revoke_token(db, token, actor)


@router.get("/auth/me", response_model=MeOut)
def me(actor: ActorDep) -> MeOut:
    return MeOut(
        user_id=actor.user_id,
        username=actor.username,
        role=str(actor.role),
        permissions=sorted(ROLE_PERMISSIONS.get(Role(actor.role), ())),
    )


@router.post("/users", response_model=UserOut, status_code=201)
def create_user(body: UserIn, actor: ActorDep, db: DbDep, settings: SettingsDep) -> UserOut:
    user = service.create_user(
        db,
        settings,
        actor,
        username=body.username,
        password=body.password,
        role=body.role,
        display_name=body.display_name,
    )
    return UserOut.model_validate(user)


@router.get("/users", response_model=list[UserOut])
def list_users(actor: ActorDep, db: DbDep) -> list[UserOut]:
    return [UserOut.model_validate(u) for u in service.list_users(db, actor)]


@router.get("/audit", response_model=Page[AuditEventOut])
def list_audit_events(
    actor: ActorDep,
    db: DbDep,
    page: PageDep,
    action: Annotated[str | None, Query(max_length=64)] = None,
    actor_username: Annotated[str | None, Query(max_length=64)] = None,
    patient_id: Annotated[str | None, Query(max_length=36)] = None,
    allowed: bool | None = None,
) -> Page[AuditEventOut]:
    """The audit log, newest first. Auditors only."""
    result = service.list_audit_events(
        db,
        actor,
        limit=page.limit,
        offset=page.offset,
        action=action,
        actor_username=actor_username,
        patient_id=patient_id,
        allowed=allowed,
    )
    return Page[AuditEventOut](
        items=[AuditEventOut.model_validate(e) for e in result.items],
        total=result.total,
        limit=page.limit,
        offset=page.offset,
    )
