"""Git through the `git` command line, run as asyncio subprocesses, over a cache of bare clones.

Every command is `asyncio.create_subprocess_exec` (never a shell) with an
environment that cannot hang on a prompt: `GIT_TERMINAL_PROMPT=0`, no askpass
programs, no credential helpers, `ssh -o BatchMode=yes`, and no inherited
`GIT_*` variables (a service started from a git hook would otherwise act on
the hook's repository). Output is parsed from NUL-separated formats, so no
file name or commit message can break it.

`GitCache(root)` keeps one bare clone per remote under `root`; a
`GitRepository` from `cache.repository(remote)` fetches into it and reads
from it: `resolve`, `log`, `changed_paths`, `read_file`, `list_tree`,
`checkout`. Fetches of one repository are serialised by an asyncio lock per
repository (one `GitCache` per process and root) and, for processes sharing
a cache directory, an `flock` beside it; reads take neither, as git's object
store is safe to read while a fetch writes.

Errors: every failure is a `GitError` (an `Unavailable`: the same call may
work later) with a `kind` — `unreachable`, `auth`, `not_found` or `other` —
read from git's stderr, whose last lines it carries with any credentials
removed.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import os
import re
import shutil
import signal
import tempfile
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, Literal

from opentelemetry import trace

from shared.errors import Unavailable
from shared.logs import get_logger
from shared.redaction import redact as redact_secrets

__all__ = [
    "Commit",
    "GitCache",
    "GitError",
    "GitErrorKind",
    "GitRepository",
    "branch_name_problem",
    "classify_stderr",
    "git_env",
    "redact",
    "run_git",
]

GitErrorKind = Literal["unreachable", "auth", "not_found", "other"]

DEFAULT_TIMEOUT_S: Final = 30.0
DEFAULT_FETCH_TIMEOUT_S: Final = 300.0
_STDERR_TAIL_LINES: Final = 6
_STDERR_TAIL_CHARS: Final = 1000
_KILL_WAIT_S: Final = 5.0
_LOCK_POLL_S: Final = 0.05
_KNOWN_COMMITS: Final = 4096  # full hashes remembered per repository as resolved
_IDLE_TREES: Final = 2  # shared checkouts kept per repository once nobody holds them

log = get_logger(__name__)
_tracer = trace.get_tracer("slipway.git")

# Environment variables git and ssh read from their parent that must not leak
# into a service's git: anything GIT_* (except how to run ssh, which is how a
# deployment supplies its keys), and the askpass programs that would pop up a
# prompt on a desktop.
_KEEP_GIT_VARS: Final = frozenset({"GIT_SSH", "GIT_SSH_COMMAND", "GIT_SSH_VARIANT"})
_DROP_VARS: Final = frozenset({"SSH_ASKPASS", "DISPLAY"})

# Options given to every command: credentials come only from the remote URL or
# from ssh keys, never from a helper that might ask someone.
_CONFIG_ARGS: Final = (
    "-c",
    "credential.helper=",
    "-c",
    "core.askPass=",
    "-c",
    "gc.autoDetach=false",
)

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
        return self.message.split("\n", 1)[0]


def redact(text: str) -> str:
    """`text` with credentials masked: those in any URL, and every registered secret."""
    return redact_secrets(text)


def classify_stderr(stderr: str) -> GitErrorKind:
    """Which kind of failure git's stderr describes."""
    for kind, pattern in _PATTERNS:
        if pattern.search(stderr):
            return kind
    return "other"


def git_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment for a non-interactive git: `base` (default os.environ) made safe."""
    source = os.environ if base is None else base
    env = {
        key: value
        for key, value in source.items()
        if key not in _DROP_VARS and (not key.startswith("GIT_") or key in _KEEP_GIT_VARS)
    }
    env.update(
        GIT_TERMINAL_PROMPT="0",
        GIT_CONFIG_NOSYSTEM="1",
        GCM_INTERACTIVE="never",
        SSH_ASKPASS_REQUIRE="never",
        # Stable, English stderr: it is parsed to classify failures.
        LC_ALL="C",
        LANGUAGE="C",
    )
    env.setdefault("GIT_SSH_COMMAND", "ssh -o BatchMode=yes")
    return env


async def run_git(
    *args: str,
    git_dir: Path | None = None,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> bytes:
    """Run `git <args>` and return its stdout; a `GitError` on failure or timeout.

    `env` entries are added to the safe environment of `git_env()`.
    """
    argv = ["git", *_CONFIG_ARGS]
    if git_dir is not None:
        argv.append(f"--git-dir={git_dir}")
    argv.extend(args)
    shown = tuple(redact(a) for a in ("git", *args))
    verb = next((a for a in args if not a.startswith("-")), "git")
    with _tracer.start_as_current_span(f"git {verb}", kind=trace.SpanKind.CLIENT) as span:
        span.set_attribute("git.command", " ".join(shown))
        try:
            process = await asyncio.create_subprocess_exec(
                *argv,
                cwd=cwd,
                env=git_env() | dict(env or {}),
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Its own process group, so a timeout also kills the helpers git
                # started (ssh, git-remote-https) instead of orphaning them.
                start_new_session=True,
            )
        except OSError as exc:
            raise GitError(
                f"cannot run git: {exc}", kind="other", command=shown, stderr_tail=str(exc)
            ) from exc
        try:
            async with asyncio.timeout(timeout_s):
                out, err = await process.communicate(stdin)
        except TimeoutError as exc:
            await _kill(process)
            span.set_status(trace.StatusCode.ERROR, "timeout")
            raise GitError(
                f"{' '.join(shown)}: no answer within {timeout_s:g} s",
                kind="unreachable",
                command=shown,
                stderr_tail=f"timed out after {timeout_s:g} s",
            ) from exc
        except BaseException:
            await _kill(process)
            raise
        if process.returncode != 0:
            tail = _tail(redact(err.decode(errors="replace")))
            kind = classify_stderr(tail)
            span.set_status(trace.StatusCode.ERROR, kind)
            raise GitError(
                f"{' '.join(shown)} failed ({kind}): {tail or f'exit {process.returncode}'}",
                kind=kind,
                command=shown,
                stderr_tail=tail,
                returncode=process.returncode,
            )
        return out


async def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), _KILL_WAIT_S)


def _tail(stderr: str) -> str:
    lines = [line.rstrip() for line in stderr.strip().splitlines() if line.strip()]
    return "\n".join(lines[-_STDERR_TAIL_LINES:])[-_STDERR_TAIL_CHARS:]


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


def _check_branch(name: str) -> str:
    if problem := branch_name_problem(name):
        raise ValueError(problem)
    return name


def _check_rev(rev: str) -> str:
    """`rev` if it is safe to pass as a revision argument (never an option, one line)."""
    if not rev or rev.startswith("-") or any(c in rev for c in "\0\n\r"):
        raise ValueError(f"not a usable git revision: {rev!r}")
    return rev


def _check_path(path: str) -> str:
    if any(c in path for c in "\0\n\r"):
        raise ValueError(f"not a usable path: {path!r}")
    return path.strip("/")


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
        # Full commit hashes seen to exist here: a commit, once fetched, never changes.
        self._known_commits: OrderedDict[str, None] = OrderedDict()
        self._trees: dict[str, _SharedTree] = {}
        self._idle_trees: OrderedDict[str, None] = OrderedDict()

    def __repr__(self) -> str:
        return f"GitRepository({redact(self.remote)!r}, {str(self.path)!r})"

    @property
    def cloned(self) -> bool:
        return (self.path / "HEAD").is_file()

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
        async with self._lock, _file_lock(self.path.with_suffix(".lock"), self.fetch_timeout_s):
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
            "rev-parse", "--verify", "--end-of-options", f"{_check_rev(ref)}^{{commit}}"
        )
        full = out.decode().strip()
        if full == ref:
            self._known_commits[full] = None
            if len(self._known_commits) > _KNOWN_COMMITS:
                self._known_commits.popitem(last=False)
        return full

    async def branch_head(self, branch: str) -> str:
        """The commit the branch points at, as last fetched."""
        return await self.resolve(f"refs/heads/{_check_branch(branch)}")

    async def commit(self, rev: str) -> Commit:
        """One commit's details."""
        commits = self._parse_log(
            await self._git(
                "log", "-1", "-z", f"--format={_LOG_FORMAT}", "--end-of-options", _check_rev(rev)
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
            _check_rev(to)
            if not from_exclusive
            else f"{_check_rev(from_exclusive)}..{_check_rev(to)}"
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
                "--end-of-options", _check_rev(a), _check_rev(b),
            )  # fmt: skip
        else:
            out = await self._git(
                "ls-tree", "-r", "-z", "--name-only", "--end-of-options", _check_rev(b)
            )
        return sorted(p for p in out.decode(errors="surrogateescape").split("\0") if p)

    async def read_file(self, commit: str, path: str) -> bytes | None:
        """The content of `path` at `commit`, or None when there is no file there."""
        return (await self.read_files(commit, [path]))[path]

    async def read_files(self, commit: str, paths: Sequence[str]) -> dict[str, bytes | None]:
        """`read_file` for many paths in one git process: {path: content or None}."""
        if not paths:
            return {}
        rev = _check_rev(commit)
        specs = "".join(f"{rev}:{_check_path(path)}\n" for path in paths).encode()
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
        prefix = _check_path(prefix)
        args = [
            "ls-tree",
            "-r",
            "-z",
            "--name-only",
            "--full-tree",
            "--end-of-options",
            _check_rev(commit),
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
        try:
            await self._git(
                "merge-base",
                "--is-ancestor",
                "--end-of-options",
                _check_rev(ancestor),
                _check_rev(descendant),
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
                f"--work-tree={tree}", "read-tree", "--end-of-options", _check_rev(commit), env=env
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


@contextlib.asynccontextmanager
async def _file_lock(path: Path, timeout_s: float) -> AsyncIterator[None]:
    """An exclusive `flock` on `path`, for processes sharing a cache directory.

    Two git processes fetching into one repository race for its ref locks and
    one fails; this queues them instead. Polled without blocking, so waiting
    never ties up a thread and a cancelled wait leaves nothing behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if asyncio.get_running_loop().time() > deadline:
                    raise GitError(
                        f"{path}: another process held the fetch lock for {timeout_s:g} s",
                        kind="other",
                        stderr_tail="fetch lock held by another process",
                    ) from None
                await asyncio.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


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


_LOG_FORMAT: Final = "%H%x00%P%x00%an%x00%ae%x00%cI%x00%B"
_LOG_FIELDS: Final = 6
_OBJECT_TYPES: Final = frozenset({b"blob", b"tree", b"commit", b"tag"})


class GitCache:
    """Bare clones of remotes under `root`, one directory per remote URL."""

    def __init__(
        self,
        root: Path | str,
        *,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        fetch_timeout_s: float = DEFAULT_FETCH_TIMEOUT_S,
        share_checkouts: bool = False,
    ) -> None:
        self.root = Path(root)
        self.timeout_s = timeout_s
        self.fetch_timeout_s = fetch_timeout_s
        self.share_checkouts = share_checkouts
        self._repositories: dict[str, GitRepository] = {}

    def repository(self, remote: str) -> GitRepository:
        """The cached clone of `remote` (the same object, and lock, for every call)."""
        repository = self._repositories.get(remote)
        if repository is None:
            repository = GitRepository(
                remote,
                self.root / _directory_name(remote),
                timeout_s=self.timeout_s,
                fetch_timeout_s=self.fetch_timeout_s,
                share_checkouts=self.share_checkouts,
            )
            self._repositories[remote] = repository
        return repository

    async def close(self) -> None:
        """Remove every repository's shared checkouts that nobody holds."""
        for repository in self._repositories.values():
            await repository.close()


def _directory_name(remote: str) -> str:
    """A readable, collision-free directory name for `remote`: `<last part>-<hash>.git`."""
    digest = hashlib.sha256(remote.encode()).hexdigest()[:16]
    last = redact(remote).rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1].removesuffix(".git")
    slug = re.sub(r"[^A-Za-z0-9._-]+", "_", last).strip("._")[:40] or "repo"
    return f"{slug}-{digest}.git"
