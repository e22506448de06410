"""Use cases for staff accounts, tokens, authorization and reading the audit log."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from ketaflow.core.clock import Clock, utc_now
from ketaflow.core.db import Database
from ketaflow.core.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    LoginThrottled,
    NotFound,
    Unauthorized,
)
from ketaflow.core.settings import Settings
from ketaflow.security import audit, passwords, throttle
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


# Every refusal of a login says the same: an unknown name, a wrong password, a locked or an
# inactive account cannot be told apart by the answer, nor by its time (each attempt runs one
# argon2 verification). Staff see why in the audit log (`detail.why`).
LOGIN_REFUSED = "incorrect username or password"


# Recorded as the actor of a login refused by the per-client throttle: the attempt is refused
# before its username is even looked at.
THROTTLED_CLIENT = "(throttled client)"


@dataclass(frozen=True)
class _Attempt:
    """What a login's first, short transaction learnt. `slot` is this attempt's number among the
    account's consecutive failures, counted before the password is checked (None: the account
    is locked, or there is no active account by that name). `admission` is the per-client
    throttle's decision; when it refused, nothing else was looked at."""

    actor: Actor | None
    admission: throttle.Admission
    password_hash: str | None = None
    slot: int | None = None
    # The name of an account that exists but is deactivated (audited by name).
    inactive_username: str | None = None


def _refuse_throttled(
    session: Session, settings: Settings, admission: throttle.Admission, now: datetime
) -> None:
    """Audit a refusal by the throttle: no username (not looked at), no address (the client is
    named by the first 16 hex digits of its digest, as in login_failures), no password."""
    anonymous = Actor(None, THROTTLED_CLIENT, UNAUTHENTICATED_ROLE, None)
    audit.record(
        session,
        anonymous,
        "auth.login",
        "user",
        None,
        allowed=False,
        now=now,
        detail={
            "why": "client throttled",
            "client": admission.client_digest[:16],
            "failures": admission.failures_in_window,
            "limit": settings.login_throttle_failures,
            "window_minutes": settings.login_throttle_window_minutes,
            "retry_after_s": admission.retry_after_s,
        },
    )


def _start_attempt(
    db: Database,
    settings: Settings,
    username: str,
    client_address: str | None,
    now: datetime,
    throttle_now: datetime,
) -> _Attempt:
    """First the per-client throttle: refuse the attempt if its client has too many failures
    in the window, else count it against the client (throttle.admit). Then count it as a
    failure of the account until the password proves otherwise, in one atomic UPDATE:
    concurrent attempts each get a slot of their own, so however many run in parallel at most
    max_failed_logins of them are checked against the account before it locks."""
    with db.transaction() as session:
        attempt = _count_attempt(session, settings, username, client_address, now, throttle_now)
        # Last, once the account's row is locked: pruning never waits on another transaction,
        # so no transaction holding that row can end up waiting on this one.
        throttle.prune(session, settings, throttle_now)
        return attempt


def _count_attempt(
    session: Session,
    settings: Settings,
    username: str,
    client_address: str | None,
    now: datetime,
    throttle_now: datetime,
) -> _Attempt:
    admission = throttle.admit(session, settings, client_address, throttle_now)
    if admission.refused:
        _refuse_throttled(session, settings, admission, now)
        return _Attempt(None, admission)
    row = session.execute(
        select(User.id, User.username, User.role, User.active).where(User.username == username)
    ).first()
    if row is None:
        return _Attempt(None, admission)
    if not row.active:
        return _Attempt(None, admission, inactive_username=row.username)
    actor = Actor(row.id, row.username, Role(row.role), client_address)
    reserved = session.execute(
        update(User)
        .where(User.id == row.id, or_(User.locked_until.is_(None), User.locked_until <= now))
        .values(failed_login_count=User.failed_login_count + 1)
        .returning(User.failed_login_count, User.password_hash)
        .execution_options(synchronize_session=False)
    ).first()
    if reserved is None:
        return _Attempt(actor, admission)
    return _Attempt(actor, admission, reserved.password_hash, reserved.failed_login_count)


def _lock_if_at_limit(session: Session, settings: Settings, user_id: int, now: datetime) -> bool:
    """Lock the account if its count of failures (as it stands now, under the row lock) has
    reached the limit; the count starts again from 0 when the lock expires."""
    result = session.execute(
        update(User)
        .where(User.id == user_id, User.failed_login_count >= settings.max_failed_logins)
        .values(
            locked_until=now + timedelta(minutes=settings.lockout_minutes), failed_login_count=0
        )
        .execution_options(synchronize_session=False)
    )
    return result.rowcount > 0


UNKNOWN_ACCOUNT = "(unknown account)"


def login(
    db: Database,
    settings: Settings,
    username: str,
    password: str,
    client_address: str | None,
    clock: Clock = utc_now,
    *,
    throttle_clock: Clock | None = None,
) -> IssuedToken:
    """Check a password and issue a bearer token. KETAFLOW_MAX_FAILED_LOGINS consecutive
    failures lock the account for KETAFLOW_LOCKOUT_MINUTES. A client address with
    KETAFLOW_LOGIN_THROTTLE_FAILURES failures in the last KETAFLOW_LOGIN_THROTTLE_WINDOW_MINUTES
    is refused (LoginThrottled, 429) before any password is checked (throttle.py); its window
    runs on `throttle_clock` (default: `clock`).

    Three steps, so argon2 never runs inside a transaction (on SQLite a transaction holds the
    store's write lock, and every other request would wait on the hashing): a short
    transaction counts the attempt and reads the hash, the password is verified, and a second
    short transaction records the outcome (token or lock, and the audit event)."""
    now = clock()
    throttle_now = now if throttle_clock is None else throttle_clock()
    attempt = _start_attempt(db, settings, username, client_address, now, throttle_now)
    if attempt.admission.refused:
        # Refused unchecked, and audited (committed) already: no argon2 work at all.
        minutes = settings.login_throttle_window_minutes
        retry_after_s = attempt.admission.retry_after_s or 1
        raise LoginThrottled(
            f"too many failed logins from this client address in the last {minutes} minutes:"
            f" try again in {retry_after_s} seconds",
            retry_after_s=retry_after_s,
        )
    checked = attempt.slot is not None and attempt.slot <= settings.max_failed_logins
    # Exactly one verification per attempt: against the account's hash for an attempt within
    # the limit, else against the dummy hash (its result is never used).
    verify_against = attempt.password_hash if checked else passwords.dummy_hash(settings)
    correct = passwords.verify_password(settings, verify_against, password) and checked
    new_hash = None
    if correct and passwords.needs_rehash(settings, attempt.password_hash):
        new_hash = passwords.hash_password(settings, password)

    issued: IssuedToken | None = None
    with db.transaction() as session:
        actor = attempt.actor
        user = None
        if actor is not None and correct:
            # Row lock on PostgreSQL (SQLite's transaction already holds the write lock).
            user = session.get(User, actor.user_id, with_for_update=True)
        if actor is None or (correct and (user is None or not user.active)):
            # What was typed for an account that does not exist is not kept: it is often a
            # password typed in the wrong field, and the audit log is read by auditors. A
            # deactivated account (someone who left, trying to log in) is named.
            known = actor.username if actor is not None else attempt.inactive_username
            shown = known or UNKNOWN_ACCOUNT
            anonymous = Actor(None, shown, UNAUTHENTICATED_ROLE, client_address)
            audit.record(
                session,
                anonymous,
                "auth.login",
                "user",
                None,
                allowed=False,
                now=now,
                detail={"why": "unknown account" if known is None else "inactive account"},
            )
        elif attempt.slot is None:
            audit.record(
                session,
                actor,
                "auth.login",
                "user",
                actor.user_id,
                allowed=False,
                now=now,
                detail={"why": "locked"},
            )
        elif not correct:
            # A wrong password, or more attempts at once than the limit allows (refused
            # unchecked): the account locks at the limit, also if the attempt holding the
            # last slot never finished.
            locked = _lock_if_at_limit(session, settings, actor.user_id, now)
            audit.record(
                session,
                actor,
                "auth.login",
                "user",
                actor.user_id,
                allowed=False,
                now=now,
                detail={
                    "why": "wrong password" if checked else "too many attempts",
                    "locked": locked,
                },
            )
        else:
            user.failed_login_count = 0
            user.locked_until = None
            # The attempt was not a failure of its client after all; the client's other
            # failures stay counted.
            throttle.release(session, attempt.admission.reservation_id)
            if new_hash is not None and user.password_hash == attempt.password_hash:
                user.password_hash = new_hash
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
    if issued is None:
        raise Unauthorized(LOGIN_REFUSED)
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
