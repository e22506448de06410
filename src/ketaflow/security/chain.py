"""The audit hash chain, as pure functions: what an event's hash is, and where a chain breaks."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

GENESIS_HASH = "0" * 64

# The fields an event's hash covers, in order. Changing this list breaks every existing chain.
HASHED_FIELDS = (
    "id",
    "occurred_at",
    "actor_id",
    "actor_username",
    "actor_role",
    "action",
    "resource_type",
    "resource_id",
    "patient_id",
    "allowed",
    "client_address",
    "detail",
)


def _canonical(value: object) -> object:
    if isinstance(value, datetime):
        # one rendering per instant, whatever offset it came with
        utc = value.astimezone(UTC) if value.tzinfo is not None else value
        return utc.isoformat(timespec="microseconds")
    return value


def event_hash(fields: Mapping[str, object], prev_hash: str) -> str:
    payload = [prev_hash, *(_canonical(fields[name]) for name in HASHED_FIELDS)]
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(encoded.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    problem: str


@dataclass(frozen=True)
class ChainReport:
    events_checked: int
    first_break: ChainBreak | None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def verify_chain(events: Iterable[Mapping[str, object]]) -> ChainReport:
    """Walk events in id order; name the first one whose hash, link or position is wrong."""
    expected_prev = GENESIS_HASH
    expected_id: int | None = None
    count = 0
    for event in events:
        count += 1
        event_id = int(event["id"])  # type: ignore[call-overload]
        if expected_id is not None and event_id != expected_id:
            return ChainReport(
                count, ChainBreak(event_id, f"event {expected_id} is missing before it")
            )
        if event["prev_hash"] != expected_prev:
            return ChainReport(
                count, ChainBreak(event_id, "prev_hash does not match the previous event")
            )
        if event_hash(event, expected_prev) != event["hash"]:
            return ChainReport(count, ChainBreak(event_id, "contents do not match its hash"))
        expected_prev = str(event["hash"])
        expected_id = event_id + 1
    return ChainReport(count, None)
