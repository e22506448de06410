"""Outcome rules for measurement-based care: baseline, response, remission, relapse, durability,
booster triggers and early non-response. Pure: plain values in, decisions out, no clock.

Inputs are a sequence of `(taken_at, total)` points of one instrument and the course's dose
times. Every threshold is data (`OutcomeRules`, `BoosterRule`, `EarlyNonResponseRule`) with its
source; every result carries the baseline it used and the rule version, so a stored outcome can
be recomputed and explained.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from typing import Any, NamedTuple

RULE_VERSION = "ketaflow.measures.outcomes/2"  # 2: baseline_in_remission


class ScorePoint(NamedTuple):
    taken_at: datetime
    total: int


class OutcomeStatus(StrEnum):
    NO_DOSE = "no_dose"  # the course has no dose yet
    NO_BASELINE = "no_baseline"  # no score before the first dose
    NO_POST_DOSE_DATA = "no_post_dose_data"
    # The baseline is already within the remission threshold: a reduction from it (response)
    # and a score under it (remission) would say nothing about the course.
    BASELINE_IN_REMISSION = "baseline_in_remission"
    REMISSION = "remission"
    RESPONSE = "response"
    PARTIAL_RESPONSE = "partial_response"
    NO_RESPONSE = "no_response"
    RELAPSE = "relapse"


@dataclass(frozen=True)
class RemissionThreshold:
    """Remission when the total is at most `max_total` (inclusive)."""

    instrument_code: str
    max_total: int
    source: str
    unconfirmed: bool = False


DEFAULT_REMISSION_THRESHOLDS = (
    # PHQ-9 < 5 (reference §3 outcome definitions; Kroenke et al. 2001).
    RemissionThreshold("PHQ-9", 4, "PHQ-9 < 5 (reference §3)"),
    # MADRS < 10 or <= 10 in the reference (<= 12 in esketamine trials); issue 4 chose <= 10.
    RemissionThreshold("MADRS", 10, "MADRS <= 10 (reference §3; Hawley 2002)"),
    # QIDS-SR16 <= 5 (reference §3; ids-qids.org).
    RemissionThreshold("QIDS-SR16", 5, "QIDS-SR16 <= 5 (reference §3)"),
)


@dataclass(frozen=True)
class OutcomeRules:
    """Response, partial response and early improvement are fractions of the baseline total
    (reference §3 outcome definitions). Relapse is "return of the syndrome after response or
    remission" (Frank et al. 1991); the reference gives no operational count, so losing response
    on `relapse_consecutive` consecutive assessments is a clinic default (unconfirmed)."""

    response_reduction: Fraction = Fraction(1, 2)  # >= 50% (reference §3)
    partial_response_reduction: Fraction = Fraction(3, 10)  # >= 30% (reference §3)
    early_improvement_reduction: Fraction = Fraction(1, 5)  # >= 20% (reference §3)
    remission_thresholds: tuple[RemissionThreshold, ...] = DEFAULT_REMISSION_THRESHOLDS
    relapse_consecutive: int = 2  # clinic default (unconfirmed)
    version: str = RULE_VERSION

    def __post_init__(self) -> None:
        if self.relapse_consecutive < 1:
            raise ValueError("relapse_consecutive must be at least 1")
        fractions = (
            self.early_improvement_reduction,
            self.partial_response_reduction,
            self.response_reduction,
        )
        if not all(0 < f <= 1 for f in fractions) or sorted(fractions) != list(fractions):
            raise ValueError("need 0 < early improvement <= partial response <= response <= 1")

    def remission_for(self, instrument_code: str) -> RemissionThreshold | None:
        for threshold in self.remission_thresholds:
            if threshold.instrument_code == instrument_code:
                return threshold
        return None


DEFAULT_OUTCOME_RULES = OutcomeRules()


@dataclass(frozen=True)
class Baseline:
    """The last score before the first dose of the course (reference §3, issue 4)."""

    taken_at: datetime
    total: int
    first_dose_at: datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at.isoformat(),
            "total": self.total,
            "first_dose_at": self.first_dose_at.isoformat(),
        }


@dataclass(frozen=True)
class PointOutcome:
    taken_at: datetime
    total: int
    reduction: Fraction | None  # (baseline - total) / baseline; None when the baseline is 0
    category: OutcomeStatus
    remission: bool

    @property
    def reduction_percent(self) -> float | None:
        return None if self.reduction is None else round(float(self.reduction) * 100, 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "taken_at": self.taken_at.isoformat(),
            "total": self.total,
            "reduction_percent": self.reduction_percent,
            "category": str(self.category),
            "remission": self.remission,
        }


@dataclass(frozen=True)
class ResponseEpisode:
    """From the first assessment in response (or remission) to relapse, or to the last
    assessment still in response when there was no relapse (`relapsed` False: censored)."""

    start_at: datetime
    end_at: datetime
    relapsed: bool

    @property
    def duration(self) -> timedelta:
        return self.end_at - self.start_at

    def as_dict(self) -> dict[str, Any]:
        return {
            "start_at": self.start_at.isoformat(),
            "end_at": self.end_at.isoformat(),
            "relapsed": self.relapsed,
            "duration_days": round(self.duration.total_seconds() / 86400, 2),
        }


@dataclass(frozen=True)
class CourseOutcome:
    instrument_code: str
    rule_version: str
    status: OutcomeStatus
    baseline: Baseline | None
    first_dose_at: datetime | None
    remission_threshold: RemissionThreshold | None
    points: tuple[PointOutcome, ...] = ()
    best_total: int | None = None
    best_at: datetime | None = None
    first_early_improvement_at: datetime | None = None
    first_partial_response_at: datetime | None = None
    first_response_at: datetime | None = None
    first_remission_at: datetime | None = None
    relapse_at: tuple[datetime, ...] = ()
    episodes: tuple[ResponseEpisode, ...] = ()

    @property
    def latest(self) -> PointOutcome | None:
        return self.points[-1] if self.points else None

    @property
    def responded(self) -> bool:
        return self.first_response_at is not None

    @property
    def time_to_response(self) -> timedelta | None:
        if self.first_response_at is None or self.first_dose_at is None:
            return None
        return self.first_response_at - self.first_dose_at

    @property
    def time_to_remission(self) -> timedelta | None:
        if self.first_remission_at is None or self.first_dose_at is None:
            return None
        return self.first_remission_at - self.first_dose_at

    @property
    def durability(self) -> timedelta | None:
        """The longest response episode so far (relapsed or still running)."""
        if not self.episodes:
            return None
        return max(episode.duration for episode in self.episodes)

    def as_dict(self) -> dict[str, Any]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value else None

        def days(value: timedelta | None) -> float | None:
            return None if value is None else round(value.total_seconds() / 86400, 2)

        threshold = self.remission_threshold
        return {
            "instrument": self.instrument_code,
            "rule_version": self.rule_version,
            "status": str(self.status),
            "baseline": self.baseline.as_dict() if self.baseline else None,
            "first_dose_at": iso(self.first_dose_at),
            "remission_threshold": (
                {"max_total": threshold.max_total, "source": threshold.source}
                if threshold
                else None
            ),
            "points": [point.as_dict() for point in self.points],
            "best_total": self.best_total,
            "best_at": iso(self.best_at),
            "first_early_improvement_at": iso(self.first_early_improvement_at),
            "first_partial_response_at": iso(self.first_partial_response_at),
            "first_response_at": iso(self.first_response_at),
            "first_remission_at": iso(self.first_remission_at),
            "time_to_response_days": days(self.time_to_response),
            "time_to_remission_days": days(self.time_to_remission),
            "relapse_at": [iso(t) for t in self.relapse_at],
            "episodes": [episode.as_dict() for episode in self.episodes],
            "durability_days": days(self.durability),
        }


def _check_aware(moment: datetime, what: str) -> None:
    # Stored times are timezone-aware UTC (DESIGN conventions); a naive time here is a bug.
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what} {moment.isoformat()} has no timezone")


def _as_points(points: Iterable[ScorePoint | tuple[datetime, int]]) -> list[ScorePoint]:
    ordered = [ScorePoint(taken_at, total) for taken_at, total in points]
    for point in ordered:
        _check_aware(point.taken_at, "score time")
        if isinstance(point.total, bool) or not isinstance(point.total, int):
            raise ValueError(f"total at {point.taken_at.isoformat()} is not a whole number")
    return sorted(ordered, key=lambda point: point.taken_at)


def _as_doses(dose_times: Iterable[datetime]) -> list[datetime]:
    doses = list(dose_times)
    for dose_at in doses:
        _check_aware(dose_at, "dose time")
    return sorted(doses)


def taken_before_dose(taken_at: datetime, dose_at: datetime) -> bool:
    """Strictly before the dose started: a score at the dose start itself is post-dose. The one
    rule for the baseline here and for an assessment's pre_dose / post_dose timing (service)."""
    return taken_at < dose_at


def select_baseline(
    points: Iterable[ScorePoint | tuple[datetime, int]], dose_times: Iterable[datetime]
) -> Baseline | None:
    """The last score strictly before the first dose of the course; None without one."""
    doses = _as_doses(dose_times)
    if not doses:
        return None
    first_dose_at = doses[0]
    before = [
        point for point in _as_points(points) if taken_before_dose(point.taken_at, first_dose_at)
    ]
    if not before:
        return None
    last = before[-1]
    return Baseline(taken_at=last.taken_at, total=last.total, first_dose_at=first_dose_at)


def reduction_from_baseline(baseline_total: int, total: int) -> Fraction | None:
    """(baseline - total) / baseline, exact; None when the baseline is 0 (nothing to reduce)."""
    if baseline_total <= 0:
        return None
    return Fraction(baseline_total - total, baseline_total)


def classify(
    baseline_total: int,
    point: ScorePoint | tuple[datetime, int],
    remission_threshold: RemissionThreshold | None,
    rules: OutcomeRules = DEFAULT_OUTCOME_RULES,
) -> PointOutcome:
    """Category of one post-dose score against the baseline total."""
    taken_at, total = point
    reduction = reduction_from_baseline(baseline_total, total)
    remission = remission_threshold is not None and total <= remission_threshold.max_total
    if reduction is not None and reduction >= rules.response_reduction:
        category = OutcomeStatus.REMISSION if remission else OutcomeStatus.RESPONSE
    elif remission:
        category = OutcomeStatus.REMISSION
    elif reduction is not None and reduction >= rules.partial_response_reduction:
        category = OutcomeStatus.PARTIAL_RESPONSE
    else:
        category = OutcomeStatus.NO_RESPONSE
    return PointOutcome(
        taken_at=taken_at,
        total=total,
        reduction=reduction,
        category=category,
        remission=remission,
    )


def _is_well(point: PointOutcome) -> bool:
    return point.category in (OutcomeStatus.RESPONSE, OutcomeStatus.REMISSION)


def evaluate_course(
    instrument_code: str,
    points: Iterable[ScorePoint | tuple[datetime, int]],
    dose_times: Iterable[datetime],
    rules: OutcomeRules = DEFAULT_OUTCOME_RULES,
    *,
    as_of: datetime | None = None,
) -> CourseOutcome:
    """Outcome of one course on one instrument. With `as_of`, only what was known then counts
    (points and doses after it are ignored), so a past worklist can be reproduced."""
    all_points = _as_points(points)
    doses = _as_doses(dose_times)
    if as_of is not None:
        all_points = [point for point in all_points if point.taken_at <= as_of]
        doses = [dose for dose in doses if dose <= as_of]
    threshold = rules.remission_for(instrument_code)
    common: dict[str, Any] = {
        "instrument_code": instrument_code,
        "rule_version": rules.version,
        "remission_threshold": threshold,
    }
    if not doses:
        return CourseOutcome(
            status=OutcomeStatus.NO_DOSE, baseline=None, first_dose_at=None, **common
        )
    baseline = select_baseline(all_points, doses)
    if baseline is None:
        return CourseOutcome(
            status=OutcomeStatus.NO_BASELINE, baseline=None, first_dose_at=doses[0], **common
        )
    after = [
        point
        for point in all_points
        if not taken_before_dose(point.taken_at, baseline.first_dose_at)
    ]
    outcomes = tuple(classify(baseline.total, point, threshold, rules) for point in after)
    if not outcomes:
        return CourseOutcome(
            status=OutcomeStatus.NO_POST_DOSE_DATA,
            baseline=baseline,
            first_dose_at=baseline.first_dose_at,
            **common,
        )

    def first_at(predicate: Any) -> datetime | None:
        return next((p.taken_at for p in outcomes if predicate(p)), None)

    def reaches(fraction: Fraction) -> Any:
        return lambda p: p.reduction is not None and p.reduction >= fraction

    best = min(outcomes, key=lambda p: (p.total, p.taken_at))
    if threshold is not None and baseline.total <= threshold.max_total:
        # no response or remission is claimed from such a baseline; a patient getting worse
        # from it still shows (the latest score's category, e.g. no_response at PHQ-9 22)
        latest = outcomes[-1]
        still_in_remission = latest.total <= threshold.max_total
        return CourseOutcome(
            status=OutcomeStatus.BASELINE_IN_REMISSION if still_in_remission else latest.category,
            baseline=baseline,
            first_dose_at=baseline.first_dose_at,
            points=outcomes,
            best_total=best.total,
            best_at=best.taken_at,
            **common,
        )
    episodes, relapses, in_response = _episodes(outcomes, rules.relapse_consecutive)
    latest = outcomes[-1]
    status = OutcomeStatus.RELAPSE if relapses and not in_response else latest.category
    return CourseOutcome(
        status=status,
        baseline=baseline,
        first_dose_at=baseline.first_dose_at,
        points=outcomes,
        best_total=best.total,
        best_at=best.taken_at,
        first_early_improvement_at=first_at(reaches(rules.early_improvement_reduction)),
        first_partial_response_at=first_at(reaches(rules.partial_response_reduction)),
        first_response_at=first_at(reaches(rules.response_reduction)),
        first_remission_at=first_at(lambda p: p.remission),
        relapse_at=tuple(relapses),
        episodes=tuple(episodes),
        **common,
    )


def _episodes(
    outcomes: Sequence[PointOutcome], relapse_consecutive: int
) -> tuple[list[ResponseEpisode], list[datetime], bool]:
    """Response episodes and relapses: an episode starts at a point in response or remission;
    it ends in relapse when `relapse_consecutive` consecutive points in a row are not, the relapse
    dated at the first of them."""
    episodes: list[ResponseEpisode] = []
    relapses: list[datetime] = []
    start_at: datetime | None = None
    last_well_at: datetime | None = None
    losing: list[datetime] = []
    for point in outcomes:
        if start_at is None:
            if _is_well(point):
                start_at = last_well_at = point.taken_at
                losing = []
            continue
        if _is_well(point):
            last_well_at = point.taken_at
            losing = []
            continue
        losing.append(point.taken_at)
        if len(losing) >= relapse_consecutive:
            episodes.append(ResponseEpisode(start_at, losing[0], relapsed=True))
            relapses.append(losing[0])
            start_at = last_well_at = None
            losing = []
    in_response = start_at is not None
    if start_at is not None and last_well_at is not None:
        episodes.append(ResponseEpisode(start_at, last_well_at, relapsed=False))
    return episodes, relapses, in_response


# -- worklist suggestions ----------------------------------------------------------------------


class SuggestionKind(StrEnum):
    CONSIDER_BOOSTER = "consider_booster"
    LIKELY_NON_RESPONSE = "likely_non_response"


@dataclass(frozen=True)
class WorklistSuggestion:
    """Something a clinician should look at; the lead's service puts it on the worklist."""

    kind: SuggestionKind
    rule_code: str
    message: str
    instrument_code: str
    triggered_at: datetime
    total: int
    baseline: Baseline | None
    rule_version: str
    source: str
    unconfirmed: bool
    details: Mapping[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": str(self.kind),
            "rule_code": self.rule_code,
            "message": self.message,
            "instrument": self.instrument_code,
            "triggered_at": self.triggered_at.isoformat(),
            "total": self.total,
            "baseline": self.baseline.as_dict() if self.baseline else None,
            "rule_version": self.rule_version,
            "source": self.source,
            "unconfirmed": self.unconfirmed,
            "details": dict(self.details),
        }


class BoosterTrigger(StrEnum):
    RISE_FROM_BEST = "rise_from_best"  # latest - best since the first dose >= threshold
    BACK_ABOVE = "back_above"  # latest > threshold after an earlier post-dose score <= it


@dataclass(frozen=True)
class BoosterRule:
    """A "consider booster" rule for a responder. The defaults below are the issue's examples,
    not facts from the reference: clinic-configurable defaults, labelled unconfirmed."""

    code: str
    instrument_code: str
    trigger: BoosterTrigger
    threshold: int
    source: str
    unconfirmed: bool = True
    message: str = "consider booster"


DEFAULT_BOOSTER_RULES = (
    BoosterRule(
        code="phq9_rise_from_best",
        instrument_code="PHQ-9",
        trigger=BoosterTrigger.RISE_FROM_BEST,
        threshold=5,
        source="issue 4 example; clinic default (unconfirmed)",
    ),
    BoosterRule(
        code="phq9_back_above_10",
        instrument_code="PHQ-9",
        trigger=BoosterTrigger.BACK_ABOVE,
        threshold=10,
        source="issue 4 example; clinic default (unconfirmed)",
    ),
)


def evaluate_booster_rules(
    instrument_code: str,
    points: Iterable[ScorePoint | tuple[datetime, int]],
    dose_times: Iterable[datetime],
    booster_rules: Sequence[BoosterRule] = DEFAULT_BOOSTER_RULES,
    outcome_rules: OutcomeRules = DEFAULT_OUTCOME_RULES,
    *,
    as_of: datetime | None = None,
) -> tuple[WorklistSuggestion, ...]:
    """ "consider booster" suggestions on the latest score. A rule applies only to a responder
    (response reached before the latest score) and only when no dose was given since the latest
    score (a booster already given answers it)."""
    all_doses = _as_doses(dose_times)  # read once: callers may pass a generator
    course = evaluate_course(instrument_code, points, all_doses, outcome_rules, as_of=as_of)
    latest = course.latest
    if latest is None or course.first_response_at is None:
        return ()
    if course.first_response_at >= latest.taken_at:
        return ()
    doses = [d for d in all_doses if as_of is None or d <= as_of]
    if doses and doses[-1] >= latest.taken_at:
        return ()
    earlier = [p for p in course.points if p.taken_at < latest.taken_at]
    best_total = min(p.total for p in earlier)
    suggestions = []
    for rule in booster_rules:
        if rule.instrument_code != instrument_code:
            continue
        if rule.trigger is BoosterTrigger.RISE_FROM_BEST:
            fired = latest.total - best_total >= rule.threshold
        else:
            fired = latest.total > rule.threshold and any(
                p.total <= rule.threshold for p in earlier
            )
        if fired:
            suggestions.append(
                WorklistSuggestion(
                    kind=SuggestionKind.CONSIDER_BOOSTER,
                    rule_code=rule.code,
                    message=rule.message,
                    instrument_code=instrument_code,
                    triggered_at=latest.taken_at,
                    total=latest.total,
                    baseline=course.baseline,
                    rule_version=outcome_rules.version,
                    source=rule.source,
                    unconfirmed=rule.unconfirmed,
                    details={
                        "trigger": str(rule.trigger),
                        "threshold": rule.threshold,
                        "best_total": best_total,
                        "first_response_at": course.first_response_at.isoformat(),
                    },
                )
            )
    return tuple(suggestions)


@dataclass(frozen=True)
class EarlyNonResponseRule:
    """Early non-response (Translational Psychiatry 2024, 135 patients; reference §2): under 20%
    MADRS improvement 24 h after the 4th IV infusion, or three consecutive non-improvements,
    predicts non-response. "Non-improvement" is read as a post-dose score under the improvement
    threshold from baseline. The ±12 h window around the 24 h assessment is a clinic default
    (unconfirmed): the study's exact window is not in the reference."""

    instrument_code: str = "MADRS"
    min_improvement: Fraction = Fraction(1, 5)  # 20% (Translational Psychiatry 2024)
    after_dose_number: int = 4  # the 4th infusion (Translational Psychiatry 2024)
    assessment_delay: timedelta = timedelta(hours=24)  # Translational Psychiatry 2024
    assessment_tolerance: timedelta = timedelta(hours=12)  # clinic default (unconfirmed)
    consecutive_non_improvements: int = 3  # Translational Psychiatry 2024
    routes: tuple[str, ...] = ("IV",)
    code: str = "early_non_response"
    message: str = "likely non-response: review the course"
    source: str = "Translational Psychiatry 2024 (reference §2)"


DEFAULT_EARLY_NON_RESPONSE_RULE = EarlyNonResponseRule()


def evaluate_early_non_response(
    instrument_code: str,
    points: Iterable[ScorePoint | tuple[datetime, int]],
    dose_times: Iterable[datetime],
    route: str,
    rule: EarlyNonResponseRule = DEFAULT_EARLY_NON_RESPONSE_RULE,
    outcome_rules: OutcomeRules = DEFAULT_OUTCOME_RULES,
    *,
    as_of: datetime | None = None,
) -> WorklistSuggestion | None:
    """ "likely non-response: review the course", or None. Nothing is suggested once the latest
    score shows a response: the prediction has been overtaken by what happened."""
    if instrument_code != rule.instrument_code or route.upper() not in rule.routes:
        return None
    all_doses = _as_doses(dose_times)  # read once: callers may pass a generator
    course = evaluate_course(instrument_code, points, all_doses, outcome_rules, as_of=as_of)
    if course.baseline is None or not course.points:
        return None
    latest = course.points[-1]
    if latest.reduction is not None and latest.reduction >= outcome_rules.response_reduction:
        return None
    doses = [d for d in all_doses if as_of is None or d <= as_of]

    def improved(point: PointOutcome) -> bool:
        # With a baseline of 0 there is nothing to improve: never call it non-improvement.
        return point.reduction is None or point.reduction >= rule.min_improvement

    def suggestion(
        point: PointOutcome, criterion: str, extra: dict[str, Any]
    ) -> WorklistSuggestion:
        return WorklistSuggestion(
            kind=SuggestionKind.LIKELY_NON_RESPONSE,
            rule_code=rule.code,
            message=rule.message,
            instrument_code=instrument_code,
            triggered_at=point.taken_at,
            total=point.total,
            baseline=course.baseline,
            rule_version=outcome_rules.version,
            source=rule.source,
            unconfirmed=False,
            details={
                "criterion": criterion,
                "min_improvement_percent": float(rule.min_improvement * 100),
                "reduction_percent": point.reduction_percent,
                **extra,
            },
        )

    if len(doses) >= rule.after_dose_number:
        dose_at = doses[rule.after_dose_number - 1]
        next_dose_at = (
            doses[rule.after_dose_number] if len(doses) > rule.after_dose_number else None
        )
        target = dose_at + rule.assessment_delay
        window = [
            p
            for p in course.points
            if p.taken_at > dose_at
            and abs(p.taken_at - target) <= rule.assessment_tolerance
            and (next_dose_at is None or p.taken_at < next_dose_at)
        ]
        if window:
            point = min(window, key=lambda p: (abs(p.taken_at - target), p.taken_at))
            if not improved(point):
                return suggestion(
                    point,
                    f"under {float(rule.min_improvement * 100):g}% improvement "
                    f"{rule.assessment_delay.total_seconds() / 3600:g} h after dose "
                    f"{rule.after_dose_number}",
                    {"dose_number": rule.after_dose_number, "dose_at": dose_at.isoformat()},
                )
    run = rule.consecutive_non_improvements
    recent = course.points[-run:]
    if len(recent) == run and not any(improved(p) for p in recent):
        return suggestion(
            recent[-1],
            f"{run} consecutive assessments under "
            f"{float(rule.min_improvement * 100):g}% improvement",
            {"assessments": [p.taken_at.isoformat() for p in recent]},
        )
    return None
