"""The console's side of an OIDC sign-in: its paths, the pending sign-in's cookie, the
callback URL, and the session's stand-in for a key (`oidc` has the flow itself)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Final, cast

from aiohttp import web

from services.api.console.oidc import Pending
from services.api.console.security import secure_request
from services.api.console.state import CONSOLE
from shared.apikeys import ApiKey, Role

__all__ = [
    "OIDC_CALLBACK_PATH",
    "OIDC_PENDING_COOKIE",
    "OIDC_PENDING_TTL_S",
    "OIDC_START_PATH",
    "oidc_redirect_url",
    "oidc_user_key",
    "pending_fields",
    "pending_of",
]

OIDC_START_PATH: Final = "/console/oidc/start"
OIDC_CALLBACK_PATH: Final = "/console/oidc/callback"
OIDC_PENDING_COOKIE: Final = "slipway_oidc"
OIDC_PENDING_TTL_S: Final = 600
"""Ten minutes from the sign-in button to the provider's answer; older callbacks are refused."""


def pending_fields(pending: Pending, now: float) -> dict[str, str]:
    """The sign-in in progress as the fields of its signed cookie, begun at `now`."""
    return {
        "state": pending.state,
        "nonce": pending.nonce,
        "verifier": pending.verifier,
        "next": pending.next,
        "at": str(int(now)),
    }


def pending_of(fields: dict[str, str] | None, now: float) -> Pending | None:
    """The pending sign-in a (verified) cookie held; None when absent, malformed or stale."""
    if fields is None or not all(
        isinstance(fields.get(k), str) for k in ("state", "nonce", "verifier", "next", "at")
    ):
        return None
    if not fields["at"].isdigit() or now - int(fields["at"]) > OIDC_PENDING_TTL_S:
        return None
    return Pending(fields["state"], fields["nonce"], fields["verifier"], fields["next"])


def oidc_redirect_url(request: web.Request) -> str:
    """Where the provider sends the browser back: configured, or this origin's callback."""
    login = request.app[CONSOLE].oidc
    if login is not None and login.settings.redirect_url:
        return login.settings.redirect_url
    scheme = "https" if secure_request(request) else "http"
    return f"{scheme}://{request.host}{OIDC_CALLBACK_PATH}"


def oidc_user_key(user: str, role: str, expires: float) -> ApiKey:
    """A person signed in by OIDC, as the auth middleware reads a session's key: their
    name (what the log records as the actor) and role, and no key id (their session's row
    ends it: `oidc_sessions`)."""
    return ApiKey(
        key_id="",
        name=user,
        role=cast(Role, role),
        created_at=datetime.fromtimestamp(expires, UTC),
    )
