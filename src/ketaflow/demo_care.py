"""The demo clinic's care: screenings, courses on every route, sessions walked through their
states, alarms, adverse events, overrides, therapy sessions and score trajectories.

Time is simulated with a clock the demo moves, so past sessions are run at their own times
through the same services a clinic uses (every step audited and checked by the rules)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

from ketaflow.core.clock import clinic_today
from ketaflow.core.db import Database
from ketaflow.core.settings import Settings
from ketaflow.measures import service as measures
from ketaflow.patients import screening_service
from ketaflow.patients import service as patients
from ketaflow.patients.schemas import MeasurementIn, ScreeningRequest
from ketaflow.security.permissions import Actor
from ketaflow.therapy import service as therapy
from ketaflow.therapy.policy import Modality, TherapyKind, TherapyNote
from ketaflow.therapy.schemas import TherapySessionIn
from ketaflow.treatment import schemas as s
from ketaflow.treatment import service as treatment
from ketaflow.treatment.clinic import ClinicConfig
from ketaflow.treatment.protocols import Anchor, DeviceDose, FixedDose

CHAIRS = ("Chair 1", "Chair 2", "Chair 3", "Quiet room A", "Quiet room B")
CALM: dict[str, int] = {
    "systolic_mmhg": 122,
    "diastolic_mmhg": 78,
    "heart_rate_bpm": 72,
    "spo2_percent": 98,
    "respiratory_rate_per_min": 14,
}
SETTLED = {**CALM, "moaa_s": 5, "cadss6": 0}
# Product strengths the demo clinic stocks (mg/mL): racemic ketamine 10 for infusion bags,
# 50 for IM/SC injection.
INFUSION_MG_PER_ML = Decimal(10)
INJECTION_MG_PER_ML = Decimal(50)


class DemoClock:
    """The demo's own time, moved forward as it walks through weeks of care."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def at(self, when: datetime) -> DemoClock:
        self.now = when
        return self


@dataclass
class Staff:
    prescriber: Actor
    nurse: Actor
    therapist: Actor
    front_desk: Actor
    manager: Actor


def phq9_answers(total: int, item9: int = 0) -> dict[str, int]:
    """Item answers that add up to `total`, spread over items 1-8 (item 9 given)."""
    rest = max(0, min(total - item9, 24))
    answers = {str(i): rest // 8 + (1 if i <= rest % 8 else 0) for i in range(1, 9)}
    answers["9"] = item9
    return answers


@dataclass(frozen=True)
class Plan:
    """One treated demo patient: route, how the course goes, how the scores move."""

    drug: str
    route: str
    trajectory: str  # responder, remitter, non_responder, relapse
    today_state: str | None = None  # walk today's session to this state instead of the past
    item9: int = 0


PAST_PLANS = (
    Plan("ketamine", "iv", "remitter"),
    Plan("ketamine", "iv", "responder"),
    Plan("ketamine", "iv", "non_responder"),
    Plan("ketamine", "iv", "relapse"),
    Plan("esketamine", "intranasal", "responder"),
    Plan("esketamine", "intranasal", "remitter"),
    Plan("esketamine", "intranasal", "non_responder", item9=1),
    Plan("ketamine", "im", "responder"),
    Plan("ketamine", "sc", "responder"),
    Plan("ketamine", "oral", "responder"),
    Plan("ketamine", "sublingual", "remitter"),
)
TODAY_STATES = (
    "scheduled",
    "checked_in",
    "deferred",
    "cleared",
    "dosing",
    "monitoring",
    "discharged",
    "stopped",
)
TRAJECTORY_TARGETS = {  # baseline PHQ-9 -> level reached after induction
    "remitter": (19, 3),
    "responder": (21, 9),
    "non_responder": (20, 18),
    "relapse": (18, 6),
}


def _trajectory_total(kind: str, fraction: float, rng: random.Random) -> int:
    start, end = TRAJECTORY_TARGETS[kind]
    value = start + (end - start) * min(1.0, fraction)
    return max(0, min(27, round(value + rng.uniform(-1.5, 1.5))))


class CareBuilder:
    def __init__(
        self,
        db: Database,
        settings: Settings,
        clinic: ClinicConfig,
        staff: Staff,
        clock: DemoClock,
        rng: random.Random,
    ) -> None:
        self.db, self.settings, self.clinic = db, settings, clinic
        self.staff, self.clock, self.rng = staff, clock, rng
        self.counts: dict[str, int] = {}

    def count(self, what: str) -> None:
        self.counts[what] = self.counts.get(what, 0) + 1

    # -- steps ------------------------------------------------------------------------------

    def screen(self, patient_id: str, drug: str, route: str, when: datetime):
        self.clock.at(when)
        return screening_service.screen_patient(
            self.db,
            self.staff.prescriber,
            self.settings,
            patient_id,
            ScreeningRequest(
                drug=drug,
                route=route,
                vitals={"systolic_mmhg": 124, "diastolic_mmhg": 80, "heart_rate_bpm": 74},
            ),
            clock=self.clock,
        )

    def consent(self, patient_id: str, drug: str, when: datetime) -> None:
        self.clock.at(when)
        kinds = [s.ConsentKind.treatment]
        if drug == "esketamine":
            kinds.append(s.ConsentKind.rems_enrollment)
        for kind in kinds:
            treatment.record_consent(
                self.db,
                self.staff.prescriber,
                patient_id,
                s.ConsentIn(kind=kind, signed_on=self.clinic_date(when)),
                clock=self.clock,
                clinic_timezone=self.clinic.opening_hours.timezone,
            )

    def clinic_date(self, when: datetime) -> date:
        """The clinic's calendar date at `when`: what every date the services check is."""
        return clinic_today(when, self.clinic.opening_hours.timezone)

    def weigh(self, patient_id: str, when: datetime) -> None:
        self.clock.at(when)
        patients.record_measurement(
            self.db,
            self.staff.nurse,
            patient_id,
            MeasurementIn(
                weight_kg=round(self.rng.uniform(58, 104), 1),
                height_cm=round(self.rng.uniform(155, 190)),
                measured_on=self.clinic_date(when),
            ),
            clock=self.clock,
            clinic_timezone=self.settings.clinic_timezone,
        )

    def phq9(
        self,
        patient_id: str,
        when: datetime,
        total: int,
        item9: int = 0,
        session_id: str | None = None,
        timing: str | None = None,
    ) -> None:
        self.clock.at(when)
        measures.record_assessment(
            self.db,
            self.staff.nurse,
            patient_id,
            instrument="PHQ-9",
            answers=phq9_answers(total, item9),
            taken_at=when,
            dosing_session_id=session_id,
            timing=timing,
            clock=self.clock,
        )
        self.count("assessments")

    def therapy(self, patient_id: str, kind: TherapyKind, when: datetime) -> None:
        self.clock.at(when)
        modality = self.rng.choice(
            (Modality.mindfulness_based, Modality.meaning_centered, Modality.cbt)
        )
        note = TherapyNote(
            what_came_up="memories of a loss; fear of losing control"
            if kind == "integration"
            else "hopes and fears about the first dose",
            insights="more distance from self-criticism" if kind == "integration" else "",
            goals=("reconnect with friends",),
            homework="daily 10-minute walk",
        )
        therapy.record_therapy_session(
            self.db,
            self.staff.therapist,
            patient_id,
            TherapySessionIn(
                kind=kind, modality=modality, held_at=when, duration_min=50, note=note
            ),
            clock=self.clock,
        )
        self.count(f"therapy_{kind.value}")

    def walk(
        self,
        session_id: str,
        start: datetime,
        target: str,
        dose_number: int,
        *,
        alarm: bool = False,
        adverse_event: bool = False,
    ) -> datetime:
        """Run one session from check-in to `target` starting at `start`; return the time of
        the last step."""
        nurse, db, clock = self.staff.nurse, self.db, self.clock
        view = treatment.get_session(db, nurse, session_id)
        protocol = view.protocol
        version = view.row.version

        def step(when: datetime, action, *args, **kwargs):
            nonlocal version
            clock.at(when)
            result = action(db, nurse, session_id, *args, clock=clock, **kwargs)
            version = result.row.version
            return result

        t = start
        if target == "scheduled":
            return t
        step(t, treatment.check_in, s.VersionIn(version=version), clinic=self.clinic)
        if target == "checked_in":
            return t
        if target == "stopped":
            step(
                t + timedelta(minutes=6),
                treatment.stop_session,
                s.StopIn(
                    version=version,
                    reason="patient_declined",
                    note="felt too anxious today; will return next week",
                ),
            )
            return t + timedelta(minutes=6)
        step(
            t + timedelta(minutes=3),
            treatment.record_reading,
            s.ReadingIn(version=version, **SETTLED),
        )
        esketamine = isinstance(protocol.dose_rule, DeviceDose)
        checks: dict[str, Any] = {
            "escort_confirmed": target != "deferred",
            "no_driving_confirmed": True,
        }
        if esketamine:
            checks |= {
                "fasting_asked": True,
                "last_food_at": t - timedelta(hours=3),
                "last_liquid_at": t - timedelta(hours=1),
                "concomitant_medications": [],
            }
        clock.at(t + timedelta(minutes=5))
        run = treatment.run_pre_dose_checks(
            db, nurse, self.clinic, session_id, s.PreDoseIn(version=version, **checks), clock=clock
        )
        version = run.row.version
        if target in ("deferred", "cleared"):
            return t + timedelta(minutes=5)
        if run.document.state.value != "cleared":
            raise RuntimeError(f"demo session not cleared: {run.document.deferred_reasons}")
        dose_at = t + timedelta(minutes=8)
        if esketamine:
            dose = s.StartDoseIn(
                version=version,
                dose_mg=Decimal(56 if dose_number == 1 else 84),
                lot_number="DEMO-LOT-2611",
            )
        elif isinstance(protocol.dose_rule, FixedDose):
            dose = s.StartDoseIn(version=version, dose_mg=Decimal(50))
        else:
            strength = (
                INFUSION_MG_PER_ML if protocol.administration_minutes else INJECTION_MG_PER_ML
            )
            dose = s.StartDoseIn(version=version, concentration_mg_per_ml=strength)
        step(dose_at, treatment.start_dose, dose, clinic=self.clinic)
        self.count("doses")
        last = dose_at
        if esketamine:
            for _ in range(int(dose.dose_mg or 0) // 28 - 1):
                last += timedelta(minutes=5)  # 5 minutes' rest (Instructions for Use)
                step(last, treatment.record_device, s.DeviceIn(version=version))
        if target == "dosing":
            return last
        for minute in range(10, protocol.administration_minutes + 1, 10):
            vitals = dict(CALM)
            if alarm and minute == 20:
                vitals |= {"systolic_mmhg": 186, "diastolic_mmhg": 102}
            result = step(
                dose_at + timedelta(minutes=minute),
                treatment.record_reading,
                s.ReadingIn(version=version, **vitals),
            )
            for raised in result.new_alarms:
                self.count("alarms")
                step(
                    dose_at + timedelta(minutes=minute + 1),
                    treatment.acknowledge_alarm,
                    raised.id,
                    s.AcknowledgeIn(version=version, note="rechecked, prescriber informed"),
                )
            last = dose_at + timedelta(minutes=minute + 1)
        end_at = max(
            last, dose_at + timedelta(minutes=protocol.administration_minutes)
        ) + timedelta(minutes=1)
        step(end_at, treatment.end_dose, s.EndDoseIn(version=version))
        event_id = None
        if adverse_event:
            self.count("adverse_events")
            result = step(
                end_at + timedelta(minutes=5),
                treatment.record_adverse_event,
                s.AdverseEventIn(
                    version=version, kind="nausea", severity="mild", actions=["medication_given"]
                ),
            )
            event_id = result.document.adverse_events[-1].id
        step(
            end_at + timedelta(minutes=15),
            treatment.record_reading,
            s.ReadingIn(version=version, **SETTLED),
        )
        if esketamine:  # the label's blood-pressure recheck about 40 minutes after dosing
            step(
                dose_at + timedelta(minutes=40),
                treatment.record_reading,
                s.ReadingIn(version=version, **SETTLED),
            )
        anchor = dose_at if protocol.discharge.observation_anchor is Anchor.dose_start else end_at
        ready_at = anchor + timedelta(minutes=protocol.discharge.min_observation_min + 2)
        if target == "monitoring":
            return end_at + timedelta(minutes=40)
        if event_id is not None:
            step(
                ready_at - timedelta(minutes=3),
                treatment.update_adverse_event,
                event_id,
                s.AdverseEventUpdateIn(version=version, outcome="resolved"),
            )
        step(
            ready_at - timedelta(minutes=1),
            treatment.record_reading,
            s.ReadingIn(version=version, **SETTLED),
        )
        step(
            ready_at,
            treatment.discharge,
            s.DischargeIn(
                version=version,
                escort_present=True,
                clinician_judges_stable=True if esketamine else None,
                ready_without_minimum_min=80 if esketamine else None,
            ),
        )
        return ready_at


def build_care(
    db: Database,
    settings: Settings,
    clinic: ClinicConfig,
    staff: Staff,
    patient_ids: list[str],
    now: datetime,
    rng: random.Random,
) -> dict[str, int]:
    clock = DemoClock(now)
    builder = CareBuilder(db, settings, clinic, staff, clock, rng)
    for name in CHAIRS:
        treatment.add_chair(db, staff.manager, name)

    # Patients whose histories carry an absolute contraindication are screened but not
    # treated (demo.py's profiles: kinds 3, 4 and 8); the rest get the plans in order.
    screened_at = now - timedelta(days=40)
    candidates = [pid for i, pid in enumerate(patient_ids) if i % 10 not in (3, 4, 8)]
    plans: dict[str, Plan] = dict(zip(candidates, PAST_PLANS, strict=False))
    for offset, state in enumerate(TODAY_STATES):
        drug, route = ("esketamine", "intranasal") if offset % 3 == 0 else ("ketamine", "iv")
        plans[candidates[len(PAST_PLANS) + offset]] = Plan(
            drug, route, "responder", today_state=state
        )
    for index, patient_id in enumerate(patient_ids):
        plan = plans.get(patient_id)
        drug, route = (
            (plan.drug, plan.route)
            if plan
            else (("esketamine", "intranasal") if index % 2 else ("ketamine", "iv"))
        )
        screening = builder.screen(
            patient_id, drug, route, screened_at + timedelta(minutes=index * 20)
        )
        builder.count(f"screening_{screening.decision}")
        if screening.decision == "ineligible" and index % 10 == 8:
            clock.at(screened_at + timedelta(minutes=index * 20 + 5))
            screening_service.override_screening(
                db,
                staff.prescriber,
                settings,
                patient_id,
                screening.id,
                "Reviewed with the patient's cardiologist: blood pressure now treated; benefit "
                "outweighs the risk with closer monitoring.",
                clock=clock,
            )
            builder.count("screening_overrides")

    for patient_id, plan in plans.items():
        if plan.today_state is None:
            _past_course(builder, patient_id, plan, now)
        else:
            _today_session(builder, patient_id, plan, now)
    # A few planned sessions called off, and the unattended ones marked missed.
    treatment.mark_missed_sessions(db, clinic, DemoClock(now))
    return builder.counts


def _past_course(builder: CareBuilder, patient_id: str, plan: Plan, now: datetime) -> None:
    staff, clock, rng = builder.staff, builder.clock, builder.rng
    start = now - timedelta(days=35)
    builder.consent(patient_id, plan.drug, start - timedelta(days=2))
    builder.weigh(patient_id, start - timedelta(days=1))
    builder.therapy(patient_id, TherapyKind.preparation, start - timedelta(days=1, hours=-2))
    builder.phq9(patient_id, start - timedelta(hours=20), TRAJECTORY_TARGETS[plan.trajectory][0])
    clock.at(start - timedelta(hours=12))
    course = treatment.start_course(
        builder.db,
        staff.prescriber,
        builder.clinic,
        patient_id,
        s.CourseCreate(
            drug=plan.drug,
            route=plan.route,
            start_on=builder.clinic_date(start),
            home_dose_mg=Decimal(100) if plan.route == "oral" else None,
        ),
        clock=clock,
    )
    builder.count(f"course_{plan.route}")
    if not course.sessions:  # oral/sublingual: maintenance only
        clock.at(start)
        course = treatment.switch_to_maintenance(
            builder.db,
            staff.prescriber,
            builder.clinic,
            course.course.id,
            s.MaintenanceIn(count=6, interval_days=7),
            clock=clock,
        )
    sessions = [r for r in course.sessions if r.scheduled_start < now - timedelta(hours=6)]
    for number, row in enumerate(sessions, start=1):
        if number > 1 and number % 9 == 0:
            clock.at(row.scheduled_start - timedelta(days=1))
            treatment.cancel_session(
                builder.db,
                staff.front_desk,
                row.id,
                s.CancelIn(version=row.version, reason="patient travelling this week"),
                clock=clock,
            )
            builder.count("cancelled")
            continue
        if number == 5 and plan.route == "iv" and plan.trajectory == "responder":
            # The patient did not come: left unattended, the worklist marks it missed.
            builder.count("missed")
            continue
        weight_based = plan.route in ("iv", "im", "sc")
        if weight_based and number % 3 == 1:
            builder.weigh(patient_id, row.scheduled_start - timedelta(minutes=20))
        ended = builder.walk(
            row.id,
            row.scheduled_start,
            "discharged",
            number,
            alarm=(number == 2 and plan.route == "iv"),
            adverse_event=(number == 3),
        )
        fraction = number / max(4, len(sessions))
        total = _trajectory_total(plan.trajectory, fraction, rng)
        if plan.trajectory == "relapse" and number > len(sessions) - 2:
            total = min(27, total + 9)
        builder.phq9(
            patient_id,
            ended + timedelta(hours=22),
            total,
            item9=plan.item9 if number >= len(sessions) - 2 else 0,
        )
        if number <= 6 or number % 2 == 0:
            builder.therapy(patient_id, TherapyKind.integration, ended + timedelta(hours=26))
    if plan.trajectory == "relapse":
        clock.at(now - timedelta(hours=2))
        treatment.add_booster(
            builder.db,
            staff.prescriber,
            builder.clinic,
            course.course.id,
            s.BoosterIn(),
            clock=clock,
        )
        builder.count("boosters")


def _today_session(builder: CareBuilder, patient_id: str, plan: Plan, now: datetime) -> None:
    staff, clock = builder.staff, builder.clock
    builder.consent(patient_id, plan.drug, now - timedelta(days=10))
    builder.weigh(patient_id, now - timedelta(days=3))
    builder.phq9(patient_id, now - timedelta(days=2), TRAJECTORY_TARGETS[plan.trajectory][0])
    builder.therapy(patient_id, TherapyKind.preparation, now - timedelta(days=1))
    clock.at(now - timedelta(hours=4))
    course = treatment.start_course(
        builder.db,
        staff.prescriber,
        builder.clinic,
        patient_id,
        s.CourseCreate(drug=plan.drug, route=plan.route, start_on=builder.clinic_date(clock())),
        clock=clock,
    )
    builder.count(f"course_{plan.route}")
    first = course.sessions[0]
    # Walk today's first session so that it reaches its state about now.
    lead = {
        "scheduled": 0,
        "checked_in": 10,
        "deferred": 15,
        "cleared": 15,
        "dosing": 20,
        "monitoring": 80,
        "discharged": 200,
        "stopped": 20,
    }[plan.today_state or "scheduled"]
    last = builder.walk(first.id, now - timedelta(minutes=lead), plan.today_state or "scheduled", 1)
    if plan.today_state == "dosing":
        # Left open on purpose, so the day board shows an alarm to act on.
        clock.at(last + timedelta(minutes=2))
        session = treatment.get_session(builder.db, staff.nurse, first.id)
        treatment.record_reading(
            builder.db,
            staff.nurse,
            first.id,
            s.ReadingIn(version=session.row.version, **(CALM | {"spo2_percent": 92})),
            clock=clock,
        )
        builder.count("open_alarms")
    builder.count(f"today_{plan.today_state}")
