"""RFC 9457 problem details for every error the API returns."""

from __future__ import annotations

import logging
import traceback

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ketaflow.core.access_log import redact_path
from ketaflow.core.errors import KetaflowError

PROBLEM_MEDIA_TYPE = "application/problem+json"
_TYPE_BASE = "https://ketaflow.org/problems/"

_HTTP_SLUGS = {401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed"}


def problem_response(
    request: Request,
    status: int,
    slug: str,
    title: str,
    detail: str,
    extensions: dict[str, object] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, object] = {
        "type": _TYPE_BASE + slug,
        "title": title,
        "status": status,
        "detail": detail,
        # the path, with a questionnaire link's token masked: a problem is shown and logged
        "instance": redact_path(request.url.path),
    }
    body.update(extensions or {})
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def field_path(location: tuple[object, ...] | list[object]) -> str:
    """('body', 'history', 'trials', 0, 'weeks') -> 'history.trials[0].weeks'."""
    parts = list(location)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie", "form"):
        parts = parts[1:]
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text or str(location[0] if location else "body")


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(KetaflowError)
    async def _domain_error(request: Request, exc: KetaflowError) -> JSONResponse:
        # WWW-Authenticate on a 401, Retry-After on a 429
        headers = exc.headers() or None
        return problem_response(
            request, exc.status, exc.slug, exc.title, exc.detail, exc.extensions(), headers
        )

    @app.exception_handler(RequestValidationError)
    @app.exception_handler(ValidationError)
    async def _validation_error(
        request: Request, exc: RequestValidationError | ValidationError
    ) -> JSONResponse:
        # A ValidationError raised past the request schema comes from a rule's own value
        # (e.g. an adverse event of kind "other" without a description): still bad input.
        errors = [
            {"field": field_path(err.get("loc", ())), "message": err.get("msg", "invalid")}
            for err in exc.errors()
        ]
        fields = ", ".join(dict.fromkeys(e["field"] for e in errors))
        return problem_response(
            request,
            422,
            "invalid-input",
            "Invalid input",
            f"invalid value for {fields}",
            {"errors": errors},
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        slug = _HTTP_SLUGS.get(exc.status_code, "http-error")
        title = slug.replace("-", " ").capitalize()
        return problem_response(
            request, exc.status_code, slug, title, str(exc.detail), headers=exc.headers
        )


log = logging.getLogger("ketaflow.errors")


def _frames_only(exc: BaseException) -> str:
    """Where an exception came from, without its message: a database error's message can
    carry the statement's parameters (names, birth dates)."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = " <- ".join(
        f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}" for f in frames[::-1]
    )
    return f"{type(exc).__module__}.{type(exc).__qualname__} at {where}"


class ServerErrorProblems:
    """Pure ASGI middleware: an unexpected exception becomes a 500 problem+json with no detail
    (never a plain-text page), and is logged by type and frames only, never by message, so no
    PHI reaches the log. Installed inside Starlette's own error middleware."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking)
        except Exception as exc:
            log.error("unhandled error on %s: %s", scope.get("method"), _frames_only(exc))
            if started:  # too late for a problem document: the client sees a cut response
                raise
            response = problem_response(
                Request(scope),
                500,
                "internal-error",
                "Internal server error",
                "the server failed to handle this request",
            )
            await response(scope, receive, send)
