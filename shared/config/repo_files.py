"""The one rule for every file read for an application: it stays inside the repository.

A config repository is written by whoever can push a branch, and plan preview
renders unmerged branches. A symlink committed to it (`leak.yaml ->
/var/run/secrets/…/token`) would make Slipway read the host's files and quote
them into an append-only log. So every path we read, and every symlink on its
way, must resolve inside the repository's working tree: Argo CD's
out-of-bounds symlink rule (CVE-2022-24904, CVE-2022-31036, CVE-2022-24348).
Symlinks that stay inside the repository are fine.

- `inside_repository(path, root, what)`: the resolved path, or a `ConfigError`.
- `check_tree(directory, root, what)`: every symlink reachable from a directory
  a tool will read by itself (kustomize and helm follow symlinks) stays inside.
- `unchanging(root)`: while inside, nobody writes under `root` (a commit's
  checkout that only readers hold), so what is read from it may be remembered by
  the root alone (`unchanged_since(root)` names that stretch of time).

Errors name the path relative to the repository, never the symlink's target
(it may itself say something about the host).
"""

from __future__ import annotations

import functools
import itertools
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from shared.errors import ConfigError

__all__ = ["check_tree", "inside_repository", "resolved_root", "unchanged_since", "unchanging"]


def inside_repository(path: Path, root: Path, what: str) -> Path:
    """`path` resolved, if it and every symlink on its way stay inside `root`.

    `what` names the file for the error: the field and the value that led to it.
    """
    real_root = resolved_root(root)
    resolved = _below(path, root, real_root)
    if resolved is None:
        resolved = _resolve(path, what)
    if not resolved.is_relative_to(real_root):
        raise ConfigError(f"{what} {_OUTSIDE}")
    return resolved


def _below(path: Path, root: Path, real_root: Path) -> Path | None:
    """`path.resolve()` for a path written below `root` with no symlink and no `..` on its
    way below it: the root resolved (remembered) and the same parts, checked with one
    `lstat` each below the root rather than for every part from `/`. None for anything
    else (a symlink, `..`, an error), which `_resolve` answers."""
    try:
        parts = path.relative_to(root).parts
    except ValueError:
        return None
    if ".." in parts:
        return None
    current = real_root
    for part in parts:
        current = current / part
        try:
            mode = os.lstat(current).st_mode
        except FileNotFoundError:
            return real_root.joinpath(*parts)  # nothing there to follow, as `resolve` says
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return None
    return current


def check_tree(directory: Path, root: Path, what: str) -> None:
    """Refuse if any symlink reachable from `directory` leads outside `root`.

    Walks every directory reachable from `directory` by following symlinks
    that stay inside (each real directory once, so symlink loops end), the way
    kustomize and helm will when they read it.
    """
    real_root = resolved_root(root)
    start = inside_repository(directory, root, what)
    seen: set[Path] = set()
    pending = [start]
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue  # not a directory, or unreadable: the tool reports it
        for entry in entries:
            path = Path(entry.path)
            if entry.is_symlink():
                shown = f"{what}: {_shown(path, real_root)}"
                target = _resolve(path, shown)
                if not target.is_relative_to(real_root):
                    raise ConfigError(f"{shown} {_OUTSIDE}")
                if target.is_dir():
                    pending.append(target)
            elif entry.is_dir(follow_symlinks=False):
                pending.append(path)


@functools.lru_cache(maxsize=16)
def resolved_root(root: Path) -> Path:
    """`root` resolved, remembered: a checkout's root is Slipway's own directory, which its
    content cannot move, and every application of a push reads the same one (resolving it
    each time was a visible share of loading a config)."""
    return root.resolve()


_UNCHANGING: dict[str, list[int]] = {}  # root → [the stretch's number, its holders]
_STRETCHES = itertools.count(1)


@contextmanager
def unchanging(root: Path) -> Iterator[None]:
    """Declare that nothing under `root` changes while inside (nested and concurrent holders
    share one stretch, which ends with the last of them)."""
    key = str(root)
    held = _UNCHANGING.setdefault(key, [next(_STRETCHES), 0])
    held[1] += 1
    try:
        yield
    finally:
        held[1] -= 1
        if held[1] == 0 and _UNCHANGING.get(key) is held:
            del _UNCHANGING[key]


def unchanged_since(root: Path) -> int | None:
    """The number of the stretch `root` is declared unchanging in (a new one each time it
    starts), or None when it is not: a memo of what was read under it may use this."""
    held = _UNCHANGING.get(str(root))
    return held[0] if held is not None else None


_OUTSIDE = (
    "points outside the repository (through a symlink or `..`); files read for an "
    "application must stay inside it"
)


def _resolve(path: Path, what: str) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # Python 3.11 raises RuntimeError on a symlink loop
        raise ConfigError(f"{what} is a symlink loop") from None


def _shown(path: Path, root: Path) -> str:
    """`path` relative to the repository (it was found by walking it)."""
    return str(path.relative_to(root)) if path.is_relative_to(root) else path.name
