"""The web console keeps the API's rules: sessions, CSRF, CSP, and roles checked server-side.

Against the real API (served in-process), PostgreSQL and its keys: each test is what a
person with a browser, or a page of another site, could try.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from services.api.console.security import CSP
from services.api.console.state import LIVE_STREAMS_PER_KEY
from shared.apikeys import create_api_key, revoke_api_key
from shared.eventlog import EventStore
from shared.events.catalog import (
    StageApproved,
)
from shared.testing import wait_until
from tests.support.api import auth_headers, served_api
from tests.support.console import ConsoleClient, csrf_of, waiting_for_approval

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
TTL_S = 0.3


@pytest.fixture
async def api(store: EventStore, api_pool: asyncpg.Pool) -> AsyncIterator[str]:
    async with served_api(store, api_pool, key_cache_ttl_s=TTL_S) as url:
        yield url


async def approvals(store: EventStore, d: str) -> list[StageApproved]:
    return [
        e.event
        for e in await store.read_stream(f"deployment-{d}")
        if isinstance(e.event, StageApproved)
    ]


async def test_sign_in_sets_a_strict_http_only_cookie_secure_behind_tls(
    api: str, store: EventStore
) -> None:
    key = await create_api_key(store, "read-only", "reader")
    async with ConsoleClient(api) as browser:
        reply = await browser.sign_in(key)
        assert reply.status == 303, reply
        assert reply.headers["Location"] == "/console/applications"
        cookie = next(
            c for c in reply.headers.getall("Set-Cookie") if c.startswith("slipway_session=")
        )
        assert "HttpOnly" in cookie and "SameSite=Strict" in cookie, cookie
        assert "Secure" not in cookie  # plain HTTP here: a Secure cookie would never return
        assert key not in cookie  # the session names the key; it never carries the secret
    # Behind a TLS-terminating proxy both cookies are Secure (an HTTP client would drop
    # them, so this one hands the sign-in cookie back itself).
    https = {"X-Forwarded-Proto": "https"}
    async with ConsoleClient(api, headers=https) as browser:
        async with browser.http.get("/console/sign-in") as form:
            token = csrf_of(await form.text())
            anchor = form.cookies["slipway_signin"]
            assert anchor["secure"] and anchor["httponly"] and anchor["samesite"] == "Strict"
        async with browser.http.post(
            "/console/sign-in",
            data={"csrf": token, "api_key": key},
            headers={"Cookie": f"slipway_signin={anchor.value}"},
            allow_redirects=False,
        ) as reply:
            assert reply.status == 303
            session = reply.cookies["slipway_session"]
            assert session["secure"] and session["httponly"] and session["samesite"] == "Strict"


async def test_a_wrong_key_is_refused_and_pages_need_a_session(api: str) -> None:
    async with ConsoleClient(api) as browser:
        status, _ = await browser.page("/console/deployments/abc")
        assert status == 303  # to the sign-in page
        reply = await browser.sign_in("slw_notakey")
        assert reply.status == 401
        assert "slipway_session" not in reply.cookies


async def test_every_page_has_a_csp_without_inline_script(api: str, store: EventStore) -> None:
    key = await create_api_key(store, "read-only", "reader")
    d = await waiting_for_approval(store)
    async with ConsoleClient(api) as browser:
        async with browser.http.get("/console/sign-in") as reply:
            assert reply.headers["Content-Security-Policy"] == CSP
        await browser.sign_in(key)
        for path in (f"/console/deployments/{d}", "/console/events"):
            async with browser.http.get(path) as reply:
                html = await reply.text()
                assert reply.status == 200, html
                assert reply.headers["Content-Security-Policy"] == CSP
                assert reply.headers["X-Frame-Options"] == "DENY"
            # Every script is a file of the console's origin; a JSON data block is no script.
            for tag in re.findall(r"<script[^>]*>", html):
                assert 'src="/console/' in tag or 'type="application/json"' in tag, tag
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP and "unsafe-eval" not in CSP


async def test_a_read_only_session_sees_no_action_and_a_forged_post_is_403(
    api: str, store: EventStore
) -> None:
    key = await create_api_key(store, "read-only", "alice-reader")
    d = await waiting_for_approval(store)
    async with ConsoleClient(api) as browser:
        await browser.sign_in(key)
        status, html = await browser.page(f"/console/deployments/{d}")
        assert status == 200, html
        assert "WAIT_APPROVAL" in html
        assert "/approve" not in html and "/skip" not in html and "/cancel" not in html
        # The form it was not shown, forged with its own valid CSRF token: the role decides.
        status, html = await browser.post(
            f"/console/deployments/{d}/stages/stage-0/approve", {"csrf": csrf_of(html)}
        )
        assert status == 403, html
        assert "read-only" in html
    assert await approvals(store, d) == []


async def test_a_post_without_the_sessions_csrf_token_is_refused(
    api: str, store: EventStore
) -> None:
    alice = await create_api_key(store, "read-write", "alice")
    mallory = await create_api_key(store, "read-write", "mallory")
    d = await waiting_for_approval(store)
    approve = f"/console/deployments/{d}/stages/stage-0/approve"
    async with ConsoleClient(api) as other:
        await other.sign_in(mallory)
        _, html = await other.page(f"/console/deployments/{d}")
        mallorys_token = csrf_of(html)
    async with ConsoleClient(api) as browser:
        await browser.sign_in(alice)
        status, html = await browser.page(f"/console/deployments/{d}")
        assert "/approve" in html  # alice is the listed approver and may write
        for form in ({}, {"csrf": ""}, {"csrf": mallorys_token}):
            status, refused = await browser.post(approve, form)
            assert status == 403, refused
            assert "CSRF" in refused
        assert await approvals(store, d) == []
        # With her page's token the same post is the API's approve command.
        status, _ = await browser.post(approve, {"csrf": csrf_of(html)})
        assert status == 303
    (approved,) = await approvals(store, d)
    assert approved.approver == "alice"


async def test_a_session_cookie_opens_no_api_route_and_ends_with_its_key(
    api: str, store: EventStore
) -> None:
    """The cookie authenticates console pages only (a cross-site request cannot reach the
    API with it); revoking the key ends its sessions within the key cache's TTL."""
    key = await create_api_key(store, "read-only", "reader")
    d = await waiting_for_approval(store)
    async with ConsoleClient(api) as browser:
        await browser.sign_in(key)
        async with browser.http.get(f"/api/v1/deployments/{d}") as reply:
            assert reply.status == 401
        async with browser.http.get(f"/api/v1/deployments/{d}", headers=auth_headers(key)) as ok:
            assert ok.status == 200
        assert (await browser.page(f"/console/deployments/{d}"))[0] == 200
        key_id = key.split("_")[1]
        await revoke_api_key(store, key_id)

        async def signed_out() -> bool:
            return (await browser.page(f"/console/deployments/{d}"))[0] == 303

        await wait_until(signed_out, within_s=5, what="the revoked key's session ends")


async def test_one_key_holds_a_bounded_number_of_live_pages(api: str, store: EventStore) -> None:
    """Each open page holds a live stream; a key (however many sessions) holds at most
    `LIVE_STREAMS_PER_KEY` of them, so a script cannot open connections without end."""
    key = await create_api_key(store, "read-only", "reader")
    async with ConsoleClient(api) as browser, contextlib.AsyncExitStack() as open_pages:
        await browser.sign_in(key)
        for _ in range(LIVE_STREAMS_PER_KEY):
            stream = await open_pages.enter_async_context(browser.http.get("/console/live"))
            assert stream.status == 200
        async with browser.http.get("/console/live") as refused:
            assert refused.status == 429
    # Closed pages give their slots back.
    async with ConsoleClient(api) as browser:
        await browser.sign_in(key)

        async def slot_free() -> bool:
            async with browser.http.get("/console/live") as stream:
                return stream.status == 200

        await wait_until(slot_free, within_s=5, what="the closed streams' slots")
