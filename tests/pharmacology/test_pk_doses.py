"""Dose and duration parsing, and the checks on bad input."""

from __future__ import annotations

import pytest

from ketaflow.pharmacology.doses import parse_dose, parse_duration, plan_dose
from ketaflow.pharmacology.errors import PKInputError


@pytest.mark.parametrize(
    ("text", "value", "unit"),
    [
        ("0.5mg/kg", 0.5, "mg/kg"),
        ("35 mg", 35.0, "mg"),
        ("2 devices", 2.0, "device"),
        ("1 device", 1.0, "device"),
        (".25MG/KG", 0.25, "mg/kg"),
    ],
)
def test_parse_dose(text, value, unit):
    spec = parse_dose(text)
    assert (spec.value, spec.unit) == (value, unit)


@pytest.mark.parametrize(
    ("text", "minutes"),
    [
        ("40min", 40.0),
        ("40 minutes", 40.0),
        ("1h", 60.0),
        ("1.5 h", 90.0),
        ("90s", 1.5),
        ("40", 40.0),
        (None, 0.0),
        (12.5, 12.5),
    ],
)
def test_parse_duration(text, minutes):
    assert parse_duration(text) == minutes


@pytest.mark.parametrize(
    ("kwargs", "parameter"),
    [
        ({"dose": "-1mg"}, "dose"),
        ({"dose": "0mg"}, "dose"),
        ({"dose": "lots"}, "dose"),
        ({"dose": "0.5"}, "dose"),  # mg or mg/kg? a dose carries its unit
        ({"dose": "35"}, "dose"),
        ({"dose": "50mg/kg"}, "dose"),
        ({"dose": "5000mg"}, "dose"),
        ({"dose": "0.05mg"}, "dose"),
        ({"dose": "0.001mg/kg"}, "dose"),
        ({"weight_kg": -70.0}, "weight"),
        ({"weight_kg": 900.0}, "weight"),
        ({"duration": "-5min"}, "duration"),
        ({"duration": "3days"}, "duration"),
        ({"duration": "30h"}, "duration"),
        ({"drug": "heroin"}, "drug"),
        ({"route": "rectal"}, "route"),
        ({"route": "im", "duration": "40min"}, "duration"),
        ({"dose": "2 devices"}, "dose"),
    ],
)
def test_bad_input_names_the_parameter(kwargs, parameter):
    args = {
        "drug": "ketamine",
        "route": "iv",
        "dose": "0.5mg/kg",
        "weight_kg": 70.0,
        "duration": "40min",
    } | kwargs
    with pytest.raises(PKInputError) as err:
        plan_dose(**args)
    assert err.value.parameter == parameter
    assert isinstance(err.value, ValueError)


def test_mg_per_kg_uses_weight_and_iv_keeps_duration():
    plan = plan_dose("ketamine", "iv", "0.5mg/kg", 80.0, "40min")
    assert plan.total_mg == pytest.approx(40.0)
    assert plan.administrations[0].duration_min == 40.0
    assert plan.label == "40 mg over 40 min"


@pytest.mark.parametrize("dose", ["2 devices", "56mg", "56 MG"])
def test_esketamine_devices_five_minutes_apart(dose):
    plan = plan_dose("esketamine", "intranasal", dose, 70.0)
    assert plan.devices == 2
    assert [a.start_min for a in plan.administrations] == [0.0, 5.0]
    assert [a.device_index for a in plan.administrations] == [0, 1]
    assert plan.total_mg == 56.0


@pytest.mark.parametrize("dose", ["30mg", "0.4mg/kg", "5 devices"])
def test_esketamine_nasal_needs_whole_devices(dose):
    with pytest.raises(PKInputError) as err:
        plan_dose("esketamine", "intranasal", dose, 70.0)
    assert err.value.parameter == "dose"
