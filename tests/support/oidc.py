"""A real OpenID Connect provider on a free loopback port (`oidc-provider-mock`: discovery,
JWKS, authorization and token endpoints, signed ID tokens), enforcing PKCE with S256
(`pkce_provider`), and what a person does there."""

from __future__ import annotations

import base64
import contextlib
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
import asyncpg
import pytest
from joserfc.jwk import KeySet

from services.api.console.oidc import OidcSettings, pkce_challenge
from shared.apikeys import Role
from shared.eventlog import EventStore
from tests.support.api import served_api
from tests.support.console import ConsoleClient
from tests.support.held_proxy import HeldProxy, held_proxy
from tests.support.pkce_provider import pkce_provider_app, serving

__all__ = [
    "GROUP_ROLES",
    "PROVIDER_WARNINGS",
    "Provider",
    "console_settings",
    "held_token_endpoint",
    "later",
    "local_provider",
    "signed_in",
    "signed_in_session",
]

PROVIDER_WARNINGS: Final = [
    # The provider (authlib underneath) warns of its own deprecated calls, in its server thread.
    pytest.mark.filterwarnings("ignore::DeprecationWarning:authlib"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:oidc_provider_mock"),
]
GROUP_ROLES: Final[Mapping[str, Role]] = {
    "sre": "admin",
    "devs": "read-write",
    "viewers": "read-only",
}
"""The groups the console tests map to roles."""
_CB: Final = "http://127.0.0.1/cb"
_TOKEN_PATH: Final = "/oauth2/token"
_EARLIER: Final = (
    "UPDATE api_console_oidc_sessions SET checked_at = checked_at - make_interval(secs => $2),"
    " expires_at = expires_at - make_interval(secs => $2),"
    " checking_until = checking_until - make_interval(secs => $2) WHERE session_id = $1"
)


def console_settings(issuer: str, *, role_check_s: float = 900.0) -> OidcSettings:
    """The console's OIDC settings of the tests: the local provider (or a proxy in front of
    it, which then names itself the issuer), `GROUP_ROLES`, roles re-checked every
    `role_check_s`."""
    return OidcSettings(
        issuer=issuer,
        client_id="slipway-console",
        client_secret="s3cret",
        scopes=("openid", "email", "profile"),
        groups_claim="groups",
        group_roles=GROUP_ROLES,
        role_check_s=role_check_s,
    )


async def later(pool: asyncpg.Pool, session_id: str, seconds: float) -> None:
    """`seconds` go by for OIDC session `session_id`: its row's times move that far into the
    past (the role checks run on the database's clock, which a test cannot move)."""
    await pool.execute(_EARLIER, session_id, seconds)


@dataclass(frozen=True)
class Provider:
    issuer: str

    async def set_user(self, sub: str, claims: dict[str, object]) -> None:
        async with (
            aiohttp.ClientSession() as http,
            http.put(f"{self.issuer}/users/{sub}", json=claims) as reply,
        ):
            assert reply.status == 204, await reply.text()

    async def revoke_tokens(self, sub: str) -> None:
        """What an administrator does at the provider: revoke every token of `sub`."""
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"{self.issuer}/users/{sub}/revoke-tokens") as reply,
        ):
            assert reply.status == 204, await reply.text()

    async def authorize(self, url: str, sub: str) -> str:
        """What the person does at the provider: sign in as `sub`; the callback URL it sends
        the browser back to."""
        async with (
            aiohttp.ClientSession() as http,
            http.post(url, data={"sub": sub}, allow_redirects=False) as reply,
        ):
            assert reply.status == 302, await reply.text()
            return reply.headers["Location"]

    async def id_token(self, sub: str, client_id: str, nonce: str) -> str:
        """An ID token the provider issues `client_id` for `sub` (the whole flow, by hand)."""
        verifier = secrets.token_urlsafe(48)
        query = urlencode(
            {
                "response_type": "code",
                "client_id": client_id,
                "redirect_uri": _CB,
                "scope": "openid email",
                "state": "s",
                "nonce": nonce,
                "code_challenge": pkce_challenge(verifier),
                "code_challenge_method": "S256",
            }
        )
        callback = await self.authorize(f"{self.issuer}/oauth2/authorize?{query}", sub)
        code = parse_qs(urlsplit(callback).query)["code"][0]
        basic = "Basic " + base64.b64encode(f"{client_id}:x".encode()).decode()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": _CB,
            "code_verifier": verifier,
        }
        async with (
            aiohttp.ClientSession() as http,
            http.post(
                f"{self.issuer}{_TOKEN_PATH}", data=form, headers={"Authorization": basic}
            ) as reply,
        ):
            return str((await reply.json())["id_token"])

    async def jwks(self) -> KeySet:
        async with aiohttp.ClientSession() as http, http.get(f"{self.issuer}/jwks") as reply:
            return KeySet.import_key_set(await reply.json())


@contextlib.contextmanager
def local_provider(*, refresh_tokens: bool = True) -> Iterator[Provider]:
    """The provider, served from a thread until the block ends; its issuer is
    `http://localhost:<port>` (another site than the API's 127.0.0.1, as in real life).
    It issues refresh tokens unless `refresh_tokens` is False, and takes an authorization
    code only with the PKCE verifier (S256) of the request that got it."""
    with serving(pkce_provider_app(refresh_tokens=refresh_tokens)) as port:
        yield Provider(f"http://localhost:{port}")


@contextlib.asynccontextmanager
async def held_token_endpoint(provider: Provider) -> AsyncIterator[HeldProxy]:
    """`provider` behind a proxy that can hold its token endpoint's answers (a provider
    taking its time over a role check); a console given the proxy's URL takes it for the
    issuer (`console_settings(proxy.url)`)."""
    async with held_proxy(provider.issuer, _TOKEN_PATH) as proxy:
        yield proxy


async def signed_in_session(browser: ConsoleClient, provider: Provider, sub: str) -> str:
    """`browser` signs in to the console through `provider` as `sub`; the id of its
    session (the `api_console_oidc_sessions` row its cookie names)."""
    async with browser.http.get("/console/oidc/start", allow_redirects=False) as reply:
        assert reply.status == 302, await reply.text()
        url = reply.headers["Location"]
    callback = urlsplit(await provider.authorize(url, sub))
    status, html = await browser.page(f"{callback.path}?{callback.query}")
    assert status == 200, html
    cookie = browser.session_cookie()
    return cookie.split(".")[0].removeprefix("o-")


async def signed_in(
    store: EventStore,
    api_pool: asyncpg.Pool,
    provider: Provider,
    oidc: OidcSettings,
    sub: str,
    groups: list[str],
) -> str:
    """`sub`, in `groups` at `provider`, signed in to a console served with `oidc` (for the
    sign-in only): the id of their session, for a test to go on with on its own replicas."""
    await provider.set_user(sub, {"groups": groups})
    async with served_api(store, api_pool, oidc=oidc) as api, ConsoleClient(api) as browser:
        return await signed_in_session(browser, provider, sub)
