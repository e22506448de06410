"""No NUL character in any input: PostgreSQL cannot store one in text (a 500 before), and no
clinical value holds one. Checked once for every route, in the path, the query and the body,
so the 422 names the field whatever the endpoint."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import parse_qsl

from fastapi import Request
from fastapi.exceptions import RequestValidationError

NUL = "\x00"
_MESSAGE = "text cannot contain a NUL character (U+0000)"


def _strings(value: object, path: tuple[object, ...]) -> Iterator[tuple[tuple[object, ...], str]]:
    """Every string in a parsed JSON document, keys included, with its location."""
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*path, key), key
            yield from _strings(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, (*path, index))


async def _offending(request: Request) -> list[tuple[object, ...]]:
    found: list[tuple[object, ...]] = []
    for name, value in request.path_params.items():
        if NUL in str(value):
            found.append(("path", name))
    for name, value in request.query_params.multi_items():
        if NUL in name or NUL in value:
            found.append(("query", name))
    if request.method not in ("POST", "PUT", "PATCH"):
        return found
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        body = await request.body()
    except RuntimeError:  # "Stream consumed": FastAPI parsed a form for the route's fields
        form = await request.form()  # that parse, cached
        found.extend(
            ("body", name)
            for name, value in form.multi_items()
            if NUL in name or (isinstance(value, str) and NUL in value)
        )
        return found
    # The raw body, never request.form() here: Starlette caches the first parse, so parsing
    # with its default limits would lift a handler's own (the questionnaire page takes 400
    # fields and no file).
    if media_type == "application/x-www-form-urlencoded":
        if b"%00" not in body and b"\x00" not in body:
            return found
        try:
            pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True, max_num_fields=1000)
        except ValueError:
            return found  # too many fields: the handler's own limit answers
        found.extend(("body", name) for name, value in pairs if NUL in name or NUL in value)
        return found
    if b"\x00" not in body and b"\\u0000" not in body:
        return found
    if media_type.endswith("json") or not media_type:  # FastAPI reads JSON without a type too
        try:
            document = json.loads(body)
        except ValueError:
            return found  # not JSON: the endpoint's own parsing says so
        found.extend(("body", *path) for path, text in _strings(document, ()) if NUL in text)
    # multipart: a file may hold NUL bytes; the only handler that reads one itself (the
    # questionnaire page) takes numbers only
    elif media_type != "multipart/form-data" and b"\x00" in body:
        found.append(("body",))
    return found


async def reject_nul_characters(request: Request) -> None:
    """App-wide dependency: a 422 naming each field that holds a NUL character."""
    found = await _offending(request)
    if found:
        raise RequestValidationError(
            [{"type": "value_error", "loc": loc, "msg": _MESSAGE, "input": None} for loc in found]
        )
