"""The FastAPI application: wires every capability's router under /api/v1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI
from fastapi.responses import RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from sqlalchemy import text

from ketaflow import __version__
from ketaflow.core.access_log import install_access_log_redaction
from ketaflow.core.clock import Clock, utc_now
from ketaflow.core.db import Database
from ketaflow.core.problems import ServerErrorProblems, install_problem_handlers
from ketaflow.core.response_headers import NoStoreHeaders
from ketaflow.core.settings import Settings, get_settings
from ketaflow.core.text_input import reject_nul_characters
from ketaflow.measures.api import router as measures_router
from ketaflow.patients.api import router as patients_router
from ketaflow.pharmacology.api import router as pharmacology_router
from ketaflow.security import passwords
from ketaflow.security import service as security
from ketaflow.security.api import router as security_router
from ketaflow.therapy.api import router as therapy_router
from ketaflow.treatment.api import router as treatment_router
from ketaflow.treatment.clinic import load_clinic_config
from ketaflow.web import STATIC_DIR
from ketaflow.web.questionnaire import router as questionnaire_router

log = logging.getLogger("ketaflow")

API_PREFIX = "/api/v1"


def create_app(
    settings: Settings | None = None, db: Database | None = None, clock: Clock = utc_now
) -> FastAPI:
    settings = settings or get_settings()
    database = db or Database(settings.database_url, settings)
    if database.audit_key != settings.audit_key:
        # a store opened with other settings: the app signs and verifies the audit log with
        # the key of the settings it was built with
        database = database.with_audit_key(settings.audit_key)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # made now, so the first refused login costs what every other one does
        passwords.dummy_hash(settings)
        if security.demo_accounts_exist(database):
            log.warning(
                "DEMO ACCOUNTS ARE ACTIVE: their passwords are published. "
                "Never use this database for real patients."
            )
        yield
        if db is None:
            database.dispose()

    app = FastAPIOffline(
        title="ketaflow",
        version=__version__,
        description="Ketamine-assisted therapy programs: patients and screening, treatment "
        "courses and dosing sessions, therapy, measurement-based care, pharmacology. Log in "
        "with Authorize (OAuth2 password flow); errors are RFC 9457 problem+json.",
        lifespan=lifespan,
        dependencies=[Depends(reject_nul_characters)],
    )
    app.state.settings = settings
    app.state.db = database
    install_access_log_redaction()
    app.state.clock = clock
    app.state.clinic = load_clinic_config(settings)
    install_problem_handlers(app)
    app.add_middleware(ServerErrorProblems)
    app.add_middleware(NoStoreHeaders)  # outermost of ours: the 500 problem gets it too

    app.include_router(security_router, prefix=API_PREFIX)
    app.include_router(patients_router, prefix=API_PREFIX)
    app.include_router(treatment_router, prefix=API_PREFIX)
    app.include_router(therapy_router, prefix=API_PREFIX)
    app.include_router(measures_router, prefix=API_PREFIX)
    app.include_router(pharmacology_router, prefix=API_PREFIX)
    app.include_router(questionnaire_router)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/health", tags=["system"])
    def health() -> dict[str, str]:
        with database.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return {"status": "ok", "version": __version__}

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")

    return app
