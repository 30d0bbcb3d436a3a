"""The console's OIDC sign-in against a real OpenID Connect provider running locally
(`oidc-provider-mock`: discovery, JWKS, authorization and token endpoints, signed ID tokens).

A person signs in through the provider and gets the console's session with the role their
groups map to, and their actions are theirs in the log; a bad state, a replayed code, a
token that is tampered, expired or for another client, and a person in no mapped group are
refused; the sign-in page offers the provider only when one is configured. The provider
enforces PKCE (S256, `tests/support/pkce_provider.py`): a sign-in whose verifier is not the
one its challenge was made from is refused by the provider, and the console says so.
"""

from __future__ import annotations

import base64
import json
import secrets
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from urllib.parse import parse_qs, urlsplit

import aiohttp
import asyncpg
import pytest

from services.api.console.keyring import Keyring
from services.api.console.oidc import OidcRefused, OidcSettings, pkce_challenge, verify_id_token
from services.api.console.oidc_web import OIDC_PENDING_COOKIE
from services.api.console.sessions import SessionCodec
from shared.apikeys import create_api_key
from shared.eventlog import EventStore
from shared.events.catalog import StageApproved
from tests.support.api import served_api
from tests.support.console import ConsoleClient, csrf_of, waiting_for_approval
from tests.support.oidc import PROVIDER_WARNINGS, Provider, console_settings, local_provider

pytestmark = PROVIDER_WARNINGS

CLIENT_ID = "slipway-console"
CALLBACK = "http://127.0.0.1/cb"
"""Where the hand-made flows below have the provider send the code (nobody listens)."""
SESSION_KEY = b"k" * 32
"""A fixed key for the console's cookies, so a test can reseal the pending sign-in's."""


@pytest.fixture(scope="module")
def provider() -> Iterator[Provider]:
    with local_provider() as running:
        yield running


def settings(provider: Provider) -> OidcSettings:
    return console_settings(provider.issuer)


@pytest.fixture
async def api(store: EventStore, api_pool: asyncpg.Pool, provider: Provider) -> AsyncIterator[str]:
    async with served_api(store, api_pool, oidc=settings(provider)) as url:
        yield url


async def start(browser: ConsoleClient, next_path: str = "") -> str:
    """The sign-in button: the provider's authorization URL the console redirects to."""
    path = "/console/oidc/start" + (f"?next={next_path}" if next_path else "")
    async with browser.http.get(path, allow_redirects=False) as reply:
        assert reply.status == 302, await reply.text()
        return reply.headers["Location"]


async def come_back(browser: ConsoleClient, callback: str) -> tuple[int, str]:
    """The provider's redirect back to the console's callback."""
    parts = urlsplit(callback)
    return await browser.page(f"{parts.path}?{parts.query}")


async def test_sign_in_maps_groups_to_roles_and_actions_are_the_persons(
    api: str, provider: Provider, store: EventStore
) -> None:
    await provider.set_user("alice", {"groups": ["viewers", "devs"]})
    await provider.set_user("bob@example.com", {"email": "bob@example.com", "groups": ["sre"]})
    d = await waiting_for_approval(store)  # approvers: alice
    async with ConsoleClient(api) as browser:
        url = await start(browser, f"/console/deployments/{d}")
        query = parse_qs(urlsplit(url).query)
        assert url.startswith(f"{provider.issuer}/oauth2/authorize?")
        assert query["client_id"] == [CLIENT_ID] and query["code_challenge_method"] == ["S256"]
        assert query["scope"] == ["openid email profile"]
        assert query["state"] and query["nonce"] and query["code_challenge"]
        status, html = await come_back(browser, await provider.authorize(url, "alice"))
        assert status == 200, html
        assert f'url=/console/deployments/{d}"' in html  # moves on to where it started
        status, html = await browser.page(f"/console/deployments/{d}")
        assert status == 200, html
        assert "alice (read-write)" in html  # the highest role of her groups
        assert "/approve" in html
        status, html = await browser.post(
            f"/console/deployments/{d}/stages/stage-0/approve", {"csrf": csrf_of(html)}
        )
        assert status == 303, html
        # An API key's route still wants a key: the session is the console's only.
        async with browser.http.get("/api/v1/applications") as reply:
            assert reply.status == 401
    approval = next(
        e for e in await store.read_stream(f"deployment-{d}") if isinstance(e.event, StageApproved)
    )
    assert isinstance(approval.event, StageApproved) and approval.event.approver == "alice"
    assert approval.metadata.actor == "alice"
    async with ConsoleClient(api) as browser:
        url = await start(browser)
        status, html = await come_back(browser, await provider.authorize(url, "bob@example.com"))
        assert status == 200 and "url=/console/applications" in html, html
        status, html = await browser.page("/console/applications")
        assert "bob@example.com (admin)" in html, html


async def test_a_person_in_no_mapped_group_is_refused(api: str, provider: Provider) -> None:
    await provider.set_user("mallory", {"groups": ["contractors"]})
    await provider.set_user("nogroups", {})
    for sub in ("mallory", "nogroups"):
        async with ConsoleClient(api) as browser:
            url = await start(browser)
            status, html = await come_back(browser, await provider.authorize(url, sub))
            assert status == 403, html
            assert "no group this console maps to a role" in html
            assert not [c for c in browser.http.cookie_jar if c.key == "slipway_session"]
            status, _ = await browser.page("/console/applications")
            assert status == 303  # to the sign-in page


async def test_a_bad_state_and_a_replayed_code_are_refused(api: str, provider: Provider) -> None:
    await provider.set_user("carol", {"groups": ["viewers"]})
    async with ConsoleClient(api) as browser:
        url = await start(browser)
        callback = await provider.authorize(url, "carol")
        forged = callback.replace("state=", "state=x")
        status, html = await come_back(browser, forged)
        assert status == 403 and "state does not match" in html, html
    # Another browser's callback (its code and state) in a browser that started no sign-in.
    async with ConsoleClient(api) as browser:
        url = await start(browser)
        callback = await provider.authorize(url, "carol")
    async with ConsoleClient(api) as stranger:
        status, html = await come_back(stranger, callback)
        assert status == 403 and "not started here" in html, html
    # The code used once, then again with everything else right: the provider says no.
    async with ConsoleClient(api) as browser:
        url = await start(browser)
        callback = await provider.authorize(url, "carol")
        pending = next(c for c in browser.http.cookie_jar if c.key == "slipway_oidc").value
        status, html = await come_back(browser, callback)
        assert status == 200, html
        async with browser.http.get(
            urlsplit(callback).path + "?" + urlsplit(callback).query,
            headers={"Cookie": f"slipway_oidc={pending}"},
            allow_redirects=False,
        ) as reply:
            html = await reply.text()
            assert reply.status == 403 and "refused the authorization code" in html, html


async def test_tampered_expired_and_wrong_audience_tokens_are_refused(
    provider: Provider,
) -> None:
    await provider.set_user("dave", {"groups": ["sre"]})
    jwks = await provider.jwks()
    token = await provider.id_token("dave", CLIENT_ID, nonce="n-1")
    now = int(time.time())

    def check(token: str, *, nonce: str = "n-1", at: int = now, client: str = CLIENT_ID) -> None:
        verify_id_token(
            token, jwks=jwks, issuer=provider.issuer, client_id=client, nonce=nonce, now=at
        )

    check(token)  # the real thing passes
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=="))
    claims["groups"] = ["sre", "root"]
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).decode()
    with pytest.raises(OidcRefused, match="signature"):
        check(f"{header}.{forged.rstrip('=')}.{signature}")
    with pytest.raises(OidcRefused, match="signature"):
        check(f"{header}.{payload}.{signature[:-4]}AAAA")
    with pytest.raises(OidcRefused, match="exp"):
        check(token, at=now + 2 * 3600)  # the provider's tokens last an hour
    with pytest.raises(OidcRefused, match="nonce"):
        check(token, nonce="another sign-in's")
    with pytest.raises(OidcRefused, match="not for this console"):
        check(token, client="another-client")
    other = await provider.id_token("dave", "another-client", nonce="n-1")
    with pytest.raises(OidcRefused, match="not for this console"):
        check(other)
    with pytest.raises(OidcRefused, match="iss"):
        verify_id_token(
            token, jwks=jwks, issuer="http://evil", client_id=CLIENT_ID, nonce="n-1", now=now
        )


async def test_the_sign_in_page_offers_oidc_only_when_configured(
    api: str, store: EventStore, api_pool: asyncpg.Pool
) -> None:
    async with ConsoleClient(api) as browser:
        status, html = await browser.page("/console/sign-in")
        assert status == 200 and 'href="/console/oidc/start?next=' in html
    async with served_api(store, api_pool, admin_name="plain-admin") as plain:
        async with ConsoleClient(plain) as browser:
            status, html = await browser.page("/console/sign-in")
            assert status == 200 and "/console/oidc/start" not in html
            status, _ = await browser.page("/console/oidc/start")
            assert status == 404
        # A key's session still works beside OIDC.
        key = await create_api_key(store, "read-only", "keyed")
        async with ConsoleClient(api) as browser:
            assert (await browser.sign_in(key)).status == 303


async def test_an_unreachable_or_impostor_provider_is_refused_at_the_button(
    store: EventStore, api_pool: asyncpg.Pool, provider: Provider
) -> None:
    # OIDC Discovery wants the document's issuer to be exactly the configured one.
    impostor = replace(settings(provider), issuer=f"{provider.issuer}/")
    gone = replace(settings(provider), issuer="http://127.0.0.1:1")
    for oidc, why in ((impostor, "names issuer"), (gone, "cannot be reached")):
        async with (
            served_api(store, api_pool, oidc=oidc, admin_name=f"admin-{why[:4]}") as url,
            ConsoleClient(url) as browser,
        ):
            status, html = await browser.page("/console/oidc/start")
            assert status == 502 and why in html, html


async def test_a_sign_in_whose_pkce_verifier_does_not_match_is_refused_by_the_provider(
    store: EventStore, api_pool: asyncpg.Pool, provider: Provider
) -> None:
    await provider.set_user("frank", {"groups": ["devs"]})
    codec = SessionCodec(Keyring.fixed(SESSION_KEY))
    async with served_api(
        store, api_pool, oidc=settings(provider), console_session_key=SESSION_KEY
    ) as api:
        async with ConsoleClient(api) as browser:
            url = await start(browser)
            jar = browser.http.cookie_jar
            fields = codec.unseal(
                "oidc", next(c.value for c in jar if c.key == OIDC_PENDING_COOKIE)
            )
            assert fields is not None and pkce_challenge(fields["verifier"]) in url
            # What our side stored, changed: every other check (signature, state) still passes.
            tampered = codec.seal("oidc", {**fields, "verifier": secrets.token_urlsafe(48)})
            jar.clear(lambda cookie: cookie.key == OIDC_PENDING_COOKIE)
            callback = urlsplit(await provider.authorize(url, "frank"))
            async with browser.http.get(
                f"{callback.path}?{callback.query}",
                headers={"Cookie": f"{OIDC_PENDING_COOKIE}={tampered}"},
                allow_redirects=False,
            ) as reply:
                html = await reply.text()
            assert reply.status == 403, html
            assert "refused the authorization code (400 invalid_grant" in html, html
            assert "PKCE verifier does not match" in html, html
            assert not [c for c in jar if c.key == "slipway_session"]
        async with ConsoleClient(api) as browser:  # the same sign-in, untouched, lets frank in
            status, html = await come_back(
                browser, await provider.authorize(await start(browser), "frank")
            )
            assert status == 200, html
            status, html = await browser.page("/console/events")
            assert status == 200 and "frank (read-write)" in html, html


async def test_the_local_provider_takes_a_code_only_with_its_s256_verifier(
    provider: Provider,
) -> None:
    """What the test above relies on: the provider checks PKCE itself (a provider that did
    not would let the tampered sign-in in, and that test would fail)."""
    issuer = provider.issuer
    base = {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": CALLBACK,
        "scope": "openid",
    }
    verifier = secrets.token_urlsafe(48)
    s256 = {"code_challenge": pkce_challenge(verifier), "code_challenge_method": "S256"}
    plain = {"code_challenge": verifier, "code_challenge_method": "plain"}
    async with aiohttp.ClientSession() as http:
        for refused in (base, {**base, **plain}):
            async with http.get(
                f"{issuer}/oauth2/authorize", params=refused, allow_redirects=False
            ) as reply:
                assert reply.status == 302, await reply.text()
                back = parse_qs(urlsplit(reply.headers["Location"]).query)
                assert back["error"] == ["invalid_request"], back
                assert "PKCE is required" in back["error_description"][0], back
        code = await _code(http, issuer, {**base, **s256})
        for wrong in ({}, {"code_verifier": secrets.token_urlsafe(48)}):
            status, answer = await _token(http, issuer, code, wrong)
            assert status == 400 and answer["error"] in ("invalid_request", "invalid_grant")
        status, answer = await _token(http, issuer, code, {"code_verifier": verifier})
        assert status == 200 and answer["id_token"], answer


async def _code(http: aiohttp.ClientSession, issuer: str, query: dict[str, str]) -> str:
    async with http.post(
        f"{issuer}/oauth2/authorize", params=query, data={"sub": "p"}, allow_redirects=False
    ) as reply:
        assert reply.status == 302, await reply.text()
        return parse_qs(urlsplit(reply.headers["Location"]).query)["code"][0]


async def _token(
    http: aiohttp.ClientSession, issuer: str, code: str, extra: dict[str, str]
) -> tuple[int, dict[str, str]]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": CALLBACK, **extra}
    basic = "Basic " + base64.b64encode(f"{CLIENT_ID}:s3cret".encode()).decode()
    async with http.post(
        f"{issuer}/oauth2/token", data=form, headers={"Authorization": basic}
    ) as reply:
        return reply.status, await reply.json()
