"""Discharge criteria: every unmet criterion, never just the first.

A patient may leave only when all hold (issue 3 §5): the minimum observation since the dose
(since the first device for esketamine), recent vitals within the protocol's limits or near the
pre-dose baseline, sedation resolved (MOAA/S 5), dissociation back to the pre-dose rating, no
open severe adverse event, the escort present, the protocol's required readings taken, and for
esketamine the clinician's judgment of stability and the REMS form's "when would the patient
have been ready without the 2-hour minimum" (reference §1, H).

Pure: no database, no clock (`at` is a parameter), no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from pydantic import BaseModel, ConfigDict, Field

from ketaflow.treatment.errors import Reason
from ketaflow.treatment.monitoring import (
    AdverseEvent,
    DueStatus,
    Reading,
    active_readings,
    latest_reading_with,
    reading_schedule,
)
from ketaflow.treatment.protocols import Anchor, DischargeCriteria, Measure, Protocol

__all__ = ["DischargeEvaluation", "DischargeInputs", "evaluate_discharge", "observation_ends_at"]

_SRC_ISSUE = "issue 3 §5 discharge criteria"
_SRC_REMS = "FDA REMS page; REMS Patient Monitoring Form (reference §1)"


class _Value(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DischargeInputs(_Value):
    """What the discharging clinician confirms at discharge time."""

    escort_present: bool
    # Esketamine: the clinician judges the patient clinically stable (FDA REMS page, H).
    clinician_judges_stable: bool | None = None
    # Esketamine REMS form: minutes after the first device the patient would have been ready
    # to leave without the 2-hour minimum.
    ready_without_minimum_min: int | None = Field(default=None, ge=0, le=24 * 60)


class DischargeEvaluation(_Value):
    unmet: tuple[Reason, ...]
    # When the minimum observation ends (None before the dose started).
    observation_ends_at: datetime | None

    @property
    def ok(self) -> bool:
        return not self.unmet

    @property
    def rule_ids(self) -> list[str]:
        return [r.rule_id for r in self.unmet]


def observation_ends_at(
    criteria: DischargeCriteria,
    *,
    dose_started_at: datetime | None,
    dose_ended_at: datetime | None,
) -> datetime | None:
    anchor = dose_started_at if criteria.observation_anchor is Anchor.dose_start else dose_ended_at
    if anchor is None:
        return None
    return anchor + timedelta(minutes=criteria.min_observation_min)


def _baseline(readings: Sequence[Reading], measure: Measure, before: datetime | None) -> int | None:
    if before is None:
        return None
    reading = latest_reading_with(readings, measure, not_after=before - timedelta(microseconds=1))
    return None if reading is None else reading.value(measure)


def evaluate_discharge(
    protocol: Protocol,
    *,
    readings: Iterable[Reading],
    adverse_events: Iterable[AdverseEvent],
    checked_in_at: datetime | None,
    dose_started_at: datetime | None,
    dose_ended_at: datetime | None,
    inputs: DischargeInputs,
    at: datetime,
) -> DischargeEvaluation:
    """Evaluate every discharge criterion at `at`; `unmet` lists each one that fails."""
    criteria = protocol.discharge
    active = active_readings(readings)
    unmet: list[Reason] = []
    ends_at = observation_ends_at(
        criteria, dose_started_at=dose_started_at, dose_ended_at=dose_ended_at
    )
    if dose_started_at is None or dose_ended_at is None:
        unmet.append(
            Reason("dose_not_complete", "the dose has not been given and ended", _SRC_ISSUE)
        )
    if ends_at is None or at < ends_at:
        anchor_word = (
            "the first device" if criteria.observation_anchor is Anchor.dose_start else "dose end"
        )
        # minutes, not a clock time: a UTC wall time misleads a clinic in another zone, and
        # the response carries observation_ends_at for a screen to show in the clinic's zone
        remaining = (
            ""
            if ends_at is None
            else f"; {int((ends_at - at).total_seconds() // 60) + 1} min to go"
        )
        source = (
            "boxed warning; FDA REMS page (reference §1)"
            if criteria.observation_anchor is Anchor.dose_start
            else "protocol minimum observation"
        )
        unmet.append(
            Reason(
                "min_observation",
                f"observe at least {criteria.min_observation_min} min from {anchor_word}"
                + remaining,
                source,
            )
        )

    # Discharge readings: after the dose ended and no older than readings_max_age_min.
    window_start = at - timedelta(minutes=criteria.readings_max_age_min)
    if dose_ended_at is not None:
        window_start = max(window_start, dose_ended_at)

    def recent(measure: Measure) -> int | None:
        reading = latest_reading_with(active, measure, not_after=at, not_before=window_start)
        return None if reading is None else reading.value(measure)

    unmet.extend(_vitals_unmet(criteria, active, recent, dose_started_at))

    moaa_s = recent(Measure.moaa_s)
    if moaa_s is None:
        unmet.append(
            Reason(
                "sedation_not_assessed",
                f"no MOAA/S rating in the last {criteria.readings_max_age_min} min",
                "MOAA/S, Chernik 1990 (reference §3)",
            )
        )
    elif moaa_s < criteria.sedation_resolved_moaa_s:
        unmet.append(
            Reason(
                "sedation_not_resolved",
                f"MOAA/S {moaa_s}: sedation resolved needs {criteria.sedation_resolved_moaa_s}",
                "MOAA/S, Chernik 1990 (reference §3); boxed warning (reference §1)",
            )
        )

    if criteria.require_dissociation_rating:
        cadss6 = recent(Measure.dissociation)
        baseline_cadss6 = _baseline(active, Measure.dissociation, dose_started_at) or 0
        limit = baseline_cadss6 + criteria.dissociation_tolerance_points
        if cadss6 is None:
            unmet.append(
                Reason(
                    "dissociation_not_assessed",
                    f"no CADSS-6 rating in the last {criteria.readings_max_age_min} min",
                    "CADSS: change from pre-dose (reference §3)",
                )
            )
        elif cadss6 > limit:
            unmet.append(
                Reason(
                    "dissociation_not_resolved",
                    f"CADSS-6 {cadss6} is above the pre-dose rating allowance ({limit})",
                    "CADSS: change from pre-dose (reference §3); boxed warning (reference §1)",
                )
            )

    open_serious = [ae for ae in adverse_events if ae.open and ae.serious]
    for event in open_serious:
        unmet.append(
            Reason(
                "open_severe_adverse_event",
                f"{event.severity.value} {event.kind.value} (event {event.id}) is still open",
                _SRC_ISSUE,
            )
        )

    if criteria.require_escort and not inputs.escort_present:
        unmet.append(
            Reason(
                "escort_not_present",
                "an escort must take the patient home (no driving until the next day)",
                "label section 17 (reference §1)",
            )
        )
    if criteria.require_clinician_stability_judgment and inputs.clinician_judges_stable is not True:
        unmet.append(
            Reason(
                "clinician_stability_judgment",
                "the clinician must judge the patient clinically stable",
                _SRC_REMS,
            )
        )
    if criteria.require_ready_without_minimum_estimate and inputs.ready_without_minimum_min is None:
        unmet.append(
            Reason(
                "ready_without_minimum_estimate",
                "answer when the patient would have been ready to leave without the 2-hour "
                "minimum (minutes)",
                _SRC_REMS,
            )
        )

    # Required planned readings (pre-dose, timed) must have been taken; pre-discharge ones are
    # covered by the recent-reading criteria above. Pre-dose readings count from check-in
    # whatever the clinic day (clinic_tz=None): the checks the dose needed already held them to
    # its day, and a missing one cannot be added after the dose, so a stricter bound here would
    # only strand a session dosed on older rules in monitoring.
    schedule = reading_schedule(
        protocol.monitoring,
        readings=active,
        checked_in_at=checked_in_at,
        dose_started_at=dose_started_at,
        dose_ended_at=dose_ended_at,
        closed_at=at,
        now=at,
        clinic_tz=None,
    )
    pre_discharge_ids = {
        p.id for p in protocol.monitoring.points if p.anchor is Anchor.pre_discharge
    }
    required_ids = {
        p.id
        for p in protocol.monitoring.points
        if p.required_for_discharge and p.id not in pre_discharge_ids
    }
    listed = {d.point_id for d in schedule}
    for due in schedule:
        if due.point_id in required_ids and due.status is not DueStatus.done:
            unmet.append(
                Reason(
                    f"required_reading_{due.point_id}",
                    f"required reading missing: {due.label}",
                    "protocol monitoring plan",
                )
            )
    for point_id in sorted(required_ids - listed):
        point = next(p for p in protocol.monitoring.points if p.id == point_id)
        unmet.append(
            Reason(
                f"required_reading_{point_id}",
                f"required reading missing: {point.label}",
                "protocol monitoring plan",
            )
        )
    return DischargeEvaluation(unmet=tuple(unmet), observation_ends_at=ends_at)


def _vitals_unmet(criteria, active, recent, dose_started_at) -> list[Reason]:
    unmet: list[Reason] = []
    checks = (
        (Measure.systolic, criteria.systolic_max_mmhg, criteria.near_baseline_systolic_mmhg, "max"),
        (
            Measure.diastolic,
            criteria.diastolic_max_mmhg,
            criteria.near_baseline_diastolic_mmhg,
            "max",
        ),
        (
            Measure.heart_rate,
            criteria.heart_rate_max_bpm,
            criteria.near_baseline_heart_rate_bpm,
            "max",
        ),
        (Measure.spo2, criteria.spo2_min_percent, 0, "min"),
        (Measure.respiratory_rate, criteria.respiratory_rate_min_per_min, 0, "min"),
    )
    for measure, limit, near_baseline, kind in checks:
        value = recent(measure)
        if value is None:
            # Respiratory rate is checked when recorded; the others must be recent.
            if measure is not Measure.respiratory_rate:
                unmet.append(
                    Reason(
                        f"vitals_missing_{measure.value}",
                        f"no {measure.value} reading in the last "
                        f"{criteria.readings_max_age_min} min",
                        "protocol discharge criteria",
                    )
                )
            continue
        if limit is None:
            continue
        baseline = _baseline(active, measure, dose_started_at)
        if kind == "max":
            within = value <= limit or (baseline is not None and value <= baseline + near_baseline)
            bound = f"<= {limit}" + (
                f" or within {near_baseline} of pre-dose {baseline}" if baseline is not None else ""
            )
        else:
            within = value >= limit or (baseline is not None and value >= baseline)
            bound = f">= {limit}" + (f" or pre-dose {baseline}" if baseline is not None else "")
        if not within:
            unmet.append(
                Reason(
                    f"vitals_out_of_range_{measure.value}",
                    f"{measure.value} {value} is not back within limits ({bound})",
                    "protocol discharge criteria",
                )
            )
    return unmet
