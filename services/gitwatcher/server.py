"""The push-webhook endpoint: verify GitHub and GitLab deliveries, record refusals, wake a poll."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import Final

from aiohttp import web
from structlog.contextvars import bound_contextvars

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
from shared.eventlog.execute import retry_on_conflict
from shared.events import vocabulary
from shared.events.catalog import WebhookRejected
from shared.events.streams import repository_stream
from shared.http import BodyTooLarge, HttpServer, read_capped
from shared.logs import get_logger
from shared.redaction import REASON_CHARS, clip

__all__ = ["DEFAULT_MAX_BODY_BYTES", "WebhookServer"]

log = get_logger("slipway.gitwatcher.webhooks")

DEFAULT_MAX_BODY_BYTES: Final = 1024 * 1024
"""A push payload is a few KiB; GitHub's own cap (25 MB) is far more than anyone needs."""


class WebhookServer(HttpServer):
    """`POST /webhooks/github` and `/webhooks/gitlab`: verify, record refusals, wake the poll.

    The repository is the `?repo=<id>` query parameter, or else the one whose
    remote matches a URL in the payload. Answers: 202 (fetching now), 200
    (genuine but nothing to do: a ping, another branch, another event), 400
    (not a push payload), 401 (refused, and recorded as `WebhookRejected`
    when the repository is known: named, or the only one), 404 (no such
    repository), 413 (a body over `max_body_bytes`, refused before more of it
    is read). The signature is verified before the body is parsed. Refusals
    are recorded at most once per repository and provider every
    `reject_record_window_s`, so a flood of
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
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    ) -> None:
        super().__init__(host=host, port=port)
        self.max_body_bytes = max_body_bytes
        self.watchers = watchers
        self.store = store
        self.metrics = metrics or Metrics(None)
        self.reject_record_window_s = reject_record_window_s
        self._last_recorded: dict[tuple[str, str], float] = {}

    async def start(self) -> None:
        """Serve the GitHub and GitLab webhook routes."""
        app = web.Application(client_max_size=self.max_body_bytes)
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
        try:
            body = await read_capped(request, self.max_body_bytes)
        except BodyTooLarge as exc:
            return self._answer(provider, "too_large", 413, error=str(exc))
        repository_id = request.query.get("repo")
        if repository_id is None:
            candidates = list(self.watchers.values())
        elif (named := self.watchers.get(repository_id)) is not None:
            candidates = [named]
        else:
            return self._answer(provider, "unknown_repository", 404, error="no such repository")
        if not candidates:
            return self._answer(provider, "unknown_repository", 404, error="no such repository")
        # The signature is checked before a byte of the body is parsed: an unsigned
        # delivery never reaches the JSON decoder. Without `?repo=`, every watched
        # repository's secret is tried (one HMAC each); the payload then only picks
        # among the repositories whose secret signed it.
        problems = {
            w.spec.repository_id: self._verify(provider, w, body, request) for w in candidates
        }
        genuine = {rid: self.watchers[rid] for rid, problem in problems.items() if problem is None}
        if not genuine:
            return await self._refuse(provider, candidates, problems, request.remote)
        if repository_id is None and len(genuine) > 1:
            try:
                urls = payload_urls(provider, body)
                ref = pushed_ref(body)
            except WebhookPayloadError as exc:
                return self._answer(provider, "bad_request", 400, error=str(exc))
            remotes = {rid: (w.spec.remote, w.spec.branch) for rid, w in genuine.items()}
            repository_id = match_repository(urls, remotes, ref.removeprefix("refs/heads/"))
        else:
            repository_id = next(iter(genuine))
        watcher = genuine.get(repository_id or "")
        if watcher is None:
            return self._answer(provider, "unknown_repository", 404, error="no such repository")
        with bound_contextvars(repository_id=watcher.spec.repository_id, provider=provider):
            by_query = request.query.get("repo") is not None
            return await self._genuine(provider, watcher, body, request, named=by_query)

    def _verify(
        self, provider: Provider, watcher: RepositoryWatcher, body: bytes, request: web.Request
    ) -> str | None:
        secret = watcher.spec.webhook_secret
        if provider == "github":
            return verify_github(secret, body, request.headers.get("X-Hub-Signature-256"))
        return verify_gitlab(secret, request.headers.get("X-Gitlab-Token"))

    async def _refuse(
        self,
        provider: Provider,
        candidates: list[RepositoryWatcher],
        problems: Mapping[str, str | None],
        remote_addr: str | None,
    ) -> web.Response:
        """401; recorded against the repository when it is known (named, or the only one)."""
        if len(candidates) == 1:
            target = candidates[0].spec.repository_id
            problem = problems[target] or ""
            with bound_contextvars(repository_id=target, provider=provider):
                await self._reject(target, provider, problem, remote_addr)
                return self._answer(provider, "rejected", 401, error=problem)
        problem = "the delivery is not signed with the secret of any watched repository"
        return self._answer(provider, "rejected", 401, error=problem)

    async def _genuine(
        self,
        provider: Provider,
        watcher: RepositoryWatcher,
        body: bytes,
        request: web.Request,
        *,
        named: bool,
    ) -> web.Response:
        """A verified delivery: a ping, another event, or a push that wakes the poll."""
        if provider == "github":
            kind = request.headers.get("X-GitHub-Event", "")
            is_push = kind == "push"
        else:
            kind = request.headers.get("X-Gitlab-Event", "")
            is_push = kind == "Push Hook"
        if provider == "github" and kind == "ping":
            return self._answer(provider, "ping", 200, status="pong")
        if not is_push:
            return self._answer(provider, "ignored", 200, status="ignored", event=kind)
        try:
            push = parse_github_push(body) if provider == "github" else parse_gitlab_push(body)
        except WebhookPayloadError as exc:
            return self._answer(provider, "bad_request", 400, error=str(exc))
        spec = watcher.spec
        if not named and not match_repository(
            push.repository_urls, {spec.repository_id: (spec.remote, spec.branch)}
        ):
            # Signed with this repository's secret, but about another repository.
            return self._answer(provider, "unknown_repository", 404, error="no such repository")
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
            provider=vocabulary.WebhookProvider(provider),
            reason=clip(reason, REASON_CHARS),
            remote_addr=remote_addr or "",
        )
        stream = repository_stream(repository_id)

        async def record() -> None:
            # At the end, whatever the version; an append from an older transaction than
            # the stream's head conflicts all the same, and is tried again.
            await self.store.append(
                stream, new_events([event], metadata=event_metadata()), expected_version=ANY
            )

        try:
            await retry_on_conflict(record, max_attempts=MAX_CONFLICT_RETRIES)
        except (ConcurrencyConflict, Unavailable) as exc:
            log.error("webhook_rejection_not_recorded", error=str(exc))
