"""The event watcher: a registered event's value written into the config repositories.

A durable consumer (`gitwatcher-events`) takes each `EventRegistered` once,
whichever gitwatcher replica gets it. For every watched repository, under a
per-repository lock in this process:

1. fetch, and take the branch head;
2. read the event's stream (`eventkey-…`): a later registration of the same
   name and labels makes this one `OUTDATED` (never write an older value over
   a newer one: the log's order decides, not clocks); an `EventHandled` of
   this repository already there means done;
3. a commit of the recent history carrying `Slipway-Event-Id: <id>` means a
   crash came between our push and our append: record that commit;
4. the watchers at the head (applications' `eventWatcher`, `.pipe/`
   EventWatcher files) that match; none: `NOT_WATCHED`;
5. each file to write must be a plain file inside the repository (no `..`
   out, no symlink on the way); the commits are made on the head
   (`eventplan.plan_commits`) and pushed, never forced. A remote that moved on
   meanwhile (another replica, a person) refuses the push, and the whole
   round starts again from 1, up to `push_attempts` times; then the delivery
   is retried later (`Unavailable`), so no event is lost;
6. `EventHandled` is appended in the consumer's transaction with the commit.

A file or field that is wrong (absent, not a scalar, a pattern that matches
nothing, a path out of the repository, a `regex` still matching after its
time limit) is `FAILURE` with the reason, and nothing of that event is
committed in that repository. The edits run in a worker thread: a file being
edited never holds the event loop. `makePullRequest`
watchers push a branch of their own and open a pull request when the
repository has `pullRequest` settings.
"""

from __future__ import annotations

import asyncio
import posixpath
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg
from nats.js import JetStreamContext
from structlog.contextvars import bound_contextvars

from services.gitwatcher.eventplan import (
    EVENT_TRAILER,
    PlannedCommit,
    Watcher,
    matching,
    paths_of,
    plan_commits,
)
from services.gitwatcher.metrics import Metrics
from services.gitwatcher.pullrequests import PullRequestError, PullRequests
from services.gitwatcher.replacements import REGEX_TIME_LIMIT_S, ReplacementError
from services.gitwatcher.triggering import event_metadata
from shared.consumer import EventConsumer
from shared.db import CONNECTION_ERRORS
from shared.errors import ConfigError, IdempotencyViolation, Unavailable
from shared.eventlog import EventStore
from shared.events.base import NewEvent, RecordedEvent
from shared.events.catalog import EventHandled, EventRegistered
from shared.events.streams import event_key_stream
from shared.git import GitRepository
from shared.git.commits import commit_files, file_modes, push
from shared.logs import get_logger
from shared.subjects import Subjects
from shared.triggers import PathPattern

__all__ = ["EventRepository", "EventWatcher"]

log = get_logger("slipway.gitwatcher.events")

DEFAULT_PUSH_ATTEMPTS: Final = 5
_RECENT_COMMITS: Final = 100
_PLAIN: Final = frozenset({"100644", "100755"})
_HANDLED_IDS: Final = uuid.UUID("0e7c6a51-1b7f-4a0e-9d43-5b1f2a8c9e21")
_APPS: Final = """
SELECT application_id, path, config_filename FROM applications
WHERE repository_id = $1 AND NOT disabled ORDER BY application_id
"""

AppWatchersReader = Callable[[str, str, str, bytes], list[Watcher]]
"""(application id, its directory, its config path, content) → its watchers; ConfigError."""
PipeWatchersReader = Callable[[str, bytes, str], list[Watcher]]
"""(`.pipe/` path, content, commit message) → its watchers; ConfigError."""


@dataclass
class EventRepository:
    """What the event watcher knows of one watched repository."""

    repository_id: str
    git: GitRepository
    branch: str
    commit_message: str = ""
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    pull_requests: PullRequests | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class EventWatcher:
    """Writes registered events' values into every watched repository whose watchers match."""

    def __init__(
        self,
        *,
        store: EventStore,
        repositories: Sequence[EventRepository],
        read_app_watchers: AppWatchersReader,
        read_pipe_watchers: PipeWatchersReader,
        push_attempts: int = DEFAULT_PUSH_ATTEMPTS,
        before_push: Callable[[EventRepository], Awaitable[None]] | None = None,
        metrics: Metrics | None = None,
        regex_time_limit_s: float = REGEX_TIME_LIMIT_S,
    ) -> None:
        self.store = store
        self.repositories = list(repositories)
        self.read_app_watchers = read_app_watchers
        self.read_pipe_watchers = read_pipe_watchers
        self.push_attempts = push_attempts
        self.before_push = before_push
        """Called just before each push (tests use it to move the remote on)."""
        self.metrics = metrics if metrics is not None else Metrics(None)
        self.regex_time_limit_s = regex_time_limit_s
        """CPU seconds a `regex` replacement (a repository's pattern) may match for."""

    def consumer(
        self,
        *,
        js: JetStreamContext,
        subjects: Subjects,
        name: str = "gitwatcher-events",
        **kw: Any,
    ) -> EventConsumer:
        """The durable consumer of registered events for this watcher."""
        return EventConsumer(
            name=name,
            js=js,
            pool=self.store.pool,
            registry=self.store.registry,
            subjects=subjects,
            handler=self.handle,
            handles=(EventRegistered,),
            # The handler fetches and pushes: one event per transaction keeps it short.
            events_per_transaction=1,
            **kw,
        )

    async def handle(self, recorded: RecordedEvent, conn: asyncpg.Connection) -> None:
        """Write one registration into every watched repository, inside the consumer's
        transaction (the `EventHandled`s commit with the inbox entry)."""
        registered = recorded.event
        if not isinstance(registered, EventRegistered):
            return
        with bound_contextvars(event_id=registered.event_id, event_name=registered.name):
            for repository in self.repositories:
                async with repository.lock:
                    handled = await self._handle_in(repository, registered, conn)
                if handled is not None:
                    await self._record(recorded, registered, handled, conn)
                    self.metrics.events_handled.labels(handled.repository_id, handled.status).inc()

    async def _handle_in(
        self, repository: EventRepository, registered: EventRegistered, conn: asyncpg.Connection
    ) -> EventHandled | None:
        stream = event_key_stream(registered.name, registered.labels)
        for attempt in range(1, self.push_attempts + 1):
            await repository.git.fetch()
            head = await repository.git.branch_head(repository.branch)
            history = await self.store.read_stream(stream, conn=conn)
            if _handled_here(history, registered.event_id, repository.repository_id):
                return None
            if newer := _newer_registration(history, registered.event_id):
                return _outcome(
                    registered,
                    repository,
                    "OUTDATED",
                    f"a newer event {newer} has been registered (the newest value is written)",
                )
            if done := await _pushed_before(repository, head, registered.event_id):
                return _outcome(
                    registered, repository, "SUCCESS", "pushed before a restart", commit=done
                )
            watchers = matching(
                await self._watchers(repository, head, conn), registered.name, registered.labels
            )
            if not watchers:
                return _outcome(registered, repository, "NOT_WATCHED", "no watcher matches")
            origins = tuple(w.origin for w in watchers)
            try:
                planned = await self._plan(repository, head, watchers, registered)
            except ReplacementError as exc:
                log.warning("event_write_refused", error=str(exc))
                return _outcome(registered, repository, "FAILURE", str(exc), watchers=origins)
            if not planned:
                return _outcome(
                    registered,
                    repository,
                    "NO_CHANGE",
                    "the files hold the value already",
                    watchers=origins,
                )
            result = await self._commit_and_push(repository, head, planned)
            if result is None:
                log.info("event_push_refused", attempt=attempt, head=head)
                self.metrics.push_refusals.labels(repository.repository_id).inc()
                continue
            commit, branch, url = result
            files = tuple(sorted({f for p in planned for f in p.files}))
            log.info("event_written", commit_hash=commit, branch=branch, files=files)
            refused = branch != repository.branch and repository.pull_requests and not url
            return _outcome(
                registered,
                repository,
                "SUCCESS",
                f"updated {len(files)} file{'s' if len(files) != 1 else ''}"
                + (
                    "; the pull request was refused (the gitwatcher's log says why)"
                    if refused
                    else ""
                ),
                commit=commit,
                branch=branch,
                files=files,
                watchers=origins,
                url=url,
            )
        raise Unavailable(
            f"{repository.repository_id}: the push was refused {self.push_attempts} times "
            "(the branch keeps moving); retrying later"
        )

    async def _watchers(
        self, repository: EventRepository, head: str, conn: asyncpg.Connection
    ) -> list[Watcher]:
        try:
            apps = await conn.fetch(_APPS, repository.repository_id)
        except asyncpg.UndefinedTableError as exc:
            raise Unavailable("the applications view does not exist yet") from exc
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read applications: {exc}") from exc
        configs = {
            app["application_id"]: (
                _directory(app["path"]),
                posixpath.join(_directory(app["path"]), app["config_filename"]),
            )
            for app in apps
        }
        contents = await repository.git.read_files(head, [path for _, path in configs.values()])
        watchers: list[Watcher] = []
        for application_id, (directory, path) in configs.items():
            content = contents[path]
            if content is None:
                continue
            try:
                watchers += self.read_app_watchers(application_id, directory, path, content)
            except ConfigError as exc:
                log.warning("event_watcher_config_invalid", path=path, error=str(exc))
        pipe_files = [
            path
            for path in await repository.git.list_tree(head, ".pipe")
            if path.endswith((".yaml", ".yml")) and _selected(repository, path)
        ]
        for path, content in (await repository.git.read_files(head, pipe_files)).items():
            if content is None:
                continue
            try:
                watchers += self.read_pipe_watchers(path, content, repository.commit_message)
            except ConfigError as exc:
                log.warning("event_watcher_config_invalid", path=path, error=str(exc))
        return watchers

    async def _plan(
        self,
        repository: EventRepository,
        head: str,
        watchers: list[Watcher],
        registered: EventRegistered,
    ) -> list[PlannedCommit]:
        paths = sorted({path for watcher in watchers for path in paths_of(watcher)})
        for path in paths:
            mode, parents = await file_modes(repository.git, head, path)
            if any(parent != "040000" for parent in parents):
                raise ReplacementError(f"{path}: a directory on its way is a symlink or absent")
            if mode and mode not in _PLAIN:
                raise ReplacementError(f"{path}: not a plain file (a symlink or a submodule)")
        contents = await repository.git.read_files(head, paths)
        return await asyncio.to_thread(
            plan_commits,
            watchers,
            contents,
            event_id=registered.event_id,
            event_name=registered.name,
            value=registered.data,
            trailers=registered.contexts,
            trigger_commit=registered.commit_hash,
            regex_time_limit_s=self.regex_time_limit_s,
        )

    async def _commit_and_push(
        self, repository: EventRepository, head: str, planned: list[PlannedCommit]
    ) -> tuple[str, str, str] | None:
        """(the last commit, its branch, a pull request's URL); None if the push was refused."""
        tip = head
        for commit in planned:
            if not commit.branch:
                tip = await commit_files(
                    repository.git, parent=tip, changes=commit.changes, message=commit.message
                )
        branch, url, last = repository.branch, "", tip
        if tip != head:
            if self.before_push is not None:
                await self.before_push(repository)
            if not await push(repository.git, tip, repository.branch):
                return None
        for commit in planned:
            if commit.branch:
                last = await commit_files(
                    repository.git, parent=head, changes=commit.changes, message=commit.message
                )
                # Refused: a previous attempt pushed this branch already; it stays as it is.
                await push(repository.git, last, commit.branch)
                branch = commit.branch
                if repository.pull_requests is not None:
                    try:
                        url = await repository.pull_requests.open(
                            branch=commit.branch,
                            base=repository.branch,
                            title=commit.message.split("\n", 1)[0],
                            body=commit.message,
                        )
                    except PullRequestError as exc:
                        # The branch is pushed: say why there is no pull request, don't retry.
                        log.warning("event_pull_request_refused", error=str(exc))
                        url = ""
        return last, branch, url

    async def _record(
        self,
        recorded: RecordedEvent,
        registered: EventRegistered,
        handled: EventHandled,
        conn: asyncpg.Connection,
    ) -> None:
        event_id = uuid.uuid5(_HANDLED_IDS, f"{registered.event_id}\0{handled.repository_id}")
        metadata = event_metadata(
            causation_id=str(recorded.event_id), correlation_id=recorded.metadata.correlation_id
        )
        try:
            await self.store.append(
                event_key_stream(registered.name, registered.labels),
                [NewEvent(event=handled, event_id=event_id, metadata=metadata)],
                expected_version=None,
                conn=conn,
            )
        except IdempotencyViolation as exc:  # recorded before, differently: keep the first
            log.warning("event_outcome_recorded_before", error=str(exc))


def _outcome(
    registered: EventRegistered,
    repository: EventRepository,
    status: str,
    description: str,
    *,
    commit: str = "",
    branch: str = "",
    files: tuple[str, ...] = (),
    watchers: tuple[str, ...] = (),
    url: str = "",
) -> EventHandled:
    return EventHandled(
        event_id=registered.event_id,
        repository_id=repository.repository_id,
        status=status,
        description=description[:2000],
        commit_hash=commit,
        branch=branch or (repository.branch if commit else ""),
        files=files,
        watchers=watchers,
        pull_request_url=url,
    )


def _handled_here(history: Sequence[RecordedEvent], event_id: str, repository_id: str) -> bool:
    return any(
        isinstance(r.event, EventHandled)
        and r.event.event_id == event_id
        and r.event.repository_id == repository_id
        for r in history
    )


def _newer_registration(history: Sequence[RecordedEvent], event_id: str) -> str:
    """The id of the newest registration after `event_id` in its stream ("" if none)."""
    seen, newest = False, ""
    for recorded in history:
        if isinstance(recorded.event, EventRegistered):
            if recorded.event.event_id == event_id:
                seen = True
            elif seen:
                newest = recorded.event.event_id
    return newest


async def _pushed_before(repository: EventRepository, head: str, event_id: str) -> str:
    trailer = f"{EVENT_TRAILER}: {event_id}"
    for commit in reversed(await repository.git.log(None, head, max_count=_RECENT_COMMITS)):
        if trailer in commit.message.splitlines():
            return commit.hash
    return ""


def _directory(path: str) -> str:
    cleaned = posixpath.normpath(path.strip("/")) if path.strip("/") else ""
    return "" if cleaned == "." else cleaned


def _selected(repository: EventRepository, path: str) -> bool:
    """PipeCD's `includes` / `excludes` of `.pipe/` files (names relative to `.pipe/`)."""
    name = path.removeprefix(".pipe/")
    if repository.includes and not repository.excludes:
        return any(PathPattern.parse(p).matches(name) for p in repository.includes)
    return not any(PathPattern.parse(p).matches(name) for p in repository.excludes)
