"""Console sessions: a signed cookie naming an API key, and the CSRF token bound to it.

The cookie holds `<key_id>.<expires>.<nonce>.<kid>:<signature>`, never a secret
(a person signed in by OIDC: `o-<session id>` in place of the key id, naming
their session's row, `oidc_sessions`, since no key stands behind them):
signing it with the console's session key (`keyring`: stored in PostgreSQL and
shared by every replica, or `SLIPWAY_CONSOLE_SESSION_KEY`; `kid` names the key)
makes it unforgeable, and the key it names is looked up on every request (`auth.KeyCache.by_id`),
so revoking the key ends its sessions within the cache's TTL, and the role is
the key's as the API sees it. The CSRF token is an HMAC of the cookie's value:
a page can put it in its forms, a cross-site page cannot know it.
Pure: no I/O, the time is passed in.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass
from typing import Final

from services.api.console.keyring import Keyring

__all__ = [
    "COOKIE",
    "SESSION_TTL_S",
    "SessionCodec",
    "SessionToken",
]

COOKIE: Final = "slipway_session"
SESSION_TTL_S: Final = 12 * 3600
"""A session lasts a working day; signing in again costs one paste of the key."""

_KEY_ID: Final = re.compile(r"^[0-9a-z]{26}$")


@dataclass(frozen=True)
class SessionToken:
    """What a session cookie carries: the API key or OIDC session behind it, and its expiry."""

    key_id: str
    expires: int
    """Unix seconds."""
    oidc_session: str = ""
    """An OIDC sign-in's session id (`oidc_sessions`), when no key stands behind it."""


_OIDC_PREFIX: Final = "o-"


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _mac(key: bytes, purpose: str, value: str) -> str:
    return _b64(hmac.new(key, f"{purpose}\x00{value}".encode(), hashlib.sha256).digest())


class SessionCodec:
    """Makes session cookies and CSRF tokens with the keyring's signing key, and checks them
    with whichever of its keys they name."""

    def __init__(self, keys: Keyring | bytes) -> None:
        self._keyring = keys if isinstance(keys, Keyring) else Keyring.fixed(keys)

    def use(self, keyring: Keyring) -> None:
        """From now on, sign and verify with `keyring` (the keys were re-read)."""
        self._keyring = keyring

    def _sign(self, purpose: str, value: str) -> str:
        kid, key = self._keyring.signing_key()
        return f"{kid}:{_mac(key, purpose, value)}"

    def _verify(self, purpose: str, value: str, signature: str) -> bool:
        kid, _, mac = signature.partition(":")
        key = self._keyring.verifying_key(kid)
        return key is not None and hmac.compare_digest(mac, _mac(key, purpose, value))

    def issue(self, key_id: str, now: float, ttl_s: int = SESSION_TTL_S) -> str:
        """A new session's cookie value for the key `key_id`."""
        body = f"{key_id}.{int(now) + ttl_s}.{secrets.token_hex(8)}"
        return f"{body}.{self._sign('session', body)}"

    def issue_oidc(self, session_id: str, now: float, ttl_s: int = SESSION_TTL_S) -> str:
        """A new session's cookie value for a person signed in by OIDC: it names their
        session's row, which holds who they are and their role, checked as it goes."""
        if not _KEY_ID.fullmatch(session_id):
            raise ValueError(f"not a session id: {session_id!r}")
        return self.issue(f"{_OIDC_PREFIX}{session_id}", now, ttl_s)

    def read(self, value: str, now: float) -> SessionToken | None:
        """The session a cookie value carries; None when malformed, forged or expired."""
        if len(value) > 1024:
            return None
        body, _, signature = value.rpartition(".")
        parts = body.split(".")
        if len(parts) != 3 or not self._verify("session", body, signature):
            return None
        subject, expires, _nonce = parts
        if not expires.isdigit() or int(expires) <= now:
            return None
        if subject.startswith(_OIDC_PREFIX):
            session_id = subject.removeprefix(_OIDC_PREFIX)
            if not _KEY_ID.fullmatch(session_id):
                return None
            return SessionToken(key_id="", expires=int(expires), oidc_session=session_id)
        if not _KEY_ID.fullmatch(subject):
            return None
        return SessionToken(key_id=subject, expires=int(expires))

    def seal(self, purpose: str, payload: dict[str, str]) -> str:
        """`payload` as a signed cookie value (readable by its holder, not changeable):
        an OIDC sign-in's state, nonce and PKCE verifier between the redirect and the
        callback, kept in the browser so any replica can finish it."""
        body = _b64(json.dumps(payload, sort_keys=True).encode())
        return f"{body}.{self._sign(purpose, body)}"

    def unseal(self, purpose: str, value: str) -> dict[str, str] | None:
        """What `seal(purpose, …)` sealed; None when malformed or forged."""
        body, _, signature = value.rpartition(".")
        if not body or len(value) > 2048 or not self._verify(purpose, body, signature):
            return None
        payload = json.loads(_unb64(body))
        return payload if isinstance(payload, dict) else None

    def csrf(self, cookie_value: str) -> str:
        """The CSRF token of the session (or sign-in form) whose cookie is `cookie_value`."""
        return self._sign("csrf", cookie_value)

    def csrf_ok(self, cookie_value: str, token: str) -> bool:
        """Whether `token` is the CSRF token of the session whose cookie is `cookie_value`."""
        return bool(cookie_value) and self._verify("csrf", cookie_value, token)
