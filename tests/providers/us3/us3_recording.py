"""An httpx transport that forwards to a real server and keeps every US3 form it sent (test helper)."""

from __future__ import annotations

import httpx


class RecordingTransport(httpx.AsyncBaseTransport):
    """Forwards over real HTTP; `forms` holds each request's decoded form, in order."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.forms: list[dict[str, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        self.forms.append(dict(httpx.QueryParams(body.decode())))
        return await self._inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self._inner.aclose()

    def actions(self) -> list[str]:
        return [form.get("Action", "") for form in self.forms]
