"""A clinic's own configuration file: opening hours, protocol overrides, therapy policy."""

from __future__ import annotations

import json
from datetime import time

import pytest

from ketaflow.core.errors import InvalidInput
from ketaflow.core.settings import Settings
from ketaflow.treatment.clinic import load_clinic_config


def _load(tmp_path, document):
    path = tmp_path / "clinic.json"
    path.write_text(json.dumps(document), encoding="utf-8")
    return load_clinic_config(Settings(clinic_timezone="Europe/Berlin"), path)


def test_defaults_without_a_file():
    config = load_clinic_config(Settings(clinic_timezone="Europe/Berlin"))
    assert config.opening_hours.timezone == "Europe/Berlin"
    assert config.opening_hours.weekly[0] == (time(8), time(18))
    assert 6 not in config.opening_hours.weekly  # closed on Sundays by default


def test_a_clinic_tightens_a_protocol_and_sets_its_week(tmp_path):
    config = _load(
        tmp_path,
        {
            "opening_hours": {"weekly": {"1": ["07:30", "16:00"]}, "closed_dates": ["2026-12-25"]},
            "protocol_overrides": {"iv_racemic_infusion": {"alarms.systolic_hold.limit": 170}},
            "therapy_policy": {"integration_within_hours": 48},
        },
    )
    assert config.opening_hours.weekly == {1: (time(7, 30), time(16))}
    protocol = config.protocol("iv_racemic_infusion")
    hold = next(a for a in protocol.alarms if a.id == "systolic_hold")
    assert hold.limit == 170
    assert config.therapy_policy.integration_within_hours == 48


@pytest.mark.parametrize(
    "document",
    [
        {
            "protocol_overrides": {
                "intranasal_esketamine_trd": {"discharge.min_observation_min": 60}
            }
        },  # loosening a label floor
        {"opening_hours": {"weekly": {"0": ["18:00", "08:00"]}}},
        {"unknown_key": 1},
    ],
)
def test_bad_configuration_is_refused_naming_the_file(tmp_path, document):
    with pytest.raises(InvalidInput) as refused:
        _load(tmp_path, document)
    assert refused.value.field_name == "clinic_config_file"


def test_unreadable_file_is_refused(tmp_path):
    with pytest.raises(InvalidInput):
        load_clinic_config(Settings(), tmp_path / "missing.json")
