"""Typed domain errors. The API maps them to RFC 9457 problem+json, the CLI to one line and
exit code 2. Pure modules may raise them: this module imports nothing but the standard library."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Reason:
    """Why a rule said no: a stable rule id, one sentence for a person, and its source."""

    rule_id: str
    message: str
    source: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"rule_id": self.rule_id, "message": self.message, "source": self.source}


@dataclass
class KetaflowError(Exception):
    detail: str
    status: int = field(default=400, init=False)
    slug: str = field(default="bad-request", init=False)
    title: str = field(default="Bad request", init=False)

    def __str__(self) -> str:
        return self.detail

    def extensions(self) -> dict[str, object]:
        return {}

    def headers(self) -> dict[str, str]:
        """HTTP headers the answer carries besides the problem document."""
        return {}


@dataclass
class Misconfigured(KetaflowError):
    """The server is set up so that it must refuse to act (e.g. a missing key): the operator
    fixes the configuration; retrying will not help."""

    status: int = field(default=503, init=False)
    slug: str = field(default="misconfigured", init=False)
    title: str = field(default="Server misconfigured", init=False)


@dataclass
class NotFound(KetaflowError):
    status: int = field(default=404, init=False)
    slug: str = field(default="not-found", init=False)
    title: str = field(default="Not found", init=False)


@dataclass
class Unauthorized(KetaflowError):
    status: int = field(default=401, init=False)
    slug: str = field(default="unauthorized", init=False)
    title: str = field(default="Authentication required", init=False)

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


@dataclass
class TooManyRequests(KetaflowError):
    """Refused because of the requests that came before this one, not for anything in it:
    the same request may succeed after `retry_after_s` seconds (the Retry-After header)."""

    retry_after_s: int = 1
    status: int = field(default=429, init=False)
    slug: str = field(default="too-many-requests", init=False)
    title: str = field(default="Too many requests", init=False)

    def extensions(self) -> dict[str, object]:
        return {"retry_after_s": self.retry_after_s}

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


@dataclass
class LoginThrottled(TooManyRequests):
    """Too many failed logins from one client address: its attempts are refused unchecked."""

    slug: str = field(default="login-throttled", init=False)
    title: str = field(default="Too many failed logins from this client", init=False)


@dataclass
class Forbidden(KetaflowError):
    action: str = ""
    status: int = field(default=403, init=False)
    slug: str = field(default="forbidden", init=False)
    title: str = field(default="Not permitted", init=False)

    def extensions(self) -> dict[str, object]:
        return {"action": self.action} if self.action else {}


@dataclass
class Conflict(KetaflowError):
    """The request collides with the stored state, e.g. a stale version."""

    status: int = field(default=409, init=False)
    slug: str = field(default="conflict", init=False)
    title: str = field(default="Conflict with the current state", init=False)


@dataclass
class StaleVersion(Conflict):
    expected_version: int | None = None
    current_version: int | None = None
    slug: str = field(default="stale-version", init=False)
    title: str = field(default="The record was changed by someone else", init=False)

    def extensions(self) -> dict[str, object]:
        return {"current_version": self.current_version}


@dataclass
class RuleViolation(KetaflowError):
    """A clinical or workflow rule refuses the action; `reasons` lists every unmet rule."""

    code: str = ""
    reasons: tuple[Reason, ...] = ()
    status: int = field(default=409, init=False)
    slug: str = field(default="rule-violation", init=False)
    title: str = field(default="A rule does not allow this", init=False)

    def extensions(self) -> dict[str, object]:
        return {"code": self.code, "reasons": [r.as_dict() for r in self.reasons]}


@dataclass
class InvalidInput(KetaflowError):
    """Input that passed the schema but is still wrong; `field` names it (dotted path)."""

    field_name: str = ""
    status: int = field(default=422, init=False)
    slug: str = field(default="invalid-input", init=False)
    title: str = field(default="Invalid input", init=False)

    def extensions(self) -> dict[str, object]:
        return {"errors": [{"field": self.field_name, "message": self.detail}]}
