"""The delivery worker: claim due notifications, POST them, record what happened.

Each claimed notification is sent as stored in its `NotificationScheduled`
(the same body and delivery id on every attempt). A 2xx answer is recorded
as `NotificationDelivered`; a failure worth retrying as
`NotificationAttemptFailed` with the back-off before the next attempt; the
last allowed attempt, or an answer that will never change (most 4xx), as
`NotificationFailed` with the error. Each record closes or reschedules the
outbox row in the same transaction (`outbox.py`).

A record that fails because the database is away (a restart, a lost
connection) is retried while the claim surely lasts (`lease_s` less the HTTP
timeout): giving it up would send the notification again.

The one window that remains is between the receiver's answer and that
commit: a worker killed there has delivered without recording it, and the
notification is sent again (same `Slipway-Delivery` id) once its claim
expires — at once when the same instance name restarts. The window is kept
short (nothing but the commit happens in it, and that commit does not wait
for the WAL flush) but it cannot be closed from this side: only a receiver
that remembers delivery ids can drop the repeat.

A Slack Web API receiver (`Target.slack_api`) threads a deployment's
messages: a message whose thread has no first message yet while an earlier
one of it is undelivered is put back for `THREAD_WAIT_S` (no attempt
counted); the first delivered keeps its `ts`, the later ones are posted
under it (`outbox.py`, `notify/slack_api.py`).

Each attempt is a span `notify <receiver>`, continuing the trace recorded
with the `NotificationScheduled` (the one of the event it tells about), and
its outcome is recorded inside it: a deployment's notifications, and their
retries, are in the deployment's trace.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Final

import aiohttp
from opentelemetry import trace
from opentelemetry.trace import Status, StatusCode
from prometheus_client import CollectorRegistry, Counter

from services.notifier.notify.retry import RetryPolicy, is_retryable_status
from services.notifier.notify.slack_api import RETRYABLE_ERRORS, post_message_body, read_answer
from services.notifier.notify.webhook import request_headers
from services.notifier.outbox import Claim, ClaimLost, Outbox
from services.notifier.targets import Target
from shared.answers import read_up_to
from shared.errors import Unavailable
from shared.eventlog import deterministic_event_id
from shared.eventlog.envelope import envelope
from shared.events.base import Event, NewEvent
from shared.events.catalog import (
    NotificationAttemptFailed,
    NotificationDelivered,
    NotificationFailed,
)
from shared.logs import get_logger
from shared.redaction import REASON_CHARS, clip, redact
from shared.tracing import span_continuing

__all__ = ["Attempt", "DeliveryWorker"]

log = get_logger("slipway.notifier.delivery")
_tracer = trace.get_tracer("slipway.notifier")

_ERROR_BODY_MAX: Final = 300
_RECORD_RETRY_S: Final = 0.2
"""The first pause before recording an attempt again after the database was away."""
_RECORD_RETRY_MAX_S: Final = 2.0
_SLACK_ANSWER_MAX: Final = 64 * 1024
THREAD_WAIT_S: Final = 0.5
"""How long a Slack message waits for the first message of its thread to be delivered."""


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: a status (0 without an answer), an error, a Retry-After."""

    status: int
    error: str = ""
    retry_after_s: float | None = None
    slack_error: str = ""
    """Slack's `error` in a 2xx answer with `ok: false`: not delivered."""
    postponed: bool = False
    """Not sent: an earlier message of its Slack thread goes first."""

    @property
    def delivered(self) -> bool:
        """Whether the receiver took it: a 2xx, no Slack error, not postponed."""
        return 200 <= self.status < 300 and not self.slack_error and not self.postponed

    @property
    def retryable(self) -> bool:
        """Whether another try may succeed: no answer, `is_retryable_status`, or a Slack hiccup."""
        if self.slack_error:
            return self.slack_error in RETRYABLE_ERRORS
        return self.status == 0 or is_retryable_status(self.status)


class DeliveryWorker:
    """Sends due notifications, up to `concurrency` at once, until stopped."""

    def __init__(
        self,
        *,
        outbox: Outbox,
        targets: Mapping[str, Target],
        policy: RetryPolicy,
        concurrency: int = 32,
        http_timeout_s: float = 10.0,
        poll_s: float = 1.0,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.outbox = outbox
        self.targets = dict(targets)
        self.policy = policy
        self.concurrency = concurrency
        self.http_timeout_s = http_timeout_s
        self.poll_s = poll_s
        self.wake = asyncio.Event()
        """Set to look for work at once (the consumer scheduled something)."""
        self.sent = 0
        """POSTs made by this worker (for tests)."""
        self.outcomes = Counter(
            "slipway_notifier_attempts",
            "delivery attempts by receiver and outcome (delivered, retry, failed)",
            ["receiver", "outcome"],
            registry=registry if registry is not None else CollectorRegistry(),
        )
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._session: aiohttp.ClientSession | None = None

    async def run(
        self, stop: asyncio.Event, *, until_idle: Callable[[], Awaitable[bool]] | None = None
    ) -> None:
        """Component: claim and send until `stop` (or, with `until_idle`, until it says idle)."""
        connector = aiohttp.TCPConnector(limit=self.concurrency)
        timeout = aiohttp.ClientTimeout(total=self.http_timeout_s)
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            self._session = session
            try:
                while not stop.is_set():
                    self.wake.clear()
                    try:
                        await self._claim()
                    except Unavailable as exc:
                        log.warning("claim_unavailable", error=str(exc))
                    if until_idle is not None and not self._tasks and await until_idle():
                        return
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.wake.wait(), await self._pause_s())
            finally:
                # Sends in flight finish (within the HTTP timeout) and are recorded.
                if self._tasks:
                    await asyncio.gather(*self._tasks.values(), return_exceptions=True)
                self._session = None

    async def _pause_s(self) -> float:
        if len(self._tasks) >= self.concurrency:
            return self.poll_s  # a finishing send sets `wake`
        try:
            due = await self.outbox.next_due_in_s()
        except Unavailable:
            return self.poll_s
        if due is None:
            return self.poll_s
        return min(self.poll_s, max(due, 0.005))

    async def _claim(self) -> None:
        free = self.concurrency - len(self._tasks)
        for claim in await self.outbox.claim(free, running=list(self._tasks)):
            notification_id = claim.scheduled.notification_id
            task = asyncio.create_task(self._deliver(claim), name=f"notify {notification_id}")
            self._tasks[notification_id] = task
            task.add_done_callback(functools.partial(self._done, notification_id))

    def _done(self, notification_id: str, task: asyncio.Task[None]) -> None:
        self._tasks.pop(notification_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error("delivery_crashed", notification_id=notification_id, error=repr(exc))
        self.wake.set()

    async def _deliver(self, claim: Claim) -> None:
        scheduled = claim.scheduled
        attributes: dict[str, str | int] = {
            "slipway.notification_id": scheduled.notification_id,
            "slipway.receiver": scheduled.receiver,
            "slipway.notification_type": scheduled.notification_type,
            "slipway.attempt": claim.attempt,
        }
        if scheduled.deployment_id:
            attributes["slipway.deployment_id"] = scheduled.deployment_id
        with span_continuing(
            claim.metadata,
            f"notify {scheduled.receiver}",
            tracer=_tracer,
            attributes=attributes,
            kind=trace.SpanKind.CLIENT,
        ) as span:
            target = self.targets.get(scheduled.receiver)
            if target is None:
                # The receiver left the control config after this was scheduled.
                why = f"receiver {scheduled.receiver!r} is not configured any more"
                attempt = Attempt(0, why)
                give_up = True
            else:
                attempt = await self._post(target, claim)
                if attempt.postponed:
                    span.set_attribute("slipway.postponed", True)
                    await self.outbox.postpone(claim, THREAD_WAIT_S)
                    return
                give_up = not attempt.delivered and (
                    not attempt.retryable or self.policy.gives_up_after(claim.attempt)
                )
            if attempt.status:
                span.set_attribute("http.response.status_code", attempt.status)
            if not attempt.delivered:
                span.set_status(Status(StatusCode.ERROR, attempt.error))
            await self._record(claim, attempt, give_up=give_up)

    async def _post(self, target: Target, claim: Claim) -> Attempt:
        if target.slack_api:
            return await self._post_to_slack_api(target, claim)
        assert self._session is not None
        scheduled = claim.scheduled
        body = scheduled.body.encode()
        headers = request_headers(
            delivery_id=scheduled.notification_id,
            notification_type=scheduled.notification_type,
            body=body,
            signature_key=target.signature_key,
            secret=target.secret,
        )
        self.sent += 1
        try:
            async with self._session.post(target.url, data=body, headers=headers) as response:
                if 200 <= response.status < 300:
                    return Attempt(response.status)
                # The receiver's error page is quoted, never read whole (it may not end).
                raw = await read_up_to(response, _ERROR_BODY_MAX * 4)
                text = raw.decode("utf-8", "replace")[:_ERROR_BODY_MAX]
                return Attempt(
                    response.status,
                    f"HTTP {response.status}: {text.strip()}".strip(": "),
                    _retry_after(response.headers.get("Retry-After")),
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Attempt(0, f"{type(exc).__name__}: {exc}".strip(": "))

    async def _post_to_slack_api(self, target: Target, claim: Claim) -> Attempt:
        """chat.postMessage to the receiver's channel, in the deployment's thread."""
        assert self._session is not None
        scheduled = claim.scheduled
        thread_key = scheduled.deployment_id
        thread_ts = None
        if thread_key:
            thread_ts = await self.outbox.thread(target.name, thread_key)
            if thread_ts is None and await self.outbox.earlier_in_thread(scheduled.notification_id):
                return Attempt(0, postponed=True)
        body = post_message_body(scheduled.body, channel=target.channel, thread_ts=thread_ts)
        headers = request_headers(
            delivery_id=scheduled.notification_id,
            notification_type=scheduled.notification_type,
            body=body,
        )
        headers["Content-Type"] = "application/json; charset=utf-8"
        headers["Authorization"] = f"Bearer {target.token}"
        self.sent += 1
        try:
            async with self._session.post(target.url, data=body, headers=headers) as response:
                raw = await read_up_to(response, _SLACK_ANSWER_MAX)
                retry_after = _retry_after(response.headers.get("Retry-After"))
                if not 200 <= response.status < 300:
                    text = raw.decode("utf-8", "replace")[:_ERROR_BODY_MAX].strip()
                    return Attempt(
                        response.status, f"HTTP {response.status}: {text}".strip(": "), retry_after
                    )
                answer = read_answer(raw)
                if not answer.ok:
                    return Attempt(
                        response.status,
                        f"Slack API error: {answer.error}",
                        retry_after,
                        slack_error=answer.error,
                    )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return Attempt(0, f"{type(exc).__name__}: {exc}".strip(": "))
        if thread_key and thread_ts is None and answer.ts:
            try:
                await self.outbox.keep_thread(target.name, thread_key, target.channel, answer.ts)
            except Unavailable as exc:  # posted all the same; the next message starts a thread
                log.warning("slack_thread_not_kept", receiver=target.name, error=str(exc))
        return Attempt(response.status)

    async def _record(self, claim: Claim, attempt: Attempt, *, give_up: bool) -> None:
        notification_id = claim.scheduled.notification_id
        number = claim.attempt
        retry_in_s = 0.0
        # The receiver's answer (or the client's error, which may quote the hook's URL) is
        # recorded redacted: a Slack hook URL or a signing secret must not enter the log.
        attempt = replace(attempt, error=redact(attempt.error))
        event: Event
        if attempt.delivered:
            event = NotificationDelivered(
                notification_id=notification_id,
                attempt=number,
                status_code=attempt.status,
                delivered_at=datetime.now(UTC),
            )
            kind = "delivered"
        elif give_up:
            event = NotificationFailed(
                notification_id=notification_id,
                attempts=number,
                error=clip(attempt.error, REASON_CHARS),
                status_code=attempt.status,
            )
            kind = "failed"
        else:
            jitter = random.random()  # noqa: S311 — spreads retries, not a secret
            retry_in_s = self.policy.delay_s(number, jitter, attempt.retry_after_s)
            event = NotificationAttemptFailed(
                notification_id=notification_id,
                attempt=number,
                error=clip(attempt.error, REASON_CHARS),
                retry_in_s=retry_in_s,
                status_code=attempt.status,
            )
            kind = f"attempt-{number}"
        outcome = NewEvent(
            event=event,
            event_id=deterministic_event_id("notification", notification_id, kind),
            metadata=envelope(
                causation_id=claim.scheduled.source_event_id,
                correlation_id=claim.metadata.correlation_id,
            ),
        )
        done = attempt.delivered or give_up
        loop = asyncio.get_running_loop()
        # The claim (taken before the POST) is ours until `lease_s` after it was taken: the
        # record is retried while the lease surely lasts, since giving up means sending again.
        deadline = loop.time() + max(self.outbox.lease_s - self.http_timeout_s, 0.0)
        delay = _RECORD_RETRY_S
        while True:
            try:
                await self.outbox.record(
                    claim, outcome, attempts=number, retry_in_s=retry_in_s, done=done
                )
                break
            except ClaimLost:
                log.warning("notification_claim_lost", notification_id=notification_id)
                return
            except Unavailable as exc:
                if loop.time() + delay >= deadline:
                    # Left claimed: retried when the claim expires (or this instance restarts).
                    log.warning(
                        "notification_not_recorded",
                        notification_id=notification_id,
                        error=str(exc),
                    )
                    return
                log.info(
                    "notification_record_retry",
                    notification_id=notification_id,
                    error=str(exc),
                    retry_in_s=delay,
                )
            await asyncio.sleep(delay)
            delay = min(delay * 2, _RECORD_RETRY_MAX_S)
        outcome_name = "delivered" if attempt.delivered else "failed" if give_up else "retry"
        self.outcomes.labels(claim.scheduled.receiver, outcome_name).inc()
        log.info(
            f"notification_{kind.split('-')[0]}",
            notification_id=notification_id,
            receiver=claim.scheduled.receiver,
            type=claim.scheduled.notification_type,
            attempt=number,
            status=attempt.status,
            error=attempt.error or None,
            retry_in_s=retry_in_s or None,
        )


def _retry_after(value: str | None) -> float | None:
    """A `Retry-After` in seconds (the HTTP-date form is rare from webhooks: ignored)."""
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
