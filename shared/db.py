"""PostgreSQL connections: pools bound to one schema, and error translation.

Every Slipway table lives in one schema (default `slipway`), set as the
connection's search_path, so tests isolate themselves by schema and SQL stays
unqualified.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import AsyncIterator
from typing import Any

import asyncpg

from shared.errors import ConfigError, Unavailable

_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

# Errors that mean "the database (or the way to it) is not there right now".
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.ConnectionDoesNotExistError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.AdminShutdownError,
    # A pooled connection whose session the server ended mid-operation (a restart) can be
    # left with an operation asyncpg still counts as in progress; the next call on it fails
    # so ("cannot switch to state …"): retried like any other lost connection.
    asyncpg.InternalClientError,
    TimeoutError,
)


DEFAULT_STATEMENT_TIMEOUT_S = 30.0
"""How long one statement of a service may run before PostgreSQL cancels it."""
DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_S = 60.0
"""How long a service's transaction may sit idle before PostgreSQL ends its session."""
DEFAULT_CONNECT_TIMEOUT_S = 10.0
"""How long opening a connection (TCP, TLS, login) may take before it counts as unavailable."""
COMMAND_GRACE_S = 10.0
"""A call's client-side timeout is the statement limit plus as much again, at most this: the
server cancels a slow statement first (a clean error, the session stays usable); the client
gives up on a connection that answers nothing at all (a server or a path that hangs) only
after that."""
LONG_CALL_S = 7 * 24 * 3600.0
"""The client-side limit of one call that may legitimately take long (a migration, a wait
for another replica's lock): asyncpg has no "none" for a single call. A server that
vanishes meanwhile is still noticed, by the keepalives."""
KEEPALIVE_IDLE_S = 10
KEEPALIVE_INTERVAL_S = 5
KEEPALIVE_COUNT = 3
"""TCP keepalives on both ends: a peer that vanished (host down, partition, NAT timeout) is
noticed within idle + interval × count = 25 s, by the client and by the server, instead of
the kernel's two hours; the server then ends the session and releases its locks."""


def check_schema_name(schema: str) -> str:
    """`schema` when it is a safe PostgreSQL schema name; `ConfigError` otherwise."""
    if not _SCHEMA_NAME.match(schema):
        raise ConfigError(f"schema name {schema!r} must be lowercase letters, digits and _")
    return schema


async def _init_connection(conn: asyncpg.Connection) -> None:
    _keep_alive(conn)
    # asyncpg has no codec for xid8; its text form is the decimal number.
    await conn.set_type_codec("xid8", schema="pg_catalog", encoder=str, decoder=int, format="text")


def _keep_alive(conn: asyncpg.Connection) -> None:
    """TCP keepalives, and a bound on unacknowledged data, on the client's socket.

    asyncpg has no option for them; its transport is the only way to the socket. A
    Unix-domain connection has neither (and needs neither: the peer is on this host).
    """
    transport = getattr(conn, "_transport", None)
    sock = transport.get_extra_info("socket") if transport is not None else None
    if sock is None or sock.family not in (socket.AF_INET, socket.AF_INET6):
        return
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (
        ("TCP_KEEPIDLE", KEEPALIVE_IDLE_S),
        ("TCP_KEEPINTVL", KEEPALIVE_INTERVAL_S),
        ("TCP_KEEPCNT", KEEPALIVE_COUNT),
        # Data sent and never acknowledged for this long: the path is gone.
        ("TCP_USER_TIMEOUT", (KEEPALIVE_IDLE_S + KEEPALIVE_INTERVAL_S * KEEPALIVE_COUNT) * 1000),
    ):
        if hasattr(socket, option):  # Linux names; other systems lack some
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)


def command_timeout(statement_timeout_s: float) -> float | None:
    """The client-side limit of one call: the statement limit and a grace (None: no limit)."""
    if statement_timeout_s <= 0:
        return None
    return statement_timeout_s + min(statement_timeout_s, COMMAND_GRACE_S)


async def _reset_pooled(conn: asyncpg.Connection) -> None:
    """Nothing to reset: Slipway leaves no session state on a pooled connection.

    asyncpg's default reset runs `pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *;
    RESET ALL` on every release: a round trip and, measured (benchmarks/eventlog.py),
    ~130 µs of server CPU per checkout — as much as a one-event append costs itself.
    Session advisory locks live on dedicated connections (relay, migrate) or are
    released explicitly (replay); settings are transaction-local (`SET LOCAL`,
    `set_config(…, true)`); nothing LISTENs. asyncpg still rolls back a transaction
    left open before calling this.
    """


def server_settings(
    schema: str,
    *,
    statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
    idle_in_transaction_timeout_s: float = DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_S,
) -> dict[str, str]:
    """The session settings of every Slipway connection (0 s: no limit).

    The limits are enforced by the server, so a hung statement, or a transaction
    left open by a stalled client, cannot hold locks, a connection slot, or the
    log's snapshot horizon (which every reader of the log waits behind, see
    shared/eventlog/store.py) for longer than that. They guard against accidents
    and stalls, not against a client that sets its own session's limits. Waits that may
    legitimately be longer lift the limit for their own transaction
    (`set_config('statement_timeout', '0', true)`); migrations lift it for their session.
    """
    check_schema_name(schema)
    for name, value in (
        ("statement_timeout_s", statement_timeout_s),
        ("idle_in_transaction_timeout_s", idle_in_transaction_timeout_s),
    ):
        if value < 0:
            raise ConfigError(f"{name} must be ≥ 0 (0: no limit), not {value}")
    return {
        "search_path": schema,
        "application_name": "slipway",
        "statement_timeout": _milliseconds(statement_timeout_s),
        "idle_in_transaction_session_timeout": _milliseconds(idle_in_transaction_timeout_s),
        # The server's side of the keepalives: a client that vanished mid-transaction
        # loses its session (and its locks) in seconds, not hours.
        "tcp_keepalives_idle": str(KEEPALIVE_IDLE_S),
        "tcp_keepalives_interval": str(KEEPALIVE_INTERVAL_S),
        "tcp_keepalives_count": str(KEEPALIVE_COUNT),
    }


def _milliseconds(seconds: float) -> str:
    # A positive limit never rounds down to 0, which PostgreSQL reads as "no limit".
    return f"{max(round(seconds * 1000), 1) if seconds > 0 else 0}ms"


async def create_pool(
    url: str,
    *,
    schema: str = "slipway",
    min_size: int = 1,
    max_size: int = 10,
    statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
    idle_in_transaction_timeout_s: float = DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_S,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    **kwargs: Any,
) -> asyncpg.Pool:
    """A pool whose connections use `schema`, Slipway's session limits and column types.

    Every call on it is bounded: by the server (`statement_timeout`), by the client
    (`command_timeout`, a little longer, for a connection that answers nothing), and
    connecting by `connect_timeout_s`; its sockets use TCP keepalives."""
    settings = server_settings(
        schema,
        statement_timeout_s=statement_timeout_s,
        idle_in_transaction_timeout_s=idle_in_transaction_timeout_s,
    )
    try:
        pool = await asyncpg.create_pool(
            url,
            min_size=min_size,
            max_size=max_size,
            init=_init_connection,
            reset=_reset_pooled,
            server_settings=settings,
            timeout=connect_timeout_s,
            command_timeout=command_timeout(statement_timeout_s),
            **kwargs,
        )
    except CONNECTION_ERRORS as exc:
        raise Unavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    assert pool is not None
    return pool


async def connect(
    url: str,
    *,
    schema: str = "slipway",
    statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
    idle_in_transaction_timeout_s: float = DEFAULT_IDLE_IN_TRANSACTION_TIMEOUT_S,
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S,
    **kwargs: Any,
) -> asyncpg.Connection:
    """One connection, configured (and bounded) like a pool's (for leases and advisory locks);
    `statement_timeout_s=0` for one whose statements may take as long as they need
    (migrations)."""
    settings = server_settings(
        schema,
        statement_timeout_s=statement_timeout_s,
        idle_in_transaction_timeout_s=idle_in_transaction_timeout_s,
    )
    try:
        conn = await asyncpg.connect(
            url,
            server_settings=settings,
            timeout=connect_timeout_s,
            command_timeout=command_timeout(statement_timeout_s),
            **kwargs,
        )
    except CONNECTION_ERRORS as exc:
        raise Unavailable(f"cannot connect to PostgreSQL: {exc}") from exc
    await _init_connection(conn)
    return conn


@contextlib.asynccontextmanager
async def unavailable_on_disconnect(what: str) -> AsyncIterator[None]:
    """Translate a lost connection inside the block into `Unavailable`."""
    try:
        yield
    except CONNECTION_ERRORS as exc:
        raise Unavailable(f"{what}: database connection lost: {exc}") from exc
