"""Use cases for staff accounts, tokens, authorization and reading the audit log."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select

from ketaflow.core.clock import Clock, utc_now
from ketaflow.core.db import Database
from ketaflow.core.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from ketaflow.core.settings import Settings
from ketaflow.security import audit, passwords
from ketaflow.security.chain import ChainReport
from ketaflow.security.permissions import AUDIT_READ, USER_MANAGE, Actor, Role, is_allowed
from ketaflow.security.tables import ApiToken, AuditEvent, User

USERNAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{2,63}$"

# Recorded as the role of a login attempt for a username that has no account.
UNAUTHENTICATED_ROLE = "unauthenticated"

# The actor recorded for work done from the command line by whoever runs it on the server.
SYSTEM_ACTOR = Actor(user_id=None, username="system", role=Role.admin, client_address="cli")


@dataclass(frozen=True)
class IssuedToken:
    access_token: str
    expires_at: datetime
    actor: Actor


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def actor_for(user: User, client_address: str | None) -> Actor:
    return Actor(user.id, user.username, Role(user.role), client_address)


def require(
    db: Database,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: str | int | None = None,
    *,
    patient_id: str | None = None,
) -> None:
    """Raise Forbidden unless the actor's role allows the action. A refusal is audited in a
    transaction of its own, so it is kept although the request fails; call this before opening
    the use case's transaction."""
    if is_allowed(actor.role, action):
        return
    with db.transaction() as session:
        audit.record(
            session, actor, action, resource_type, resource_id, patient_id=patient_id, allowed=False
        )
    raise Forbidden(f"role '{actor.role}' may not {action}", action=action)


def create_user(
    db: Database,
    settings: Settings,
    actor: Actor,
    *,
    username: str,
    password: str,
    role: Role,
    display_name: str | None = None,
    is_demo: bool = False,
    clock: Clock = utc_now,
) -> User:
    require(db, actor, USER_MANAGE, "user")
    if not re.fullmatch(USERNAME_PATTERN, username):
        raise InvalidInput(
            "username must be 3-64 characters: lower-case letters, digits, '.', '_' or '-'",
            field_name="username",
        )
    passwords.check_password_policy(password)
    password_hash = passwords.hash_password(settings, password)
    with db.transaction() as session:
        if session.scalar(select(User.id).where(User.username == username)) is not None:
            raise Conflict(f"username '{username}' is taken")
        user = User(
            username=username,
            display_name=display_name or username,
            role=str(role),
            password_hash=password_hash,
            active=True,
            is_demo=is_demo,
            failed_login_count=0,
            created_at=clock(),
        )
        session.add(user)
        session.flush()
        audit.record(session, actor, "user.create", "user", user.id, detail={"role": str(role)})
        return user


def list_users(db: Database, actor: Actor) -> list[User]:
    require(db, actor, USER_MANAGE, "user")
    with db.transaction() as session:
        users = list(session.scalars(select(User).order_by(User.username)))
        audit.record(session, actor, "user.list", "user")
        return users


def login(
    db: Database,
    settings: Settings,
    username: str,
    password: str,
    client_address: str | None,
    clock: Clock = utc_now,
) -> IssuedToken:
    """Check a password and issue a bearer token. Repeated failures lock the account."""
    now = clock()
    failure = Unauthorized("incorrect username or password")
    with db.transaction() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None or not user.active:
            passwords.verify_password(settings, passwords.dummy_hash(settings), password)
            anonymous = Actor(None, username[:64], UNAUTHENTICATED_ROLE, client_address)
            audit.record(
                session,
                anonymous,
                "auth.login",
                "user",
                None,
                allowed=False,
                now=now,
                detail={"why": "unknown or inactive user"},
            )
            failure_to_raise: Unauthorized | None = failure
        elif user.locked_until is not None and user.locked_until > now:
            audit.record(
                session,
                actor_for(user, client_address),
                "auth.login",
                "user",
                user.id,
                allowed=False,
                now=now,
                detail={"why": "locked"},
            )
            failure_to_raise = Unauthorized(
                "account is locked after repeated failed logins; try again later"
            )
        elif not passwords.verify_password(settings, user.password_hash, password):
            user.failed_login_count += 1
            locked = user.failed_login_count >= settings.max_failed_logins
            if locked:
                user.locked_until = now + timedelta(minutes=settings.lockout_minutes)
                user.failed_login_count = 0
            audit.record(
                session,
                actor_for(user, client_address),
                "auth.login",
                "user",
                user.id,
                allowed=False,
                now=now,
                detail={"why": "wrong password", "locked": locked},
            )
            failure_to_raise = failure
        else:
            failure_to_raise = None
            user.failed_login_count = 0
            user.locked_until = None
            if passwords.needs_rehash(settings, user.password_hash):
                user.password_hash = passwords.hash_password(settings, password)
            token = secrets.token_urlsafe(32)
            expires_at = now + timedelta(minutes=settings.token_ttl_minutes)
            session.add(
                ApiToken(
                    token_hash=_token_digest(token),
                    user_id=user.id,
                    issued_at=now,
                    expires_at=expires_at,
                )
            )
            actor = actor_for(user, client_address)
            audit.record(session, actor, "auth.login", "user", user.id, now=now)
            issued = IssuedToken(token, expires_at, actor)
    # Failed attempts are committed (counter, lock, audit) before the refusal is raised.
    if failure_to_raise is not None:
        raise failure_to_raise
    return issued


def actor_by_username(db: Database, username: str, client_address: str | None) -> Actor:
    """The actor for a command-line user named by the operator (who already holds the
    database); the account must exist and be active, and its role's permissions apply."""
    with db.transaction() as session:
        user = session.scalar(select(User).where(User.username == username))
        if user is None or not user.active:
            raise NotFound(f"no active staff account '{username}'")
        return actor_for(user, client_address)


def resolve_token(
    db: Database, token: str, client_address: str | None, clock: Clock = utc_now
) -> Actor:
    now = clock()
    with db.transaction() as session:
        row = session.execute(
            select(ApiToken, User)
            .join(User, User.id == ApiToken.user_id)
            .where(ApiToken.token_hash == _token_digest(token))
        ).first()
        if row is None:
            raise Unauthorized("invalid token")
        api_token, user = row
        if api_token.revoked_at is not None or api_token.expires_at <= now or not user.active:
            raise Unauthorized("token expired or revoked")
        return actor_for(user, client_address)


def revoke_token(db: Database, token: str, actor: Actor, clock: Clock = utc_now) -> None:
    with db.transaction() as session:
        api_token = session.get(ApiToken, _token_digest(token))
        if api_token is not None and api_token.revoked_at is None:
            api_token.revoked_at = clock()
            audit.record(session, actor, "auth.logout", "user", actor.user_id)


def demo_accounts_exist(db: Database) -> bool:
    with db.transaction() as session:
        return bool(
            session.scalar(select(func.count()).select_from(User).where(User.is_demo, User.active))
        )


@dataclass(frozen=True)
class AuditPage:
    items: list[AuditEvent]
    total: int


def list_audit_events(
    db: Database,
    actor: Actor,
    *,
    limit: int,
    offset: int,
    action: str | None = None,
    actor_username: str | None = None,
    patient_id: str | None = None,
    allowed: bool | None = None,
) -> AuditPage:
    require(db, actor, AUDIT_READ, "audit_log")
    query = select(AuditEvent)
    if action:
        query = query.where(AuditEvent.action == action)
    if actor_username:
        query = query.where(AuditEvent.actor_username == actor_username)
    if patient_id:
        query = query.where(AuditEvent.patient_id == patient_id)
    if allowed is not None:
        query = query.where(AuditEvent.allowed == allowed)
    with db.transaction() as session:
        total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
        items = list(
            session.scalars(query.order_by(AuditEvent.id.desc()).limit(limit).offset(offset))
        )
        audit.record(session, actor, "audit.read", "audit_log", detail={"count": len(items)})
        return AuditPage(items, total)


def verify_audit_chain(db: Database) -> ChainReport:
    with db.transaction() as session:
        return audit.verify(session)
