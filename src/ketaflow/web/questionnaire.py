"""The patient's questionnaire page, `/q/{token}`: no login, made for a phone.

The token in the path is the only credential (SHA-256 stored, single use), so the page is safe
from cross-site request forgery by construction: a forged POST would have to know the token. The
answers are saved by `measures.service.submit_link`, which marks the link used in the same
transaction. The token must never reach a log: `core.access_log` masks it in access-log lines,
responses forbid caching and referrers, and the audit log records the link's id only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from ketaflow.core.clock import utc_now
from ketaflow.core.settings import Settings
from ketaflow.measures import service
from ketaflow.measures.api import get_catalogue
from ketaflow.measures.instruments import Instrument, Item
from ketaflow.web import templates

router = APIRouter(include_in_schema=False)

# Shown on every patient page. A clinic outside the US changes it here.
CRISIS_TEXT = (
    "If you are in danger or thinking about harming yourself, call or text 988 (Suicide & "
    "Crisis Lifeline, US) or your local emergency number now, or go to the nearest emergency "
    "department."
)
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
}
CHOOSE_ONE = "Please choose one of the answers."
UNAVAILABLE = {
    "unknown": ("Link not found", "This questionnaire link is not valid."),
    "used": ("Already answered", "This questionnaire has already been answered. Thank you."),
    "expired": (
        "Link expired",
        "This questionnaire link has expired. Your clinic can send you a new one.",
    ),
    "scheduled": ("Not open yet", "This questionnaire is not open yet."),
}


@dataclass(frozen=True)
class FormOption:
    value: int
    label: str


@dataclass(frozen=True)
class FormItem:
    field: str
    number: str
    text: str
    condition: str | None  # part of the question: when it is asked (skip logic)
    hint: str | None
    required: bool
    options: tuple[FormOption, ...]
    answer: int | None
    error: str | None


@dataclass(frozen=True)
class InstrumentForm:
    name: str
    instructions: str | None
    items: tuple[FormItem, ...]


def field_name(instrument_index: int, item_id: str) -> str:
    """Form fields are named by position, so scale codes with '/' or '+' never reach HTML."""
    return f"s{instrument_index}-{item_id}"


def _gate(instrument: Instrument, item: Item) -> tuple[str, str] | None:
    """(question, answer label) after which the scale asks this question, if only then."""
    gate = instrument.asked_after(item.id)
    if gate is None:
        return None
    gate_id, value = gate
    options = instrument.item(gate_id).options
    return gate_id, next((o.label for o in options if o.value == value), str(value))


def _condition(instrument: Instrument, item: Item) -> str | None:
    """For a question the scale asks only after one answer to another (the C-SSRS screener's
    skip logic, reference §3): the page has no script, so every question shows and its text
    says when it is answered."""
    gate = _gate(instrument, item)
    return f"Only if you answered {gate[1]} to question {gate[0]}:" if gate else None


def _hint(instrument: Instrument, item: Item) -> str | None:
    gate = _gate(instrument, item)
    if gate is not None:
        return f"If you did not answer {gate[1]} to question {gate[0]}, leave this one blank."
    group = next((g for g in instrument.either_or_groups if item.id in g), None)
    if group is not None:
        # QIDS-SR16 6/7 and 8/9: one of each pair is needed (qids_sr16.EITHER_OR_PAIRS)
        return f"Answer question {' or question '.join(group)}: one of them is needed."
    return None if item.required else "Optional."


def build_forms(
    instruments: tuple[Instrument, ...],
    answers: dict[str, dict[str, int]],
    problems: dict[str, dict[str, str]],
) -> list[InstrumentForm]:
    forms = []
    for index, instrument in enumerate(instruments):
        always_asked = set(instrument.ordered_item_ids({}))
        given = answers.get(instrument.code, {})
        errors = problems.get(instrument.code, {})
        items = tuple(
            FormItem(
                field=field_name(index, item.id),
                number=item.id,
                text=item.text or item.label,
                condition=_condition(instrument, item),
                hint=_hint(instrument, item),
                required=item.required and item.id in always_asked,
                options=tuple(FormOption(o.value, o.label) for o in item.options),
                answer=given.get(item.id),
                error=errors.get(item.id),
            )
            for item in instrument.items
        )
        instructions = instrument.instructions or (
            f"Think about the {instrument.recall_period}." if instrument.recall_period else None
        )
        forms.append(InstrumentForm(instrument.name, instructions, items))
    return forms


def parse_form(
    instruments: tuple[Instrument, ...], form: Any
) -> tuple[dict[str, dict[str, int]], dict[str, dict[str, str]]]:
    """Answers by scale code and item id; unreadable values are problems, unknown fields are
    ignored (a form posts only what the page rendered)."""
    answers: dict[str, dict[str, int]] = {}
    problems: dict[str, dict[str, str]] = {}
    for index, instrument in enumerate(instruments):
        given: dict[str, int] = {}
        for item in instrument.items:
            raw = form.get(field_name(index, item.id))
            if raw is None or raw == "":
                continue
            try:
                value = int(str(raw), 10)
            except ValueError:
                problems.setdefault(instrument.code, {})[item.id] = CHOOSE_ONE
                continue
            if value not in item.values:
                problems.setdefault(instrument.code, {})[item.id] = CHOOSE_ONE
                continue
            given[item.id] = value
        answers[instrument.code] = given
    return answers, problems


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _clock_now(request: Request) -> datetime:
    clock = getattr(request.app.state, "clock", utc_now)
    return clock()


def _local_text(moment: datetime, settings: Settings) -> str:
    local = moment.astimezone(ZoneInfo(settings.clinic_timezone))
    return local.strftime("%A %d %B %Y, %H:%M")


def _page(
    request: Request, template: str, context: dict[str, Any], status_code: int = 200
) -> HTMLResponse:
    settings = _settings(request)
    return templates.TemplateResponse(
        request,
        template,
        {"clinic_name": settings.clinic_name, "crisis_text": CRISIS_TEXT, **context},
        status_code=status_code,
        headers=SECURITY_HEADERS,
    )


def _unavailable(request: Request, exc: service.LinkUnavailable) -> HTMLResponse:
    heading, message = UNAVAILABLE.get(exc.reason, UNAVAILABLE["unknown"])
    if exc.reason == "scheduled" and exc.available_from is not None:
        message += f" It opens on {_local_text(exc.available_from, _settings(request))}."
    return _page(
        request,
        "questionnaire/unavailable.html",
        {"heading": heading, "message": message},
        status_code=exc.status,
    )


def _form_page(
    request: Request,
    opened: service.OpenLink,
    answers: dict[str, dict[str, int]],
    problems: dict[str, dict[str, str]],
    status_code: int = 200,
) -> HTMLResponse:
    return _page(
        request,
        "questionnaire/form.html",
        {
            "forms": build_forms(opened.instruments, answers, problems),
            "errors": bool(problems),
            "expires_at_text": _local_text(opened.expires_at, _settings(request)),
        },
        status_code=status_code,
    )


@router.get("/q/{token}", response_class=HTMLResponse)
async def questionnaire_page(request: Request, token: str) -> HTMLResponse:
    db = request.app.state.db
    catalogue = get_catalogue(request)
    now = _clock_now(request)
    try:
        opened = await run_in_threadpool(service.open_link, db, token, catalogue, lambda: now)
    except service.LinkUnavailable as exc:
        return _unavailable(request, exc)
    return _form_page(request, opened, {}, {})


@router.post("/q/{token}", response_class=HTMLResponse)
async def submit_questionnaire(request: Request, token: str) -> HTMLResponse:
    db = request.app.state.db
    catalogue = get_catalogue(request)
    now = _clock_now(request)
    try:
        opened = await run_in_threadpool(service.open_link, db, token, catalogue, lambda: now)
    except service.LinkUnavailable as exc:
        return _unavailable(request, exc)
    form = await request.form(max_files=0, max_fields=400)
    answers, problems = parse_form(opened.instruments, form)
    if problems:
        # Show every question still to fix at once, not only the unreadable ones.
        for instrument in opened.instruments:
            found = service.answer_problems(instrument, answers.get(instrument.code, {}))
            for item_id, message in found.items():
                problems.setdefault(instrument.code, {}).setdefault(item_id, message)
        return _form_page(request, opened, answers, problems, status_code=422)
    client = request.client.host if request.client else None
    try:
        saved = await run_in_threadpool(
            service.submit_link, db, token, answers, client, catalogue, lambda: now
        )
    except service.LinkUnavailable as exc:
        return _unavailable(request, exc)
    except service.SelfReportErrors as exc:
        return _form_page(request, opened, answers, exc.problems, status_code=422)
    safety_concern = any(view.alerts for view in saved)
    return _page(request, "questionnaire/thanks.html", {"safety_concern": safety_concern})
