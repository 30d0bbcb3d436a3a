"""`GitRepository`: one remote's bare clone — fetch into it, read commits and files from it.

Reads are `resolve`, `log`, `changed_paths`, `read_file(s)`, `list_tree` and
`checkout` (a commit's tree as plain files; `read_only_checkout` shares one
tree between readers of the same commit). Fetches of one repository are
serialised by an asyncio lock per repository (one `GitCache` per process and
root) and, for processes sharing a cache directory, an `flock` beside it
(`shared.git.filelock`); reads take neither, as git's object store is safe to
read while a fetch writes. Output is parsed from NUL-separated formats, so no
file name or commit message can break it.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from shared.git.arguments import check_branch, check_path, check_rev
from shared.git.command import DEFAULT_FETCH_TIMEOUT_S, DEFAULT_TIMEOUT_S, redact, run_git
from shared.git.errors import GitError
from shared.git.filelock import file_lock

_KNOWN_COMMITS: Final = 4096  # full hashes remembered per repository as resolved
_IDLE_TREES: Final = 2  # shared checkouts kept per repository once nobody holds them
_LOG_FORMAT: Final = "%H%x00%P%x00%an%x00%ae%x00%cI%x00%B"
_LOG_FIELDS: Final = 6
_OBJECT_TYPES: Final = frozenset({b"blob", b"tree", b"commit", b"tag"})


@dataclass(frozen=True, slots=True)
class Commit:
    """A commit as `log` lists it; `parent` is the first parent ("" for a root commit)."""

    hash: str
    parent: str
    author: str
    email: str
    message: str
    committed_at: str
    """ISO 8601 with the committer's offset, as git reports it (`%cI`)."""

    @property
    def subject(self) -> str:
        """The commit message's first line."""
        return self.message.split("\n", 1)[0]


class GitRepository:
    """One remote's bare clone in the cache: fetch into it, read commits and files from it."""

    def __init__(
        self,
        remote: str,
        path: Path,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        fetch_timeout_s: float = DEFAULT_FETCH_TIMEOUT_S,
        share_checkouts: bool = False,
    ) -> None:
        self.remote = remote
        self.path = path
        self.timeout_s = timeout_s
        self.fetch_timeout_s = fetch_timeout_s
        self.share_checkouts = share_checkouts
        self._lock = asyncio.Lock()
        self._cloned = False
        # Full commit hashes seen to exist here: a commit, once fetched, never changes.
        self._known_commits: OrderedDict[str, None] = OrderedDict()
        self._trees: dict[str, _SharedTree] = {}
        self._idle_trees: OrderedDict[str, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"GitRepository({redact(self.remote)!r}, {str(self.path)!r})"

    @property
    def cloned(self) -> bool:
        """Whether the local mirror exists yet (once seen, remembered: a clone is never
        removed while its `GitCache` is in use, and the planner asks before every plan)."""
        if not self._cloned:
            self._cloned = (self.path / "HEAD").is_file()
        return self._cloned

    async def _git(
        self,
        *args: str,
        stdin: bytes | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float | None = None,
    ) -> bytes:
        return await run_git(
            *args,
            git_dir=self.path,
            stdin=stdin,
            env=env,
            timeout_s=self.timeout_s if timeout_s is None else timeout_s,
        )

    async def fetch(self, *, unless_present: str | None = None) -> None:
        """Bring every branch and tag up to date with the remote (cloning on first use).

        With `unless_present`, a commit: nothing is fetched if the clone has it by
        the time this fetch's turn comes (callers waiting for the same new commit
        share the first one's fetch).
        """
        async with self._lock, file_lock(self.path.with_suffix(".lock"), self.fetch_timeout_s):
            if unless_present is not None and self.cloned:
                with contextlib.suppress(GitError):
                    await self.resolve(unless_present)
                    return
            if not self.cloned:
                await self._init()
            await self._git(
                "fetch",
                "--prune",
                "--no-write-fetch-head",
                "--quiet",
                "origin",
                timeout_s=self.fetch_timeout_s,
            )

    async def _init(self) -> None:
        """Create the bare repository next to its final place, then move it in atomically.

        A process that dies half-way leaves only a temporary directory, and two
        processes sharing the cache never see each other's half-made clone.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{self.path.name}.", dir=self.path.parent))
        try:
            await run_git("init", "--bare", "--quiet", str(staging), timeout_s=self.timeout_s)
            for key, value in (
                ("remote.origin.url", self.remote),
                ("remote.origin.fetch", "+refs/heads/*:refs/heads/*"),
                ("gc.autoDetach", "false"),
            ):
                await run_git("config", key, value, git_dir=staging, timeout_s=self.timeout_s)
            await run_git(
                "config",
                "--add",
                "remote.origin.fetch",
                "+refs/tags/*:refs/tags/*",
                git_dir=staging,
                timeout_s=self.timeout_s,
            )
            _move_into_place(staging, self.path)
        finally:
            _remove_if_left(staging)

    async def resolve(self, ref: str) -> str:
        """The commit hash `ref` (a branch, tag or commit-ish) points at in the clone."""
        # A full hash already resolved here needs no git process: the planner resolves
        # the same commit once for every application a push touches.
        if ref in self._known_commits:
            self._known_commits.move_to_end(ref)
            return ref
        out = await self._git(
            "rev-parse", "--verify", "--end-of-options", f"{check_rev(ref)}^{{commit}}"
        )
        full = out.decode().strip()
        if full == ref:
            self._known_commits[full] = None
            if len(self._known_commits) > _KNOWN_COMMITS:
                self._known_commits.popitem(last=False)
        return full

    async def branch_head(self, branch: str) -> str:
        """The commit the branch points at, as last fetched."""
        return await self.resolve(f"refs/heads/{check_branch(branch)}")

    async def commit(self, rev: str) -> Commit:
        """One commit's details."""
        commits = self._parse_log(
            await self._git(
                "log", "-1", "-z", f"--format={_LOG_FORMAT}", "--end-of-options", check_rev(rev)
            )
        )
        if not commits:
            raise GitError(f"no commit {rev!r}", kind="not_found")
        return commits[0]

    async def log(
        self, from_exclusive: str | None, to: str, *, max_count: int | None = None
    ) -> list[Commit]:
        """Commits after `from_exclusive` up to `to` (included), first parents only, oldest first.

        With `from_exclusive` None, the whole first-parent history up to `to`
        (the newest `max_count` of it, when given).
        """
        rev = (
            check_rev(to) if not from_exclusive else f"{check_rev(from_exclusive)}..{check_rev(to)}"
        )
        args = ["log", "-z", "--first-parent", f"--format={_LOG_FORMAT}"]
        if max_count is not None:
            args.append(f"--max-count={max_count}")
        commits = self._parse_log(await self._git(*args, "--end-of-options", rev))
        commits.reverse()
        return commits

    @staticmethod
    def _parse_log(out: bytes) -> list[Commit]:
        fields = out.decode(errors="replace").split("\0")
        # `-z` ends each commit with a NUL, which leaves one empty field at the end.
        if len(fields) % _LOG_FIELDS == 1 and fields[-1] == "":
            fields.pop()
        if len(fields) % _LOG_FIELDS:
            raise GitError("unparseable git log output", kind="other")
        commits = []
        for i in range(0, len(fields), _LOG_FIELDS):
            hash_, parents, author, email, committed_at, message = fields[i : i + _LOG_FIELDS]
            commits.append(
                Commit(
                    hash=hash_.strip(),
                    parent=parents.split(" ", 1)[0].strip(),
                    author=author,
                    email=email,
                    message=message.rstrip("\n"),
                    committed_at=committed_at,
                )
            )
        return commits

    async def changed_paths(self, a: str | None, b: str) -> list[str]:
        """Paths that differ between commits `a` and `b` (every path of `b` if `a` is None).

        Renames are reported as a deletion and an addition, so both the old and
        the new place count as changed.
        """
        if a:
            out = await self._git(
                "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff",
                "--end-of-options", check_rev(a), check_rev(b),
            )  # fmt: skip
        else:
            out = await self._git(
                "ls-tree", "-r", "-z", "--name-only", "--end-of-options", check_rev(b)
            )
        return sorted(p for p in out.decode(errors="surrogateescape").split("\0") if p)

    async def read_file(self, commit: str, path: str) -> bytes | None:
        """The content of `path` at `commit`, or None when there is no file there."""
        return (await self.read_files(commit, [path]))[path]

    async def read_files(self, commit: str, paths: Sequence[str]) -> dict[str, bytes | None]:
        """`read_file` for many paths in one git process: {path: content or None}."""
        if not paths:
            return {}
        rev = check_rev(commit)
        specs = "".join(f"{rev}:{check_path(path)}\n" for path in paths).encode()
        out = await self._git("cat-file", "--batch", stdin=specs)
        found: dict[str, bytes | None] = {}
        offset = 0
        for path in paths:
            end = out.index(b"\n", offset)
            parts = out[offset:end].split()
            offset = end + 1
            # "<oid> <type> <size>" then the content and a newline; "<spec> missing" alone.
            if len(parts) == 3 and parts[1] in _OBJECT_TYPES and parts[2].isdigit():
                size = int(parts[2])
                content = out[offset : offset + size]
                offset += size + 1
                found[path] = content if parts[1] == b"blob" else None
            else:
                found[path] = None  # missing, or a submodule's commit
        return found

    async def list_tree(self, commit: str, prefix: str = "") -> list[str]:
        """Every file path at `commit` under the directory `prefix` ("" for the whole tree)."""
        prefix = check_path(prefix)
        args = [
            "ls-tree",
            "-r",
            "-z",
            "--name-only",
            "--full-tree",
            "--end-of-options",
            check_rev(commit),
        ]
        if prefix:
            args += ["--", prefix]
        out = await self._git(*args)
        paths = [p for p in out.decode(errors="surrogateescape").split("\0") if p]
        if prefix:
            # ls-tree matches path components; say so explicitly rather than trust it.
            paths = [p for p in paths if p == prefix or p.startswith(prefix + "/")]
        return sorted(paths)

    async def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """Whether `ancestor` is an ancestor of `descendant` (or the same commit)."""
        try:
            await self._git(
                "merge-base",
                "--is-ancestor",
                "--end-of-options",
                check_rev(ancestor),
                check_rev(descendant),
            )
        except GitError as exc:
            if exc.returncode == 1:
                return False
            raise
        return True

    @contextlib.asynccontextmanager
    async def checkout(self, commit: str) -> AsyncIterator[Path]:
        """The tree of `commit` as plain files in a temporary directory, removed afterwards.

        Uses a private index file, so checkouts never touch the clone's state
        and may run concurrently with each other and with fetches.
        """
        scratch = await self._check_out(commit)
        try:
            yield scratch / "tree"
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    @contextlib.asynccontextmanager
    async def read_only_checkout(self, commit: str) -> AsyncIterator[Path]:
        """`checkout` for readers only; shared between callers if `share_checkouts` is set.

        A push that touches many applications has each planned at the same
        commit: one shared tree serves them all instead of one checkout each.
        A tree stays while anyone holds it, and the last `_IDLE_TREES` released
        stay for the next caller (`close` removes them).
        """
        if not self.share_checkouts:
            async with self.checkout(commit) as tree:
                yield tree
            return
        shared = self._trees.get(commit)
        if shared is None or _failed(shared.ready):
            shared = _SharedTree(asyncio.ensure_future(self._check_out(commit)))
            self._trees[commit] = shared
        shared.users += 1
        self._idle_trees.pop(commit, None)
        try:
            scratch = await asyncio.shield(shared.ready)
            yield scratch / "tree"
        finally:
            shared.users -= 1
            if shared.users == 0 and self._trees.get(commit) is shared:
                if _failed(shared.ready):
                    del self._trees[commit]
                else:
                    self._idle_trees[commit] = None
                    await self._drop_idle_trees(_IDLE_TREES)

    async def close(self) -> None:
        """Remove the shared checkouts nobody holds."""
        await self._drop_idle_trees(0)

    async def _drop_idle_trees(self, keep: int) -> None:
        while len(self._idle_trees) > keep:
            commit, _ = self._idle_trees.popitem(last=False)
            shared = self._trees.pop(commit)
            if not shared.ready.done():
                await asyncio.wait([shared.ready])
            if not _failed(shared.ready):
                await asyncio.to_thread(shutil.rmtree, shared.ready.result(), True)

    async def _check_out(self, commit: str) -> Path:
        """A scratch directory holding the files of `commit` under `tree/`."""
        scratch = Path(tempfile.mkdtemp(prefix="slipway-checkout-"))
        tree = scratch / "tree"
        tree.mkdir()
        env = {"GIT_INDEX_FILE": str(scratch / "index")}
        try:
            await self._git(
                f"--work-tree={tree}", "read-tree", "--end-of-options", check_rev(commit), env=env
            )
            await self._git(f"--work-tree={tree}", "checkout-index", "--all", "--force", env=env)
            (scratch / "index").unlink(missing_ok=True)
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, scratch, True)
            raise
        return scratch


@dataclass(slots=True)
class _SharedTree:
    ready: asyncio.Future[Path]
    users: int = 0


def _failed(future: asyncio.Future[Path]) -> bool:
    return future.done() and (future.cancelled() or future.exception() is not None)


def _move_into_place(staging: Path, target: Path) -> None:
    try:
        staging.rename(target)
    except OSError as exc:
        if not (target / "HEAD").is_file():
            raise GitError(
                f"cannot create the clone {target}: {exc}", kind="other", stderr_tail=str(exc)
            ) from exc
        # Another process finished first: its clone is as good as ours.


def _remove_if_left(staging: Path) -> None:
    if staging.exists():
        shutil.rmtree(staging, ignore_errors=True)
