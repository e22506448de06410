"""POST /pk/simulate (mounted under /api/v1): the CLI's population summary over HTTP."""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from ketaflow.pharmacology.clinical import DEFAULT_THRESHOLD_NG_PER_ML, simulate
from ketaflow.pharmacology.errors import PKInputError
from ketaflow.pharmacology.population import MAX_SEED
from ketaflow.security.dependencies import require_permission
from ketaflow.security.permissions import PK_SIMULATE

MAX_HTTP_PATIENTS = 100_000  # a request stays under a few seconds of CPU

# Module-level so a test app can override it with app.dependency_overrides.
require_pk_simulate = require_permission(PK_SIMULATE)

router = APIRouter(prefix="/pk", tags=["pharmacology"])

# Engine parameter names -> request fields, so a 422 points at the field the client sent.
_FIELD = {"weight": "weight_kg", "threshold": "threshold_ng_per_ml", "age": "age_years"}


class SimulateRequest(BaseModel):
    # A misspelt field must not vanish: "duraton" ignored would simulate a bolus.
    model_config = ConfigDict(extra="forbid")

    drug: Literal["ketamine", "esketamine"]
    route: Literal["iv", "im", "sc", "intranasal", "oral", "sublingual"]
    dose: str = Field(
        min_length=1, max_length=40, description="0.5mg/kg, 35mg, or 2 devices (esketamine nasal)"
    )
    weight_kg: float = Field(gt=0, le=350)
    duration: str | None = Field(
        default=None, max_length=20, description="IV infusion duration, e.g. 40min"
    )
    patients: int = Field(default=1000, ge=1, le=MAX_HTTP_PATIENTS)
    seed: int = Field(default=0, ge=0, le=MAX_SEED)
    threshold_ng_per_ml: float = Field(default=DEFAULT_THRESHOLD_NG_PER_ML, gt=0, le=100_000)
    age_years: float | None = Field(default=None, ge=1, le=110)


class Band(BaseModel):
    median: float | None
    p5: float | None
    p95: float | None


class AnalyteSummary(BaseModel):
    cmax_ng_per_ml: Band
    tmax_min: Band
    auc_ng_h_per_ml: Band
    half_life_h: Band
    time_above_threshold_min: Band
    time_to_below_threshold_min: Band


class MetaboliteSummary(AnalyteSummary):
    name: str


class ModelDescription(BaseModel):
    id: str
    title: str
    citation: str
    sampling_site: Literal["venous", "arterial"]
    route_model: str
    assumption: bool
    sources: list[str]


class SimulateResponse(AnalyteSummary):
    drug: str
    route: str
    dose_mg: float
    dose: str
    weight_kg: float
    patients: int
    seed: int
    threshold_ng_per_ml: float
    model: ModelDescription
    concentrations: str
    time_origin: str
    auc_horizon_h: float
    metabolite: MetaboliteSummary
    warnings: list[str]


@router.post(
    "/simulate",
    response_model=SimulateResponse,
    dependencies=[Depends(require_pk_simulate)],
    summary="Population PK summary of a planned dose",
)
def simulate_endpoint(body: SimulateRequest) -> SimulateResponse:
    # A plain def: FastAPI runs this CPU-bound work in its threadpool, off the event loop.
    try:
        report = simulate(
            body.drug,
            body.route,
            body.dose,
            body.weight_kg,
            body.duration,
            body.patients,
            body.seed,
            body.threshold_ng_per_ml,
            body.age_years,
        )
    except PKInputError as exc:
        raise RequestValidationError(
            [
                {
                    "type": "value_error",
                    "loc": ("body", _FIELD.get(exc.parameter, exc.parameter)),
                    "msg": str(exc),
                    "input": None,
                }
            ]
        ) from exc
    return SimulateResponse.model_validate(report)
