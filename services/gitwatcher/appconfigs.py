"""A repository's registered applications and what their config files say at a commit.

The applications come from the `applications` read model (the projector's);
their config files are read from git and parsed once per content. From them
the watcher learns each application's trigger settings (which commits touch
it) and records the labels a config declares (`ApplicationConfigObserved` on
`appconfig-<id>`, by the `CONFIG_LABELS` decider, when they change).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Final

import asyncpg

from services.gitwatcher.decider import (
    CONFIG_LABELS,
    AppConfigFacts,
    RegisteredApp,
    RepositoryState,
    TriggerConfig,
    removed_configs,
    undiscovered_configs,
)
from services.gitwatcher.triggering import MAX_CONFLICT_RETRIES, event_metadata
from shared.db import CONNECTION_ERRORS
from shared.errors import ConcurrencyConflict, ConfigError, Unavailable
from shared.eventlog import EventStore
from shared.eventlog.execute import execute
from shared.events.catalog import (
    ApplicationConfigDiscovered,
    ApplicationConfigObserved,
    ApplicationConfigRemoved,
)
from shared.events.streams import application_config_stream
from shared.git import GitRepository
from shared.labels import LABEL_RULE, usable_labels
from shared.logs import get_logger

__all__ = ["AppConfigReader", "AppConfigs"]

log = get_logger("slipway.gitwatcher")

_APPS_OF_REPOSITORY = """
SELECT application_id, name, path, config_filename, disabled
FROM applications WHERE repository_id = $1
"""

AppConfigReader = Callable[[str, bytes], AppConfigFacts]
"""Parse an application config file (path in the repository, content); raises ConfigError."""


class AppConfigs:
    """One repository's registered applications and their config files."""

    def __init__(
        self,
        repository_id: str,
        *,
        store: EventStore,
        git: GitRepository,
        read_config: AppConfigReader,
    ) -> None:
        self.repository_id = repository_id
        self.store = store
        self.git = git
        self.read_config = read_config
        self._labels_read: dict[tuple[str, str], str] = {}
        """(application, config path) → the head whose config labels were last read."""
        self._files_at: tuple[str, dict[str, bytes | None]] = ("", {})
        """The commit whose config files were read last, and them: a new head's configs are
        read to judge its commit and again for the labels (a commit's files never change)."""

    async def registered(self) -> list[RegisteredApp]:
        """The applications registered in this repository (an error until the view exists)."""
        try:
            rows = await self.store.pool.fetch(_APPS_OF_REPOSITORY, self.repository_id)
        except asyncpg.UndefinedTableError as exc:
            # Without the view we cannot tell which apps a commit touches; going on
            # would record commits whose triggers are lost. Wait for the projector.
            raise Unavailable(
                "the applications view does not exist yet (projector not run)"
            ) from exc
        except CONNECTION_ERRORS as exc:
            raise Unavailable(f"read applications: {exc}") from exc
        return [
            RegisteredApp(
                application_id=row["application_id"],
                name=row["name"],
                path=row["path"],
                config_filename=row["config_filename"],
                disabled=row["disabled"],
            )
            for row in rows
        ]

    async def with_configs(self, commit: str, apps: Sequence[RegisteredApp]) -> list[RegisteredApp]:
        """`apps` with the trigger settings of their config files at `commit`."""
        enabled = [app for app in apps if not app.disabled]
        contents = await self._read_files(commit, [app.config_path for app in enabled])
        judged = []
        for app in enabled:
            content = contents[app.config_path]
            trigger: TriggerConfig | None = None
            if content is not None:
                facts = self.parse(app.config_path, content)
                # A broken config still triggers by directory, so the planner
                # reports the problem on the deployment instead of silence here.
                trigger = facts.trigger if facts is not None else TriggerConfig()
            judged.append(
                RegisteredApp(
                    application_id=app.application_id,
                    name=app.name,
                    path=app.path,
                    config_filename=app.config_filename,
                    trigger=trigger,
                )
            )
        return judged

    async def _read_files(self, commit: str, paths: Sequence[str]) -> dict[str, bytes | None]:
        """`git.read_files`, answered from the last commit's read when it holds every path."""
        kept_commit, kept = self._files_at
        if commit == kept_commit and all(path in kept for path in paths):
            return {path: kept[path] for path in paths}
        contents = await self.git.read_files(commit, paths)
        if _FULL_HASH.fullmatch(commit):
            self._files_at = (commit, contents)
        return contents

    def parse(self, path: str, content: bytes) -> AppConfigFacts | None:
        """An app config's facts, parsed once per path and content; None when invalid."""
        result = _parse_cached(self.read_config, path, content)
        if isinstance(result, str):
            log.warning("application_config_invalid", path=path, error=result)
            return None
        return result

    async def observe_labels(self, head: str) -> None:
        """Record the `spec.labels` of each registered application's config at `head` that
        changed (or were never recorded): read once per application and head.

        A config that is absent or does not parse leaves the recorded labels as they are
        (the planner reports a broken config on the deployment); labels that break the
        label rule (`shared.labels`) are left out and logged.
        """
        apps = await self.registered()
        due = [app for app in apps if self._labels_read.get(_label_key(app)) != head]
        if not due:
            return
        contents = await self._read_files(head, sorted({app.config_path for app in due}))
        observed = []
        for app in due:
            content = contents[app.config_path]
            facts = self.parse(app.config_path, content) if content is not None else None
            if facts is None:
                continue
            # A label from a repository is as untrusted as one from the API: the same rule.
            labels, refused = usable_labels(facts.labels)
            if refused:
                log.warning(
                    "application_config_labels_refused",
                    path=app.config_path,
                    keys=", ".join(refused[:10]),
                    rule=LABEL_RULE,
                )
            observed.append(
                ApplicationConfigObserved(
                    repository_id=self.repository_id,
                    application_id=app.application_id,
                    commit_hash=head,
                    labels=labels,
                    mentions=facts.mentions,
                    description=facts.description,
                )
            )
        for event in await self._changed(observed):
            if await self._record_config(event):
                log.info(
                    "application_config_labels_observed",
                    application_id=event.application_id,
                    labels=dict(event.labels),
                    commit_hash=head,
                )
        for app in due:
            self._labels_read[_label_key(app)] = head

    async def _changed(
        self, observed: Sequence[ApplicationConfigObserved]
    ) -> list[ApplicationConfigObserved]:
        """Those of `observed` that may differ from what their streams last recorded.

        The streams' newest events are read in one round trip, where deciding each through
        `execute` would read its stream alone: a commit touching no config (an image bump of
        10,000 applications) then costs one query, not 10,000. What may differ still goes
        through `_record_config`, which reads its stream again and decides there.
        """
        streams = [application_config_stream(event.application_id) for event in observed]
        newest = await self.store.last_of_streams(streams)
        changed = []
        for stream, event in zip(streams, observed, strict=True):
            last = newest.get(stream)
            # The decider's state is the newest ApplicationConfigObserved's record; a stream
            # ending otherwise is left to `execute`, which folds all of it.
            if (
                last is not None
                and isinstance(last.event, ApplicationConfigObserved)
                and not CONFIG_LABELS.decide(
                    CONFIG_LABELS.evolve(CONFIG_LABELS.initial_state(), last.event), event
                )
            ):
                continue
            changed.append(event)
        return changed

    async def _record_config(self, observed: ApplicationConfigObserved) -> bool:
        """Append `observed` to `appconfig-<id>` if it says something new; True if appended."""
        stream = application_config_stream(observed.application_id)
        try:
            # Another replica may record first: `execute` decides again on what it wrote.
            done = await execute(
                self.store,
                stream,
                CONFIG_LABELS,
                observed,
                event_metadata(),
                max_attempts=MAX_CONFLICT_RETRIES,
            )
        except ConcurrencyConflict as exc:
            raise Unavailable(
                f"{stream}: still conflicting after {MAX_CONFLICT_RETRIES} tries"
            ) from exc
        return bool(done.events)

    async def config_files(
        self, head: str, state: RepositoryState
    ) -> tuple[list[ApplicationConfigDiscovered], list[ApplicationConfigRemoved]]:
        """The config files at `head` that no registered application points at and that
        `state` (the repository stream) has not announced, parsed: the candidates to
        announce; and those it announced that `head` no longer holds."""
        apps = await self.registered()
        tree = await self.git.list_tree(head)
        removed = [
            ApplicationConfigRemoved(
                repository_id=self.repository_id,
                path=directory,
                config_filename=filename,
                commit_hash=head,
            )
            for directory, filename in removed_configs(tree, state)
        ]
        found = undiscovered_configs(tree, [(app.path, app.config_filename) for app in apps], state)
        return await self._parsed(head, found), removed

    async def _parsed(
        self, head: str, found: Sequence[tuple[str, str]]
    ) -> list[ApplicationConfigDiscovered]:
        if not found:
            return []
        paths = [posixpath.join(directory, filename) for directory, filename in found]
        contents = await self.git.read_files(head, paths)
        candidates = []
        for (directory, filename), path in zip(found, paths, strict=True):
            content = contents[path]
            facts = self.parse(path, content) if content is not None else None
            if facts is None:
                continue
            candidates.append(
                ApplicationConfigDiscovered(
                    repository_id=self.repository_id,
                    path=directory,
                    config_filename=filename,
                    name=facts.name or posixpath.basename(directory) or self.repository_id,
                    kind=facts.kind,
                    labels=facts.labels,
                    commit_hash=head,
                )
            )
        return candidates


# Only a commit's full id names content that never changes (a branch name moves).
_FULL_HASH: Final = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")


def _label_key(app: RegisteredApp) -> tuple[str, str]:
    return (app.application_id, app.config_path)


# Every registered application's config of a watched repository, at 10,000 applications
# too: the watcher reads each repository's configs at every new head, so an LRU smaller
# than that is walked in order and never hits (each entry is small: the facts).
@lru_cache(maxsize=16384)
def _parse_cached(read: AppConfigReader, path: str, content: bytes) -> AppConfigFacts | str:
    """Parsed facts, or the error text: a config is parsed once per content, not per poll."""
    try:
        return read(path, content)
    except ConfigError as exc:
        return str(exc)
