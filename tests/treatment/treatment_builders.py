"""Plain-value builders shared by the treatment rule tests: sessions walked to a given state,
readings, pre-dose inputs and dose orders."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from itertools import count

from ketaflow.treatment import rules as R
from ketaflow.treatment.discharge import DischargeInputs
from ketaflow.treatment.monitoring import Reading
from ketaflow.treatment.protocols import Protocol, ProtocolId, get_protocol

T0 = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
NURSE = R.Actor(user_id="nurse-1", role=R.Role.nurse)
PRESCRIBER = R.Actor(user_id="prescriber-1", role=R.Role.prescriber)
FRONT_DESK = R.Actor(user_id="desk-1", role=R.Role.front_desk)
THERAPIST = R.Actor(user_id="therapist-1", role=R.Role.therapist)

IV = get_protocol(ProtocolId.iv_racemic_infusion)
IM = get_protocol(ProtocolId.im_racemic)
ESK = get_protocol(ProtocolId.intranasal_esketamine_trd)
ORAL = get_protocol(ProtocolId.oral_racemic)

NORMAL = {
    "systolic_mmhg": 124,
    "diastolic_mmhg": 78,
    "heart_rate_bpm": 72,
    "spo2_percent": 98,
    "respiratory_rate_per_min": 14,
    "moaa_s": 5,
    "cadss6": 0,
}

_ids = count(1)


def minutes(n: float) -> timedelta:
    return timedelta(minutes=n)


def reading(at: datetime, **values: int) -> Reading:
    return Reading(id=f"r{next(_ids)}", taken_at=at, recorded_by=NURSE.user_id, **values)


def normal_reading(at: datetime, **changes: int) -> Reading:
    return reading(at, **{**NORMAL, **changes})


def inputs_for(protocol: Protocol, **changes: object) -> R.PreDoseInputs:
    base: dict[str, object] = {
        "consent_on_file": True,
        "screening_expires_on": date(2026, 6, 1),
        "weight_kg": Decimal(80),
        "weight_recorded_on": date(2026, 3, 1),
        "last_dose_at": None,
        "escort_confirmed": True,
        "no_driving_confirmed": True,
    }
    if protocol.requires_rems_enrollment:
        base |= {
            "rems_patient_enrolled": True,
            "fasting_asked": True,
            "concomitant_medications": frozenset(),
        }
    return R.PreDoseInputs(**(base | changes))


def dose_for(protocol: Protocol) -> R.AdministeredDose:
    if protocol.drug == "esketamine":
        return R.AdministeredDose(dose_mg=Decimal(56), device_count=2, lot_number="LOT-1")
    return R.AdministeredDose(
        dose_mg=Decimal(40),
        mg_per_kg=Decimal("0.5"),
        dosing_weight_kg=Decimal(80),
        volume_ml=Decimal(4),
        max_dose_mg=Decimal(60),
        lot_number="LOT-IV",
    )


def discharge_inputs(protocol: Protocol) -> DischargeInputs:
    if protocol.discharge.require_clinician_stability_judgment:
        return DischargeInputs(
            escort_present=True, clinician_judges_stable=True, ready_without_minimum_min=75
        )
    return DischargeInputs(escort_present=True)


def scheduled(protocol: Protocol, session_id: str = "s1") -> R.DosingSession:
    return R.new_session(
        session_id=session_id, patient_id="p1", protocol_id=protocol.id, scheduled_start=T0
    )


def checked_in(protocol: Protocol) -> R.DosingSession:
    return R.check_in(scheduled(protocol), actor=NURSE, now=T0).session


def cleared(protocol: Protocol) -> R.DosingSession:
    session = checked_in(protocol)
    session = R.record_reading(
        session, protocol, normal_reading(T0 + minutes(2)), actor=NURSE, now=T0 + minutes(2)
    ).session
    outcome = R.run_pre_dose_checks(
        session, protocol, inputs_for(protocol), actor=NURSE, now=T0 + minutes(5)
    )
    assert outcome.session.state is R.SessionState.cleared, outcome.session.deferred_reasons
    return outcome.session


DOSE_START = T0 + minutes(10)


def dosing(protocol: Protocol) -> R.DosingSession:
    return R.start_dose(
        cleared(protocol), protocol, dose_for(protocol), actor=NURSE, now=DOSE_START
    ).session


def monitoring(protocol: Protocol) -> tuple[R.DosingSession, datetime]:
    """A session in monitoring with every planned reading taken; returns it and the dose end."""
    session = dosing(protocol)
    now = DOSE_START
    if protocol.drug == "esketamine":
        for _ in range(1, session.dose.device_count):
            now += minutes(5)
            session = R.record_device(session, protocol, actor=NURSE, now=now).session
        end = now
    else:
        end = DOSE_START + minutes(protocol.administration_minutes)
        t = DOSE_START + minutes(10)
        while t < end:
            session = R.record_reading(
                session, protocol, normal_reading(t), actor=NURSE, now=t
            ).session
            t += minutes(10)
    session = R.end_dose(session, protocol, actor=NURSE, now=end).session
    return session, end


def ready_to_discharge(protocol: Protocol) -> tuple[R.DosingSession, datetime]:
    """A session in monitoring with the readings a discharge at the returned time needs."""
    session, end = monitoring(protocol)
    anchor = DOSE_START if protocol.discharge.observation_anchor == "dose_start" else end
    discharge_at = anchor + minutes(protocol.discharge.min_observation_min)
    # Every planned reading between dose end and discharge, all normal.
    t = end + minutes(5)
    while t <= discharge_at:
        session = R.record_reading(session, protocol, normal_reading(t), actor=NURSE, now=t).session
        t += minutes(5)
    return session, discharge_at
