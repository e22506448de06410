"""No PHI or link token in the server's access log."""

from __future__ import annotations

import logging

import pytest

from ketaflow.core.access_log import RedactAccessLog, redact_path


@pytest.mark.parametrize(
    ("path", "logged"),
    [
        ("/api/v1/patients?name=Smith&birth_date=1980-01-01", "/api/v1/patients"),
        ("/q/abcDEF123-secret", "/q/[token]"),
        ("/q/abcDEF123-secret?x=1", "/q/[token]"),
        ("/api/v1/patients/123", "/api/v1/patients/123"),
        ("//q/abcDEF123-secret", "/q/[token]"),
        ("/Q/abcDEF123-secret", "/q/[token]"),
        ("/clinic/q/abcDEF123-secret", "/clinic/q/[token]"),
    ],
)
def test_paths_are_redacted(path, logged):
    assert redact_path(path) == logged
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5555", "GET", path, "1.1", 200),
        None,
    )
    assert RedactAccessLog().filter(record)
    assert logged in record.getMessage()
    assert "Smith" not in record.getMessage() and "secret" not in record.getMessage()
