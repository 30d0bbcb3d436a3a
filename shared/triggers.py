"""Which applications a commit affects: PipeCD's on-commit path rule, in one place.

The gitwatcher (which triggers deployments) and `slipway plan-preview` (which
shows what merging would deploy) must agree on this, so both call `affected`.

An application is affected by a commit when a changed path is inside its
directory or matches one of `trigger.onCommit.paths`, counting only changed
paths that match none of `trigger.onCommit.ignores`; never when
`trigger.onCommit.disabled` is set. This is PipeCD's on-commit determiner with
one deliberate difference: PipeCD skips the application outright when *any*
changed path matches an ignore, so a commit touching both a README it ignores
and a manifest it deploys would not deploy; here the ignored README is simply
not counted.

Patterns are PipeCD's (Docker's) file patterns, relative to the repository
root: `*` and `?` stay within one path segment, `**` spans any number of
them, `[...]` is a character class, and a pattern that matches a directory
matches everything under it. Pure: no I/O.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from shared.config.application import OnCommit

__all__ = ["PathPattern", "TriggerConfig", "affected", "normalize_dir"]


@dataclass(frozen=True, slots=True)
class TriggerConfig:
    """The parts of an application config that decide whether a commit affects it."""

    on_commit_disabled: bool = False
    paths: tuple[str, ...] = ()
    ignores: tuple[str, ...] = ()

    @classmethod
    def from_on_commit(cls, on_commit: OnCommit) -> TriggerConfig:
        """From a loaded config's `spec.trigger.onCommit`."""
        return cls(
            on_commit_disabled=on_commit.disabled,
            paths=tuple(on_commit.paths),
            ignores=tuple(on_commit.ignores),
        )


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


def normalize_dir(path: str) -> str:
    """An application directory relative to the repository root: "" is the root itself."""
    cleaned = posixpath.normpath(path.strip().strip("/")) if path.strip().strip("/") else "."
    return "" if cleaned == "." else cleaned


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
        """The pattern from its text (`**`, `*` and literal parts)."""
        return _parse_pattern(pattern)

    def matches(self, path: str) -> bool:
        """Whether `path` matches the pattern."""
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


def _any_match(patterns: Sequence[str], path: str) -> bool:
    return any(_parse_pattern(p).matches(path) for p in patterns)


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
