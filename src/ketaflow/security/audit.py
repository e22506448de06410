"""Writing and checking the audit log: one insert in the caller's transaction.

The table is append-only in the database itself (migration 0004: triggers refuse UPDATE and
DELETE, and TRUNCATE on PostgreSQL). With an audit key (the `audit_key` setting,
KETAFLOW_AUDIT_KEY) new events are signed with it (HMAC-SHA256, see chain.py). The key is the
one of the settings the app or the CLI command opened its `Database` with: each session of it
carries the key (`core.db.AUDIT_KEY_INFO`)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from ketaflow.core.clock import utc_now
from ketaflow.core.db import AUDIT_KEY_INFO
from ketaflow.core.errors import Misconfigured
from ketaflow.security.chain import (
    GENESIS_HASH,
    HASHED_FIELDS,
    AuditKey,
    ChainBreak,
    ChainReport,
    Checkpoint,
    event_hash,
    verify_chain,
)
from ketaflow.security.permissions import Actor
from ketaflow.security.tables import AuditEvent, User

# Arbitrary constant key for PostgreSQL's transaction-scoped advisory lock on the chain head.
_CHAIN_LOCK_KEY = 0x6B657461  # "keta"


def _lock_chain_head(session: Session) -> None:
    # SQLite transactions already hold the write lock (BEGIN IMMEDIATE). On PostgreSQL two
    # transactions could otherwise read the same head and fork the chain.
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _CHAIN_LOCK_KEY})


def configured_key(session: Session) -> AuditKey | None:
    """The audit key of the settings the session's `Database` was opened with, or None:
    events are plain SHA-256."""
    try:
        secret = session.info[AUDIT_KEY_INFO]
    except KeyError:
        # a session made some other way would sign with no key, or a wrong one
        raise RuntimeError("the audit log needs a session of Database.transaction()") from None
    return None if secret is None else AuditKey.from_secret(secret.get_secret_value())


def _fit(value: str | None, column) -> str | None:
    """An identifier as recorded: one longer than its column cannot name a real record (a
    client sent it), and is kept clipped, marked with an ellipsis, rather than failing the
    insert (PostgreSQL refuses an over-long value: the request was a 500)."""
    limit = column.type.length
    if value is None or len(value) <= limit:
        return value
    return value[: limit - 1] + "\u2026"


def record(
    session: Session,
    actor: Actor,
    action: str,
    resource_type: str,
    resource_id: str | int | None = None,
    *,
    patient_id: str | None = None,
    allowed: bool = True,
    detail: Mapping[str, object] | None = None,
    now: datetime | None = None,
) -> AuditEvent:
    key = configured_key(session)
    _lock_chain_head(session)
    head = session.execute(
        select(AuditEvent.id, AuditEvent.hash, AuditEvent.key_id)
        .order_by(AuditEvent.id.desc())
        .limit(1)
    ).first()
    if head is not None and head.key_id is not None and (key is None or key.id != head.key_id):
        # An unsigned (or otherwise signed) event after signed ones could never be repaired
        # in an append-only log, and verify would stop at it: refuse, and roll back the change
        # it would have recorded.
        raise Misconfigured(
            "the audit log is signed with a key this process does not have: set "
            "KETAFLOW_AUDIT_KEY (the audit_key setting) to the key the log is signed with"
        )
    prev_id, prev_hash = (head.id, head.hash) if head else (0, GENESIS_HASH)
    fields: dict[str, object] = {
        "id": prev_id + 1,
        "occurred_at": now or utc_now(),  # hashed in UTC (chain._canonical), as stored
        "actor_id": actor.user_id,
        "actor_username": actor.username,
        "actor_role": str(actor.role),
        "action": action,
        "resource_type": resource_type,
        "resource_id": _fit(
            None if resource_id is None else str(resource_id), AuditEvent.__table__.c.resource_id
        ),
        "patient_id": _fit(patient_id, AuditEvent.__table__.c.patient_id),
        "allowed": allowed,
        # what a trusted proxy forwards is not checked for length
        "client_address": _fit(actor.client_address, AuditEvent.__table__.c.client_address),
        "detail": dict(detail) if detail else None,
    }
    event = AuditEvent(
        **fields,
        prev_hash=prev_hash,
        hash=event_hash(fields, prev_hash, key),
        key_id=None if key is None else key.id,
    )
    session.add(event)
    session.flush()
    return event


def _rows(session: Session, batch: int = 2000) -> Iterator[Mapping[str, object]]:
    names = (*HASHED_FIELDS, "prev_hash", "hash", "key_id")
    columns = [getattr(AuditEvent, name) for name in names]
    result = session.execute(
        select(*columns).order_by(AuditEvent.id).execution_options(yield_per=batch)
    )
    for row in result:
        yield row._mapping


def verify(session: Session, expect: Checkpoint | None = None) -> ChainReport:
    """Walk the whole chain with the session's audit key (`configured_key`); with `expect`,
    the log must still hold that checkpoint. An empty log while staff accounts exist is
    reported wiped: creating each account was audited."""
    report = verify_chain(_rows(session), configured_key(session), expect)
    if report.intact and report.events_checked == 0:
        users = session.scalar(select(func.count()).select_from(User)) or 0
        if users:
            problem = (
                f"missing: the log is empty, but {users} staff account(s) exist and creating "
                "each was audited (the log was wiped)"
            )
            return ChainReport(0, ChainBreak(1, problem))
    return report
