"""Pure rules for patient records: identifiers and plausibility of dates."""

from __future__ import annotations

from datetime import date

from ketaflow.core.errors import InvalidInput

EARLIEST_BIRTH_DATE = date(1900, 1, 1)


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
    if birth_date < EARLIEST_BIRTH_DATE:
        raise InvalidInput("birth_date is before 1900", field_name="birth_date")


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
