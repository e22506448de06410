"""Published population PK models for ketamine and esketamine, one per drug, every route.

Each model names its source, its structure, its typical values, covariates and inter-individual
variability (IIV), and where it predicts (venous or arterial plasma). Where no published model
exists for a route, the absorption model is built from the reference's bioavailability and Tmax
facts; it is labelled as an assumption and that label travels with every result.

Units inside the engine: minutes, litres, milligrams. Sources quote hours; we convert here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache
from typing import ClassVar

import numpy as np

from ketaflow.pharmacology.errors import PKInputError
from ketaflow.pharmacology.normals import lognormal_factors, standard_normals
from ketaflow.pharmacology.solve import DoseEvents, SystemArrays

DRUGS = ("ketamine", "esketamine")
ROUTES = ("iv", "im", "sc", "intranasal", "oral", "sublingual")

# One SPRAVATO device: 28 mg esketamine; devices 5 minutes apart (label section 11; IFU).
DEVICE_MG = 28.0
DEVICE_INTERVAL_MIN = 5.0

# S-ketamine effect compartment: t1/2 ke0 8.3 min, C50 0.51 nmol/mL = 121 ng/mL, the same for
# perceptual disturbance and antinociception; R-ketamine adds nothing (Olofsen 2022,
# Anesthesiology 136:792; reference §6).
KE0_PER_MIN = math.log(2.0) / 8.3
C50_S_KETAMINE_NG_PER_ML = 121.0

# Racemic ketamine is half S-ketamine; we assume both enantiomers share disposition (the
# racemic model below is itself an S-ketamine model), so the effect site sees half the level.
S_FRACTION_RACEMIC = 0.5


@dataclass(frozen=True)
class Administration:
    """One dose as given: `amount_mg` of drug product, starting at `start_min`, over
    `duration_min` (IV infusion; 0 = bolus or a single administration). `device_index` counts
    SPRAVATO devices within one session (0 = first)."""

    start_min: float
    amount_mg: float
    duration_min: float = 0.0
    device_index: int = 0


@dataclass(frozen=True)
class Covariates:
    weight_kg: np.ndarray
    age_years: np.ndarray

    @property
    def n(self) -> int:
        return int(self.weight_kg.shape[0])


@dataclass(frozen=True)
class RouteInfo:
    """How a route is modelled: published or assumed, with its sources."""

    route: str
    description: str
    assumption: bool
    sources: tuple[str, ...]


@dataclass(frozen=True)
class Individuals:
    """The sampled patients: their system arrays plus route-specific quantities."""

    system: SystemArrays
    bioavailability: np.ndarray  # (N,) fraction reaching the path (route-specific meaning)
    extra: dict[str, np.ndarray] = field(default_factory=dict)


def _lognormal(rng: np.random.Generator | None, n: int, omega2: float) -> np.ndarray:
    if rng is None or omega2 <= 0:
        return np.ones(n)
    return lognormal_factors(rng, n, np.array([[omega2]]))[0]


def _correlated(rng: np.random.Generator | None, n: int, cov: np.ndarray) -> np.ndarray:
    """(k, n) multiplicative log-normal factors with covariance `cov` on the log scale, a row
    per parameter."""
    if rng is None:
        return np.ones((cov.shape[0], n))
    return lognormal_factors(rng, n, cov)


def _columns(columns: list[np.ndarray]) -> np.ndarray:
    """(N, k) per-patient parameters from k columns, in column-major (Fortran) order: each
    column is one contiguous copy, and the decomposition reads a parameter for a run of
    patients contiguously (its SIMD lanes), see solve.SystemArrays."""
    return np.stack(columns).T


class PKModel:
    model_id: str
    drug: str
    title: str
    citation: str
    sampling_site: str  # "venous" or "arterial"
    studied_weight_kg: tuple[float, float]
    studied_age_years: tuple[float, float]
    routes: dict[str, RouteInfo]

    def check_route(self, route: str) -> RouteInfo:
        if route not in ROUTES:
            raise PKInputError("route", f"unknown route {route!r}; use one of {', '.join(ROUTES)}")
        if route not in self.routes:
            raise PKInputError(
                "route",
                f"{self.drug} by route {route!r} is not supported; supported: "
                f"{', '.join(self.routes)}",
            )
        return self.routes[route]

    def individuals(
        self, route: str, cov: Covariates, rng: np.random.Generator | None
    ) -> Individuals:
        raise NotImplementedError

    def events(self, route: str, doses: tuple[Administration, ...], ind: Individuals) -> DoseEvents:
        raise NotImplementedError

    def range_warnings(self, weight_kg: float, age_years: float | None) -> list[str]:
        warnings: list[str] = []
        lo, hi = self.studied_weight_kg
        if not lo <= weight_kg <= hi:
            warnings.append(
                f"weight {weight_kg:g} kg is outside the {lo:g}-{hi:g} kg range studied for "
                f"{self.title}; the prediction is an extrapolation"
            )
        if age_years is not None:
            lo, hi = self.studied_age_years
            if not lo <= age_years <= hi:
                warnings.append(
                    f"age {age_years:g} years is outside the {lo:g}-{hi:g} years studied for "
                    f"{self.title}; the prediction is an extrapolation"
                )
        return warnings


# ----------------------------------------------------------------------------------------------
# Racemic ketamine


@dataclass(frozen=True)
class Absorption:
    """First-order absorption with bioavailability and lag, from the reference's facts."""

    bioavailability: float
    tmax_min: float  # typical Tmax after a single dose: ka is solved to reproduce it
    lag_min: float
    presystemic_to_metabolite: float  # fraction of the dose converted before reaching blood
    source: str


class RacemicKetamine(PKModel):
    """Racemic ketamine and norketamine.

    Disposition: S-ketamine three-compartment model of Fanta et al. 2015 (Eur J Clin Pharmacol
    71:441) as fixed in Otto et al. 2021 (Eur J Clin Pharmacol 77:1181, Table 3), with the
    S-norketamine two-compartment model estimated by Otto 2021; transcribed in nlmixr2lib
    `Otto_2021_s_ketamine.R`. Venous plasma. Applying it to the racemate assumes R- and
    S-ketamine share disposition (assumption, stated in every result). Otto 2021 assumes all
    clearance forms norketamine (fm = 1); norketamine parameters are apparent ones under that
    assumption. At 0.5 mg/kg over 40 min it predicts a Cmax 15% under the 185 ng/mL observed
    (Zarate 2006), inside the +/-30% spread of published racemic models (reference §6).
    """

    model_id = "fanta2015-otto2021-racemic"
    drug = "ketamine"
    title = "Fanta 2015 / Otto 2021 S-ketamine model applied to racemic ketamine"
    citation = (
        "Fanta S et al. Eur J Clin Pharmacol 2015;71:441-447; Otto ME et al. Eur J Clin "
        "Pharmacol 2021;77:1181-1192 (Table 3; nlmixr2lib Otto_2021_s_ketamine.R)"
    )
    sampling_site = "venous"
    # Otto 2021 Table 1: healthy volunteers, mean weight 68-71 kg (SD 7-8.5), mean age 23-24;
    # we accept mean +/- about 3 SD as studied.
    studied_weight_kg = (45.0, 100.0)
    studied_age_years = (18.0, 45.0)

    # Otto 2021 Table 3 (Fanta 2015 values fixed), 70 kg; L and L/h.
    V1_L = 133.0
    CL_L_PER_H = 95.2
    VP1_L = 187.0
    Q1_L_PER_H = 23.2
    VP2_L = 98.8
    Q2_L_PER_H = 157.0
    # Otto 2021 Table 3: omega^2 (V1, cov, CL) from the supplement's OMEGA BLOCK(2).
    OMEGA_PARENT = np.array([[0.084177, 0.02261], [0.02261, 0.026048]])
    # Otto 2021 Table 3: S-norketamine V 98.6 L, CL 57.7 L/h, Vp 160 L, Q 42.8 L/h.
    VM_L = 98.638
    CLM_L_PER_H = 57.72
    VPM_L = 160.04
    QM_L_PER_H = 42.778
    OMEGA_METABOLITE = np.array([[0.040426, 0.04456], [0.04456, 0.10319]])

    # Absorption for the non-IV routes: no published racemic model was retrieved (Abuhelwa
    # 2022 values were not available), so each is first-order, built from the reference's
    # facts (reference §2 and §6), and labelled an assumption.
    ABSORPTION: ClassVar[dict[str, Absorption]] = {
        # IM: F 0.93, peak 15-30 min (Chilukuri 2014; reference §2/§6).
        "im": Absorption(
            0.93, 20.0, 0.0, 0.0, "Chilukuri 2014; reference §6 (F 0.93, peak 15-30 min)"
        ),
        # SC: about IM (reference §6, marked U; Abuhelwa 2022 not retrieved).
        "sc": Absorption(0.93, 20.0, 0.0, 0.0, "reference §6: SC about IM (unconfirmed, U)"),
        # Intranasal racemic: F 25-50%, not standardised (Pharmacotherapy 2022 review); peak
        # 14-23 min observed (Pharmacotherapy 2022;42:298, Table 6). Low end of F taken.
        "intranasal": Absorption(
            0.25, 20.0, 0.0, 0.0, "Pharmacotherapy 2022 review (F 25-50%); Tmax 14-23 min"
        ),
        # Sublingual: F 0.29 (Rolan 2014, 29%; Chong 2006, 32 +/- 17%), Tmax 0.75 h (Rolan 2014);
        # the swallowed, extracted rest assumed converted to norketamine (fm = 1 as Otto 2021).
        "sublingual": Absorption(
            0.29,
            45.0,
            0.0,
            0.71,
            "Rolan et al. Br J Clin Pharmacol 2014 (F 29%, Tmax 0.75 h); Chong 2006",
        ),
        # Oral: F 0.17-0.25 (Chong 2006; Andrade 2019), heavy first pass to norketamine
        # (reference §2); Tmax about 30 min (commonly quoted, unconfirmed).
        "oral": Absorption(
            0.20, 30.0, 0.0, 0.80, "Chong 2006; Andrade 2019 (F 17-25%); Tmax 30 min unconfirmed"
        ),
    }
    # Assumed IIV on ka for the assumed routes: 50% (of the order of the 61.5% CV of
    # esketamine nasal ka, Perez-Ruixo 2021 Table 3).
    OMEGA2_KA = math.log(1 + 0.5**2)

    def __init__(self) -> None:
        routes = {
            "iv": RouteInfo(
                "iv",
                "IV bolus or zero-order infusion into the central compartment (published model)",
                False,
                (self.citation,),
            )
        }
        for route, absorption in self.ABSORPTION.items():
            routes[route] = RouteInfo(
                route,
                f"first-order absorption, F {absorption.bioavailability:g}, ka solved for a "
                f"typical Tmax of {absorption.tmax_min:g} min"
                + (
                    f", {absorption.presystemic_to_metabolite:g} of the dose to norketamine "
                    "before reaching blood"
                    if absorption.presystemic_to_metabolite
                    else ""
                )
                + " (ASSUMPTION: no published racemic absorption model used)",
                True,
                (absorption.source, self.citation),
            )
        self.routes = routes

    def _system(self, route: str, cov: Covariates, rng, ka_per_min: np.ndarray) -> SystemArrays:
        n = cov.n
        wt = cov.weight_kg / 70.0
        # Otto 2021: V x (WT/70)^1, CL x (WT/70)^0.75 for both analytes; peripheral terms unscaled.
        parent_iiv = _correlated(rng, n, self.OMEGA_PARENT)
        met_iiv = _correlated(rng, n, self.OMEGA_METABOLITE)
        cl_scale = wt**0.75
        # columns filled in place, in column-major order (see _columns): np.column_stack of
        # constant columns costs more than the arithmetic
        parent_volume = np.empty((n, 3), order="F")
        np.multiply(self.V1_L * wt, parent_iiv[0], out=parent_volume[:, 0])
        parent_volume[:, 1] = self.VP1_L
        parent_volume[:, 2] = self.VP2_L
        parent_flow = np.empty((n, 3), order="F")
        parent_flow[:, 0] = 0.0
        parent_flow[:, 1] = self.Q1_L_PER_H / 60.0
        parent_flow[:, 2] = self.Q2_L_PER_H / 60.0
        parent_clearance = np.zeros((n, 3), order="F")
        np.multiply(self.CL_L_PER_H / 60.0 * cl_scale, parent_iiv[1], out=parent_clearance[:, 0])
        met_volume = np.empty((n, 2), order="F")
        np.multiply(self.VM_L * wt, met_iiv[0], out=met_volume[:, 0])
        met_volume[:, 1] = self.VPM_L
        met_flow = np.empty((n, 2), order="F")
        met_flow[:, 0] = 0.0
        met_flow[:, 1] = self.QM_L_PER_H / 60.0
        met_clearance = np.zeros((n, 2), order="F")
        np.multiply(self.CLM_L_PER_H / 60.0 * cl_scale, met_iiv[1], out=met_clearance[:, 0])
        if route == "iv":
            path_block = np.array([0])
            path_cmt = np.array([0])
            path_ka = np.zeros((n, 1))
        else:
            # path 0: depot -> central; path 1: depot -> norketamine (presystemic)
            path_block = np.array([0, 1])
            path_cmt = np.array([0, 0])
            path_ka = _columns([ka_per_min, ka_per_min])
        return SystemArrays(
            parent_volume,
            parent_flow,
            parent_clearance,
            parent_clearance.copy(order="F"),  # fm = 1 (Otto 2021)
            met_volume,
            met_flow,
            met_clearance,
            path_block,
            path_cmt,
            path_ka,
            KE0_PER_MIN,
            S_FRACTION_RACEMIC,
        )

    def individuals(self, route, cov, rng):
        self.check_route(route)
        n = cov.n
        if route == "iv":
            return Individuals(self._system(route, cov, rng, np.zeros(n)), np.ones(n))
        absorption = self.ABSORPTION[route]
        ka = typical_ka_per_min(self.model_id, route) * _lognormal(rng, n, self.OMEGA2_KA)
        system = self._system(route, cov, rng, ka)
        return Individuals(
            system,
            np.full(n, absorption.bioavailability),
            {"presystemic": np.full(n, absorption.presystemic_to_metabolite)},
        )

    def events(self, route, doses, ind):
        n = ind.system.n_patients
        paths, starts, durations, amounts = [], [], [], []
        for dose in doses:
            if route == "iv":
                paths.append(0)
                starts.append(np.full(n, dose.start_min))
                durations.append(dose.duration_min)
                amounts.append(np.full(n, dose.amount_mg))
                continue
            lag = self.ABSORPTION[route].lag_min
            paths += [0, 1]
            starts += [np.full(n, dose.start_min + lag)] * 2
            durations += [0.0, 0.0]
            amounts += [
                dose.amount_mg * ind.bioavailability,
                dose.amount_mg * ind.extra["presystemic"],
            ]
        return DoseEvents(
            np.array(paths, dtype=np.int64),
            np.column_stack(starts),
            np.array(durations, dtype=np.float64),
            np.column_stack(amounts),
        )


# ----------------------------------------------------------------------------------------------
# Esketamine


class EsketaminePerezRuixo(PKModel):
    """Esketamine and noresketamine, Perez-Ruixo et al. 2021 (Clin Pharmacokinet 60:501,
    Table 3), transcribed in nlmixr2lib `PerezRuixo_2020_esketamine.R`.

    Three compartments plus a hepato-portal compartment (first pass): elimination from the
    liver compartment (kel to other metabolites, kmet to noresketamine). Intranasal: per
    device a fraction FRn absorbed nasally (first order, ka_n, into central), second and later
    devices x 0.62; the rest is swallowed: (1 - FRn) x Fgut enters the liver compartment after
    a zero-order phase of Dsw then first order ka_sw. Oral solution: Fgut, zero order over Dpo
    then ka_po. IV: into central. No weight effect; Qh falls by 2.19 L/h per year above 60.
    Venous plasma (phase 1-3 trial sampling).
    """

    model_id = "perez-ruixo-2021"
    drug = "esketamine"
    title = "Perez-Ruixo 2021 esketamine/noresketamine model"
    citation = (
        "Perez-Ruixo C et al. Clin Pharmacokinet 2021;60:501-516 (Table 3; nlmixr2lib "
        "PerezRuixo_2020_esketamine.R)"
    )
    sampling_site = "venous"
    # Perez-Ruixo 2021 Table 2: weight 39-170 kg, age 18-86 years.
    studied_weight_kg = (39.0, 170.0)
    studied_age_years = (18.0, 86.0)

    # Table 3 (per hour and litres).
    VC_L = 192.0
    Q1_L_PER_H = 84.3
    VP1_L = 143.0
    Q2_L_PER_H = 37.6
    VP2_L = 417.0
    QH_L_PER_H = 151.0
    QH_AGE_SLOPE_L_PER_H_PER_YEAR = 2.19
    VH_L = 101.0
    KEL_PER_H = 1.11
    KMET_PER_H = 2.77
    FRN = 0.54
    FRN_LATER_DEVICES = 0.62
    KA_NASAL_PER_H = 2.93
    D_SWALLOWED_H = 0.53
    KA_SWALLOWED_PER_H = 1.45
    D_ORAL_H = 0.32
    KA_ORAL_PER_H = 0.97
    FGUT = 0.64
    VCN_L = 70.0
    CLN_L_PER_H = 38.0
    VPN_L = 115.0
    QN_L_PER_H = 26.1
    # Table 3 IIV as omega^2 (log scale; FRn additive on the logit scale), as transcribed in
    # nlmixr2lib. The kmet IIV is named in the paper but its estimate is blank in Table 3, so
    # we give kmet no IIV rather than nlmixr2lib's 30% placeholder.
    OMEGA2: ClassVar[dict[str, float]] = {
        "logit_frn": 0.501,
        "ka_nasal": 0.319,
        "ka_swallowed": 1.009,
        "ka_oral": 1.009,
        "vc": 0.0730,
        "vp1": 0.218,
        "qh": 0.0524,
        "vh": 0.113,
        "kel": 0.892,
        "vcn": 0.0955,
        "cln": 0.0625,
    }

    def __init__(self) -> None:
        src = (self.citation,)
        self.routes = {
            "intranasal": RouteInfo(
                "intranasal",
                "SPRAVATO devices: nasal first-order absorption plus swallowed fraction with "
                "first pass (published model)",
                False,
                src,
            ),
            "iv": RouteInfo("iv", "IV into the central compartment (published model)", False, src),
            "oral": RouteInfo(
                "oral",
                "oral solution: zero then first order into the liver (published model)",
                False,
                src,
            ),
        }

    def individuals(self, route, cov, rng):
        self.check_route(route)
        n = cov.n
        om = self.OMEGA2

        def eta(name: str) -> np.ndarray:
            return _lognormal(rng, n, om[name])

        zeros = np.zeros(n)
        excess_age = np.maximum(0.0, cov.age_years - 60.0)
        qh = (self.QH_L_PER_H - self.QH_AGE_SLOPE_L_PER_H_PER_YEAR * excess_age) * eta("qh") / 60.0
        vh = self.VH_L * eta("vh")
        kel = self.KEL_PER_H * eta("kel") / 60.0
        kmet = np.full(n, self.KMET_PER_H / 60.0)
        vc = self.VC_L * eta("vc")
        vp1 = self.VP1_L * eta("vp1")
        parent_volume = _columns([vc, vp1, np.full(n, self.VP2_L), vh])
        parent_flow = _columns(
            [zeros, np.full(n, self.Q1_L_PER_H / 60.0), np.full(n, self.Q2_L_PER_H / 60.0), qh]
        )
        parent_clearance = _columns([zeros, zeros, zeros, (kel + kmet) * vh])
        parent_formation = _columns([zeros, zeros, zeros, kmet * vh])
        met_volume = _columns([self.VCN_L * eta("vcn"), np.full(n, self.VPN_L)])
        met_flow = _columns([zeros, np.full(n, self.QN_L_PER_H / 60.0)])
        met_clearance = _columns([self.CLN_L_PER_H / 60.0 * eta("cln"), zeros])
        extra: dict[str, np.ndarray] = {}
        if route == "intranasal":
            path_block = np.array([0, 0])
            path_cmt = np.array([0, 3])  # nasal -> central; swallowed -> liver
            path_ka = _columns(
                [
                    self.KA_NASAL_PER_H / 60.0 * eta("ka_nasal"),
                    self.KA_SWALLOWED_PER_H / 60.0 * eta("ka_swallowed"),
                ]
            )
            logit = math.log(self.FRN / (1 - self.FRN))
            if rng is not None:
                logit = logit + math.sqrt(om["logit_frn"]) * standard_normals(rng, n)
            extra["frn"] = 1.0 / (1.0 + np.exp(-np.broadcast_to(logit, (n,))))
            bioavailability = extra["frn"]
        elif route == "oral":
            path_block = np.array([0])
            path_cmt = np.array([3])
            path_ka = (self.KA_ORAL_PER_H / 60.0 * eta("ka_oral"))[:, None]
            bioavailability = np.full(n, self.FGUT)
        else:
            path_block = np.array([0])
            path_cmt = np.array([0])
            path_ka = np.zeros((n, 1))
            bioavailability = np.ones(n)
        system = SystemArrays(
            parent_volume,
            parent_flow,
            parent_clearance,
            parent_formation,
            met_volume,
            met_flow,
            met_clearance,
            path_block,
            path_cmt,
            path_ka,
            KE0_PER_MIN,
            1.0,
        )
        return Individuals(system, bioavailability, extra)

    def events(self, route, doses, ind):
        n = ind.system.n_patients
        paths, starts, durations, amounts = [], [], [], []
        for dose in doses:
            start = np.full(n, dose.start_min)
            if route == "intranasal":
                frn = ind.extra["frn"] * (self.FRN_LATER_DEVICES if dose.device_index > 0 else 1.0)
                paths += [0, 1]
                starts += [start, start]
                durations += [0.0, self.D_SWALLOWED_H * 60.0]
                amounts += [dose.amount_mg * frn, dose.amount_mg * (1.0 - frn) * self.FGUT]
            elif route == "oral":
                paths.append(0)
                starts.append(start)
                durations.append(self.D_ORAL_H * 60.0)
                amounts.append(dose.amount_mg * ind.bioavailability)
            else:
                paths.append(0)
                starts.append(start)
                durations.append(dose.duration_min)
                amounts.append(np.full(n, dose.amount_mg))
        return DoseEvents(
            np.array(paths, dtype=np.int64),
            np.column_stack(starts),
            np.array(durations, dtype=np.float64),
            np.column_stack(amounts),
        )


MODELS: dict[str, PKModel] = {
    "ketamine": RacemicKetamine(),
    "esketamine": EsketaminePerezRuixo(),
}


def model_for(drug: str, route: str) -> tuple[PKModel, RouteInfo]:
    if drug not in MODELS:
        raise PKInputError("drug", f"unknown drug {drug!r}; use one of {', '.join(DRUGS)}")
    model = MODELS[drug]
    return model, model.check_route(route)


@cache
def typical_ka_per_min(model_id: str, route: str) -> float:
    """First-order ka that gives the reference's typical Tmax after a single dose (70 kg,
    no variability). Solved once per route; Tmax falls as ka rises, so bisection suffices."""
    from scipy.optimize import brentq

    from ketaflow.pharmacology.solve import OUTPUT_PARENT, decompose
    from ketaflow.pharmacology.summary import TMAX, summarize

    model = next(m for m in MODELS.values() if m.model_id == model_id)
    assert isinstance(model, RacemicKetamine)
    target = model.ABSORPTION[route].tmax_min
    cov = Covariates(np.array([70.0]), np.array([40.0]))
    dose = (Administration(0.0, 10.0),)

    def tmax_minus_target(log_ka: float) -> float:
        system = model._system(route, cov, None, np.array([math.exp(log_ka)]))
        ind = Individuals(system, np.ones(1), {"presystemic": np.zeros(1)})
        events = model.events(route, dose, ind)
        summary = summarize(decompose(system), events, (OUTPUT_PARENT,), (1.0,), 1440.0)
        return float(summary[0, 0, TMAX]) - target

    return math.exp(brentq(tmax_minus_target, math.log(1e-3), math.log(5.0), xtol=1e-10))
