"""Runtime settings, read from the environment (prefix KETAFLOW_) or a .env file."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from ketaflow.core.timezones import TimeZoneName


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="KETAFLOW_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./ketaflow.db"
    clinic_name: str = "ketaflow clinic"
    clinic_timezone: TimeZoneName = "America/New_York"

    # Bearer tokens for programs; short-lived because they carry access to patient data.
    token_ttl_minutes: int = Field(default=120, ge=1, le=24 * 60)
    # Lock an account after this many consecutive failed logins, for lockout_minutes.
    max_failed_logins: int = Field(default=5, ge=1, le=100)
    lockout_minutes: int = Field(default=15, ge=1, le=24 * 60)
    # Per-client throttle against password spraying (one client, one password, many accounts):
    # after this many failed logins from one client address (an IPv6 client's /64) within the
    # last login_throttle_window_minutes, its further attempts are refused with 429 before any
    # password is checked, until the oldest of those failures leaves the window.
    login_throttle_failures: int = Field(default=20, ge=1, le=100_000)
    login_throttle_window_minutes: int = Field(default=15, ge=1, le=24 * 60)
    # argon2id cost; the defaults are RFC 9106's second recommended option (64 MiB, t=3).
    # Tests lower them to keep the suite fast; never lower them in production.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65536, ge=8)

    # An eligibility screening is valid this long (issue 2: default 180 days, a setting).
    screening_validity_days: int = Field(default=180, ge=1, le=730)

    # Where patients reach the server: questionnaire links are built on it.
    public_base_url: str = "http://127.0.0.1:8000"
    # A one-time questionnaire link stays usable this long unless its creator says otherwise.
    questionnaire_link_hours: int = Field(default=72, ge=1, le=24 * 60)
    # A clinic's licensed item wording for scales shipped with short labels (JSON file).
    instrument_wording_file: str | None = None

    # The clinic's opening hours, protocol overrides and therapy policy (JSON), if any.
    clinic_config_file: str | None = None

    # Secret that signs audit events (HMAC-SHA256), so a rewritten chain fails verification
    # without it. Unset: plain SHA-256, which anyone able to write the table can recompute.
    audit_key: SecretStr | None = None

    # SQLite waits this long for a competing writer before giving up.
    sqlite_busy_timeout_ms: int = Field(default=15000, ge=0)

    @field_validator("audit_key")
    @classmethod
    def _audit_key_is_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and len(value.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (for example `openssl rand -hex 32`)")
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
