"""Writing to a remote through a bare clone: commit changed files on a parent, and push.

No work tree is involved: the new blobs are written into the clone's object
store, a private index (a temporary file) is built from the parent's tree
plus them, and `commit-tree` makes the commit. So writers never touch the
clone's refs or each other's state, and readers of the same clone go on
undisturbed. The push names the commit and the remote branch explicitly and
is never forced: a remote that moved on refuses it (`push` answers False),
and the writer starts again from the new head. Credentials are the remote
URL's and ssh's only (`shared.git.command`), never a helper's.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Final

from shared.git.arguments import check_branch, check_path, check_rev
from shared.git.command import run_git
from shared.git.errors import GitError
from shared.git.repository import GitRepository

__all__ = ["AUTHOR", "commit_files", "file_modes", "push"]

AUTHOR: Final = ("Slipway Event Watcher", "eventwatcher@slipway.invalid")
_FILE_MODES: Final = frozenset({"100644", "100755"})
# A remote refusing because its branch moved: not a fast-forward, or moved by a
# concurrent push between its check and its ref update ("cannot lock ref … but expected").
_REJECTED: Final = (
    "[rejected]",
    "non-fast-forward",
    "fetch first",
    "Updates were rejected",
    "but expected",
)


async def file_modes(repo: GitRepository, commit: str, path: str) -> tuple[str, list[str]]:
    """(the mode of the file at `path` — "" if absent —, the modes of its parent directories).

    A writer refuses a path whose file is not a plain file (a symlink is
    `120000`) or whose parents are not all directories (`040000`): git stores
    a symlink as a blob of its target, so writing "through" one is impossible
    in git itself, but refusing it keeps the rule the same as on a disk.
    """
    path = check_path(path)
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    # `-r -t` lists every tree on the way to the path as well as the path itself.
    out = await run_git(
        "ls-tree",
        "-r",
        "-t",
        "-z",
        "--full-tree",
        "--end-of-options",
        check_rev(commit),
        "--",
        path,
        git_dir=repo.path,
        env={"GIT_LITERAL_PATHSPECS": "1"},
        timeout_s=repo.timeout_s,
    )
    modes: dict[str, str] = {}
    for entry in out.decode(errors="surrogateescape").split("\0"):
        if entry:
            meta, _, name = entry.partition("\t")
            modes[name] = meta.split(" ", 1)[0]
    return modes.get(path, ""), [modes.get(prefix, "") for prefix in prefixes[:-1]]


async def commit_files(
    repo: GitRepository,
    *,
    parent: str,
    changes: Mapping[str, bytes],
    message: str,
    author: tuple[str, str] = AUTHOR,
    date: str | None = None,
) -> str:
    """A new commit on `parent` with `changes` ({path: content}, each an existing plain file
    whose mode is kept); returns its hash. Nothing is pushed."""
    if not changes:
        raise ValueError("a commit needs at least one changed file")
    scratch = Path(tempfile.mkdtemp(prefix="slipway-commit-"))
    env = {"GIT_INDEX_FILE": str(scratch / "index")}

    async def git(*args: str, stdin: bytes | None = None) -> str:
        out = await run_git(
            *args,
            git_dir=repo.path,
            env=env | _identity(author, date),
            stdin=stdin,
            timeout_s=repo.timeout_s,
        )
        return out.decode().strip()

    try:
        await git("read-tree", "--end-of-options", check_rev(parent))
        for path, content in sorted(changes.items()):
            mode, _ = await file_modes(repo, parent, path)
            if mode not in _FILE_MODES:
                raise GitError(f"{path}: not a plain file at {parent[:12]}", kind="other")
            blob = await git("hash-object", "-w", "--stdin", stdin=content)
            await git("update-index", "--cacheinfo", f"{mode},{blob},{check_path(path)}")
        tree = await git("write-tree")
        return await git(
            "commit-tree", tree, "-p", check_rev(parent), "-F", "-", stdin=message.encode()
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


async def push(repo: GitRepository, commit: str, branch: str) -> bool:
    """Push `commit` to the remote's `branch` without force; False if the remote refused
    it because the branch moved on (fetch, rebuild on the new head, push again)."""
    try:
        await run_git(
            "push",
            "--quiet",
            "origin",
            f"{check_rev(commit)}:refs/heads/{check_branch(branch)}",
            git_dir=repo.path,
            timeout_s=repo.fetch_timeout_s,
        )
    except GitError as exc:
        if any(mark in exc.stderr_tail for mark in _REJECTED):
            return False
        raise
    return True


def _identity(author: tuple[str, str], date: str | None) -> dict[str, str]:
    name, email = author
    env = {
        "GIT_AUTHOR_NAME": name,
        "GIT_AUTHOR_EMAIL": email,
        "GIT_COMMITTER_NAME": name,
        "GIT_COMMITTER_EMAIL": email,
    }
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    return env
