"""An identifier longer than any real one (a client's invention) is audited clipped, never a
500: PostgreSQL refused the over-long audit insert (found by a long Schemathesis run)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ketaflow.security.service import verify_audit_chain

LONG_ID = "0" * 37  # patient ids are 36-character UUIDs


def test_an_over_long_patient_id_is_audited_clipped_not_a_500(api, stack):
    body = {
        "kind": "integration",
        "modality": "cbt",
        "held_at": (datetime.now(UTC) - timedelta(hours=1)).isoformat(),
        "duration_min": 30,
    }
    for role in ("prescriber", "therapist"):  # refused by role, then not found
        response = api(role).post(f"/api/v1/patients/{LONG_ID}/therapy-sessions", json=body)
        assert response.status_code in (403, 404), response.text
        assert response.headers["content-type"].startswith("application/problem+json")
    events = api("auditor").get("/api/v1/audit", params={"action": "therapy.record"}).json()
    clipped = [e for e in events["items"] if (e["patient_id"] or "").startswith("0" * 35)]
    assert clipped, events
    assert all(e["patient_id"] == "0" * 35 + "\u2026" for e in clipped)
    assert verify_audit_chain(stack.db).intact  # the hash covers the value as recorded


def test_an_over_long_client_address_is_audited_clipped(stack):
    """What a trusted proxy forwards as the client address is not checked for length."""
    from ketaflow.security import audit
    from ketaflow.security.permissions import Actor

    address = "f" * 100
    with stack.db.transaction() as session:
        event = audit.record(
            session,
            Actor(None, "(unknown account)", "unauthenticated", address),
            "auth.login",
            "user",
            None,
            allowed=False,
        )
        assert event.client_address == "f" * 63 + "\u2026"
    assert verify_audit_chain(stack.db).intact
