"""argon2id password hashing (argon2-cffi)."""

from __future__ import annotations

import secrets
import threading

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from ketaflow.core.errors import InvalidInput
from ketaflow.core.settings import Settings

MIN_PASSWORD_LENGTH = 12


def hasher(settings: Settings) -> PasswordHasher:
    return PasswordHasher(
        time_cost=settings.argon2_time_cost,
        memory_cost=settings.argon2_memory_kib,
        parallelism=1,
        hash_len=32,
        salt_len=16,
        type=Type.ID,
    )


def check_password_policy(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidInput(
            f"password must be at least {MIN_PASSWORD_LENGTH} characters", field_name="password"
        )
    if password.strip() != password:
        raise InvalidInput("password must not start or end with spaces", field_name="password")


def hash_password(settings: Settings, password: str) -> str:
    return hasher(settings).hash(password)


def verify_password(settings: Settings, password_hash: str, password: str) -> bool:
    try:
        return hasher(settings).verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(settings: Settings, password_hash: str) -> bool:
    return hasher(settings).check_needs_rehash(password_hash)


# Verified against when an attempt must fail whatever the password (no such account, an inactive
# or locked one), so every attempt costs one argon2 verification of the same cost. Made on first
# use and kept, one per cost setting: making it on every call cost unknown names a second argon2
# run, which told them apart. Its password is random, so no guess can match it.
_dummy_hashes: dict[tuple[int, int], str] = {}
_dummy_lock = threading.Lock()


def dummy_hash(settings: Settings) -> str:
    key = (settings.argon2_time_cost, settings.argon2_memory_kib)
    found = _dummy_hashes.get(key)
    if found is None:
        with _dummy_lock:
            found = _dummy_hashes.get(key)
            if found is None:
                found = _dummy_hashes[key] = hash_password(settings, secrets.token_urlsafe(32))
    return found


def forget_dummy_hashes() -> None:
    """For tests: the next dummy_hash() makes a new one."""
    with _dummy_lock:
        _dummy_hashes.clear()
