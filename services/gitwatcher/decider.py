"""The gitwatcher's pure core: what a commit triggers, what a repository's stream says, what is new.

No I/O, clock, randomness or logging here: the shell (`service.py`) reads
git and the log, calls these functions, and appends what they return.

Which applications a commit affects is `shared.triggers.affected`, the rule
`slipway plan-preview` uses too. An on-commit trigger never forces a
strategy: it carries "auto" and the commit message, and the planner applies
`commitMatcher` in PipeCD's order (after "no pipeline" and
`alwaysUsePipeline`, DESIGN §5).
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from shared.config.discovery import is_application_config_name
from shared.decider import Functions
from shared.eventlog import NO_STREAM
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationConfigDiscovered,
    ApplicationConfigObserved,
    ApplicationConfigRemoved,
    CommitObserved,
    ConfigMention,
    DeploymentTriggered,
    RepositoryFetchFailed,
    RepositoryRecovered,
)
from shared.events.ids import on_commit_deployment_id
from shared.events.vocabulary import Strategy, Trigger
from shared.redaction import COMMIT_MESSAGE_CHARS, REASON_CHARS, clip
from shared.triggers import TriggerConfig, affected, normalize_dir

ConfigRecord = tuple[tuple[tuple[str, str], ...], tuple[ConfigMention, ...], str]
"""What `appconfig-<id>` last recorded: labels, mentions and description."""
"""What `appconfig-<id>` last recorded: the config's labels and notification mentions."""

__all__ = [
    "CONFIG_LABELS",
    "REPOSITORY",
    "AppConfigFacts",
    "RegisteredApp",
    "RepositoryDecision",
    "RepositoryState",
    "TriggerConfig",
    "backoff_s",
    "decide_commit_observed",
    "decide_config_files",
    "decide_config_observed",
    "decide_discovered",
    "decide_fetch_failed",
    "decide_fetch_succeeded",
    "evolve",
    "failure_kind",
    "fold",
    "on_commit_triggers",
    "removed_configs",
    "undiscovered_configs",
]

# Triggering --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ChainMatcher:
    """One entry of `postSync.chain.applications`: the fields it sets must all match."""

    name: str = ""
    kind: str = ""
    labels: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True, slots=True)
class AppConfigFacts:
    """What the gitwatcher needs from one application config file."""

    name: str
    kind: str = "KubernetesApp"
    labels: tuple[tuple[str, str], ...] = ()
    mentions: tuple[ConfigMention, ...] = ()
    description: str = ""
    """`spec.description`, printable and clipped (`DESCRIPTION_CHARS`)."""
    trigger: TriggerConfig = field(default_factory=TriggerConfig)
    on_chain: bool = False
    """`trigger.onChain.disabled: false`: chains may deploy it (PipeCD's default is no)."""
    chain: tuple[ChainMatcher, ...] = ()
    """`postSync.chain.applications`: what its successful deployments trigger, block by block."""


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
        """The config file's path in the repository."""
        directory = normalize_dir(self.path)
        return f"{directory}/{self.config_filename}" if directory else self.config_filename


def on_commit_triggers(
    observed: CommitObserved,
    apps: Iterable[RegisteredApp],
    changed_paths: Sequence[str] | None = None,
) -> list[DeploymentTriggered]:
    """One `DeploymentTriggered` per enabled application the observed commit touches.

    The strategy is always "auto": the planner, not the gitwatcher, applies
    `commitMatcher`. `changed_paths` defaults to the event's own (which may be truncated).
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
                trigger=Trigger.ON_COMMIT,
                commit_hash=observed.commit_hash,
                commit_author=observed.author,
                commit_message=clip(observed.message, COMMIT_MESSAGE_CHARS),
                # Never forced here: a forced strategy would pre-empt "no pipeline" and
                # alwaysUsePipeline, which PipeCD checks before commitMatcher.
                strategy=Strategy.AUTO,
                repository_id=observed.repository_id,
                commit_branch=observed.branch,
                committed_at=observed.committed_at,
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
        case ApplicationConfigRemoved(path=path, config_filename=filename):
            return replace(state, discovered=state.discovered - {_config_key(path, filename)})
    return state


def fold(
    state: RepositoryState, events: Iterable[Event], versions: Iterable[int]
) -> RepositoryState:
    """The repository's state after `events` at their stream `versions` (pure)."""
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
            reason=clip(
                reason if failure_kind(reason) == kind else f"{kind}: {reason}", REASON_CHARS
            ),
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
        if is_application_config_name(filename) and _config_key(directory, filename) not in known:
            found.append((directory, filename))
    return found


def decide_discovered(
    state: RepositoryState, candidates: Sequence[ApplicationConfigDiscovered]
) -> list[Event]:
    """Announce each candidate config once, whichever replica gets there first."""
    return [c for c in candidates if _config_key(c.path, c.config_filename) not in state.discovered]


def removed_configs(tree_paths: Iterable[str], state: RepositoryState) -> list[tuple[str, str]]:
    """(directory, filename) of the configs announced before that the tree no longer holds,
    in path order."""
    present = {_config_key(*posixpath.split(path)) for path in tree_paths}
    return [posixpath.split(key) for key in sorted(state.discovered - present)]


def decide_config_files(
    state: RepositoryState,
    *,
    head: str,
    found: Sequence[ApplicationConfigDiscovered],
    removed: Sequence[ApplicationConfigRemoved],
) -> list[Event]:
    """What the configs at `head` change: removals first (a moved config leaves, then comes
    back as new), each recorded once.

    Nothing when the stream's head is not `head`: a replica behind the others would
    announce again a config they recorded as removed (and one ahead, remove what is
    still there).
    """
    if state.head != head:
        return []
    gone: list[Event] = [
        r for r in removed if _config_key(r.path, r.config_filename) in state.discovered
    ]
    return [*gone, *decide_discovered(state, found)]


# Config labels -----------------------------------------------------------------


def decide_config_observed(
    recorded: ConfigRecord | None, observed: ApplicationConfigObserved
) -> list[Event]:
    """Record the labels, mentions and description read when they differ from the last
    recorded ones (or none were)."""
    return [] if recorded == _record_of(observed) else [observed]


def _record_of(observed: ApplicationConfigObserved) -> ConfigRecord:
    return (observed.labels, observed.mentions, observed.description)


# The deciders, as `shared.eventlog.execute` runs them ------------------------------

RepositoryDecision = Callable[[RepositoryState], list[Event]]
"""A command to `repository-<id>`: one of the `decide_*` above with its arguments bound."""


def _evolve_next(state: RepositoryState, event: Event) -> RepositoryState:
    # Stream versions are gap-free from 0, so the next event is at the next version.
    return evolve(state, event, state.version + 1)


def _decide_repository(state: RepositoryState, decision: RepositoryDecision) -> list[Event]:
    return decision(state)


REPOSITORY: Final = Functions[RepositoryState, RepositoryDecision](
    RepositoryState(), _evolve_next, _decide_repository
)
"""`repository-<id>`: heads observed, fetch failures and recoveries, configs discovered."""


def _evolve_labels(recorded: ConfigRecord | None, event: Event) -> ConfigRecord | None:
    if isinstance(event, ApplicationConfigObserved):
        return _record_of(event)
    return recorded


CONFIG_LABELS: Final = Functions[ConfigRecord | None, ApplicationConfigObserved](
    None, _evolve_labels, decide_config_observed
)
"""`appconfig-<id>`: the labels, notification mentions and description last read from an
application's config."""
