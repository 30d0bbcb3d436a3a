"""What the event watcher writes for one event in one repository (pure).

Watchers come from two places, as in PipeCD: an application config's
`spec.eventWatcher[]` (files relative to the application's directory, a
`matcher` and a `GIT_UPDATE` handler) and `.pipe/` `kind: EventWatcher` files
(files relative to the repository root; the commit message is the control
config's `eventWatcher.gitRepos[].commitMessage`). A watcher matches an event
when the names are equal and the label sets are equal (PipeCD's event key).

`plan_commits` turns the matching watchers and the current file contents into
commits: one per watcher, in the order found (application configs by
application id, then `.pipe/` files by name), each with its own message; a
watcher with `makePullRequest` gets a branch of its own. Files a watcher
leaves unchanged (the value is there already) make no commit.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from services.gitwatcher.replacements import (
    REGEX_TIME_LIMIT_S,
    ReplacementError,
    commit_message,
    replace_json_field,
    replace_regex,
    replace_yaml_field,
    repository_path,
    same_shape,
)
from shared.git import branch_name_problem

__all__ = [
    "EVENT_TRAILER",
    "PlannedCommit",
    "Replacement",
    "Watcher",
    "matching",
    "paths_of",
    "plan_commits",
    "pull_request_branch",
]

EVENT_TRAILER: Final = "Slipway-Event-Id"
"""The trailer naming the registration a commit writes: how a retry finds its own push."""
_TRIGGER_TRAILER: Final = "Pipecd-Dev-Trace-Trigger-Commit-Hash"  # PipeCD's, for its tools
_STRUCTURED: Final = (".yaml", ".yml", ".json")
MAX_FILE_BYTES: Final = 1024 * 1024
"""A file the watcher edits is at most this big (the edits parse it, more than once)."""
_BRANCHES: Final = uuid.UUID("5d1f0c8e-3f4e-4a36-9d0a-6c1b2e7f4a10")

ReplacementKind = Literal["yamlField", "jsonField", "HCLField", "regex"]


@dataclass(frozen=True, slots=True)
class Replacement:
    """One replacement of an event watcher: the file, how to find the value, and where."""

    file: str
    kind: ReplacementKind
    expression: str


@dataclass(frozen=True, slots=True)
class Watcher:
    """One `eventWatcher` entry or one event of a `.pipe/` EventWatcher file."""

    origin: str
    """`app:<application id>` or the `.pipe/` file's path: where it is configured."""
    name: str
    labels: tuple[tuple[str, str], ...]
    base_dir: str
    replacements: tuple[Replacement, ...]
    commit_message: str = ""
    make_pull_request: bool = False


@dataclass(frozen=True, slots=True)
class PlannedCommit:
    """One commit the event watcher will push: the changed files and its message and branch."""

    watcher: Watcher
    changes: dict[str, bytes]
    message: str
    branch: str = ""
    """"" for the watched branch; a new branch (and a pull request) with `makePullRequest`."""
    files: tuple[str, ...] = field(default=())


def matching(
    watchers: Iterable[Watcher], name: str, labels: Iterable[tuple[str, str]]
) -> list[Watcher]:
    """The watchers of this event: same name, same labels (PipeCD's event key)."""
    wanted = dict(labels)
    return [w for w in watchers if w.name == name and dict(w.labels) == wanted]


def paths_of(watcher: Watcher) -> list[str]:
    """The repository paths a watcher writes (ReplacementError for one outside the repo)."""
    return [repository_path(watcher.base_dir, r.file) for r in watcher.replacements]


def pull_request_branch(event_name: str, event_id: str, origin: str) -> str:
    """PipeCD's `<event name>-<uuid>`, the uuid derived so a retry pushes the same branch."""
    suffix = uuid.uuid5(_BRANCHES, f"{event_id}\0{origin}")
    branch = f"{event_name}-{suffix}"
    return branch if branch_name_problem(branch) is None else f"event-{suffix}"


def plan_commits(
    watchers: Iterable[Watcher],
    contents: Mapping[str, bytes | None],
    *,
    event_id: str,
    event_name: str,
    value: str,
    trailers: Iterable[tuple[str, str]] = (),
    trigger_commit: str = "",
    regex_time_limit_s: float = REGEX_TIME_LIMIT_S,
) -> list[PlannedCommit]:
    """The commits writing `value` for each watcher, given each file's content at the head
    (None: absent). Commits on the watched branch see the earlier ones' changes.

    Raises ReplacementError (naming the watcher, the file and the field) for a
    file that is absent, too large, not UTF-8, whose field or pattern is not
    there, or whose `regex` is still matching after `regex_time_limit_s`.
    """
    current = dict(contents)
    planned: list[PlannedCommit] = []
    for watcher in watchers:
        on_branch = not watcher.make_pull_request
        view = current if on_branch else dict(contents)
        changes: dict[str, bytes] = {}
        for replacement in watcher.replacements:
            path = repository_path(watcher.base_dir, replacement.file)
            raw = changes.get(path, view.get(path))
            if raw is None:
                raise ReplacementError(f"{watcher.origin}: {path}: no such file")
            if len(raw) > MAX_FILE_BYTES:
                raise ReplacementError(
                    f"{watcher.origin}: {path}: over {MAX_FILE_BYTES} bytes, too large to edit"
                )
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError:
                raise ReplacementError(f"{watcher.origin}: {path}: not UTF-8 text") from None
            try:
                new = _apply(replacement, text, value, path, regex_time_limit_s)
            except ReplacementError as exc:
                raise ReplacementError(f"{watcher.origin}: {exc}") from None
            if new is not None:
                changes[path] = new.encode("utf-8")
        if not changes:
            continue
        message = _with_trailers(
            commit_message(watcher.commit_message, value=value, event_name=event_name),
            [*trailers, *([(_TRIGGER_TRAILER, trigger_commit)] if trigger_commit else [])],
            event_id,
        )
        if on_branch:
            current.update(changes)
        planned.append(
            PlannedCommit(
                watcher=watcher,
                changes=changes,
                message=message,
                branch=""
                if on_branch
                else pull_request_branch(event_name, event_id, watcher.origin),
                files=tuple(sorted(changes)),
            )
        )
    return planned


def _apply(
    replacement: Replacement, text: str, value: str, path: str, regex_time_limit_s: float
) -> str | None:
    match replacement.kind:
        case "yamlField":
            return replace_yaml_field(text, replacement.expression, value, file=path)
        case "jsonField":
            return replace_json_field(text, replacement.expression, value, file=path)
        case "regex":
            new = replace_regex(
                text, replacement.expression, value, file=path, time_limit_s=regex_time_limit_s
            )
            if new is not None and path.endswith(_STRUCTURED):
                same_shape(text, new, file=path)
            return new
        case _:
            raise ReplacementError(
                f"{path}: {replacement.kind} is not supported (PipeCD does not implement it "
                "either); use yamlField, jsonField or regex"
            )


def _with_trailers(message: str, trailers: Iterable[tuple[str, str]], event_id: str) -> str:
    lines = [f"{key}: {value}" for key, value in trailers]
    lines.append(f"{EVENT_TRAILER}: {event_id}")
    return message.rstrip("\n") + "\n\n" + "\n".join(lines) + "\n"
