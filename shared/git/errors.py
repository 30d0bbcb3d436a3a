"""What went wrong in a git command: `GitError`, and its `kind` read from git's stderr."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, Literal

from shared.errors import Unavailable

GitErrorKind = Literal["unreachable", "auth", "not_found", "other"]

# Classification of git's stderr, checked in this order (first match wins):
# an auth failure often also says "could not read from remote repository".
_PATTERNS: Final[tuple[tuple[GitErrorKind, re.Pattern[str]], ...]] = (
    (
        "auth",
        re.compile(
            r"authentication failed|could not read (username|password)|terminal prompts disabled"
            r"|permission denied \(|access denied|invalid username or password"
            r"|the requested url returned error: 40[13]|host key verification failed",
            re.IGNORECASE,
        ),
    ),
    (
        "not_found",
        re.compile(
            r"repository .*not found|does not appear to be a git repository"
            r"|the requested url returned error: 404|couldn't find remote ref"
            r"|unknown revision|bad revision|not a valid (object|commit) name|invalid object name"
            r"|needed a single revision|bad object|no such ref",
            re.IGNORECASE,
        ),
    ),
    (
        "unreachable",
        re.compile(
            r"could not resolve host|couldn't connect|connection refused|connection timed out"
            r"|timed out|network is unreachable|no route to host|failed to connect"
            r"|connection reset|could not read from remote repository|unable to access"
            r"|the remote end hung up|early eof|ssl certificate problem|gnutls|ssl_connect",
            re.IGNORECASE,
        ),
    ),
)


class GitError(Unavailable):
    """A git command failed; `kind` says why in a word, `stderr_tail` in git's own."""

    def __init__(
        self,
        message: str,
        *,
        kind: GitErrorKind,
        stderr_tail: str = "",
        command: Sequence[str] = (),
        returncode: int | None = None,
    ) -> None:
        self.kind: GitErrorKind = kind
        self.stderr_tail = stderr_tail
        self.command = tuple(command)
        self.returncode = returncode
        super().__init__(message)

    @property
    def reason(self) -> str:
        """One line for an event or a log: the kind and git's last words."""
        last = " | ".join(line for line in self.stderr_tail.splitlines() if line.strip())
        return f"{self.kind}: {last or self.args[0]}"


def classify_stderr(stderr: str) -> GitErrorKind:
    """Which kind of failure git's stderr describes."""
    for kind, pattern in _PATTERNS:
        if pattern.search(stderr):
            return kind
    return "other"
