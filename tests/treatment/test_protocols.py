"""Protocols as data: the defaults carry the reference's numbers and sources, and clinic
overrides are validated as a whole, never loosening a label floor."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ketaflow.treatment.errors import InvalidProtocolOverride
from ketaflow.treatment.protocols import (
    DEFAULT_PROTOCOLS,
    Anchor,
    Confidence,
    DeviceDose,
    Drug,
    FixedDose,
    Measure,
    ProtocolId,
    Route,
    WeightBasedDose,
    apply_overrides,
    get_protocol,
)

IV = DEFAULT_PROTOCOLS[ProtocolId.iv_racemic_infusion]
ESK = DEFAULT_PROTOCOLS[ProtocolId.intranasal_esketamine_trd]
ESK_SI = DEFAULT_PROTOCOLS[ProtocolId.intranasal_esketamine_mdd_si]


def test_every_route_has_a_protocol():
    assert set(DEFAULT_PROTOCOLS) == set(ProtocolId)
    assert {p.route for p in DEFAULT_PROTOCOLS.values()} == set(Route)
    for pid, protocol in DEFAULT_PROTOCOLS.items():
        assert protocol.id is pid


def test_iv_defaults_follow_sanacora_murrough_and_emory():
    rule = IV.dose_rule
    assert isinstance(rule, WeightBasedDose)
    assert (rule.default_mg_per_kg, rule.min_mg_per_kg, rule.max_mg_per_kg) == (
        Decimal("0.5"),
        Decimal("0.1"),
        Decimal("0.75"),
    )
    assert rule.titration_allowed
    assert not rule.use_ideal_body_weight_when_obese
    assert IV.administration_minutes == 40
    assert IV.series_sessions == 6
    assert IV.schedule.induction[0].sessions_per_week == 3
    during = next(p for p in IV.monitoring.points if p.id == "during_infusion")
    after = next(p for p in IV.monitoring.points if p.id == "after_infusion")
    assert (during.anchor, during.repeat_every_min, during.repeat_until) == (
        Anchor.dose_start,
        10,
        Anchor.dose_end,
    )
    assert (after.anchor, after.repeat_every_min) == (Anchor.dose_end, 15)


def test_unconfirmed_hold_limits_ship_labelled():
    holds = {a.id: a for a in IV.alarms if a.id.endswith("_hold")}
    assert {k: int(a.limit) for k, a in holds.items()} == {
        "systolic_hold": 180,
        "diastolic_hold": 100,
        "heart_rate_hold": 110,
    }
    assert all(a.unconfirmed and "unconfirmed" in a.source for a in holds.values())
    assert IV.pre_dose_limits.confidence is Confidence.unconfirmed
    assert IV.provenance["discharge.min_observation_min"].unconfirmed


def test_clinic_default_alarms_say_so():
    for protocol in DEFAULT_PROTOCOLS.values():
        by_id = {a.id: a for a in protocol.alarms}
        for alarm_id in ("spo2_low", "spo2_critical", "sedation_deep", "sedation_unresponsive"):
            alarm = by_id[alarm_id]
            assert alarm.confidence is Confidence.clinic_default
            assert "clinic default" in alarm.source
        assert by_id["sedation_deep"].measure is Measure.moaa_s
        assert by_id["sedation_deep"].limit == 3


def test_esketamine_label_and_rems_facts():
    rule = ESK.dose_rule
    assert isinstance(rule, DeviceDose)
    assert (rule.device_mg, rule.allowed_doses_mg, rule.first_dose_mg) == (28, (56, 84), 56)
    assert rule.rest_between_devices_min == 5
    assert [(p.sessions, p.sessions_per_week) for p in ESK.schedule.induction] == [(8, 2), (4, 1)]
    assert ESK.schedule.maintenance_interval_days == (7, 14)
    assert ESK.discharge.min_observation_min == 120
    assert ESK.discharge.observation_anchor is Anchor.dose_start
    assert ESK.pre_dose_limits.caution_only
    assert (ESK.pre_dose_limits.systolic_max_mmhg, ESK.pre_dose_limits.diastolic_max_mmhg) == (
        140,
        90,
    )
    bp_40 = next(p for p in ESK.monitoring.points if p.id == "bp_40_min")
    assert (bp_40.anchor, bp_40.offset_min, bp_40.required_for_discharge) == (
        Anchor.dose_start,
        40,
        True,
    )
    assert ESK.requires_rems_enrollment and not ESK.home_dosing_allowed
    assert (ESK.fasting_food_min, ESK.fasting_liquids_min, ESK.nasal_product_min_before) == (
        120,
        30,
        60,
    )
    assert ESK.discharge.require_ready_without_minimum_estimate
    assert ESK_SI.dose_rule.first_dose_mg is None
    assert ESK_SI.series_sessions == 8


def test_chair_time_covers_the_whole_expected_length():
    # Esketamine: at least 2 h 15 min (issue 3 §2); IV: infusion plus recovery.
    assert ESK.chair_minutes == 135
    assert IV.chair_minutes == IV.pre_dose_minutes + 40 + IV.discharge.min_observation_min
    for protocol in DEFAULT_PROTOCOLS.values():
        if protocol.drug is Drug.esketamine:
            assert protocol.chair_minutes >= 135


def test_oral_and_sublingual_are_maintenance_with_home_doses():
    for pid in (ProtocolId.oral_racemic, ProtocolId.sublingual_racemic):
        protocol = DEFAULT_PROTOCOLS[pid]
        assert isinstance(protocol.dose_rule, FixedDose)
        assert protocol.home_dosing_allowed
        assert protocol.series_sessions == 0
    assert DEFAULT_PROTOCOLS[ProtocolId.oral_racemic].dose_rule.max_dose_mg == 300


def test_every_weight_based_protocol_has_a_weight_window_and_sources():
    for protocol in DEFAULT_PROTOCOLS.values():
        if isinstance(protocol.dose_rule, WeightBasedDose):
            assert protocol.weight_max_age_days is not None
        assert protocol.provenance, protocol.id
        for alarm in protocol.alarms:
            assert alarm.source and alarm.action


def test_override_returns_a_new_protocol_and_records_provenance():
    changed = apply_overrides(
        IV,
        {
            "alarms.systolic_hold.limit": 170,
            "dose_rule.default_mg_per_kg": "0.4",
            "monitoring.points.after_infusion.repeat_every_min": 20,
            "schedule.induction.induction.sessions": 4,
            "schedule.maintenance_interval_days": [21, 28],
        },
    )
    assert changed is not IV
    assert next(a for a in changed.alarms if a.id == "systolic_hold").limit == 170
    assert next(a for a in IV.alarms if a.id == "systolic_hold").limit == 180
    assert changed.dose_rule.default_mg_per_kg == Decimal("0.4")
    assert changed.series_sessions == 4
    assert changed.schedule.maintenance_interval_days == (21, 28)
    assert (
        next(p for p in changed.monitoring.points if p.id == "after_infusion").repeat_every_min
        == 20
    )
    assert changed.provenance["alarms.systolic_hold.limit"].confidence is (
        Confidence.clinic_setting
    )
    assert IV.provenance.get("alarms.systolic_hold.limit") is None


def test_override_can_tighten_esketamine_but_never_loosen_the_label():
    tightened = apply_overrides(ESK, {"discharge.min_observation_min": 150})
    assert tightened.chair_minutes == 165
    for loosening in (
        {"discharge.min_observation_min": 119},
        {"dose_rule.rest_between_devices_min": 4},
        {"requires_rems_enrollment": False},
        {"home_dosing_allowed": True},
        {"fasting_food_min": 60},
        {"discharge.observation_anchor": "dose_end"},
        {"discharge.require_ready_without_minimum_estimate": False},
    ):
        with pytest.raises(InvalidProtocolOverride) as caught:
            apply_overrides(ESK, loosening)
        assert caught.value.status == 422


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"no_such_field": 1}, "no_such_field"),
        ({"alarms.no_such_alarm.limit": 1}, "alarms.no_such_alarm.limit"),
        ({"alarms.systolic_hold": 1}, "alarms.systolic_hold"),
        ({"id": "oral_racemic"}, "id"),
        ({"provenance": {}}, "provenance"),
    ],
)
def test_unknown_or_forbidden_paths_are_refused(overrides, field):
    with pytest.raises(InvalidProtocolOverride) as caught:
        apply_overrides(IV, overrides)
    assert caught.value.errors[0][0] == field


def test_invalid_values_are_refused_with_every_error():
    with pytest.raises(InvalidProtocolOverride) as caught:
        apply_overrides(
            IV,
            {"dose_rule.default_mg_per_kg": "0.9", "administration_minutes": -5},
        )
    fields = " ".join(f for f, _ in caught.value.errors)
    assert "administration_minutes" in fields
    with pytest.raises(InvalidProtocolOverride):
        apply_overrides(IV, {"dose_rule.default_mg_per_kg": "0.9"})


def test_get_protocol_applies_the_clinics_settings_for_that_protocol():
    settings = {
        "iv_racemic_infusion": {"discharge.min_observation_min": 90},
        "oral_racemic": {"dose_rule.max_dose_mg": 200},
    }
    assert get_protocol("iv_racemic_infusion", settings).discharge.min_observation_min == 90
    assert get_protocol(ProtocolId.im_racemic, settings) is DEFAULT_PROTOCOLS[ProtocolId.im_racemic]
    with pytest.raises(ValueError):
        get_protocol("nope")
