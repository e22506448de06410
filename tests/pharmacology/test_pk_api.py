"""POST /api/v1/pk/simulate on a test app that mounts the router (permission overridden)."""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.testclient import TestClient

from ketaflow.pharmacology import api

app = FastAPI()
app.include_router(api.router, prefix="/api/v1")
app.dependency_overrides[api.require_pk_simulate] = lambda: None
client = TestClient(app)

BODY = {
    "drug": "ketamine",
    "route": "iv",
    "dose": "0.5mg/kg",
    "duration": "40min",
    "weight_kg": 70,
    "patients": 300,
}


def test_simulate_returns_the_summary():
    response = client.post("/api/v1/pk/simulate", json=BODY)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["cmax_ng_per_ml"]["p5"] <= data["cmax_ng_per_ml"]["median"]
    assert data["model"]["sampling_site"] == "venous"
    assert data["metabolite"]["name"] == "norketamine"


def test_engine_errors_are_422_naming_the_field():
    response = client.post("/api/v1/pk/simulate", json=BODY | {"dose": "-3mg"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "dose"]
    response = client.post("/api/v1/pk/simulate", json=BODY | {"route": "im"})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "duration"]


def test_schema_errors_are_422():
    for bad in ({"drug": "heroin"}, {"patients": 1_000_001}, {"weight_kg": -1}):
        response = client.post("/api/v1/pk/simulate", json=BODY | bad)
        assert response.status_code == 422


def test_route_requires_the_pk_permission():
    route = next(r for r in api.router.routes if r.path == "/pk/simulate")
    assert any(d.dependency is api.require_pk_simulate for d in route.dependencies)
