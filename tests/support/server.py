"""A real uvicorn server in a background thread, so API tests speak real HTTP."""

from __future__ import annotations

import threading
import time

import httpx
import uvicorn

from support.postgres import free_port


class ServerErrorLog:
    """ASGI wrapper noting every 5xx the app answers, so a suite can require none at all, even
    from a test that checked only for some other status."""

    def __init__(self, app) -> None:
        self.app = app
        self.errors: list[tuple[str, str, int]] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def noting(message) -> None:
            if message["type"] == "http.response.start" and message["status"] >= 500:
                self.errors.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, noting)


class LiveServer:
    def __init__(self, app, **uvicorn_options) -> None:
        """`uvicorn_options` go to uvicorn.Config (e.g. proxy_headers, forwarded_allow_ips)."""
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log = ServerErrorLog(app)
        config = uvicorn.Config(
            self.log,
            host="127.0.0.1",
            port=self.port,
            log_level="warning",
            lifespan="on",
            **uvicorn_options,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.base_url + "/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError("test server did not start")

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
