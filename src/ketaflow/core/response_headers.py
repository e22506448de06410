"""Headers every dynamic response carries: patient data must not be kept by a browser's or a
proxy's cache, nor sniffed into another content type. Static files and the API docs may be
cached; everything else (the API, the patient's questionnaire pages) may not."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NO_STORE_HEADERS = (
    (b"cache-control", b"no-store"),
    (b"pragma", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
)
CACHEABLE_PREFIXES = ("/static/", "/docs", "/redoc", "/openapi.json", "/static-offline-docs/")


class NoStoreHeaders:
    """Pure ASGI middleware (no request body buffering): adds NO_STORE_HEADERS to every HTTP
    response outside CACHEABLE_PREFIXES, unless the endpoint set the header itself."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CACHEABLE_PREFIXES):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers += [(n, v) for n, v in NO_STORE_HEADERS if n not in present]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)
