"""Outcome rules: baseline, response, remission, relapse, durability, boosters, early
non-response."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ketaflow.measures.outcomes import (
    DEFAULT_BOOSTER_RULES,
    RULE_VERSION,
    BoosterRule,
    BoosterTrigger,
    EarlyNonResponseRule,
    OutcomeRules,
    OutcomeStatus,
    ScorePoint,
    SuggestionKind,
    classify,
    evaluate_booster_rules,
    evaluate_course,
    evaluate_early_non_response,
    reduction_from_baseline,
    select_baseline,
)

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def day(n: float) -> datetime:
    return T0 + timedelta(days=n)


IV_SERIES = [day(0), day(2), day(4), day(7), day(9), day(11)]  # six infusions, 3 a week-ish


# -- baseline -----------------------------------------------------------------------------------


def test_baseline_is_the_last_score_before_the_first_dose():
    points = [(day(-10), 22), (day(-1), 18), (day(-0.01), 20), (day(1), 9)]
    baseline = select_baseline(points, [day(7), day(0)])
    assert (baseline.taken_at, baseline.total, baseline.first_dose_at) == (day(-0.01), 20, day(0))


def test_a_score_at_the_dose_time_is_not_a_baseline():
    assert select_baseline([(day(0), 20)], [day(0)]) is None


def test_no_dose_and_no_baseline_statuses():
    assert evaluate_course("PHQ-9", [(day(-1), 20)], []).status is OutcomeStatus.NO_DOSE
    no_baseline = evaluate_course("PHQ-9", [(day(1), 10)], [day(0)])
    assert no_baseline.status is OutcomeStatus.NO_BASELINE
    assert no_baseline.first_dose_at == day(0)
    waiting = evaluate_course("PHQ-9", [(day(-1), 20)], [day(0)])
    assert waiting.status is OutcomeStatus.NO_POST_DOSE_DATA
    assert waiting.baseline.total == 20


# -- response, partial response, early improvement, remission -------------------------------


@pytest.mark.parametrize(
    ("total", "category"),
    [
        (10, OutcomeStatus.RESPONSE),  # exactly 50% (reference §3)
        (11, OutcomeStatus.PARTIAL_RESPONSE),  # 45%
        (14, OutcomeStatus.PARTIAL_RESPONSE),  # exactly 30%
        (15, OutcomeStatus.NO_RESPONSE),  # 25%
        (4, OutcomeStatus.REMISSION),  # PHQ-9 < 5
        (5, OutcomeStatus.RESPONSE),
    ],
)
def test_phq9_categories_at_the_thresholds(total, category):
    course = evaluate_course("PHQ-9", [(day(-1), 20), (day(1), total)], [day(0)])
    assert course.latest.category is category
    assert course.status is category


def test_early_improvement_partial_and_response_times():
    points = [(day(-1), 20), (day(1), 17), (day(3), 16), (day(5), 14), (day(8), 10)]
    course = evaluate_course("PHQ-9", points, IV_SERIES)
    assert course.first_early_improvement_at == day(3)  # 20% (reference §3)
    assert course.first_partial_response_at == day(5)  # 30%
    assert course.first_response_at == day(8)  # 50%
    assert course.time_to_response == timedelta(days=8)
    assert course.first_remission_at is None


@pytest.mark.parametrize(
    ("code", "remits", "does_not"),
    [("PHQ-9", 4, 5), ("MADRS", 10, 11), ("QIDS-SR16", 5, 6)],
)
def test_remission_thresholds_by_scale(code, remits, does_not):
    threshold = OutcomeRules().remission_for(code)
    assert classify(40, (day(1), remits), threshold).remission
    assert not classify(40, (day(1), does_not), threshold).remission


def test_scales_without_a_remission_threshold_never_remit():
    course = evaluate_course("GAD-7", [(day(-1), 15), (day(1), 0)], [day(0)])
    assert course.remission_threshold is None
    assert course.first_remission_at is None
    assert course.status is OutcomeStatus.RESPONSE


def test_remission_without_a_50_percent_reduction_counts_as_remission():
    course = evaluate_course("PHQ-9", [(day(-1), 6), (day(1), 4)], [day(0)])
    assert course.latest.reduction == Fraction(1, 3)
    assert course.status is OutcomeStatus.REMISSION


def test_zero_baseline_has_no_reduction():
    course = evaluate_course("PHQ-9", [(day(-1), 0), (day(1), 3)], [day(0)])
    assert course.latest.reduction is None
    assert course.first_response_at is None
    assert reduction_from_baseline(0, 0) is None


def test_clinic_may_choose_madrs_remission_below_12():
    from ketaflow.measures.outcomes import RemissionThreshold

    rules = OutcomeRules(
        remission_thresholds=(RemissionThreshold("MADRS", 12, "esketamine trials"),),
        version="clinic-2026-03",
    )
    course = evaluate_course("MADRS", [(day(-1), 36), (day(1), 12)], [day(0)], rules)
    assert course.status is OutcomeStatus.REMISSION
    assert course.rule_version == "clinic-2026-03"


def test_rules_reject_incoherent_thresholds():
    with pytest.raises(ValueError):
        OutcomeRules(partial_response_reduction=Fraction(3, 5))
    with pytest.raises(ValueError):
        OutcomeRules(relapse_consecutive=0)


# -- relapse and durability -------------------------------------------------------------------


def test_relapse_needs_consecutive_loss_of_response_and_is_dated_at_onset():
    points = [
        (day(-1), 20),
        (day(3), 9),  # response starts
        (day(10), 4),  # remission
        (day(17), 12),  # lost once ...
        (day(24), 8),  # ... back: no relapse
        (day(31), 13),  # lost
        (day(38), 15),  # lost again: relapse dated day 31
    ]
    course = evaluate_course("PHQ-9", points, IV_SERIES)
    assert course.relapse_at == (day(31),)
    assert course.status is OutcomeStatus.RELAPSE
    (episode,) = course.episodes
    assert (episode.start_at, episode.end_at, episode.relapsed) == (day(3), day(31), True)
    assert course.durability == timedelta(days=28)


def test_a_booster_response_opens_a_second_episode():
    points = [
        (day(-1), 20),
        (day(3), 9),
        (day(10), 12),
        (day(17), 14),  # relapse (onset day 10)
        (day(25), 6),  # after a booster
        (day(32), 7),
    ]
    course = evaluate_course("PHQ-9", points, [*IV_SERIES, day(24)])
    assert course.relapse_at == (day(10),)
    assert [e.relapsed for e in course.episodes] == [True, False]
    assert course.episodes[1].start_at == day(25)
    assert course.episodes[1].end_at == day(32)
    assert course.status is OutcomeStatus.RESPONSE


def test_as_of_reproduces_what_was_known_then():
    points = [(day(-1), 20), (day(3), 9), (day(10), 12), (day(17), 14)]
    then = evaluate_course("PHQ-9", points, IV_SERIES, as_of=day(12))
    assert then.relapse_at == ()
    assert then.latest.taken_at == day(10)


def test_outcome_records_baseline_and_rule_version_in_json():
    course = evaluate_course("PHQ-9", [(day(-1), 20), (day(3), 9)], [day(0)])
    data = json.loads(json.dumps(course.as_dict()))
    assert data["rule_version"] == RULE_VERSION
    assert data["baseline"] == {
        "taken_at": day(-1).isoformat(),
        "total": 20,
        "first_dose_at": day(0).isoformat(),
    }
    assert data["points"][0]["reduction_percent"] == 55.0
    assert data["time_to_response_days"] == 3.0


def test_non_integer_totals_are_refused():
    with pytest.raises(ValueError, match="whole number"):
        evaluate_course("PHQ-9", [(day(-1), 20.5)], [day(0)])


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 60), st.integers(0, 60))
def test_response_is_exactly_a_half_or_more_reduction(baseline_total, total):
    point = classify(baseline_total, ScorePoint(day(1), total), None)
    responded = baseline_total > 0 and 2 * (baseline_total - total) >= baseline_total
    assert (point.category is OutcomeStatus.RESPONSE) == responded
    partial = baseline_total > 0 and 10 * (baseline_total - total) >= 3 * baseline_total
    assert (point.category is OutcomeStatus.PARTIAL_RESPONSE) == (partial and not responded)


@st.composite
def course_points(draw):
    baseline_total = draw(st.integers(1, 27))
    offsets = sorted(draw(st.lists(st.integers(1, 120), min_size=1, max_size=15, unique=True)))
    totals = draw(st.lists(st.integers(0, 27), min_size=len(offsets), max_size=len(offsets)))
    return [(day(-1), baseline_total)] + [
        (day(offset), total) for offset, total in zip(offsets, totals, strict=True)
    ]


@settings(max_examples=150, deadline=None)
@given(course_points())
def test_course_invariants(points):
    course = evaluate_course("PHQ-9", points, [day(0)])
    assert course.baseline.total == points[0][1]
    assert len(course.points) == len(points) - 1
    assert course.best_total == min(total for _, total in points[1:])
    # Episodes do not overlap and relapses close exactly the relapsed episodes.
    for episode in course.episodes:
        assert episode.start_at <= episode.end_at
    ends = [e.end_at for e in course.episodes if e.relapsed]
    assert tuple(ends) == course.relapse_at
    for before, after in zip(course.episodes, course.episodes[1:], strict=False):
        assert before.relapsed and before.end_at < after.start_at
    # A baseline already in remission (PHQ-9 < 5) judges nothing: no response, no remission.
    in_remission = course.baseline.total <= 4 and course.points[-1].total <= 4
    assert (course.status is OutcomeStatus.BASELINE_IN_REMISSION) == in_remission
    if course.first_response_at is None and course.first_remission_at is None:
        assert course.episodes == ()
        assert course.status in (
            OutcomeStatus.NO_RESPONSE,
            OutcomeStatus.PARTIAL_RESPONSE,
            OutcomeStatus.BASELINE_IN_REMISSION,
        )


# -- booster triggers ---------------------------------------------------------------------------


def responder(*later: tuple[datetime, int]) -> list[tuple[datetime, int]]:
    return [(day(-1), 20), (day(5), 8), (day(12), 3), *later]


def test_default_booster_rules_are_labelled_unconfirmed():
    assert {rule.code for rule in DEFAULT_BOOSTER_RULES} == {
        "phq9_rise_from_best",
        "phq9_back_above_10",
    }
    assert all(rule.unconfirmed for rule in DEFAULT_BOOSTER_RULES)


@pytest.mark.parametrize(
    ("latest", "expected"),
    [
        (7, ()),  # rise 4 from best 3
        (8, ("phq9_rise_from_best",)),  # rise 5
        (10, ("phq9_rise_from_best",)),  # at 10: not above
        (11, ("phq9_rise_from_best", "phq9_back_above_10")),
    ],
)
def test_booster_rules_fire_at_their_thresholds(latest, expected):
    suggestions = evaluate_booster_rules("PHQ-9", responder((day(30), latest)), IV_SERIES)
    assert tuple(s.rule_code for s in suggestions) == expected
    for suggestion in suggestions:
        assert suggestion.kind is SuggestionKind.CONSIDER_BOOSTER
        assert suggestion.message == "consider booster"
        assert suggestion.baseline.total == 20
        assert suggestion.rule_version == RULE_VERSION
        assert suggestion.triggered_at == day(30)
        assert suggestion.details["best_total"] == 3


def test_back_above_needs_an_earlier_score_at_or_below_the_threshold():
    rule = BoosterRule("madrs_back_above_20", "MADRS", BoosterTrigger.BACK_ABOVE, 20, "clinic")
    # baseline 50, response at 24 (52%), never <= 20, then 25: not "back" above 20
    points = [(day(-1), 50), (day(5), 24), (day(30), 25)]
    assert evaluate_booster_rules("MADRS", points, IV_SERIES, [rule]) == ()
    points = [(day(-1), 50), (day(5), 18), (day(30), 25)]
    assert [s.rule_code for s in evaluate_booster_rules("MADRS", points, IV_SERIES, [rule])] == [
        "madrs_back_above_20"
    ]


def test_no_booster_for_a_non_responder_or_after_a_booster_dose():
    non_responder = [(day(-1), 20), (day(5), 12), (day(12), 11), (day(30), 17)]
    assert evaluate_booster_rules("PHQ-9", non_responder, IV_SERIES) == ()
    points = responder((day(30), 14))
    assert evaluate_booster_rules("PHQ-9", points, IV_SERIES)  # fires before the booster
    assert evaluate_booster_rules("PHQ-9", points, [*IV_SERIES, day(31)]) == ()


def test_booster_rules_only_apply_to_their_instrument():
    assert evaluate_booster_rules("QIDS-SR16", responder((day(30), 14)), IV_SERIES) == ()


# -- early non-response (Translational Psychiatry 2024) --------------------------------------


def madrs(*later: tuple[datetime, int]) -> list[tuple[datetime, int]]:
    return [(day(-0.5), 30), *later]


FOURTH = IV_SERIES[3]


@pytest.mark.parametrize(
    ("total", "fires"),
    [(25, True), (24, False)],  # 30 -> 25 is 16.7%; 30 -> 24 is exactly 20%
)
def test_under_20_percent_24h_after_the_fourth_infusion(total, fires):
    points = madrs((day(1), 29), (FOURTH + timedelta(hours=24), total))
    suggestion = evaluate_early_non_response("MADRS", points, IV_SERIES, "IV")
    assert (suggestion is not None) == fires
    if fires:
        assert suggestion.kind is SuggestionKind.LIKELY_NON_RESPONSE
        assert suggestion.message == "likely non-response: review the course"
        assert suggestion.details["dose_number"] == 4
        assert suggestion.baseline.total == 30
        assert suggestion.rule_version == RULE_VERSION


def test_the_24h_assessment_must_fall_in_its_window():
    late = madrs((FOURTH + timedelta(hours=40), 28))
    assert evaluate_early_non_response("MADRS", late, IV_SERIES, "IV") is None
    edge = madrs((FOURTH + timedelta(hours=36), 28))
    assert evaluate_early_non_response("MADRS", edge, IV_SERIES, "iv") is not None


def test_three_consecutive_non_improvements():
    points = madrs((day(1), 28), (day(3), 26), (day(5), 25))
    suggestion = evaluate_early_non_response("MADRS", points, IV_SERIES, "IV")
    assert suggestion is not None
    assert suggestion.details["assessments"] == [
        day(1).isoformat(),
        day(3).isoformat(),
        day(5).isoformat(),
    ]
    improving = madrs((day(1), 28), (day(3), 24), (day(5), 25))
    assert evaluate_early_non_response("MADRS", improving, IV_SERIES, "IV") is None
    only_two = madrs((day(1), 28), (day(3), 26))
    assert evaluate_early_non_response("MADRS", only_two, IV_SERIES, "IV") is None


def test_early_non_response_scope():
    points = madrs((day(1), 28), (day(3), 26), (day(5), 25))
    assert evaluate_early_non_response("MADRS", points, IV_SERIES, "IN") is None
    assert evaluate_early_non_response("PHQ-9", points, IV_SERIES, "IV") is None
    phq_rule = EarlyNonResponseRule(instrument_code="PHQ-9")
    assert evaluate_early_non_response("PHQ-9", points, IV_SERIES, "IV", phq_rule) is not None


def test_a_later_response_overrides_the_prediction():
    points = madrs((day(1), 28), (day(3), 26), (day(5), 25), (day(8), 12))
    assert evaluate_early_non_response("MADRS", points, IV_SERIES, "IV") is None


def test_naive_times_are_refused():
    naive = datetime(2026, 3, 2, 9, 0)
    with pytest.raises(ValueError, match=r"score time .* has no timezone"):
        evaluate_course("PHQ-9", [(naive, 20)], [day(0)])
    with pytest.raises(ValueError, match=r"dose time .* has no timezone"):
        evaluate_course("PHQ-9", [(day(-1), 20)], [naive])
    with pytest.raises(ValueError, match="has no timezone"):
        evaluate_course("PHQ-9", [(day(-1), 20)], [day(0), naive])


def test_dose_times_may_be_a_generator():
    points = responder((day(30), 14))
    doses = (dose for dose in IV_SERIES)
    assert evaluate_booster_rules("PHQ-9", points, doses)
    madrs_points = madrs((day(1), 28), (day(3), 26), (day(5), 25))
    two_doses = (dose for dose in [*IV_SERIES[:2]])
    assert evaluate_early_non_response("MADRS", madrs_points, two_doses, "IV") is not None


@settings(max_examples=150, deadline=None)
@given(course_points(), st.lists(st.integers(0, 120), max_size=8))
def test_booster_suggestions_only_for_responders_without_a_later_dose(points, dose_days):
    doses = [day(0)] + [day(d) for d in dose_days]
    suggestions = evaluate_booster_rules("PHQ-9", points, doses)
    if not suggestions:
        return
    course = evaluate_course("PHQ-9", points, doses)
    latest = course.latest
    assert course.first_response_at is not None
    assert course.first_response_at < latest.taken_at
    assert max(doses) < latest.taken_at
    earlier_best = min(p.total for p in course.points if p.taken_at < latest.taken_at)
    for suggestion in suggestions:
        assert suggestion.total == latest.total
        if suggestion.rule_code == "phq9_rise_from_best":
            assert latest.total - earlier_best >= 5
        else:
            assert latest.total > 10 >= earlier_best


def test_a_baseline_already_in_remission_claims_no_response_or_remission():
    # PHQ-9 4 before the first dose: 1 afterwards is a 75% "reduction" and "remission" that
    # say nothing about the course
    course = evaluate_course("PHQ-9", [(day(-1), 4), (day(2), 1), (day(9), 0)], [day(0)])
    assert course.status is OutcomeStatus.BASELINE_IN_REMISSION
    assert course.first_response_at is None and course.first_remission_at is None
    assert [p.total for p in course.points] == [1, 0]  # still plotted
    assert course.as_dict()["status"] == "baseline_in_remission"
    # getting worse from it shows: the latest score's category, still no response claimed
    worse = evaluate_course("PHQ-9", [(day(-1), 4), (day(2), 1), (day(9), 22)], [day(0)])
    assert worse.status is OutcomeStatus.NO_RESPONSE and worse.first_response_at is None
    # one point above the threshold and the usual rules apply
    assert evaluate_course("PHQ-9", [(day(-1), 5), (day(2), 1)], [day(0)]).status is (
        OutcomeStatus.REMISSION
    )
