"""Checks on what goes onto git's command line: branch names, revisions and paths.

A name from a config, a webhook or an API call must never read as an option,
a revision range or a second line of a `cat-file --batch` request.
"""

from __future__ import annotations

import re
from typing import Final

# git check-ref-format's rules for a branch name, plus no leading '-': a name from a
# config, a webhook or an API call must never read as an option or a revision range.
_BAD_REF_PART: Final = re.compile(r"(^|/)\.|\.\.|@\{|//|\.lock(/|$)|[\x00-\x20\x7f~^:?*\[\\]")


def branch_name_problem(name: str) -> str | None:
    """Why `name` is not a usable branch name (git's rules, and no leading '-'), or None."""
    if not name or name.startswith("-"):
        return f"not a valid branch name: {name[:60]!r} (it must not be empty or start with '-')"
    if name == "@" or name.endswith((".", "/")) or _BAD_REF_PART.search(name):
        return f"not a valid branch name: {name[:60]!r} (see git check-ref-format)"
    return None


def check_branch(name: str) -> str:
    """`name` if git accepts it as a branch and cannot read it as an option; else `ValueError`."""
    if problem := branch_name_problem(name):
        raise ValueError(problem)
    return name


def check_rev(rev: str) -> str:
    """`rev` if it is safe to pass as a revision argument (never an option, one line)."""
    if not rev or rev.startswith("-") or any(c in rev for c in "\0\n\r"):
        raise ValueError(f"not a usable git revision: {rev!r}")
    return rev


def check_path(path: str) -> str:
    """`path` without leading or trailing slashes; `ValueError` for one with NUL or line breaks."""
    if any(c in path for c in "\0\n\r"):
        raise ValueError(f"not a usable path: {path!r}")
    return path.strip("/")
