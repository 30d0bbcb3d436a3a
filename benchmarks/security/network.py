"""A pod on the network's attacks: NATS without (or with the wrong) credentials, events forged
onto the bus, and the database reached with the services' own role.

Forged events are copies of real messages from the events stream under a fresh
event id and stream: had a consumer trusted the message body, the executor would
have acted on a deployment the log does not hold, and the notifier would have
sent a message for an event that never happened.
"""

from __future__ import annotations

import asyncio
import uuid
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import nats
from nats.errors import Error as NatsError

from benchmarks.security.harness import Attack, Outcome, Target
from shared.db import connect
from shared.natsauth import ROLES

__all__ = ["attacks"]

FAMILY_NATS = "nats"
FAMILY_DATABASE = "database"
_NOT_RELAY = tuple(role.name for role in ROLES if role.name != "relay")


def _without_credentials(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return urlunsplit((parts.scheme, f"{host}:{parts.port}", "", "", ""))


def _with_credentials(url: str, user: str, password: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "127.0.0.1"
    return urlunsplit((parts.scheme, f"{user}:{password}@{host}:{parts.port}", "", "", ""))


async def _try_publish(url: str, subject: str) -> Outcome:
    """Connect with `url` and publish one message to `subject`; refused if either fails."""
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    try:
        nc = await nats.connect(
            url,
            connect_timeout=2,
            max_reconnect_attempts=0,
            allow_reconnect=False,
            error_cb=on_error,
        )
    except (TimeoutError, NatsError, OSError) as exc:
        return Outcome(True, f"connect refused: {type(exc).__name__}")
    try:
        js = nc.jetstream()
        try:
            await js.publish(subject, b"{}", timeout=2)
        except (TimeoutError, NatsError) as exc:
            return Outcome(True, f"publish refused: {type(exc).__name__} {exc}"[:160])
        return Outcome(False, "published into the events stream")
    finally:
        await nc.close()


def _publish_attack(name: str, url_of: object) -> Attack:
    async def run(target: Target) -> Outcome:
        url = url_of(target)  # type: ignore[operator]
        subject = f"slipway.evt.deployment.deployment-{uuid.uuid4()}.deployment_planned"
        return await _try_publish(url, subject)

    return Attack(FAMILY_NATS, name, run)


async def _try_core(url: str, act: str, subject: str) -> Outcome:
    """As the user of `url`, publish to or subscribe to `subject`; refused if the server says so.

    A permission violation comes back asynchronously, so the probe waits a moment for it.
    """
    errors: list[str] = []

    async def on_error(exc: Exception) -> None:
        errors.append(str(exc))

    nc = await nats.connect(url, error_cb=on_error, max_reconnect_attempts=0)
    try:
        if act == "publish":
            await nc.publish(subject, b"{}")
        else:
            await nc.subscribe(subject)
        await nc.flush(timeout=2)
        await asyncio.sleep(1.0)
    finally:
        await nc.close()
    refused = any("permissions violation" in e.lower() for e in errors)
    return Outcome(refused, errors[0][:120] if errors else f"{act} {subject} allowed")


def _as_service(name: str, service: str, act: str, subject: str) -> Attack:
    async def run(target: Target) -> Outcome:
        url = target.nats_urls.get(service)
        if url is None:
            return Outcome(False, f"the sandbox has no NATS user {service!r}: not judged")
        return await _try_core(url, act, subject)

    return Attack(FAMILY_NATS, name, run)


async def _forge(target: Target, event_type: str) -> tuple[str, int] | None:
    """Republish the newest real `event_type` message as if it were about a new deployment.

    The deployment's id is replaced everywhere (subject, headers, body) by a fresh one,
    and the event id too, so neither JetStream's duplicate window nor a consumer's
    inbox can recognise the copy: only a consumer that looks the event up in the log can.
    """
    nc = await nats.connect(target.nats_url)
    try:
        js = nc.jetstream()
        try:
            message = await js.get_last_msg("SLIPWAY_EVENTS", f"slipway.evt.*.*.{event_type}")
        except NatsError:
            return None
        prefix, evt, category, stream_id, tag = (message.subject or "").split(".")
        old_id = stream_id.split("-", 1)[1]
        new_id = str(uuid.uuid4())
        headers = {k: v.replace(old_id, new_id) for k, v in (message.headers or {}).items()}
        headers["Nats-Msg-Id"] = str(uuid.uuid4())
        forged_stream = stream_id.replace(old_id, new_id)
        subject = ".".join((prefix, evt, category, forged_stream, tag))
        data = (message.data or b"").replace(old_id.encode(), new_id.encode())
        await js.publish(subject, data, headers=headers)
        return forged_stream, len(target.receiver_messages())
    finally:
        await nc.close()


def _forged_event(event_type: str) -> Attack:
    async def run(target: Target) -> Outcome:
        forged = await _forge(target, event_type)
        if forged is None:
            return Outcome(True, f"no {event_type} in the stream to copy (nothing to forge)")
        stream, messages_before = forged
        await asyncio.sleep(5)  # long enough for every consumer to have acted on it
        conn = await asyncpg.connect(target.superuser_url)
        try:
            appended = await conn.fetchval(
                f'SELECT count(*) FROM "{target.schema}".events WHERE stream_id = $1', stream
            )
            # Anything the forged message caused (a stage started, a notification scheduled)
            # names its deployment somewhere in the log.
            mentioned = await conn.fetchval(
                f'SELECT count(*) FROM "{target.schema}".events '
                "WHERE position($1 in convert_from(payload, 'UTF8')) > 0",
                stream.removeprefix("deployment-"),
            )
        finally:
            await conn.close()
        notified = len(target.receiver_messages()) - messages_before
        acted = appended + mentioned + notified
        return Outcome(
            acted == 0,
            f"{appended} event(s) on {stream}, {mentioned} mentioning it, "
            f"{notified} notification(s)",
        )

    return Attack(FAMILY_NATS, f"forged-{event_type}", run)


# --- the database -------------------------------------------------------------------------------


def _statement(name: str, sql: str) -> Attack:
    async def run(target: Target) -> Outcome:
        # A connection made the way every service makes its own (its session limits too).
        conn = await connect(target.database_url, schema=target.schema)
        try:
            await asyncio.wait_for(conn.execute(sql), timeout=_LONGEST_STATEMENT_S)
        except TimeoutError:
            return Outcome(False, f"still running after {_LONGEST_STATEMENT_S} s")
        except asyncpg.PostgresError as exc:
            # Only a refusal counts: any other error means the statement was wrong, not stopped.
            refused = exc.sqlstate in _REFUSALS
            return Outcome(refused, f"{exc.sqlstate} {type(exc).__name__}: {str(exc)[:100]}")
        finally:
            await conn.close()
        return Outcome(False, "the statement ran")

    return Attack(FAMILY_DATABASE, name, run)


_REFUSALS = frozenset({"42501", "57014"})
"""insufficient_privilege (grants, ownership, the append-only triggers) and query_canceled."""

_LONGEST_STATEMENT_S = 90.0
"""A services' connection must cut a statement short well before this."""

_EVENT_COLUMNS = "stream_id, stream_version, event_id, event_type, payload"
_EVENT_VALUES = "'attack-' || gen_random_uuid(), 0, gen_random_uuid(), 'Forged', '\\x7b7d'::bytea"

_DATABASE_ATTACKS = (
    (
        "insert-tx-id",
        f"INSERT INTO events ({_EVENT_COLUMNS}, tx_id) VALUES ({_EVENT_VALUES}, '1'::xid8)",
    ),
    (
        "insert-recorded-at",
        f"INSERT INTO events ({_EVENT_COLUMNS}, recorded_at) "
        f"VALUES ({_EVENT_VALUES}, '2000-01-01')",
    ),
    (
        "insert-position",
        f"INSERT INTO events (global_position, {_EVENT_COLUMNS}) OVERRIDING SYSTEM VALUE "
        f"VALUES (10000000000, {_EVENT_VALUES})",
    ),
    ("update-event", "UPDATE events SET event_type = 'Rewritten' WHERE global_position = 1"),
    ("delete-event", "DELETE FROM events WHERE global_position = 1"),
    ("truncate-events", "TRUNCATE events"),
    ("drop-events", "DROP TABLE events"),
    ("disable-trigger", "ALTER TABLE events DISABLE TRIGGER ALL"),
    ("create-table", "CREATE TABLE attacker (x int)"),
    ("create-in-public", "CREATE TABLE public.attacker (x int)"),
    ("create-function", "CREATE FUNCTION attacker() RETURNS int LANGUAGE sql AS 'SELECT 1'"),
    ("long-statement", "SELECT pg_sleep(600)"),
    (
        "insert-stage-log-time",
        "INSERT INTO stage_logs (deployment_id, stage_id, severity, message, recorded_at) "
        "VALUES ('x', 'y', 'info', 'z', '2000-01-01')",
    ),
    ("create-view", "CREATE VIEW attacker AS SELECT 1"),
    ("replication-role", "SET session_replication_role = replica"),
    ("drop-append-only-trigger", "DROP TRIGGER events_no_update_or_delete ON events"),
    ("write-migrations", "INSERT INTO schema_migrations VALUES (9999, 'x')"),
)


def attacks() -> list[Attack]:
    """The network attacks: forged NATS events, publishes and subscriptions without rights."""
    # Forged copies first: the publish probes below would otherwise be the newest messages.
    found = [
        _forged_event("deployment_triggered"),
        _forged_event("deployment_planned"),
        _forged_event("deployment_completed"),
        _publish_attack("no-credentials", lambda t: _without_credentials(t.nats_url)),
        _publish_attack(
            "wrong-password", lambda t: _with_credentials(t.nats_url, "relay", "not-the-password")
        ),
        _publish_attack(
            "unknown-user", lambda t: _with_credentials(t.nats_url, "attacker", "attacker")
        ),
    ]
    event = (
        "slipway.evt.deployment.deployment-00000000-0000-4000-8000-000000000000.deployment_planned"
    )
    found += [
        _as_service(f"{service}-publishes-an-event", service, "publish", event)
        for service in _NOT_RELAY
    ]
    found += [
        _as_service("executor-reads-every-event", "executor", "subscribe", "slipway.evt.>"),
        _as_service("executor-reads-other-inboxes", "executor", "subscribe", "_INBOX.>"),
        _as_service(
            "executor-deletes-the-stream",
            "executor",
            "publish",
            "$JS.API.STREAM.DELETE.SLIPWAY_EVENTS",
        ),
        _as_service(
            "notifier-takes-another-consumer",
            "notifier",
            "publish",
            "$JS.API.CONSUMER.DELETE.SLIPWAY_EVENTS.executor",
        ),
        _as_service("api-writes-a-stage-log-line", "api", "publish", "slipway.log.deployment-x"),
        _as_service("drift-reads-stage-logs", "drift", "subscribe", "slipway.log.>"),
    ]
    found += [_statement(name, sql) for name, sql in _DATABASE_ATTACKS]
    return found
