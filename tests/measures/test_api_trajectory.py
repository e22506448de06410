"""Trajectories over HTTP (points, dose markers, status, the Plotly figure) and the pure figure
builder."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest

from ketaflow.measures import trajectory
from measures.measures_builders import add_course, phq9, record, register_patient

DAY = timedelta(days=1)


@pytest.fixture
def patient_id(api):
    return register_patient(api("prescriber"))


def _vertical_lines(figure: dict) -> list[dict]:
    return [
        s
        for s in figure["layout"].get("shapes", [])
        if s["type"] == "line" and s.get("yref") == "paper"
    ]


def test_trajectory_has_points_markers_status_and_figure(api, stack, patient_id):
    t0 = (datetime.now(UTC) - 20 * DAY).replace(microsecond=0)
    doses = [t0, t0 + 2 * DAY, t0 + 4 * DAY]
    _, session_ids = add_course(stack.db, patient_id, doses)
    nurse = api("nurse")
    record(nurse, patient_id, "PHQ-9", phq9(22), taken_at=t0 - DAY)
    record(nurse, patient_id, "PHQ-9", phq9(10), taken_at=t0 + 3 * DAY)
    record(nurse, patient_id, "PHQ-9", phq9(3), taken_at=t0 + 6 * DAY)
    record(nurse, patient_id, "GAD-7", {str(i): 2 for i in range(1, 8)})  # another scale
    response = nurse.get(
        f"/api/v1/patients/{patient_id}/trajectory", params={"instrument": "phq-9"}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["instrument"] == "PHQ-9"
    assert [p["total"] for p in body["points"]] == [22, 10, 3]
    assert [p["band"] for p in body["points"]] == ["severe", "moderate", "minimal"]
    assert [m["session_id"] for m in body["markers"]] == session_ids
    assert [datetime.fromisoformat(m["dose_started_at"]) for m in body["markers"]] == doses
    status = body["status"]
    assert status["status"] == "remission" and status["in_remission"] is True
    assert status["baseline"]["total"] == 22
    assert status["rule_version"]

    figure = body["figure"]
    (scores,) = [t for t in figure["data"] if t["name"] == "PHQ-9"]
    assert scores["y"] == [22, 10, 3]
    assert len(_vertical_lines(figure)) == len(doses)
    rects = [s for s in figure["layout"]["shapes"] if s["type"] == "rect"]
    assert len(rects) == 5  # the five PHQ-9 bands (Kroenke 2001)
    annotations = " ".join(a["text"] for a in figure["layout"]["annotations"])
    assert "baseline 22" in annotations and "remission ≤ 4" in annotations


def test_trajectory_without_doses_or_scores(api, patient_id):
    body = (
        api("therapist")
        .get(f"/api/v1/patients/{patient_id}/trajectory", params={"instrument": "GAD-7"})
        .json()
    )
    assert body["points"] == [] and body["markers"] == [] and body["status"] is None
    assert body["figure"]["data"][0]["y"] == []


def test_trajectory_is_refused_to_front_desk_and_checks_the_scale(api, patient_id):
    url = f"/api/v1/patients/{patient_id}/trajectory"
    assert api("front_desk").get(url).status_code == 403
    bad = api("nurse").get(url, params={"instrument": "C-SSRS"})
    assert bad.status_code == 422


def test_figure_builder_shades_bands_and_draws_doses_and_levels():
    t0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
    figure = trajectory.build_figure(
        "MADRS",
        "MADRS",
        [
            trajectory.TrajectoryPoint(t0 - DAY, 32, "moderate", "staff"),
            trajectory.TrajectoryPoint(t0 + DAY, 14, "mild", "self_report"),
        ],
        [trajectory.DoseLine(t0, "ketamine IV #1"), trajectory.DoseLine(t0 + DAY, "#2")],
        [
            trajectory.BandArea("absent", 0, 6),
            trajectory.BandArea("mild", 7, 19),
            trajectory.BandArea("moderate", 20, 34),
            trajectory.BandArea("severe", 35, 60),
        ],
        0,
        60,
        trajectory.Levels(
            baseline_total=32, response_reduction=Fraction(1, 2), remission_max_total=10
        ),
    )
    rects = [s for s in figure["layout"]["shapes"] if s["type"] == "rect"]
    # Adjacent whole-number bands meet half-way and together cover the whole range.
    assert [(r["y0"], r["y1"]) for r in rects] == [(0, 6.5), (6.5, 19.5), (19.5, 34.5), (34.5, 60)]
    assert len(_vertical_lines(figure)) == 2
    scores, doses = figure["data"]
    assert scores["marker"]["symbol"] == ["circle", "diamond"]  # self-report stands out
    assert doses["text"] == ["ketamine IV #1", "#2"]
    texts = [a["text"] for a in figure["layout"]["annotations"]]
    assert "baseline 32" in texts and "response ≤ 16" in texts and "remission ≤ 10" in texts
