"""FastAPI dependencies: the database, the settings and the acting user of a request."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer

from ketaflow.core.clock import Clock
from ketaflow.core.db import Database
from ketaflow.core.errors import Unauthorized
from ketaflow.core.settings import Settings
from ketaflow.security import service
from ketaflow.security.permissions import Actor

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", auto_error=False)


def get_db(request: Request) -> Database:
    return request.app.state.db


def get_settings(request: Request) -> Settings:
    return request.app.state.settings


def get_clock(request: Request) -> Clock:
    """The clinic's clock: real time in production, a settable one in tests."""
    return request.app.state.clock


def client_address(request: Request) -> str | None:
    return request.client.host if request.client else None


def current_actor(
    request: Request,
    db: Annotated[Database, Depends(get_db)],
    token: Annotated[str | None, Depends(oauth2_scheme)],
) -> Actor:
    if not token:
        raise Unauthorized("a bearer token is required: POST /api/v1/auth/token")
    return service.resolve_token(db, token, client_address(request))


def require_permission(action: str) -> Callable[..., Actor]:
    """A dependency that admits only roles allowed `action`; a refusal is audited."""

    def _dependency(
        actor: Annotated[Actor, Depends(current_actor)],
        db: Annotated[Database, Depends(get_db)],
    ) -> Actor:
        service.require(db, actor, action, "endpoint", action)
        return actor

    return _dependency


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ActorDep = Annotated[Actor, Depends(current_actor)]
ClockDep = Annotated[Clock, Depends(get_clock)]
