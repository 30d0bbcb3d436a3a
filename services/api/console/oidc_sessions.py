"""People signed in by OIDC: their sessions in PostgreSQL, and their role re-checked.

A person's session cookie names a row of `api_console_oidc_sessions` (any
replica can read it): their name, the provider's subject, their role, and the
refresh token the provider issued (kept here, never in the browser). The role
holds for `OidcSettings.role_check_s` (15 min by default); the first request
after that asks the provider again (`OidcLogin.recheck`: the refresh token
traded for fresh tokens, the groups read from them):

- the groups still map to a role: the session goes on with that role (lower or
  higher than before);
- the provider refuses the refresh token, answers about someone else, or the
  person is in no mapped group any more: the row is deleted, the session ends;
- the provider cannot be reached (or takes longer than the check's budget): the
  request is refused, the row kept, and the next request asks again (fail
  closed, without signing everyone out).

Without a refresh token nothing can be asked: the session ends when its role
is due for a check, and signing in again reads the groups afresh.

One request asks, and nothing is held while it does. A provider can take many
seconds to answer (or never answer); a row lock or a pooled connection held
that long, by every request of the session, would let one slow provider (or
anyone sending many requests with a due session) empty the API's pool. So:

- the request that finds the role due claims the check in one short statement
  (`checking_by`, `checking_until`: migration 0014); only one claim on a row is
  live at a time, across replicas;
- the claimant asks the provider with no transaction open and no connection
  held, within `check_budget_s`, and writes the answer only if the claim is
  still its own (a sign-out meanwhile deleted the row: nothing is written);
- every other request of that session on this replica awaits the same check
  (one asyncio task per session); on another replica one task per session
  reads the row now and then, a connection held only for each short read, and
  takes the answer once the claim is released: the new role, or a refusal when
  the row is gone or the check failed;
- a claim lapses at `checking_until` (`lease_s`, longer than the budget, so a
  live claimant always finishes first): its waiters are refused (fail closed,
  as when the provider is down), and the next request claims the check again,
  so a replica that died mid-check locks the person out for one lease at most.

Every time here is the database's (`clock_timestamp()`), never a replica's: the
replicas' clocks need not agree. A claim's `checking_until` is the database's
time plus the lease; whether a claim has lapsed, a role is due or a session is
over is decided by the claim statement against the database's time, or by
comparing a row's times with the database's time read with it (`db_now`). A
replica whose clock runs ahead thus never takes over another's live claim (two
checks of one refresh token at once: providers that rotate refresh tokens then
revoke the session), and one running behind never waits on a lapsed one. Each
row's `db_now` is handed to the console's `DatabaseClock` (`db_clock`), which
warns, once, when this replica's own clock is off from the database's.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final, cast

import asyncpg

from services.api.console.db_clock import DatabaseClock
from services.api.console.oidc import OidcLogin, OidcRefused, SignedIn
from services.api.console.sessions import SESSION_TTL_S
from shared.apikeys import Role
from shared.ids import new_id
from shared.logs import get_logger

__all__ = ["ROLE_CHECK_LEASE_S", "OidcPerson", "OidcSessions", "session_length"]

log = get_logger(__name__)

ROLE_CHECK_LEASE_S: Final = 20.0
"""How long a claim on a role check lasts; the provider gets three quarters of it."""
_FIRST_LOOK_S: Final = 0.05
_LAST_LOOK_S: Final = 0.5
"""A waiter on another replica reads the row after 50 ms, then less often, up to every 0.5 s."""

_COLUMNS: Final = (
    "person, subject, role, refresh_token, extract(epoch FROM checked_at)::float8 AS checked_at,"
    " extract(epoch FROM expires_at)::float8 AS expires_at, checking_by,"
    " extract(epoch FROM checking_until)::float8 AS checking_until,"
    " extract(epoch FROM clock_timestamp())::float8 AS db_now"
)
"""A session's row, its times (Unix seconds) comparable only with `db_now`: the database's."""
_TABLE: Final = "api_console_oidc_sessions"
_READ: Final = f"SELECT {_COLUMNS} FROM {_TABLE} WHERE session_id = $1"
_OPEN: Final = (
    f"INSERT INTO {_TABLE}"
    " (session_id, person, subject, role, refresh_token, checked_at, expires_at)"
    " VALUES ($1, $2, $3, $4, $5, clock_timestamp(), clock_timestamp() + make_interval(secs => $6))"
)
_CLAIM: Final = (
    f"UPDATE {_TABLE} SET checking_by = $2,"
    " checking_until = clock_timestamp() + make_interval(secs => $3)"
    " WHERE session_id = $1 AND checked_at <= clock_timestamp() - make_interval(secs => $4)"
    " AND (checking_until IS NULL OR checking_until <= clock_timestamp())"
    f" RETURNING {_COLUMNS}"
)
"""The check, claimed for `$3` s: only while the role is still due (`$4`: the interval) and no
live claim is on the row, both on the database's clock."""
_CHECKED: Final = (
    f"UPDATE {_TABLE} SET role = $2, refresh_token = $3, checked_at = clock_timestamp(),"
    " checking_by = NULL, checking_until = NULL WHERE session_id = $1 AND checking_by = $4"
)
_RELEASE: Final = (
    f"UPDATE {_TABLE} SET checking_by = NULL, checking_until = NULL"
    " WHERE session_id = $1 AND checking_by = $2"
)
_END_CLAIMED: Final = f"DELETE FROM {_TABLE} WHERE session_id = $1 AND checking_by = $2"
_END: Final = f"DELETE FROM {_TABLE} WHERE session_id = $1"
_ENDED: Final = f"DELETE FROM {_TABLE} WHERE expires_at < clock_timestamp()"


@dataclass(frozen=True)
class OidcPerson:
    """Who a live OIDC session is, as the auth middleware sees them."""

    user: str
    role: Role
    expires: float
    """Unix seconds."""


def session_length(signed_in: SignedIn, role_check_s: float) -> float:
    """How long a new session lasts: the working day, or until its first role check when the
    provider issued no refresh token to check with."""
    return SESSION_TTL_S if signed_in.refresh_token else min(role_check_s, SESSION_TTL_S)


class OidcSessions:
    """The OIDC sessions of every replica, in PostgreSQL, with their roles kept current.

    `lease_s`: how long a claim on a role check lasts (the provider gets three quarters of
    it: `check_budget_s`). `clock`: the console's, shown the database's time of each row
    read (every decision here is on the database's clock; it warns when the replica's is
    off)."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        login: OidcLogin,
        *,
        lease_s: float = ROLE_CHECK_LEASE_S,
        clock: DatabaseClock | None = None,
    ) -> None:
        self._pool = pool
        self._login = login
        self._lease_s = lease_s
        self._clock = clock or DatabaseClock()
        self.check_budget_s = lease_s * 0.75
        self._checks: dict[str, asyncio.Task[OidcPerson | None]] = {}
        """The role checks this replica runs or awaits, by session: one each."""

    @property
    def _role_check_s(self) -> float:
        return self._login.settings.role_check_s

    async def open(self, signed_in: SignedIn) -> str:
        """A new session for `signed_in`; its id (what the cookie names)."""
        session_id = new_id()
        length = session_length(signed_in, self._role_check_s)
        async with self._pool.acquire() as conn:
            await conn.execute(_ENDED)  # housekeeping: sessions over for good
            await conn.execute(
                _OPEN,
                session_id,
                signed_in.user,
                signed_in.subject,
                signed_in.role,
                signed_in.refresh_token,
                length,
            )
        return session_id

    async def close(self, session_id: str) -> None:
        """Signing out: the session ends on every replica (a check under way writes nothing)."""
        await self._pool.execute(_END, session_id)

    async def current(self, session_id: str) -> OidcPerson | None:
        """The person and their role now; None when the session has ended (or just did), or
        when its role is due and could not be checked."""
        row = await self._pool.fetchrow(_READ, session_id)
        if row is None:
            return None
        self._clock.saw(row["db_now"])
        now = row["db_now"]
        if row["expires_at"] <= now:
            return None
        if now - row["checked_at"] < self._role_check_s:
            return _person(row)
        if not row["refresh_token"]:
            await self._pool.execute(_END, session_id)
            return None
        check = self._checks.get(session_id)
        if check is None or check.done():
            check = asyncio.create_task(self._check(session_id, now))
            self._checks[session_id] = check
            check.add_done_callback(lambda done: self._forget(session_id, done))
        # Shielded: a caller that goes away (its browser closed) leaves the check to the rest.
        return await asyncio.shield(check)

    def _forget(self, session_id: str, check: asyncio.Task[OidcPerson | None]) -> None:
        if self._checks.get(session_id) is check:
            del self._checks[session_id]
        if not check.cancelled():
            check.exception()  # its callers have it; seen here too, for when they all left

    async def _check(self, session_id: str, now: float) -> OidcPerson | None:
        """This replica's one check of a due role (found due at `now`, the database's time):
        claim it and ask, or wait for the claimant."""
        claim = new_id()
        row = await self._pool.fetchrow(
            _CLAIM, session_id, claim, self._lease_s, self._role_check_s
        )
        if row is not None:
            return await self._ask(session_id, claim, row)
        return await self._wait(session_id, now - self._role_check_s)

    async def _ask(self, session_id: str, claim: str, row: asyncpg.Record) -> OidcPerson | None:
        """The provider asked, with no connection held, and its answer written (if the claim
        still holds)."""
        try:
            async with asyncio.timeout(self.check_budget_s):
                rechecked = await self._login.recheck(row["subject"], row["refresh_token"])
        except TimeoutError:
            await self._pool.execute(_RELEASE, session_id, claim)
            log.warning("console_oidc_role_check_failed", error="the provider took too long")
            return None
        except OidcRefused as exc:
            if exc.transient:
                await self._pool.execute(_RELEASE, session_id, claim)
                log.warning("console_oidc_role_check_failed", error=str(exc))
                return None
            await self._pool.execute(_END_CLAIMED, session_id, claim)
            log.info("console_oidc_session_ended", user=row["person"], reason=str(exc))
            return None
        written = await self._pool.execute(
            _CHECKED, session_id, rechecked.role, rechecked.refresh_token, claim
        )
        if written != "UPDATE 1":  # signed out meanwhile (or the claim lapsed): fail closed
            return None
        if rechecked.role != row["role"]:
            log.info(
                "console_oidc_role_changed",
                user=row["person"],
                before=row["role"],
                after=rechecked.role,
            )
        return OidcPerson(row["person"], rechecked.role, row["expires_at"])

    async def _wait(self, session_id: str, due: float) -> OidcPerson | None:
        """Another request holds the claim: its answer, read from the row (a connection held
        only for each read). None when the row goes, the claim is released without a check,
        or it lapses. `due`: a check after this (the database's time) is an answer."""
        look = _FIRST_LOOK_S
        seen: asyncpg.Record | None = None
        while True:
            row = await self._pool.fetchrow(_READ, session_id)
            if row is None or row["expires_at"] <= row["db_now"]:
                return None
            at = row["db_now"]
            if row["checked_at"] > due or (seen and row["checked_at"] != seen["checked_at"]):
                return _person(row)  # checked by the claimant (or just before this looked)
            holder, until = row["checking_by"], row["checking_until"]
            if holder is None or (seen and holder != seen["checking_by"]) or until <= at:
                return None  # released unchecked (the provider failed), or lapsed
            seen = row
            await asyncio.sleep(min(look, until - at))
            look = min(look * 1.5, _LAST_LOOK_S)


def _person(row: asyncpg.Record) -> OidcPerson:
    return OidcPerson(row["person"], cast(Role, row["role"]), row["expires_at"])
