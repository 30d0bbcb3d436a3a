"""Raw-event webhooks: every selected event POSTed to a configured URL, in commit order.

A hook (`spec.eventHooks` of the control config) follows the log from its
checkpoint (`checkpoints` row `event-hook:<name>`), renders each event as it
asked (native, CloudEvents or CDEvents: `shared.events.feed`), and POSTs each
document signed as the notifier's webhooks are (`Slipway-Signature:
sha256=<HMAC>`, `services.notifier.notify.webhook`), with a `Slipway-Delivery` id that is
the same on every attempt and after any restart (derived from the hook, the
event id and the document's place). A failed POST is retried with the
notifier's back-off (`RetryPolicy`, capped), for as long as it takes: a hook
is at-least-once and in order, so it waits rather than skip; a receiver that
refuses for good shows as a growing `attempts` in `event_hook_deliveries` and
the `slipway_event_hook_failures_total` counter.

Once every document of an event is delivered, its delivery rows and the
checkpoint are written in one transaction. A worker killed before that sends
the event again after a restart, with the same delivery ids, which is what a
receiver deduplicates on.

One worker per hook at a time: it holds a PostgreSQL advisory lock for the
hook on its own connection, and writes the checkpoint on that session (as the
relay does), so notifier replicas never deliver one hook twice over.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import aiohttp
import asyncpg
from prometheus_client import CollectorRegistry, Counter

from services.notifier.notify.retry import RetryPolicy
from services.notifier.notify.webhook import request_headers
from shared.aio import sleep_or_stop
from shared.config.control import ControlConfig, EventHook
from shared.db import CONNECTION_ERRORS, connect
from shared.errors import ConfigError, Unavailable
from shared.eventlog.position import START, LogPosition
from shared.eventlog.store import EventStore, position_of
from shared.events.base import RecordedEvent
from shared.events.feed import Feed, Selection, selection_of
from shared.events.outbound import Document
from shared.logs import get_logger
from shared.redaction import REASON_CHARS, clip, redact

__all__ = ["EventHookWorker", "HookTarget", "delivery_id_of", "hook_targets_of"]

log = get_logger("slipway.notifier.event_hooks")

_IDS: Final = uuid.UUID("8f4a1c2e-5b6d-4e7f-9a0b-1c2d3e4f5a6b")
_CHECKPOINT_PREFIX: Final = "event-hook:"
_RETRYABLE: Final[tuple[type[BaseException], ...]] = (Unavailable, *CONNECTION_ERRORS)
_LOAD: Final = "SELECT tx_id, position FROM checkpoints WHERE name = $1"
_SAVE: Final = """
INSERT INTO checkpoints (name, tx_id, position) VALUES ($1, $2::xid8, $3)
ON CONFLICT (name) DO UPDATE
  SET tx_id = excluded.tx_id, position = excluded.position, updated_at = clock_timestamp()
"""
_RECORD: Final = """
INSERT INTO event_hook_deliveries
  (delivery_id, hook, event_id, global_position, document_type, attempts, status, delivered,
   error)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
ON CONFLICT (delivery_id) DO UPDATE
  SET attempts = event_hook_deliveries.attempts + excluded.attempts, status = excluded.status,
      delivered = excluded.delivered, error = excluded.error, updated_at = clock_timestamp()
"""
_CONTENT_TYPES: Final = {
    "native": "application/json",
    "cloudevents": "application/cloudevents+json",
    "cdevents": "application/cloudevents+json",
}


@dataclass(frozen=True)
class HookTarget:
    """One hook, ready to send: where, what, and the secret read once at start."""

    name: str
    url: str
    selection: Selection
    signature_key: str = "Slipway-Signature"
    secret: bytes = b""


def hook_targets_of(control: ControlConfig) -> list[HookTarget]:
    """The control config's event hooks; a secret file that cannot be read stops the start."""
    targets = []
    for hook in control.spec.event_hooks:
        targets.append(_target(control.path.parent, hook, f"{control.path}: eventHook {hook.name}"))
    return targets


def _target(base: Path, hook: EventHook, where: str) -> HookTarget:
    secret = hook.signature_value
    if hook.signature_secret_file:
        path = (base / Path(hook.signature_secret_file).expanduser()).resolve()
        try:
            secret = path.read_text().strip()
        except OSError as exc:
            raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from exc
    selection = selection_of(
        categories=hook.categories,
        types=hook.types,
        application=hook.application,
        fmt=hook.format,
        where=where,
    )
    return HookTarget(hook.name, hook.url, selection, hook.signature_key, secret.encode())


def delivery_id_of(hook: str, recorded: RecordedEvent, part: int) -> uuid.UUID:
    """The `Slipway-Delivery` id of a document: the same on every attempt and every restart."""
    return uuid.uuid5(_IDS, f"{hook}:{recorded.event_id}:{part}")


@dataclass
class _Outcome:
    attempts: int
    status: int
    error: str


class EventHookWorker:
    """Delivers every hook's events; `run` until `stop`."""

    def __init__(
        self,
        *,
        store: EventStore,
        database_url: str,
        schema: str,
        hooks: Sequence[HookTarget],
        policy: RetryPolicy,
        http_timeout_s: float = 10.0,
        poll_s: float = 0.05,
        batch_size: int = 200,
        standby_poll_s: float = 1.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.database_url = database_url
        self.schema = schema
        self.hooks = tuple(hooks)
        self.policy = policy
        self.http_timeout_s = http_timeout_s
        self.poll_s = poll_s
        self.batch_size = batch_size
        self.standby_poll_s = standby_poll_s
        self.delivered: dict[str, int] = {h.name: 0 for h in hooks}
        self._failures = Counter(
            "slipway_event_hook_failures",
            "Failed POSTs of raw-event webhooks (each is retried)",
            ["hook"],
            registry=registry,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """POST every event of the log to each hook, from where it left off, until stopped."""
        if not self.hooks:
            return
        timeout = aiohttp.ClientTimeout(total=self.http_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            await asyncio.gather(*(self._hook(hook, http, stop) for hook in self.hooks))

    async def _hook(
        self, hook: HookTarget, http: aiohttp.ClientSession, stop: asyncio.Event
    ) -> None:
        failures = 0
        while not stop.is_set():
            try:
                await self._session(hook, http, stop)
                failures = 0
            except _RETRYABLE as exc:
                failures += 1
                delay = min(0.1 * 2**failures, 5.0)
                log.warning("event_hook_interrupted", hook=hook.name, error=str(exc))
                await sleep_or_stop(stop, delay)

    async def _session(
        self, hook: HookTarget, http: aiohttp.ClientSession, stop: asyncio.Event
    ) -> None:
        conn = await connect(self.database_url, schema=self.schema)
        try:
            while not stop.is_set():
                if await conn.fetchval("SELECT pg_try_advisory_lock($1)", _lock_key(self, hook)):
                    await self._lead(hook, http, conn, stop)
                    return
                await sleep_or_stop(stop, self.standby_poll_s)
        finally:
            await conn.close(timeout=2)

    async def _lead(
        self,
        hook: HookTarget,
        http: aiohttp.ClientSession,
        conn: asyncpg.Connection,
        stop: asyncio.Event,
    ) -> None:
        name = _CHECKPOINT_PREFIX + hook.name
        row = await conn.fetchrow(_LOAD, name)
        position = START if row is None else LogPosition(row["tx_id"], row["position"])
        feed = Feed(hook.selection, self._read_stream)
        log.info("event_hook_leading", hook=hook.name, after=f"{position}")
        while not stop.is_set():
            batch = await self.store.read_all(position, limit=self.batch_size, conn=conn)
            if not batch:
                await sleep_or_stop(stop, self.poll_s)
                continue
            for recorded in batch:
                documents = await feed.documents(recorded)
                outcomes = []
                for part, document in enumerate(documents):
                    outcome = await self._deliver(hook, http, recorded, part, document, stop)
                    if outcome is None:
                        return  # stopping: the event is sent again after the restart
                    outcomes.append((part, document, outcome))
                position = position_of(recorded)
                async with conn.transaction():
                    for part, document, outcome in outcomes:
                        await conn.execute(
                            _RECORD,
                            delivery_id_of(hook.name, recorded, part),
                            hook.name,
                            recorded.event_id,
                            recorded.global_position,
                            document.type,
                            outcome.attempts,
                            outcome.status,
                            True,
                            outcome.error,
                        )
                    await conn.execute(_SAVE, name, position.tx_id, position.global_position)
                self.delivered[hook.name] += len(outcomes)

    async def _deliver(
        self,
        hook: HookTarget,
        http: aiohttp.ClientSession,
        recorded: RecordedEvent,
        part: int,
        document: Document,
        stop: asyncio.Event,
    ) -> _Outcome | None:
        """POST until the receiver answers 2xx (the outcome) or `stop` is set (None)."""
        delivery_id = str(delivery_id_of(hook.name, recorded, part))
        headers = request_headers(
            delivery_id=delivery_id,
            notification_type=document.type,
            body=document.body,
            signature_key=hook.signature_key,
            secret=hook.secret,
        )
        headers["Content-Type"] = _CONTENT_TYPES[hook.selection.format]
        attempt = 0
        last_error = ""
        while not stop.is_set():
            attempt += 1
            status, error, retry_after = await _post(http, hook.url, document.body, headers)
            if 200 <= status < 300:
                return _Outcome(attempt, status, last_error)
            # Kept redacted: an answer may echo a secret or a token.
            last_error = clip(redact(error or f"HTTP {status}"), REASON_CHARS)
            self._failures.labels(hook.name).inc()
            # Past the policy's attempts it keeps going at the cap: a hook never skips.
            delay = self.policy.delay_s(
                min(attempt, self.policy.max_attempts),
                random.random(),  # noqa: S311 — spreads retries, not a secret
                retry_after,
            )
            log.warning(
                "event_hook_attempt_failed",
                hook=hook.name,
                delivery_id=delivery_id,
                event_id=str(recorded.event_id),
                attempt=attempt,
                status=status,
                error=last_error[:300],
                retry_in_s=round(delay, 3),
            )
            await sleep_or_stop(stop, delay)
        return None

    async def _read_stream(self, stream_id: str, count: int) -> list[RecordedEvent]:
        return await self.store.read_stream(stream_id, limit=count)


async def _post(
    http: aiohttp.ClientSession, url: str, body: bytes, headers: Mapping[str, str]
) -> tuple[int, str, float | None]:
    """(status, error, Retry-After seconds) of one POST; status 0 when nothing answered."""
    try:
        async with http.post(url, data=body, headers=dict(headers), allow_redirects=False) as reply:
            retry_after = reply.headers.get("Retry-After", "")
            wait = float(retry_after) if retry_after.isdigit() else None
            if 200 <= reply.status < 300:
                return reply.status, "", None
            text = (await reply.content.read(300)).decode(errors="replace")
            return reply.status, f"HTTP {reply.status}: {text}", wait
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return 0, f"{type(exc).__name__}: {exc}", None


def _lock_key(worker: EventHookWorker, hook: HookTarget) -> int:
    text = f"slipway-event-hook:{worker.schema}:{hook.name}"
    digest = hashlib.blake2b(text.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)
