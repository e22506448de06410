"""Schemathesis against the live server, on both stores: whatever a client sends that the
OpenAPI schema allows, or nearly allows, the answer is never a server error."""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, settings

from ketaflow.app import create_app
from ketaflow.core.settings import Settings

# The schema only: building the app opens no database.
schema = schemathesis.openapi.from_dict(create_app(Settings(database_url="sqlite://")).openapi())
schema = schema.exclude(path_regex=r"/auth/(token|logout)$")


@schema.parametrize()
@settings(
    max_examples=20,  # a long local run (400) found four 500s that 6 missed
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.filter_too_much,
        HealthCheck.function_scoped_fixture,
    ],
)
def test_no_request_makes_the_server_fail(case, stack):
    token = stack.token(stack.actors["prescriber"].username)
    response = case.call(
        base_url=stack.base_url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    assert response.status_code < 500, (case.method, case.formatted_path, response.text[:300])
    if response.status_code >= 400:
        media_type = response.headers.get("content-type", [""])
        media_type = media_type[0] if isinstance(media_type, list) else media_type
        assert media_type.startswith("application/problem+json"), response.text[:300]
