"""The per-client login throttle, against password spraying (one client trying one password
against many accounts, which the per-account lock-out never sees).

Failed logins from one client address are counted over a sliding window (the last
KETAFLOW_LOGIN_THROTTLE_WINDOW_MINUTES). Once KETAFLOW_LOGIN_THROTTLE_FAILURES of them are in
the window, the client's further attempts are refused before any password is checked (no
argon2 work: the throttle also bounds what a flood of logins costs the server) until the
oldest of them leaves the window, which is what Retry-After says.

Like the account's counter, an attempt is counted before its password is checked: `admit`
adds its row (a reservation) in the login's first transaction, and only a successful login
removes it again (`release`). So however many attempts from one client run in parallel, at
most the limit of them reach a password check, and a request that dies half-way counts as a
failure. A success removes its own row only, never the client's earlier failures: an attacker
holding one valid account cannot reset its count by logging in with it.

The client is the address the ASGI server reports (`request.client.host`): behind a reverse
proxy that is the proxy, unless the server is told to trust the proxy's X-Forwarded-For
(uvicorn --proxy-headers --forwarded-allow-ips). This module never reads such headers itself.
An IPv6 client counts by its /64, the block one subscriber usually holds. Only a digest of
that key is stored: HMAC-SHA256 under a key derived from the audit key when one is set, else
plain SHA-256 (which someone holding the table could reverse for IPv4 by trying all 2^32
addresses)."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import math
from dataclasses import dataclass
from datetime import datetime, timedelta

from pydantic import SecretStr
from sqlalchemy import delete, func, select, text
from sqlalchemy.orm import Session

from ketaflow.core.settings import Settings
from ketaflow.security.tables import LoginFailure

# -- pure: which client, its digest, when it may try again ----------------------------------

# The key of clients the server reports no address for (e.g. a Unix socket): they share one.
UNKNOWN_CLIENT = "(no address)"
IPV6_PREFIX_LENGTH = 64
_DOMAIN = b"ketaflow login throttle v1"


def client_key(address: str | None) -> str:
    """What one client is: an IPv4 address; an IPv6 address's /64 network (an IPv4-mapped one
    is its IPv4 address); anything else (a test client's name) as given."""
    if not address:
        return UNKNOWN_CLIENT
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])  # without an IPv6 zone id
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX_LENGTH), strict=False))
    return str(ip)


def client_digest(address: str | None, audit_key: SecretStr | None) -> str:
    """The hex digest stored for a client: never the address itself."""
    key = client_key(address).encode("utf-8")
    if audit_key is None:
        return hashlib.sha256(_DOMAIN + b"\x00" + key).hexdigest()
    # a key of the throttle's own, so its digests say nothing about the audit chain's HMACs
    derived = hmac.new(audit_key.get_secret_value().encode("utf-8"), _DOMAIN, "sha256").digest()
    return hmac.new(derived, key, "sha256").hexdigest()


def seconds_until(moment: datetime, now: datetime) -> int:
    """Whole seconds from now until moment, rounded up, at least 1 (a Retry-After value)."""
    return max(1, math.ceil((moment - now).total_seconds()))


# -- store: count, refuse, prune -------------------------------------------------------------

# Each attempt deletes at most this many expired rows (of any client), the oldest first, and
# adds at most one: the table holds the rows of one window and a bounded tail, however long the
# server runs, and no request pays for a large clean-up.
PRUNE_BATCH = 100

# Namespace of the PostgreSQL advisory locks (two-int form: a key space of its own, apart from
# the audit chain's single-bigint lock) that serialize one client's admissions.
_LOCK_SPACE = 0x6B667468  # "kfth"


@dataclass(frozen=True)
class Admission:
    """What `admit` decided. `reservation_id` is the row counting this attempt as a failure
    until it succeeds; None: refused (`retry_after_s` says for how long)."""

    client_digest: str
    failures_in_window: int
    reservation_id: int | None
    retry_after_s: int | None = None

    @property
    def refused(self) -> bool:
        return self.reservation_id is None


def _lock_client(session: Session, digest: str) -> None:
    # SQLite's transaction already holds the store's write lock (BEGIN IMMEDIATE). On
    # PostgreSQL two attempts from one client could otherwise both count the same rows and
    # both be admitted; with the lock, the second counts after the first has committed (READ
    # COMMITTED: each statement sees what was committed before it began).
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(CAST(:space AS integer), CAST(:key AS integer))"),
            {"space": _LOCK_SPACE, "key": int.from_bytes(bytes.fromhex(digest[:8]), signed=True)},
        )


def prune(session: Session, settings: Settings, now: datetime) -> int:
    """Delete up to PRUNE_BATCH rows that have left the window, oldest first. Rows another
    transaction holds are skipped (PostgreSQL), never waited for, so this can come last in a
    transaction that holds other locks."""
    expired_before = now - timedelta(minutes=settings.login_throttle_window_minutes)
    expired = (
        select(LoginFailure.id)
        .where(LoginFailure.failed_at <= expired_before)
        .order_by(LoginFailure.failed_at)
        .limit(PRUNE_BATCH)
        .with_for_update(skip_locked=True)  # nothing on SQLite, whose writers run one at a time
    )
    result = session.execute(
        delete(LoginFailure)
        .where(LoginFailure.id.in_(expired))
        .execution_options(synchronize_session=False)
    )
    return result.rowcount


def admit(session: Session, settings: Settings, address: str | None, now: datetime) -> Admission:
    """Count this attempt against its client, or refuse it if the client has reached the
    limit. Call it first in the login's first transaction, before any password is checked
    (and `prune` last in it)."""
    digest = client_digest(address, settings.audit_key)
    window = timedelta(minutes=settings.login_throttle_window_minutes)
    since = now - window
    _lock_client(session, digest)
    in_window = (LoginFailure.client_digest == digest, LoginFailure.failed_at > since)
    failures = session.scalar(select(func.count()).select_from(LoginFailure).where(*in_window))
    failures = failures or 0
    limit = settings.login_throttle_failures
    if failures >= limit:
        # The client gets a slot back when its count in the window falls below the limit:
        # when the (failures - limit + 1)-th oldest of them leaves it.
        frees_at = session.scalar(
            select(LoginFailure.failed_at)
            .where(*in_window)
            .order_by(LoginFailure.failed_at)
            .offset(failures - limit)
            .limit(1)
        )
        return Admission(digest, failures, None, seconds_until(frees_at + window, now))
    reservation = LoginFailure(client_digest=digest, failed_at=now)
    session.add(reservation)
    session.flush()
    return Admission(digest, failures, reservation.id)


def release(session: Session, reservation_id: int) -> None:
    """A successful login: its attempt is not a failure after all. Only its own row goes."""
    session.execute(
        delete(LoginFailure)
        .where(LoginFailure.id == reservation_id)
        .execution_options(synchronize_session=False)
    )
