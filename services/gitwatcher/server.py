"""The push-webhook endpoint: verify GitHub and GitLab deliveries, record refusals, wake a poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Final

from aiohttp import web
from structlog.contextvars import bound_contextvars

from services.gitwatcher.decider import repository_stream
from services.gitwatcher.watcher import (
    MAX_CONFLICT_RETRIES,
    Metrics,
    RepositoryWatcher,
    event_metadata,
)
from services.gitwatcher.webhooks import (
    Provider,
    WebhookPayloadError,
    match_repository,
    parse_github_push,
    parse_gitlab_push,
    payload_urls,
    pushed_ref,
    verify_github,
    verify_gitlab,
)
from shared.errors import ConcurrencyConflict, Unavailable
from shared.eventlog import ANY, EventStore, new_events
from shared.events.catalog import WebhookRejected
from shared.http import HttpServer
from shared.logs import get_logger

__all__ = ["WebhookServer"]

log = get_logger("slipway.gitwatcher.webhooks")

_MAX_WEBHOOK_BODY: Final = 25 * 1024 * 1024  # GitHub caps payloads at 25 MB


class WebhookServer(HttpServer):
    """`POST /webhooks/github` and `/webhooks/gitlab`: verify, record refusals, wake the poll.

    The repository is the `?repo=<id>` query parameter, or else the one whose
    remote matches a URL in the payload. Answers: 202 (fetching now), 200
    (genuine but nothing to do: a ping, another branch, another event), 400
    (not a push payload), 401 (refused, and recorded as `WebhookRejected`),
    404 (no such repository). Refusals are recorded at most once per
    repository and provider every `reject_record_window_s`, so a flood of
    forged deliveries cannot flood the log; every one is still logged.
    """

    what = "webhook"

    def __init__(
        self,
        watchers: Mapping[str, RepositoryWatcher],
        *,
        store: EventStore,
        metrics: Metrics | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        reject_record_window_s: float = 60.0,
    ) -> None:
        super().__init__(host=host, port=port)
        self.watchers = watchers
        self.store = store
        self.metrics = metrics or Metrics(None)
        self.reject_record_window_s = reject_record_window_s
        self._last_recorded: dict[tuple[str, str], float] = {}

    async def start(self) -> None:
        app = web.Application(client_max_size=_MAX_WEBHOOK_BODY)
        app.router.add_post("/webhooks/github", self._github)
        app.router.add_post("/webhooks/gitlab", self._gitlab)
        await self._serve(app)
        log.info("webhook_server_started", host=self.host, port=self.port)

    async def run(self, stop: asyncio.Event) -> None:
        """Serve until `stop` is set."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    async def _github(self, request: web.Request) -> web.Response:
        return await self._handle("github", request)

    async def _gitlab(self, request: web.Request) -> web.Response:
        return await self._handle("gitlab", request)

    async def _handle(self, provider: Provider, request: web.Request) -> web.Response:
        body = await request.read()
        watchers = self.watchers
        repository_id = request.query.get("repo")
        if repository_id is None:
            # Read before verification only to know whose secret verifies it.
            try:
                urls = payload_urls(provider, body)
                ref = pushed_ref(body)
            except WebhookPayloadError as exc:
                return self._answer(provider, "bad_request", 400, error=str(exc))
            remotes = {rid: (w.spec.remote, w.spec.branch) for rid, w in watchers.items()}
            repository_id = match_repository(urls, remotes, ref.removeprefix("refs/heads/"))
        watcher = watchers.get(repository_id or "")
        if watcher is None:
            return self._answer(provider, "unknown_repository", 404, error="no such repository")
        with bound_contextvars(repository_id=watcher.spec.repository_id, provider=provider):
            secret = watcher.spec.webhook_secret
            if provider == "github":
                problem = verify_github(secret, body, request.headers.get("X-Hub-Signature-256"))
                kind = request.headers.get("X-GitHub-Event", "")
                is_push = kind == "push"
            else:
                problem = verify_gitlab(secret, request.headers.get("X-Gitlab-Token"))
                kind = request.headers.get("X-Gitlab-Event", "")
                is_push = kind == "Push Hook"
            if problem is not None:
                await self._reject(watcher.spec.repository_id, provider, problem, request.remote)
                return self._answer(provider, "rejected", 401, error=problem)
            if provider == "github" and kind == "ping":
                return self._answer(provider, "ping", 200, status="pong")
            if not is_push:
                return self._answer(provider, "ignored", 200, status="ignored", event=kind)
            try:
                push = parse_github_push(body) if provider == "github" else parse_gitlab_push(body)
            except WebhookPayloadError as exc:
                return self._answer(provider, "bad_request", 400, error=str(exc))
            if push.branch != watcher.spec.branch:
                return self._answer(
                    provider,
                    "ignored",
                    200,
                    status="ignored",
                    ref=push.ref,
                    branch=watcher.spec.branch,
                )
            watcher.wake("webhook")
            log.info("webhook_push_received", after=push.after)
            return self._answer(
                provider, "accepted", 202, status="fetching", repository=watcher.spec.repository_id
            )

    def _answer(self, provider: str, outcome: str, code: int, **body: str) -> web.Response:
        self.metrics.webhooks.labels(provider, outcome).inc()
        if code >= 400:
            log.warning("webhook_refused", outcome=outcome, http_status=code, **body)
        return web.json_response(body, status=code)

    async def _reject(
        self, repository_id: str, provider: str, reason: str, remote_addr: str | None
    ) -> None:
        key = (repository_id, provider)
        now = time.monotonic()
        last = self._last_recorded.get(key)
        if last is not None and now - last < self.reject_record_window_s:
            return
        self._last_recorded[key] = now
        event = WebhookRejected(
            repository_id=repository_id,
            provider=provider,
            reason=reason,
            remote_addr=remote_addr or "",
        )
        stream = repository_stream(repository_id)
        for _ in range(MAX_CONFLICT_RETRIES):
            try:
                await self.store.append(
                    stream,
                    new_events([event], metadata=event_metadata()),
                    expected_version=ANY,
                )
            except ConcurrencyConflict:
                continue
            except Unavailable as exc:
                log.error("webhook_rejection_not_recorded", error=str(exc))
            return
