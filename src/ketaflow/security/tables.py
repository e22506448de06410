"""Staff accounts, bearer tokens and the hash-chained audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from ketaflow.core.db import Base, JSONDocument, UTCDateTime


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(32))
    password_hash: Mapped[str] = mapped_column(String(256))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    # Demo accounts have published passwords: the server warns while any exist.
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)
    failed_login_count: Mapped[int] = mapped_column(Integer, default=0)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    # Only the SHA-256 of a token is stored; the token itself is shown once.
    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class AuditEvent(Base):
    """Append-only: database triggers refuse UPDATE and DELETE (migration 0004). `id` is
    assigned by the writer (previous id + 1) under a lock, so the chain has no gaps and each
    row's hash covers its own position."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    occurred_at: Mapped[datetime] = mapped_column(UTCDateTime)
    actor_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    actor_username: Mapped[str] = mapped_column(String(64))
    actor_role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(64))
    resource_type: Mapped[str] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # The patient whose record was touched, so a patient's access log is one indexed lookup.
    patient_id: Mapped[str | None] = mapped_column(String(36), nullable=True, index=True)
    allowed: Mapped[bool] = mapped_column(Boolean)
    client_address: Mapped[str | None] = mapped_column(String(64), nullable=True)
    # Non-identifying context only (field names, codes, counts): never PHI.
    detail: Mapped[dict | None] = mapped_column(JSONDocument, nullable=True)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    # The id of the key whose HMAC `hash` is (chain.AuditKey); None: plain SHA-256, as every
    # event written before KETAFLOW_AUDIT_KEY was set.
    key_id: Mapped[str | None] = mapped_column(String(16), nullable=True)


class LoginFailure(Base):
    """One failed login from a client, for the per-client throttle (security/throttle.py): an
    attempt is counted here before its password is checked, and its row is removed again only
    if it logs in. Rows older than the throttle's window are pruned as attempts come in.

    `client_digest` is an HMAC-SHA256 (SHA-256 without an audit key) of the client's address,
    or of its /64 for IPv6: the address itself is never stored."""

    __tablename__ = "login_failures"
    __table_args__ = (
        # counting one client's failures in the window
        Index("ix_login_failures_client_digest", "client_digest", "failed_at"),
    )

    # 64 bits on PostgreSQL (a table with this much churn must not run out of ids); SQLite's
    # INTEGER PRIMARY KEY is 64 bits already.
    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    client_digest: Mapped[str] = mapped_column(String(64))
    # pruning: the oldest rows first
    failed_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
