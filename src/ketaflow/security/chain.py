"""The audit hash chain, as pure functions: what an event's hash is, and where a chain breaks.

Without a key an event's hash is the SHA-256 of its canonical fields and the hash before it:
anyone able to write the table can recompute a whole chain. With a key (KETAFLOW_AUDIT_KEY) it
is an HMAC-SHA256, and each event records the id of the key that signed it (`key_id`), so a
chain can move from plain to keyed events: the first keyed event's MAC covers the hash before
it, which anchors every older (plain) event too. Once a keyed event appears, every later one
must be keyed. Removing events from the end of the log leaves a chain that still links, so a
checkpoint (an event id and its hash, kept outside the database) is what finds a truncated or
wiped log."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
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

_KEY_ID_LABEL = b"ketaflow audit key id"
KEY_ID_LENGTH = 16
_CHECKPOINT = re.compile(r"([1-9][0-9]{0,18}):([0-9a-f]{64})")


def _canonical(value: object) -> object:
    if isinstance(value, datetime):
        # one rendering per instant, whatever offset it came with
        utc = value.astimezone(UTC) if value.tzinfo is not None else value
        return utc.isoformat(timespec="microseconds")
    return value


@dataclass(frozen=True)
class AuditKey:
    """The secret that signs events, and its public id (a fingerprint stored with each event
    it signs, so verify can tell a wrong key from a tampered event)."""

    secret: bytes = field(repr=False)
    id: str

    @classmethod
    def from_secret(cls, secret: str | bytes) -> AuditKey:
        raw = secret.encode("utf-8") if isinstance(secret, str) else secret
        key_id = hmac.new(raw, _KEY_ID_LABEL, hashlib.sha256).hexdigest()[:KEY_ID_LENGTH]
        return cls(raw, key_id)


def event_hash(fields: Mapping[str, object], prev_hash: str, key: AuditKey | None = None) -> str:
    payload = [prev_hash, *(_canonical(fields[name]) for name in HASHED_FIELDS)]
    encoded = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
        "utf-8"
    )
    if key is None:
        return hashlib.sha256(encoded).hexdigest()
    return hmac.new(key.secret, encoded, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """An event id and its hash, as `verify` prints them (`ID:HASH`), kept outside the
    database: later, the log must still hold that event with that hash."""

    event_id: int
    hash: str

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        match = _CHECKPOINT.fullmatch(text.strip().lower())
        if match is None:
            raise ValueError(
                f"'{text}' is not a checkpoint: expected ID:HASH, an event id and its "
                "64-character hex hash, as `ketaflow audit verify` prints them"
            )
        return cls(int(match.group(1)), match.group(2))

    def __str__(self) -> str:
        return f"{self.event_id}:{self.hash}"


@dataclass(frozen=True)
class ChainBreak:
    event_id: int
    problem: str


@dataclass(frozen=True)
class ChainReport:
    events_checked: int
    first_break: ChainBreak | None
    # the newest event, as a checkpoint to keep elsewhere (None for an empty log)
    head: Checkpoint | None = None
    # the first event signed with a key (None: no event is keyed)
    keyed_from: int | None = None

    @property
    def intact(self) -> bool:
        return self.first_break is None


def _short(digest: str) -> str:
    return digest[:12] + "..."


def verify_chain(
    events: Iterable[Mapping[str, object]],
    key: AuditKey | None = None,
    expect: Checkpoint | None = None,
) -> ChainReport:
    """Walk events in id order; name the first one whose hash, link, position or signature is
    wrong. With `key`, the log must end with an event signed by it; with `expect`, it must
    still hold that event with that hash."""
    expected_prev = GENESIS_HASH
    expected_id: int | None = None
    keyed_from: int | None = None
    count = 0
    head: Checkpoint | None = None

    def broken(event_id: int, problem: str) -> ChainReport:
        return ChainReport(count, ChainBreak(event_id, problem), None, keyed_from)

    for event in events:
        count += 1
        event_id = int(event["id"])  # type: ignore[call-overload]
        if expected_id is not None and event_id != expected_id:
            return broken(event_id, f"event {expected_id} is missing before it")
        if event["prev_hash"] != expected_prev:
            return broken(event_id, "prev_hash does not match the previous event")
        key_id = event.get("key_id")
        if key_id is None:
            if keyed_from is not None:
                return broken(
                    event_id,
                    f"not signed with the audit key, although events from {keyed_from} on are "
                    "(written or rewritten without the key)",
                )
            signer = None
        elif key is None:
            return broken(
                event_id,
                f"signed with audit key {key_id}, but no key is configured "
                "(set KETAFLOW_AUDIT_KEY to check it)",
            )
        elif key_id != key.id:
            return broken(
                event_id, f"signed with audit key {key_id}, not the configured key {key.id}"
            )
        else:
            signer = key
            if keyed_from is None:
                keyed_from = event_id
        if event_hash(event, expected_prev, signer) != event["hash"]:
            return broken(event_id, "contents do not match its hash")
        if expect is not None and event_id == expect.event_id and event["hash"] != expect.hash:
            return broken(
                event_id,
                f"its hash {_short(str(event['hash']))} is not the checkpoint's "
                f"{_short(expect.hash)} (events up to it were rewritten)",
            )
        expected_prev = str(event["hash"])
        expected_id = event_id + 1
        head = Checkpoint(event_id, expected_prev)

    if expect is not None and (head is None or head.event_id < expect.event_id):
        where = "the log is empty" if head is None else f"the log ends at event {head.event_id}"
        return broken(
            expect.event_id,
            f"missing: the checkpoint names it, but {where} (events were deleted)",
        )
    if key is not None and head is not None and keyed_from is None:
        return broken(
            head.event_id,
            f"no event is signed with the configured audit key {key.id}: either none was "
            "written since the key was set (the next one will be), or the events signed "
            "with it were deleted or rewritten",
        )
    return ChainReport(count, None, head, keyed_from)
