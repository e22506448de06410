"""A deterministic demo clinic: staff of every role and about forty patients in varied states.

Everything goes through the same services a clinic uses, so the demo is audited like real work.
Names are invented; the seed fixes every choice, so two builds of the demo are alike.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from rich.console import Console
from rich.progress import Progress
from sqlalchemy import func, select

from ketaflow.core.clock import Clock, clinic_today, utc_now
from ketaflow.core.db import Database
from ketaflow.core.errors import Conflict
from ketaflow.core.settings import Settings
from ketaflow.demo_care import Staff, build_care
from ketaflow.patients import history as h
from ketaflow.patients import service as patients
from ketaflow.patients.schemas import MeasurementIn, PatientCreate, Sex
from ketaflow.patients.tables import Patient
from ketaflow.security import service as security
from ketaflow.security.permissions import Actor, Role
from ketaflow.security.tables import User
from ketaflow.treatment.clinic import load_clinic_config
from ketaflow.treatment.scheduling import OpeningHours

DEMO_PASSWORD = "ketaflow-demo"  # noqa: S105 - published on purpose: demo accounts only
SEED = 20261122
PATIENT_COUNT = 40

STAFF: tuple[tuple[str, Role, str], ...] = (
    ("demo.admin", Role.admin, "Alex Admin (demo)"),
    ("dr.rivera", Role.prescriber, "Dr. Sam Rivera (demo)"),
    ("nurse.kim", Role.nurse, "Jordan Kim, RN (demo)"),
    ("therapist.okafor", Role.therapist, "Chidi Okafor, LCSW (demo)"),
    ("frontdesk.lee", Role.front_desk, "Morgan Lee (demo)"),
    ("manager.shah", Role.manager, "Priya Shah (demo)"),
    ("auditor.nguyen", Role.auditor, "Linh Nguyen (demo)"),
)

GIVEN_NAMES = (
    "Avery",
    "Blake",
    "Casey",
    "Dana",
    "Eden",
    "Finley",
    "Gray",
    "Harper",
    "Indy",
    "Jules",
    "Kai",
    "Logan",
    "Marlow",
    "Noel",
    "Oakley",
    "Parker",
    "Quinn",
    "Reese",
    "Sage",
    "Tatum",
)
FAMILY_NAMES = (
    "Abbott",
    "Brennan",
    "Castillo",
    "Dubois",
    "Eriksen",
    "Fontaine",
    "Garza",
    "Holm",
    "Ibarra",
    "Jansen",
    "Kowalski",
    "Lindqvist",
    "Moreau",
    "Novak",
    "Okonkwo",
    "Petrov",
    "Quist",
    "Rossi",
    "Sato",
    "Tanaka",
)
ANTIDEPRESSANTS = (
    ("sertraline", 200),
    ("escitalopram", 20),
    ("fluoxetine", 60),
    ("venlafaxine", 225),
    ("duloxetine", 120),
    ("bupropion", 450),
    ("mirtazapine", 45),
    ("vortioxetine", 20),
)


@dataclass
class DemoSummary:
    created: bool
    staff: int
    patients: int
    logins: list[tuple[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        verb = "Built" if self.created else "Found an existing"
        lines = [f"{verb} demo clinic: {self.staff} staff, {self.patients} patients."]
        lines += [f"  - {note}" for note in self.notes]
        return "\n".join(lines)


def _profile(rng: random.Random, index: int) -> h.PatientHistory:
    """A clinically plausible history; the index spreads patients over the cases screening
    must tell apart."""
    trials = tuple(
        h.AntidepressantTrial(
            drug=drug,
            dose_mg_per_day=dose,
            weeks=rng.choice((6, 8, 10, 12)),
            adequate=True,
            outcome=rng.choice((h.TrialOutcome.no_response, h.TrialOutcome.partial_response)),
        )
        for drug, dose in rng.sample(ANTIDEPRESSANTS, k=2 + index % 3)
    )
    kind = index % 10
    conditions: tuple[h.ConditionCode, ...] = ()
    hypertension = h.HypertensionStatus.none
    psychosis = h.PsychosisStatus.none
    substance = h.SubstanceUse()
    suicidality = h.Suicidality()
    medications = [
        h.Medication(name="sertraline", medication_class=h.MedicationClass.antidepressant)
    ]
    if kind == 1:  # one adequate trial only: not treatment-resistant
        trials = trials[:1]
    elif kind == 2:
        hypertension = h.HypertensionStatus.controlled
        medications.append(
            h.Medication(name="amlodipine", medication_class=h.MedicationClass.antihypertensive)
        )
    elif kind == 3:  # an absolute contraindication for esketamine
        conditions = (h.ConditionCode.aneurysmal_vascular_disease,)
    elif kind == 4:
        psychosis = h.PsychosisStatus.active
    elif kind == 5:
        substance = h.SubstanceUse(disorder=h.DisorderStatus.in_remission, substances=("alcohol",))
    elif kind == 6:
        suicidality = h.Suicidality(current_ideation=True)
    elif kind == 7:
        medications.append(
            h.Medication(name="clonazepam", medication_class=h.MedicationClass.benzodiazepine)
        )
    elif kind == 8:
        hypertension = h.HypertensionStatus.uncontrolled
    return h.PatientHistory(
        diagnoses=(h.Diagnosis(code=h.DiagnosisCode.major_depressive_disorder, icd10="F33.2"),),
        antidepressant_trials=trials,
        current_medications=tuple(medications),
        substance_use=substance,
        psychosis=psychosis,
        suicidality=suicidality,
        hypertension=hypertension,
        conditions=conditions,
        pregnancy=h.PregnancyStatus.not_pregnant,
    )


# The demo's present is a weekday around noon: the day's sessions are booked from 4 hours
# before it (demo_care) and walked to their states by it, so the clinic must have been open
# that long, and stay open long enough after it for the day's bookings to fit.
DEMO_BOOKING_LEAD = timedelta(hours=4)
DEMO_LATEST_AFTER_OPENING = timedelta(hours=5)
MIN_DEMO_DAY = timedelta(hours=8)


def demo_now(real_now: datetime, hours: OpeningHours) -> datetime:
    """The moment the demo clinic is built at: `real_now` when the clinic opened 4 to 5 hours
    ago, else 5 hours after opening on the latest day open at least 8 hours that has reached
    that point (today from noon on with the default hours; otherwise the last such day).
    Never after `real_now`: nothing is recorded in the future. With no such day in the last
    two weeks, `real_now` itself."""
    today = real_now.astimezone(hours.zone).date()
    for back in range(15):
        window = hours.window(today - timedelta(days=back))
        if window is None or window[1] - window[0] < MIN_DEMO_DAY:
            continue
        earliest = window[0] + DEMO_BOOKING_LEAD
        latest = window[0] + DEMO_LATEST_AFTER_OPENING
        if earliest <= real_now:
            return min(real_now, latest)
    return real_now


def build_demo_clinic(
    db: Database, settings: Settings, progress: Console | None = None, clock: Clock = utc_now
) -> DemoSummary:
    logins = [(username, str(role)) for username, role, _ in STAFF]
    with db.transaction() as session:
        real_users = session.scalar(
            select(func.count()).select_from(User).where(User.is_demo.is_(False))
        )
        demo_users = session.scalar(
            select(func.count()).select_from(User).where(User.is_demo.is_(True))
        )
        patient_count = session.scalar(select(func.count()).select_from(Patient)) or 0
    if real_users:
        raise Conflict(
            "this database has real staff accounts; build the demo in a database of its own "
            "(set KETAFLOW_DATABASE_URL)"
        )
    if demo_users:
        return DemoSummary(False, demo_users, patient_count, logins)

    clinic = load_clinic_config(settings)
    now = demo_now(clock(), clinic.opening_hours)

    def demo_clock() -> datetime:
        return now

    rng = random.Random(SEED)  # noqa: S311 - reproducible demo data, not secrets
    actors: dict[Role, Actor] = {}
    for username, role, display_name in STAFF:
        user = security.create_user(
            db,
            settings,
            security.SYSTEM_ACTOR,
            username=username,
            password=DEMO_PASSWORD,
            role=role,
            display_name=display_name,
            is_demo=True,
            clock=demo_clock,
        )
        actors[role] = security.actor_for(user, "demo")
    prescriber, nurse, front_desk = (
        actors[Role.prescriber],
        actors[Role.nurse],
        actors[Role.front_desk],
    )

    today = clinic_today(now, settings.clinic_timezone)
    patient_ids: list[str] = []
    console = progress or Console(quiet=True)
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("demo patients", total=PATIENT_COUNT)
        for index in range(PATIENT_COUNT):
            sex = rng.choice((Sex.female, Sex.male, Sex.female, Sex.male, Sex.other))
            birth = today - timedelta(days=365 * rng.randint(22, 74) + rng.randint(0, 364))
            view = patients.register_patient(
                db,
                front_desk,
                PatientCreate(
                    family_name=FAMILY_NAMES[index % len(FAMILY_NAMES)],
                    given_name=GIVEN_NAMES[(index * 7) % len(GIVEN_NAMES)],
                    birth_date=birth,
                    sex=sex,
                    mrn=f"DEMO-{index + 1:04d}",
                ),
                clock=demo_clock,
                clinic_timezone=settings.clinic_timezone,
            )
            patient_id = view.patient.id
            patients.record_measurement(
                db,
                nurse,
                patient_id,
                MeasurementIn(
                    weight_kg=round(rng.uniform(52, 118), 1),
                    height_cm=round(rng.uniform(152, 192)),
                    # Weighed at intake, before the demo's six weeks of care began.
                    measured_on=today - timedelta(days=rng.randint(42, 60)),
                ),
                clock=demo_clock,
                clinic_timezone=settings.clinic_timezone,
            )
            patients.save_history(
                db,
                prescriber,
                patient_id,
                _profile(rng, index),
                0,
                clock=demo_clock,
                clinic_timezone=settings.clinic_timezone,
            )
            patient_ids.append(patient_id)
            bar.advance(task)
    console.print("demo care: courses, sessions, scores (takes a little while)")
    care = build_care(
        db,
        settings,
        clinic,
        Staff(prescriber, nurse, actors[Role.therapist], front_desk, actors[Role.manager]),
        patient_ids,
        now,
        rng,
    )
    notes = [f"{key.replace('_', ' ')}: {value}" for key, value in sorted(care.items())]
    return DemoSummary(True, len(STAFF), PATIENT_COUNT, logins, notes)
