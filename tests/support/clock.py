"""A clock tests can set and move; real time until they do."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class SettableClock:
    def __init__(self) -> None:
        self._now: datetime | None = None

    def __call__(self) -> datetime:
        return self._now or datetime.now(UTC)

    def set(self, when: datetime) -> datetime:
        if when.tzinfo is None:
            raise ValueError("use a timezone-aware time")
        self._now = when
        return when

    def advance(self, **delta: float) -> datetime:
        return self.set(self() + timedelta(**delta))

    def reset(self) -> None:
        self._now = None
