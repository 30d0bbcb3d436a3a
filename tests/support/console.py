"""A person at the web console without a browser: sign in, read pages, post their forms."""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import TracebackType
from typing import Self

import aiohttp

__all__ = ["ConsoleClient", "csrf_of"]

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    """The CSRF token a page's forms carry."""
    found = _CSRF.search(html)
    assert found is not None, "the page has no form with a CSRF token"
    return found.group(1)


class ConsoleClient:
    """One browser's cookies against the API at `url` (cookies on 127.0.0.1 need `unsafe`)."""

    def __init__(self, url: str, *, headers: Mapping[str, str] | None = None) -> None:
        self.http = aiohttp.ClientSession(
            base_url=url, cookie_jar=aiohttp.CookieJar(unsafe=True), headers=headers
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.http.close()

    async def sign_in(self, key: str) -> aiohttp.ClientResponse:
        """Signs in with `key`; the answer (a 303 on success) with its `Set-Cookie`."""
        async with self.http.get("/console/sign-in") as form:
            token = csrf_of(await form.text())
        async with self.http.post(
            "/console/sign-in", data={"csrf": token, "api_key": key}, allow_redirects=False
        ) as reply:
            await reply.read()
            return reply

    async def page(self, path: str) -> tuple[int, str]:
        async with self.http.get(path, allow_redirects=False) as reply:
            return reply.status, await reply.text()

    async def post(self, path: str, form: Mapping[str, str]) -> tuple[int, str]:
        async with self.http.post(path, data=dict(form), allow_redirects=False) as reply:
            return reply.status, await reply.text()
