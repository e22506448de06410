"""Pure rules for patient records: identifiers and plausibility of dates."""

from __future__ import annotations

from datetime import date

from ketaflow.core.errors import InvalidInput
from ketaflow.patients.history import PatientHistory

# Oldest plausible patient; beyond it the birth date is a typing error. Registration and
# screening use the same bound, so a registered patient can always be screened.
MAX_AGE_YEARS = 120


def luhn_check_digit(digits: str) -> str:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 0:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return str((10 - total % 10) % 10)


def format_mrn(number: int) -> str:
    """A medical record number: 'KF-' + 7 digits + a Luhn check digit, so typos are caught."""
    if not 0 <= number < 10**7:
        raise ValueError("MRN number out of range")
    body = f"{number:07d}"
    return f"KF-{body}{luhn_check_digit(body)}"


def check_birth_date(birth_date: date, today: date) -> None:
    if birth_date > today:
        raise InvalidInput("birth_date is in the future", field_name="birth_date")
    if age_on(birth_date, today) > MAX_AGE_YEARS:
        raise InvalidInput(
            f"birth_date: the patient would be over {MAX_AGE_YEARS} years old",
            field_name="birth_date",
        )


def check_not_before_birth(day: date, birth_date: date, field_name: str) -> None:
    """Anything dated before the patient's birth is a slip in the year, not a record."""
    if day < birth_date:
        raise InvalidInput(f"{field_name} is before the patient's birth", field_name=field_name)


def check_measured_on(measured_on: date, birth_date: date, today: date) -> None:
    if measured_on > today:
        raise InvalidInput("measured_on is in the future", field_name="measured_on")
    check_not_before_birth(measured_on, birth_date, "measured_on")


def age_on(birth_date: date, on: date) -> int:
    return on.year - birth_date.year - ((on.month, on.day) < (birth_date.month, birth_date.day))


def history_dates(history: PatientHistory) -> list[tuple[str, date]]:
    """Every date a history holds, with its field name as the API body spells it."""
    dated: list[tuple[str, date | None]] = [
        ("history.current_episode_started_on", history.current_episode_started_on),
        ("history.suicidality.last_attempt_on", history.suicidality.last_attempt_on),
    ]
    dated += [
        (f"history.blood_pressure_readings[{i}].measured_on", reading.measured_on)
        for i, reading in enumerate(history.blood_pressure_readings)
    ]
    return [(name, day) for name, day in dated if day is not None]


def check_history_dates(history: PatientHistory, birth_date: date, today: date) -> None:
    """A history cannot record what happened after today or before the patient's birth:
    refused when saved, so it never blocks a later screening."""
    for name, day in history_dates(history):
        if day > today:
            raise InvalidInput(f"{name} is in the future", field_name=name)
        check_not_before_birth(day, birth_date, name)
