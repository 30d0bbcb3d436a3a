"""The gitwatcher's pure core: what a commit triggers, what a repository's stream says, what is new.

No I/O, clock, randomness or logging here: the shell (`service.py`) reads
git and the log, calls these functions, and appends what they return.

Triggering follows PipeCD's on-commit determiner, with one deliberate
difference. An application is affected by a commit when a changed path is
inside its directory or matches one of `trigger.onCommit.paths`, counting
only changed paths that match none of `trigger.onCommit.ignores`. PipeCD
instead skips the application outright when *any* changed path matches an
ignore, so a commit touching both a README it ignores and a manifest it
deploys would not deploy; here the ignored README is simply not counted.
Patterns are PipeCD's (Docker's) file patterns, relative to the repository
root: `*` and `?` stay within one path segment, `**` spans any number of
them, `[...]` is a character class, and a pattern that matches a directory
matches everything under it.
"""

from __future__ import annotations

import posixpath
import re
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from typing import Final, Literal

from shared.eventlog import NO_STREAM, deterministic_event_id
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationConfigDiscovered,
    CommitObserved,
    DeploymentTriggered,
    RepositoryFetchFailed,
    RepositoryRecovered,
)
from shared.streams import stream_id

__all__ = [
    "APP_CONFIG_SUFFIX",
    "LEGACY_APP_CONFIG",
    "STRATEGIES",
    "AppConfigFacts",
    "PathPattern",
    "RegisteredApp",
    "RepositoryState",
    "TriggerConfig",
    "affected",
    "backoff_s",
    "decide_commit_observed",
    "decide_discovered",
    "decide_fetch_failed",
    "decide_fetch_succeeded",
    "deployment_stream",
    "evolve",
    "failure_kind",
    "fold",
    "forced_strategy",
    "is_app_config_filename",
    "normalize_dir",
    "on_commit_deployment_id",
    "on_commit_triggers",
    "repository_stream",
    "trigger_event_id",
    "undiscovered_configs",
]

Strategy = Literal["auto", "quick_sync", "pipeline"]
STRATEGIES: Final[frozenset[str]] = frozenset({"auto", "quick_sync", "pipeline"})

APP_CONFIG_SUFFIX: Final = ".pipecd.yaml"
"""`app.pipecd.yaml` and `<anything>.pipecd.yaml` are application configs (DESIGN §6)."""
LEGACY_APP_CONFIG: Final = ".pipe.yaml"
"""The legacy name, as in the seed's `account/dev/.pipe.yaml`."""


# Streams and ids ---------------------------------------------------------------


def repository_stream(repository_id: str) -> str:
    return stream_id("repository", repository_id)


def deployment_stream(deployment_id: str) -> str:
    return stream_id("deployment", deployment_id)


def on_commit_deployment_id(application_id: str, commit_hash: str) -> str:
    """The one deployment an application gets for a commit: the same in every replica."""
    return deterministic_event_id("deployment", "on_commit", application_id, commit_hash).hex


def trigger_event_id(deployment_id: str) -> uuid.UUID:
    """The id of the `DeploymentTriggered` that opens a deployment's stream."""
    return deterministic_event_id("deployment_triggered", deployment_id)


# Path patterns (PipeCD's filematcher) ------------------------------------------


@dataclass(frozen=True, slots=True)
class PathPattern:
    """One file pattern: does it match a changed path (or a directory above it)?"""

    text: str
    regex: re.Pattern[str] | None
    """None for a pattern that can never match (empty, or a lone `!exclusion`)."""
    segments: int

    @classmethod
    def parse(cls, pattern: str) -> PathPattern:
        return _parse_pattern(pattern)

    def matches(self, path: str) -> bool:
        if self.regex is None:
            return False
        if self.regex.fullmatch(path):
            return True
        # A pattern naming a directory matches every file below it.
        parent = posixpath.dirname(path)
        if not parent:
            return False
        dirs = parent.split("/")
        return self.segments <= len(dirs) and bool(
            self.regex.fullmatch("/".join(dirs[: self.segments]))
        )


@lru_cache(maxsize=4096)
def _parse_pattern(pattern: str) -> PathPattern:
    text = pattern.strip()
    if not text:
        return PathPattern(pattern, None, 0)
    # PipeCD evaluates each pattern on its own, where an exclusion alone excludes
    # from nothing: "!x" never matches.
    if text.startswith("!"):
        return PathPattern(pattern, None, 0)
    # Relative to the repository root; a leading "/" (which PipeCD would never
    # match) is read as the root, and "./", "//", trailing "/" are cleaned away.
    cleaned = posixpath.normpath(text.lstrip("/")) if text.lstrip("/") else "."
    return PathPattern(
        pattern, re.compile(_pattern_regex(cleaned), re.DOTALL), len(cleaned.split("/"))
    )


def _pattern_regex(pattern: str) -> str:
    """The regex (for `fullmatch`) of a cleaned pattern."""
    out = []
    i, n = 0, len(pattern)
    while i < n:
        ch = pattern[i]
        if ch == "*":
            if i + 1 < n and pattern[i + 1] == "*":
                i += 2
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(?:.*/)?")
                continue
            out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch == "\\" and i + 1 < n:
            i += 1
            out.append(re.escape(pattern[i]))
        elif ch == "[" and (end := _class_end(pattern, i)) > 0:
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out)


def _class_end(pattern: str, start: int) -> int:
    """Index of the `]` closing the class opened at `start`, or -1 (then `[` is literal)."""
    end = pattern.find("]", start + 2 if pattern[start + 1 : start + 2] == "^" else start + 1)
    if end < 0 or "/" in pattern[start:end]:
        return -1
    return end


def _any_match(patterns: Sequence[str], path: str) -> bool:
    return any(_parse_pattern(p).matches(path) for p in patterns)


def normalize_dir(path: str) -> str:
    """An application directory relative to the repository root: "" is the root itself."""
    cleaned = posixpath.normpath(path.strip().strip("/")) if path.strip().strip("/") else "."
    return "" if cleaned == "." else cleaned


# Triggering --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    """The parts of an application config that decide on-commit triggers."""

    on_commit_disabled: bool = False
    paths: tuple[str, ...] = ()
    ignores: tuple[str, ...] = ()
    quick_sync_matcher: str = ""
    """commitMatcher.quickSync: a regex searched for in the commit message."""
    pipeline_matcher: str = ""


@dataclass(frozen=True, slots=True)
class AppConfigFacts:
    """What the gitwatcher needs from one application config file."""

    name: str
    kind: str = "KubernetesApp"
    labels: tuple[tuple[str, str], ...] = ()
    trigger: TriggerConfig = field(default_factory=TriggerConfig)


@dataclass(frozen=True, slots=True)
class RegisteredApp:
    """A registered application of one repository, with its config at the commit judged."""

    application_id: str
    name: str
    path: str
    config_filename: str
    disabled: bool = False
    trigger: TriggerConfig | None = None
    """None when the config file is absent at that commit: the application is not deployed."""

    @property
    def config_path(self) -> str:
        directory = normalize_dir(self.path)
        return f"{directory}/{self.config_filename}" if directory else self.config_filename


def affected(app_dir: str, trigger: TriggerConfig, changed_paths: Iterable[str]) -> bool:
    """Whether a commit changing `changed_paths` touches the application in `app_dir`."""
    if trigger.on_commit_disabled:
        return False
    directory = normalize_dir(app_dir)
    prefix = f"{directory}/" if directory else ""
    for path in changed_paths:
        if trigger.ignores and _any_match(trigger.ignores, path):
            continue
        if path.startswith(prefix) or _any_match(trigger.paths, path):
            return True
    return False


def forced_strategy(trigger: TriggerConfig, message: str) -> Strategy:
    """The strategy the commit message forces through `commitMatcher` (quick sync wins ties)."""
    if _searches(trigger.quick_sync_matcher, message):
        return "quick_sync"
    if _searches(trigger.pipeline_matcher, message):
        return "pipeline"
    return "auto"


def _searches(pattern: str, text: str) -> bool:
    if not pattern:
        return False
    try:
        return re.search(pattern, text) is not None
    except re.error:
        # The config loader rejects invalid regexes; one that slipped through forces nothing.
        return False


def on_commit_triggers(
    observed: CommitObserved,
    apps: Iterable[RegisteredApp],
    changed_paths: Sequence[str] | None = None,
) -> list[DeploymentTriggered]:
    """One `DeploymentTriggered` per enabled application the observed commit touches.

    `changed_paths` defaults to the event's own (which may be truncated).
    """
    changed = observed.changed_paths if changed_paths is None else changed_paths
    triggers = []
    for app in sorted(apps, key=lambda a: a.application_id):
        if app.disabled or app.trigger is None or not affected(app.path, app.trigger, changed):
            continue
        triggers.append(
            DeploymentTriggered(
                deployment_id=on_commit_deployment_id(app.application_id, observed.commit_hash),
                application_id=app.application_id,
                trigger="on_commit",
                commit_hash=observed.commit_hash,
                commit_author=observed.author,
                commit_message=observed.message,
                strategy=forced_strategy(app.trigger, observed.message),
                repository_id=observed.repository_id,
                commit_branch=observed.branch,
            )
        )
    return triggers


# The repository stream ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RepositoryState:
    """What the stream `repository-<id>` says: last observed head, failure state, discoveries."""

    version: int = NO_STREAM
    head: str = ""
    failing: bool = False
    failure_kind: str = ""
    discovered: frozenset[str] = frozenset()
    """Config paths (`dir/filename`) already announced by `ApplicationConfigDiscovered`."""


def failure_kind(reason: str) -> str:
    """The kind word a fetch-failure reason starts with ("unreachable: …" → "unreachable")."""
    head, sep, _ = reason.partition(":")
    return head.strip() if sep and head.strip().isidentifier() else "other"


def evolve(state: RepositoryState, event: Event, version: int) -> RepositoryState:
    """The state after `event`, stored at `version` of the stream."""
    state = replace(state, version=version)
    match event:
        case CommitObserved(commit_hash=commit):
            return replace(state, head=commit)
        case RepositoryFetchFailed(reason=reason):
            return replace(state, failing=True, failure_kind=failure_kind(reason))
        case RepositoryRecovered():
            return replace(state, failing=False, failure_kind="")
        case ApplicationConfigDiscovered(path=path, config_filename=filename):
            return replace(state, discovered=state.discovered | {_config_key(path, filename)})
    return state


def fold(
    state: RepositoryState, events: Iterable[Event], versions: Iterable[int]
) -> RepositoryState:
    for event, version in zip(events, versions, strict=True):
        state = evolve(state, event, version)
    return state


def backoff_s(attempt: int, *, initial_s: float, max_s: float) -> float:
    """Seconds to wait before retry number `attempt` (1-based): doubling, capped."""
    return float(min(max_s, initial_s * 2 ** min(max(attempt - 1, 0), 62)))


def decide_fetch_failed(
    state: RepositoryState,
    *,
    repository_id: str,
    kind: str,
    reason: str,
    attempt: int,
    retry_in_s: float,
) -> list[Event]:
    """A failure is recorded when it starts or changes kind, not on every retry."""
    if state.failing and state.failure_kind == kind:
        return []
    return [
        RepositoryFetchFailed(
            repository_id=repository_id,
            reason=reason if failure_kind(reason) == kind else f"{kind}: {reason}",
            attempt=attempt,
            retry_in_s=retry_in_s,
        )
    ]


def decide_fetch_succeeded(
    state: RepositoryState, *, repository_id: str, attempts: int
) -> list[Event]:
    """A recovery is recorded once, when a failing repository fetches again."""
    if not state.failing:
        return []
    return [RepositoryRecovered(repository_id=repository_id, after_attempts=max(attempts, 1))]


def decide_commit_observed(state: RepositoryState, observed: CommitObserved) -> list[Event]:
    """Record `observed` only if the stream's head is still the one it follows.

    Otherwise another replica has already moved the head on, and the caller
    reloads and carries on from there.
    """
    if state.head != observed.previous_hash:
        return []
    return [observed]


# Discovery ---------------------------------------------------------------------


def is_app_config_filename(name: str) -> bool:
    """Whether a file name is an application config's (`*.pipecd.yaml` or `.pipe.yaml`)."""
    return name == LEGACY_APP_CONFIG or (
        name.endswith(APP_CONFIG_SUFFIX) and len(name) > len(APP_CONFIG_SUFFIX)
    )


# Shared analysis templates live in `.pipe/`; nothing under it is an application.
_SKIPPED_DIRS: Final = frozenset({".pipe", ".git"})


def _config_key(directory: str, filename: str) -> str:
    directory = normalize_dir(directory)
    return f"{directory}/{filename}" if directory else filename


def undiscovered_configs(
    tree_paths: Iterable[str],
    registered: Iterable[tuple[str, str]],
    state: RepositoryState,
) -> list[tuple[str, str]]:
    """(directory, filename) of config files in the tree that nothing registered points at
    and that were not announced before, in path order."""
    known = {_config_key(d, f) for d, f in registered} | state.discovered
    found = []
    for path in sorted(tree_paths):
        directory, filename = posixpath.split(path)
        if _SKIPPED_DIRS.intersection(directory.split("/")):
            continue
        if is_app_config_filename(filename) and _config_key(directory, filename) not in known:
            found.append((directory, filename))
    return found


def decide_discovered(
    state: RepositoryState, candidates: Sequence[ApplicationConfigDiscovered]
) -> list[Event]:
    """Announce each candidate config once, whichever replica gets there first."""
    return [c for c in candidates if _config_key(c.path, c.config_filename) not in state.discovered]
