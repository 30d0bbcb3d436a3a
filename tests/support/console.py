"""A person at the web console without a browser: sign in, read pages, post their forms."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import UTC, datetime
from types import TracebackType
from typing import Final, Self

import aiohttp
import asyncpg

from services.api.console.sessions import COOKIE
from shared.eventlog import EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    DeploymentStarted,
    PlannedStage,
    StageStarted,
)
from shared.ids import new_id
from tests.support.deployment_events import planned, triggered

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)

__all__ = ["ConsoleClient", "csrf_of", "session_keys_aged", "waiting_for_approval"]

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


_AGED: Final = (
    "UPDATE api_console_session_keys SET created_at = created_at - make_interval(secs => $1)"
)


async def session_keys_aged(database_url: str, schema: str, seconds: float) -> None:
    """`seconds` go by for the console's session keys: each one's `created_at` moves that far
    into the past (rotation runs on the database's clock, which a test cannot move). As the
    superuser of `database_url`: no service's role may change a stored key."""
    conn = await asyncpg.connect(database_url, server_settings={"search_path": schema})
    try:
        await conn.execute(_AGED, seconds)
    finally:
        await conn.close()


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

    def session_cookie(self) -> str:
        """The value of the session cookie this browser holds (after signing in)."""
        found = [c.value for c in self.http.cookie_jar if c.key == COOKIE]
        assert found, "this browser holds no session cookie: not signed in"
        return found[0]

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


async def waiting_for_approval(store: EventStore) -> str:
    """A running deployment whose WAIT_APPROVAL stage (approvers: alice) has started."""
    d = new_id()
    stages = (
        PlannedStage(
            id="stage-0",
            name=vocabulary.StageName("WAIT_APPROVAL"),
            index=0,
            options_json='{"approvers": ["alice"]}',
        ),
        PlannedStage(id="stage-1", name=vocabulary.StageName("K8S_PRIMARY_ROLLOUT"), index=1),
    )
    events: list[Event] = [
        triggered(d, commit="c0ffee1"),
        planned(
            d,
            stages,
            commit="c0ffee1",
            summary="image web: v1 → v2",
            reason="the pod template changed",
        ),
        DeploymentStarted(deployment_id=d, application_id="app1", started_at=T0),
        StageStarted(deployment_id=d, stage_id="stage-0", started_at=T0),
    ]
    await store.append(f"deployment-{d}", new_events(events), expected_version=None)
    return d
