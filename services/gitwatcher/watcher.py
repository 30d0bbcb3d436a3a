"""One repository's poll loop: fetch, record what moved, trigger deployments.

Per repository, one poll loop (`RepositoryWatcher.run`): fetch on its
interval (or at once when a push webhook wakes it), compare the branch head
with the stream `repository-<id>`, and for every new commit, oldest first:

1. judge which registered applications it touches (their config files read
   at that commit) and append a `DeploymentTriggered` for each to
   `deployment-<id>`, where the id is derived from (application, commit) and
   the append expects NO_STREAM under a derived event id: a second replica's
   identical trigger is recognised as the same append and stored once;
2. then append `CommitObserved` with the stream version it read. That is the
   checkpoint: a replica that loses the race gets `ConcurrencyConflict`,
   reloads the stream, and finds the commit done. A crash between 1 and 2
   repeats step 1 on the next poll, which the derived ids make harmless.

The first observation of a repository records its head and triggers
nothing: history that predates Slipway is not replayed as deployments.

A fetch failure appends `RepositoryFetchFailed` when the repository starts
failing (or fails differently) and `RepositoryRecovered` when it works
again; in between, retries back off exponentially and append nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from opentelemetry import trace
from structlog.contextvars import bound_contextvars

from services.gitwatcher.appconfigs import AppConfigReader, AppConfigs
from services.gitwatcher.decider import (
    REPOSITORY,
    RegisteredApp,
    RepositoryDecision,
    RepositoryState,
    backoff_s,
    decide_commit_observed,
    decide_config_files,
    decide_fetch_failed,
    decide_fetch_succeeded,
    on_commit_triggers,
)
from services.gitwatcher.metrics import Metrics
from services.gitwatcher.triggering import MAX_CONFLICT_RETRIES, append_trigger, event_metadata
from shared.errors import ConcurrencyConflict, Unavailable
from shared.eventlog import EventStore
from shared.eventlog.execute import Folded, execute, load
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationConfigDiscovered,
    ApplicationConfigRemoved,
    CommitObserved,
)
from shared.events.streams import repository_stream
from shared.events.vocabulary import CommitSource
from shared.git import Commit, GitError, GitRepository, redact
from shared.logs import get_logger
from shared.redaction import COMMIT_MESSAGE_CHARS, clip

# `AppConfigReader`, `Metrics`, `append_trigger` and `event_metadata` live in their own
# modules (appconfigs, metrics, triggering); re-exported here, where callers look.
__all__ = [
    "MAX_CHANGED_PATHS_RECORDED",
    "MAX_CONFLICT_RETRIES",
    "AppConfigReader",
    "Metrics",
    "RepositoryWatcher",
    "WatchedRepository",
    "append_trigger",
    "event_metadata",
]

log = get_logger("slipway.gitwatcher")
_tracer = trace.get_tracer("slipway.gitwatcher")

MAX_CHANGED_PATHS_RECORDED: Final = 1000
"""A CommitObserved lists at most this many paths (triggering always sees them all)."""


@dataclass(frozen=True, slots=True)
class WatchedRepository:
    """One repository from the control config, as the gitwatcher watches it."""

    repository_id: str
    remote: str
    branch: str = "main"
    poll_interval_s: float = 60.0
    webhook_secret: str = ""


class RepositoryWatcher:
    """Polls one repository and turns its new commits into events."""

    def __init__(
        self,
        spec: WatchedRepository,
        *,
        store: EventStore,
        git: GitRepository,
        read_config: AppConfigReader,
        backoff_initial_s: float = 1.0,
        backoff_max_s: float = 300.0,
        metrics: Metrics | None = None,
        max_commits_per_poll: int = 50,
    ) -> None:
        self.spec = spec
        self.store = store
        self.git = git
        self.read_config = read_config
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.metrics = metrics or Metrics(None)
        self.max_commits_per_poll = max_commits_per_poll
        self.stream = repository_stream(spec.repository_id)
        self.attempts = 0
        """Consecutive failed fetches by this replica (0 while healthy)."""
        self.retry_in_s = 0.0
        self.polls = 0
        self.conflicts = 0
        """Appends that lost a race with another replica (and were decided again)."""
        self._state = RepositoryState()
        self._wake = asyncio.Event()
        self._wake_source = "poll"
        self._discovered_at = ""
        self.configs = AppConfigs(spec.repository_id, store=store, git=git, read_config=read_config)
        self._trouble = 0

    # The loop -------------------------------------------------------------------

    def wake(self, source: str = "webhook") -> None:
        """Poll now instead of at the end of the interval (a push webhook arrived)."""
        self._wake_source = source
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until `stop` is set; failures are recorded, backed off and retried, never fatal."""
        with bound_contextvars(repository_id=self.spec.repository_id):
            log.info("repository_watch_started", remote=redact(self.spec.remote))
            while not stop.is_set():
                delay = await self._poll_guarded(self._take_source())
                await self._idle(stop, delay)

    # run(stop)'s shape, for burst mode: one poll, so nothing to stop.
    async def run_once(self, stop: asyncio.Event) -> None:  # noqa: ARG002
        """Burst mode: one poll, then return."""
        with bound_contextvars(repository_id=self.spec.repository_id):
            await self._poll_guarded(self._take_source())

    async def _poll_guarded(self, source: str) -> float:
        """Poll once; how long to wait before the next poll."""
        try:
            await self.poll(source)
        except Unavailable as exc:
            # The database, or git after a good fetch: not the repository's failure.
            self._trouble += 1
            delay = self._backoff(self._trouble)
            log.warning("repository_poll_failed", error=str(exc), retry_in_s=delay)
            return delay
        # The top of the poll loop: log once and keep watching (the service keeps running).
        except Exception:
            self._trouble += 1
            delay = self._backoff(self._trouble)
            log.exception("repository_poll_crashed", retry_in_s=delay)
            return delay
        self._trouble = 0
        return self.retry_in_s if self.attempts else self.spec.poll_interval_s

    def _backoff(self, attempt: int) -> float:
        return backoff_s(attempt, initial_s=self.backoff_initial_s, max_s=self.backoff_max_s)

    def _take_source(self) -> str:
        if self._wake.is_set():
            self._wake.clear()
            source, self._wake_source = self._wake_source, "poll"
            return source
        return "poll"

    async def _idle(self, stop: asyncio.Event, delay: float) -> None:
        if self._wake.is_set() or stop.is_set():
            return
        waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            await asyncio.gather(*waiters, return_exceptions=True)

    # One poll -------------------------------------------------------------------

    async def poll(self, source: str = "poll") -> None:
        """Fetch, record success or failure, observe new commits, discover new configs."""
        self.polls += 1
        try:
            await self.git.fetch()
            head = await self._branch_head()
        except GitError as exc:
            await self._fetch_failed(exc)
            return
        await self._fetch_succeeded()
        await self._observe(head, source)
        if self._discovered_at != head:
            await self._discover(head)
            self._discovered_at = head
        await self.configs.observe_labels(head)

    async def head_for_sync(self) -> str:
        """The branch head to deploy on command: fetched now, else the last one observed."""
        try:
            await self.git.fetch()
            return await self._branch_head()
        except GitError as exc:
            state = await self._load()
            if not state.head:
                raise
            log.warning("sync_uses_last_observed_head", head=state.head, error=exc.reason)
            return state.head

    async def _branch_head(self) -> str:
        try:
            return await self.git.branch_head(self.spec.branch)
        except GitError as exc:
            if exc.kind != "not_found":
                raise
            raise GitError(
                f"branch {self.spec.branch!r} is not on the remote",
                kind="not_found",
                stderr_tail=f"branch {self.spec.branch!r} is not on the remote",
            ) from exc

    # The repository stream --------------------------------------------------------

    async def _load(self) -> RepositoryState:
        """The stream's state, reading only what was appended since the last load."""
        return self._keep(
            (await load(self.store, self.stream, REPOSITORY, start=self._kept())).state
        )

    def _kept(self) -> Folded[RepositoryState]:
        return Folded(self._state, self._state.version)

    def _keep(self, state: RepositoryState) -> RepositoryState:
        # The poll loop and a sync request may load concurrently: never go back.
        if state.version >= self._state.version:
            self._state = state
        return state

    async def _append_decided(self, decide: RepositoryDecision) -> list[Event]:
        """Decide on the current state and append at its version; on a conflict, again."""

        def conflicted(_: ConcurrencyConflict) -> None:
            # Another replica appended first: `execute` reloads and decides again.
            self.conflicts += 1
            self.metrics.conflicts.labels(self.spec.repository_id).inc()

        try:
            done = await execute(
                self.store,
                self.stream,
                REPOSITORY,
                decide,
                event_metadata(),
                start=self._kept(),
                max_attempts=MAX_CONFLICT_RETRIES,
                on_conflict=conflicted,
            )
        except ConcurrencyConflict as exc:
            raise Unavailable(
                f"{self.stream}: still conflicting after {MAX_CONFLICT_RETRIES} tries"
            ) from exc
        self._keep(done.after.state)
        return list(done.events)

    # Failure and recovery ---------------------------------------------------------

    async def _fetch_failed(self, exc: GitError) -> None:
        self.attempts += 1
        self.retry_in_s = self._backoff(self.attempts)
        self.metrics.fetch_failures.labels(self.spec.repository_id, exc.kind).inc()
        log.warning(
            "repository_fetch_failed",
            kind=exc.kind,
            reason=exc.reason,
            attempt=self.attempts,
            retry_in_s=self.retry_in_s,
        )
        attempt, retry_in_s = self.attempts, self.retry_in_s
        await self._append_decided(
            lambda state: decide_fetch_failed(
                state,
                repository_id=self.spec.repository_id,
                kind=exc.kind,
                reason=exc.reason,
                attempt=attempt,
                retry_in_s=retry_in_s,
            )
        )

    async def _fetch_succeeded(self) -> None:
        attempts = self.attempts
        recovered = await self._append_decided(
            lambda state: decide_fetch_succeeded(
                state, repository_id=self.spec.repository_id, attempts=attempts
            )
        )
        self.attempts, self.retry_in_s = 0, 0.0
        if recovered:
            log.info("repository_recovered", after_attempts=max(attempts, 1))

    # Commits ----------------------------------------------------------------------

    async def _observe(self, head: str, source: str) -> None:
        """Record every commit up to `head` (triggers first, then the checkpoint)."""
        refetched = False
        for _ in range(MAX_CONFLICT_RETRIES):
            state = await self._load()
            if state.head == head:
                return
            if not state.head:
                await self._observe_first(head, source)
                continue
            if not refetched and not await self._descends(state.head, head):
                # Not a fast-forward of what the stream holds: either the branch was
                # reset, or another replica fetched later than we did and recorded a
                # newer head. Fetch again before believing the branch went back.
                refetched = True
                await self.git.fetch()
                head = await self._branch_head()
                continue
            apps = await self.configs.registered()
            previous = state.head
            for commit, changed in await self._new_commits(previous, head):
                if not await self._observe_commit(commit, changed, previous, source, apps):
                    break  # another replica is ahead: reload and continue from there
                previous = commit.hash
        raise Unavailable(f"{self.stream}: could not catch up with {head}")

    async def _descends(self, ancestor: str, head: str) -> bool:
        """Whether `head` is `ancestor` or comes after it (False if `ancestor` is unknown here)."""
        try:
            return await self.git.is_ancestor(ancestor, head)
        except GitError as exc:
            if exc.kind == "not_found":
                return False
            raise

    async def _observe_first(self, head: str, source: str) -> None:
        commit = await self.git.commit(head)
        observed = self._observed(commit, (), "", source)
        if await self._append_decided(lambda state: decide_commit_observed(state, observed)):
            self.metrics.commits.labels(self.spec.repository_id).inc()
            log.info(
                "repository_first_observed",
                head=head,
                note="history before the first observation triggers nothing",
            )

    async def _new_commits(self, last: str, head: str) -> list[tuple[Commit, list[str]]]:
        """Each new first-parent commit with the paths it changed, oldest first.

        When there are none (the branch was reset to an older commit, or
        rewritten so `last` is gone) or too many (a bulk import), the head
        alone is judged against `last`, as PipeCD judges every push.
        """
        try:
            commits = await self.git.log(last, head, max_count=self.max_commits_per_poll + 1)
        except GitError as exc:
            if exc.kind != "not_found":
                raise
            commits = []
        if commits and len(commits) <= self.max_commits_per_poll:
            return [
                (commit, await self.git.changed_paths(commit.parent or None, commit.hash))
                for commit in commits
            ]
        if commits:
            log.warning(
                "commits_coalesced",
                limit=self.max_commits_per_poll,
                head=head,
                note="too many new commits: the head alone is judged",
            )
        commit = await self.git.commit(head)
        try:
            changed = await self.git.changed_paths(last, head)
        except GitError as exc:
            if exc.kind != "not_found":
                raise
            changed = await self.git.changed_paths(commit.parent or None, head)
        return [(commit, changed)]

    def _observed(
        self, commit: Commit, changed: Sequence[str], previous: str, source: str
    ) -> CommitObserved:
        return CommitObserved(
            repository_id=self.spec.repository_id,
            branch=self.spec.branch,
            commit_hash=commit.hash,
            previous_hash=previous,
            author=commit.author,
            message=clip(commit.message, COMMIT_MESSAGE_CHARS),
            committed_at=commit.committed_at,
            changed_paths=tuple(changed[:MAX_CHANGED_PATHS_RECORDED]),
            source=CommitSource.WEBHOOK if source == CommitSource.WEBHOOK else CommitSource.POLL,
        )

    async def _observe_commit(
        self,
        commit: Commit,
        changed: list[str],
        previous: str,
        source: str,
        apps: Sequence[RegisteredApp],
    ) -> bool:
        """Trigger what `commit` touches, then record it; False if another replica was first."""
        observed = self._observed(commit, changed, previous, source)
        with _tracer.start_as_current_span(
            "gitwatcher observe commit",
            attributes={
                "slipway.repository_id": self.spec.repository_id,
                "slipway.commit_hash": commit.hash,
            },
        ):
            judged = await self.configs.with_configs(commit.hash, apps)
            triggers = on_commit_triggers(observed, judged, changed)
            # All at once: each opens its own deployment's stream, and the store commits
            # the appends in flight together (group commit), so a commit touching 50
            # applications costs a few transactions, not 50 one after the other.
            appended = await asyncio.gather(
                *(
                    append_trigger(
                        self.store, trigger, event_metadata(correlation_id=trigger.deployment_id)
                    )
                    for trigger in triggers
                ),
                return_exceptions=True,
            )
            # A failure (the database away) fails the commit, as before: it is observed again
            # at the next poll, and the derived ids store each trigger once.
            if failed := next((r for r in appended if isinstance(r, BaseException)), None):
                raise failed
            for trigger, done in zip(triggers, appended, strict=True):
                if done:
                    self.metrics.triggers.labels("on_commit").inc()
                    log.info(
                        "deployment_triggered",
                        trigger="on_commit",
                        deployment_id=trigger.deployment_id,
                        application_id=trigger.application_id,
                        commit_hash=commit.hash,
                        strategy=trigger.strategy,
                    )
            recorded = await self._append_decided(
                lambda state: decide_commit_observed(state, observed)
            )
        if recorded:
            self.metrics.commits.labels(self.spec.repository_id).inc()
            log.info(
                "commit_observed", commit_hash=commit.hash, changed=len(changed), source=source
            )
        return bool(recorded)

    # Discovery ---------------------------------------------------------------------

    async def _discover(self, head: str) -> None:
        """Announce config files at `head` that no registered application points at, and
        record those announced before that `head` no longer holds."""
        found, removed = await self.configs.config_files(head, await self._load())
        if not found and not removed:
            return
        recorded = await self._append_decided(
            lambda s: decide_config_files(s, head=head, found=found, removed=removed)
        )
        for event in recorded:
            assert isinstance(event, ApplicationConfigDiscovered | ApplicationConfigRemoved)
            log.info(
                "application_config_discovered"
                if isinstance(event, ApplicationConfigDiscovered)
                else "application_config_removed",
                path=event.path,
                config_filename=event.config_filename,
            )
