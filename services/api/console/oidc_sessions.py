"""People signed in by OIDC: their sessions in PostgreSQL, and their role re-checked.

A person's session cookie names a row of `api_console_oidc_sessions` (any
replica can read it): their name, the provider's subject, their role, and the
refresh token the provider issued (kept here, never in the browser). The role
holds for `OidcSettings.role_check_s` (15 min by default); the first request
after that asks the provider again (`OidcLogin.recheck`: the refresh token
traded for fresh tokens, the groups read from them) under a row lock, so one
replica asks while the others wait and then read its answer:

- the groups still map to a role: the session goes on with that role (lower or
  higher than before);
- the provider refuses the refresh token, answers about someone else, or the
  person is in no mapped group any more: the row is deleted, the session ends;
- the provider cannot be reached: the request is refused, the row kept, and the
  next request asks again (fail closed, without signing everyone out).

Without a refresh token nothing can be asked: the session ends when its role
is due for a check, and signing in again reads the groups afresh.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, cast

import asyncpg

from services.api.console.oidc import OidcLogin, OidcRefused, SignedIn
from services.api.console.sessions import SESSION_TTL_S
from shared.apikeys import Role
from shared.ids import new_id
from shared.logs import get_logger

__all__ = ["OidcPerson", "OidcSessions", "session_end"]

log = get_logger(__name__)

_COLUMNS: Final = (
    "person, subject, role, refresh_token, extract(epoch FROM checked_at)::float8 AS checked_at,"
    " extract(epoch FROM expires_at)::float8 AS expires_at"
)
_READ: Final = f"SELECT {_COLUMNS} FROM api_console_oidc_sessions WHERE session_id = $1"
_LOCK: Final = f"{_READ} FOR UPDATE"
_OPEN: Final = (
    "INSERT INTO api_console_oidc_sessions"
    " (session_id, person, subject, role, refresh_token, checked_at, expires_at)"
    " VALUES ($1, $2, $3, $4, $5, to_timestamp($6), to_timestamp($7))"
)
_CHECKED: Final = (
    "UPDATE api_console_oidc_sessions SET role = $2, refresh_token = $3,"
    " checked_at = to_timestamp($4) WHERE session_id = $1"
)
_END: Final = "DELETE FROM api_console_oidc_sessions WHERE session_id = $1"
_ENDED: Final = "DELETE FROM api_console_oidc_sessions WHERE expires_at < to_timestamp($1)"


@dataclass(frozen=True)
class OidcPerson:
    """Who a live OIDC session is, as the auth middleware sees them."""

    user: str
    role: Role
    expires: float
    """Unix seconds."""


def session_end(signed_in: SignedIn, now: float, role_check_s: float) -> float:
    """When a new session ends: the working day, or its first role check when the provider
    issued no refresh token to check with."""
    return now + (SESSION_TTL_S if signed_in.refresh_token else min(role_check_s, SESSION_TTL_S))


class OidcSessions:
    """The OIDC sessions of every replica, in PostgreSQL, with their roles kept current."""

    def __init__(self, pool: asyncpg.Pool, login: OidcLogin) -> None:
        self._pool = pool
        self._login = login

    @property
    def _role_check_s(self) -> float:
        return self._login.settings.role_check_s

    async def open(self, signed_in: SignedIn, now: float) -> str:
        """A new session for `signed_in`; its id (what the cookie names)."""
        session_id = new_id()
        ends = session_end(signed_in, now, self._role_check_s)
        async with self._pool.acquire() as conn:
            await conn.execute(_ENDED, now)  # housekeeping: sessions over for good
            await conn.execute(
                _OPEN,
                session_id,
                signed_in.user,
                signed_in.subject,
                signed_in.role,
                signed_in.refresh_token,
                now,
                ends,
            )
        return session_id

    async def close(self, session_id: str) -> None:
        """Signing out: the session ends on every replica."""
        await self._pool.execute(_END, session_id)

    async def current(self, session_id: str, now: float) -> OidcPerson | None:
        """The person and their role now; None when the session has ended (or just did)."""
        row = await self._pool.fetchrow(_READ, session_id)
        if row is None or row["expires_at"] <= now:
            return None
        if now - row["checked_at"] < self._role_check_s:
            return _person(row)
        return await self._recheck(session_id, now)

    async def _recheck(self, session_id: str, now: float) -> OidcPerson | None:
        async with self._pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(_LOCK, session_id)
            if row is None or row["expires_at"] <= now:
                return None
            if now - row["checked_at"] < self._role_check_s:
                return _person(row)  # another request checked while this one waited
            if not row["refresh_token"]:
                await conn.execute(_END, session_id)
                return None
            try:
                rechecked = await self._login.recheck(row["subject"], row["refresh_token"])
            except OidcRefused as exc:
                if exc.transient:
                    log.warning("console_oidc_role_check_failed", error=str(exc))
                    return None
                await conn.execute(_END, session_id)
                log.info("console_oidc_session_ended", user=row["person"], reason=str(exc))
                return None
            await conn.execute(_CHECKED, session_id, rechecked.role, rechecked.refresh_token, now)
            if rechecked.role != row["role"]:
                log.info(
                    "console_oidc_role_changed",
                    user=row["person"],
                    before=row["role"],
                    after=rechecked.role,
                )
            return OidcPerson(row["person"], rechecked.role, row["expires_at"])


def _person(row: asyncpg.Record) -> OidcPerson:
    return OidcPerson(row["person"], cast(Role, row["role"]), row["expires_at"])
