"""POST /api/v1/pk/simulate over real HTTP: figures, problem+json errors, permissions."""

from __future__ import annotations

BODY = {
    "drug": "ketamine",
    "route": "iv",
    "dose": "0.5mg/kg",
    "duration": "40min",
    "weight_kg": 70,
    "patients": 300,
}
URL = "/api/v1/pk/simulate"


def test_simulate_returns_the_summary(api):
    response = api("nurse").post(URL, json=BODY)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["cmax_ng_per_ml"]["p5"] <= data["cmax_ng_per_ml"]["median"]
    assert data["cmax_ng_per_ml"]["median"] <= data["cmax_ng_per_ml"]["p95"]
    assert data["model"]["sampling_site"] == "venous"
    assert data["metabolite"]["name"] == "norketamine"
    for key in ("tmax_min", "auc_ng_h_per_ml", "half_life_h"):
        assert set(data[key]) >= {"median", "p5", "p95"}


def test_engine_errors_are_422_problems_naming_the_field(api):
    client = api("prescriber")
    for bad, field in (
        (BODY | {"dose": "-3mg"}, "dose"),
        (BODY | {"dose": "35"}, "dose"),  # no unit
        (BODY | {"route": "im"}, "duration"),
    ):
        response = client.post(URL, json=bad)
        assert response.status_code == 422
        assert response.headers["content-type"].startswith("application/problem+json")
        assert field in [e["field"] for e in response.json()["errors"]]


def test_schema_errors_are_422(api):
    client = api("prescriber")
    for bad in ({"drug": "heroin"}, {"patients": 1_000_001}, {"weight_kg": -1}):
        assert client.post(URL, json=BODY | bad).status_code == 422


def test_a_misspelt_field_is_422_naming_it_not_ignored(api):
    # "duraton" dropped silently would simulate a bolus instead of a 40-min infusion
    body = {k: v for k, v in BODY.items() if k != "duration"} | {"duraton": "40min"}
    response = api("prescriber").post(URL, json=body)
    assert response.status_code == 422
    assert response.headers["content-type"].startswith("application/problem+json")
    assert "duraton" in [e["field"] for e in response.json()["errors"]]


def test_only_clinicians_may_simulate(api):
    assert api().post(URL, json=BODY).status_code == 401
    for role in ("auditor", "front_desk", "admin"):
        assert api(role).post(URL, json=BODY).status_code == 403
