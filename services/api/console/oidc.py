"""Signing in to the console with an OpenID Connect provider (`spec.console.oidc`).

The authorization code flow with PKCE (S256), `state` and `nonce`:

1. `begin` makes a fresh state, nonce and PKCE verifier, and the provider's
   authorization URL; the caller keeps the three in a signed cookie (any
   replica can finish the sign-in) and redirects the browser there;
2. `finish` checks the returned state against the cookie's, trades the code
   (with the verifier) for tokens at the provider's token endpoint, and checks
   the ID token: its signature against the provider's JWKS, its issuer,
   audience (our client id), expiry and nonce (`verify_id_token`);
3. `role_of` maps the token's groups to the highest configured role; a person
   in no mapped group gets none, and is refused;
4. `recheck`, later, reads the person's groups again with the refresh token the
   provider issued (a refreshed ID token, or the userinfo endpoint), so a
   session's role follows the provider's groups (`oidc_sessions`).

Everything the provider sends is untrusted: the discovery document must name
the configured issuer, and every answer is checked before it is used. A
refusal at the token endpoint is reported with the provider's `error` and
`error_description` (cut short, printable characters only): a code redeemed
with a verifier that does not match its challenge reads `invalid_grant`.
Pure parts (`pkce_challenge`, `verify_id_token`, `role_of`) take what they need.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote, urlencode

import aiohttp
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import KeySet

from shared.apikeys import Role
from shared.errors import SlipwayError

__all__ = [
    "OidcLogin",
    "OidcRefused",
    "OidcSettings",
    "Pending",
    "Rechecked",
    "SignedIn",
    "pkce_challenge",
    "role_of",
    "token_refusal",
    "verify_id_token",
]

_ROLE_RANK: Final[dict[str, int]] = {"read-only": 1, "read-write": 2, "admin": 3}
_ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA")
"""Asymmetric only: an `HS256` token would be checked with a key the provider publishes."""
_DISCOVERY_TTL_S: Final = 600.0
_TIMEOUT: Final = aiohttp.ClientTimeout(total=10)
_MAX_BODY: Final = 1024 * 1024
_HTTP: Final = ("https://", "http://")
_MAX_TOKEN: Final = 8192
"""The longest refresh token kept (providers' are far shorter; this bounds the stored row)."""


class OidcRefused(SlipwayError):
    """A sign-in by OIDC that cannot be accepted: the provider's answer, the token, the state
    or the person's groups; the message says which. `transient`: the provider could not be
    reached or answered with a server error (a later try may pass)."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class OidcSettings:
    """`spec.console.oidc`: the provider, the client, and how groups map to roles."""

    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...]
    groups_claim: str
    group_roles: Mapping[str, Role]
    redirect_url: str = ""
    role_check_s: float = 900.0
    """How long a session's role holds before the provider is asked again (`oidc_sessions`)."""


@dataclass(frozen=True)
class SignedIn:
    """A person the provider vouched for: who, with which role, and how to ask again."""

    user: str
    """Their name in the log (`user_name`)."""
    subject: str
    """The provider's `sub`: later answers about them must name the same."""
    role: Role
    refresh_token: str = ""
    """"" when the provider issued none (the session then ends at its first role check)."""


@dataclass(frozen=True)
class Rechecked:
    """What a role check found: the role now, and the refresh token to use next time."""

    role: Role
    refresh_token: str
    """The one to use next time (the provider may rotate it)."""


@dataclass(frozen=True)
class Pending:
    """What a sign-in keeps between the redirect and the callback (in a signed cookie)."""

    state: str
    nonce: str
    verifier: str
    next: str


@dataclass(frozen=True)
class _Provider:
    authorization_endpoint: str
    token_endpoint: str
    jwks: KeySet
    fetched: float
    userinfo_endpoint: str = ""


def pkce_challenge(verifier: str) -> str:
    """RFC 7636's S256 challenge of `verifier`."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def verify_id_token(
    token: str, *, jwks: KeySet, issuer: str, client_id: str, nonce: str | None, now: int
) -> dict[str, Any]:
    """The ID token's claims once its signature (by a key of `jwks`), issuer, audience,
    expiry and nonce are right; `OidcRefused` naming what is wrong otherwise. `nonce` None:
    an ID token from a refresh, which carries none of its own (OIDC Core 12.2)."""
    try:
        decoded = jwt.decode(token, jwks, algorithms=list(_ALGORITHMS))
    except (JoseError, ValueError) as exc:
        raise OidcRefused(f"the ID token's signature does not verify: {exc}") from exc
    claims = decoded.claims
    options: dict[str, jwt.ClaimsOption] = {
        "iss": {"essential": True, "value": issuer},
        "sub": {"essential": True},
        "exp": {"essential": True},
    }
    if nonce is not None:
        options["nonce"] = {"essential": True, "value": nonce}
    registry = jwt.JWTClaimsRegistry(now=now, leeway=30, **options)
    try:
        registry.validate(claims)
    except JoseError as exc:
        raise OidcRefused(f"the ID token was refused: {exc}") from exc
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if client_id not in audiences:
        raise OidcRefused(f"the ID token is for {audience!r}, not for this console ({client_id})")
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise OidcRefused("the ID token has several audiences and names another party (azp)")
    return claims


def role_of(claims: Mapping[str, Any], groups_claim: str, group_roles: Mapping[str, Role]) -> Role:
    """The highest role any of the person's groups maps to; `OidcRefused` when none does."""
    groups = claims.get(groups_claim, [])
    if isinstance(groups, str):
        groups = [groups]
    if not isinstance(groups, list):
        raise OidcRefused(f"the ID token's {groups_claim!r} claim is not a list of groups")
    roles = [group_roles[g] for g in groups if isinstance(g, str) and g in group_roles]
    if not roles:
        raise OidcRefused(
            f"you are in no group this console maps to a role (claim {groups_claim!r}); "
            "ask an administrator"
        )
    return max(roles, key=lambda r: _ROLE_RANK[r])


def user_name(claims: Mapping[str, Any]) -> str:
    """Who acts in the log: the email when the provider gives one, else the subject."""
    email = claims.get("email")
    if isinstance(email, str) and email and claims.get("email_verified", True) is not False:
        return email[:200]
    return str(claims["sub"])[:200]


class OidcLogin:
    """One configured provider: its discovery document and keys (cached), and the flow."""

    def __init__(self, settings: OidcSettings) -> None:
        self.settings = settings
        self._provider: _Provider | None = None

    @staticmethod
    async def _json(response: aiohttp.ClientResponse) -> Any:
        body = await response.content.read(_MAX_BODY + 1)
        if len(body) > _MAX_BODY:
            raise OidcRefused(f"{response.url} answered more than {_MAX_BODY} bytes")
        try:
            return json.loads(body)
        except ValueError as exc:
            raise OidcRefused(f"{response.url} answered {response.status}, not JSON") from exc

    async def _discover(self) -> _Provider:
        cached = self._provider
        if cached is not None and time.monotonic() - cached.fetched < _DISCOVERY_TTL_S:
            return cached
        issuer = self.settings.issuer.rstrip("/")
        url = f"{issuer}/.well-known/openid-configuration"
        try:
            async with aiohttp.ClientSession(timeout=_TIMEOUT) as session:
                async with session.get(url) as response:
                    document = await self._json(response)
                named = document.get("issuer") if isinstance(document, dict) else None
                if named != self.settings.issuer:
                    raise OidcRefused(f"{url} names issuer {named!r}, not {self.settings.issuer!r}")
                endpoints = {}
                for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    value = document.get(field)
                    if not isinstance(value, str) or not value.startswith(("https://", "http://")):
                        raise OidcRefused(f"{url}: {field} is missing or not an http(s) URL")
                    endpoints[field] = value
                async with session.get(endpoints["jwks_uri"]) as response:
                    jwks = KeySet.import_key_set(await self._json(response))
                userinfo = document.get("userinfo_endpoint")
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OidcRefused(
                f"the OIDC provider {issuer} cannot be reached: {exc}", transient=True
            ) from exc
        except (JoseError, ValueError, TypeError) as exc:
            raise OidcRefused(f"the OIDC provider's keys (JWKS) are malformed: {exc}") from exc
        self._provider = _Provider(
            endpoints["authorization_endpoint"],
            endpoints["token_endpoint"],
            jwks,
            time.monotonic(),
            userinfo if isinstance(userinfo, str) and userinfo.startswith(_HTTP) else "",
        )
        return self._provider

    async def begin(self, redirect_url: str, next_path: str) -> tuple[str, Pending]:
        """The provider's authorization URL to send the browser to, and what to keep."""
        provider = await self._discover()
        pending = Pending(
            state=secrets.token_urlsafe(24),
            nonce=secrets.token_urlsafe(24),
            verifier=secrets.token_urlsafe(48),
            next=next_path,
        )
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.settings.client_id,
                "redirect_uri": redirect_url,
                "scope": " ".join(self.settings.scopes),
                "state": pending.state,
                "nonce": pending.nonce,
                "code_challenge": pkce_challenge(pending.verifier),
                "code_challenge_method": "S256",
            }
        )
        separator = "&" if "?" in provider.authorization_endpoint else "?"
        return f"{provider.authorization_endpoint}{separator}{query}", pending

    async def _call(
        self, method: str, url: str, *, form: dict[str, str] | None = None, bearer: str = ""
    ) -> tuple[int, Any]:
        """One call to the provider (client-authenticated at the token endpoint); its status
        and JSON answer. `OidcRefused(transient=True)` when it cannot be reached."""
        headers = {"Accept": "application/json"}
        if bearer:
            headers["Authorization"] = f"Bearer {bearer}"
        elif self.settings.client_secret:  # client_secret_basic (RFC 6749 2.3.1: parts encoded)
            pair = f"{quote(self.settings.client_id)}:{quote(self.settings.client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        try:
            async with (
                aiohttp.ClientSession(timeout=_TIMEOUT) as session,
                session.request(method, url, data=form, headers=headers) as response,
            ):
                status = response.status
                if status >= 500:
                    raise OidcRefused(f"{url} answered {status}", transient=True)
                return status, await self._json(response)
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise OidcRefused(f"the OIDC provider failed: {exc}", transient=True) from exc

    async def finish(self, pending: Pending, state: str, code: str, redirect_url: str) -> SignedIn:
        """The signed-in person: name, subject, role and refresh token; `OidcRefused` for
        anything amiss."""
        if not state or not hmac.compare_digest(state, pending.state):
            raise OidcRefused("the sign-in's state does not match: start the sign-in again")
        if not code or len(code) > 2048:
            raise OidcRefused("the provider returned no authorization code")
        provider = await self._discover()
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_url,
            "code_verifier": pending.verifier,
            "client_id": self.settings.client_id,
        }
        status, answer = await self._call("POST", provider.token_endpoint, form=form)
        if status != 200 or not isinstance(answer, dict):
            raise OidcRefused(
                f"the provider refused the authorization code ({token_refusal(status, answer)}); "
                "it may have been used already, or this sign-in's PKCE verifier does not "
                "match the challenge the provider was sent: start the sign-in again"
            )
        id_token = answer.get("id_token")
        if not isinstance(id_token, str):
            raise OidcRefused("the provider's token answer has no id_token")
        claims = verify_id_token(
            id_token,
            jwks=provider.jwks,
            issuer=self.settings.issuer,
            client_id=self.settings.client_id,
            nonce=pending.nonce,
            now=int(time.time()),
        )
        role = role_of(claims, self.settings.groups_claim, self.settings.group_roles)
        return SignedIn(user_name(claims), str(claims["sub"]), role, _refresh_token_of(answer))

    async def recheck(self, subject: str, refresh_token: str) -> Rechecked:
        """The person's role now: the refresh token traded for fresh tokens, their groups read
        from the refreshed ID token (checked like the first) or else the userinfo endpoint.
        `OidcRefused` when the provider refuses (the grant revoked or expired), names someone
        else, or the person is in no mapped group any more; `transient` when it is down."""
        provider = await self._discover()
        form = {
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": self.settings.client_id,
        }
        status, answer = await self._call("POST", provider.token_endpoint, form=form)
        if status != 200 or not isinstance(answer, dict):
            refusal = token_refusal(status, answer)
            raise OidcRefused(f"the provider refused the refresh token ({refusal})")
        id_token = answer.get("id_token")
        if isinstance(id_token, str):
            claims = verify_id_token(
                id_token,
                jwks=provider.jwks,
                issuer=self.settings.issuer,
                client_id=self.settings.client_id,
                nonce=None,
                now=int(time.time()),
            )
        else:
            claims = await self._userinfo(provider, answer.get("access_token"))
        if claims.get("sub") != subject:
            raise OidcRefused("the provider's answer is about someone else (sub)")
        role = role_of(claims, self.settings.groups_claim, self.settings.group_roles)
        return Rechecked(role, _refresh_token_of(answer) or refresh_token)

    async def _userinfo(self, provider: _Provider, access_token: object) -> dict[str, Any]:
        if not provider.userinfo_endpoint:
            raise OidcRefused("the provider returns no ID token on refresh and has no userinfo")
        if not isinstance(access_token, str) or not access_token:
            raise OidcRefused("the provider's refresh answer has no access_token")
        status, claims = await self._call("GET", provider.userinfo_endpoint, bearer=access_token)
        if status != 200 or not isinstance(claims, dict):
            raise OidcRefused(f"the provider's userinfo endpoint answered {status}")
        return claims


def _refresh_token_of(answer: dict[str, Any]) -> str:
    token = answer.get("refresh_token")
    return token if isinstance(token, str) and 0 < len(token) <= _MAX_TOKEN else ""


def token_refusal(status: int, answer: object) -> str:
    """A token endpoint's refusal as one line: its status, `error` and `error_description`
    (RFC 6749 5.2), cut short and reduced to printable characters (they come from outside)."""
    parts = [str(status)]
    if isinstance(answer, dict):
        for field in ("error", "error_description"):
            value = answer.get(field)
            if isinstance(value, str) and value:
                parts.append("".join(c for c in value[:200] if c.isprintable()))
    return " ".join(parts)
