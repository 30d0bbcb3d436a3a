"""The git layer: bare-clone cache, commits, paths, files and checkouts, on real repositories."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from shared.git import GitCache, GitError, classify_stderr, git_env, redact, run_git
from shared.http import serve
from tests.support.git_helpers import WorkRepo


@pytest.fixture
def work(tmp_path: Path) -> WorkRepo:
    return WorkRepo(tmp_path / "work")


@pytest.fixture
def cache(tmp_path: Path) -> GitCache:
    return GitCache(tmp_path / "cache", timeout_s=10, fetch_timeout_s=10)


async def test_fetch_clones_then_follows_the_branch(work: WorkRepo, cache: GitCache) -> None:
    """The first fetch makes a bare clone; later fetches bring new commits in."""
    first = work.commit({"a.txt": "1"}, "first")
    repo = cache.repository(work.url)
    await repo.fetch()
    assert repo.cloned and (repo.path / "HEAD").is_file()
    assert await repo.branch_head("main") == first
    second = work.commit({"a.txt": "2"}, "second")
    assert await repo.branch_head("main") == first
    await repo.fetch()
    assert await repo.branch_head("main") == second
    assert cache.repository(work.url) is repo


async def test_log_lists_first_parent_commits_oldest_first(work: WorkRepo, cache: GitCache) -> None:
    """`log` follows first parents only, oldest first, with author, email and full message."""
    base = work.commit({"a.txt": "1"}, "base")
    one = work.commit({"a.txt": "2"}, "one\n\nwith a body", author="Bob B", email="bob@example.com")
    work.checkout_new_branch("feature")
    side = work.commit({"b.txt": "x"}, "side work")
    work.checkout("main")
    two = work.commit({"c.txt": "y"}, "two")
    merge = work.merge("feature", "Merge feature")
    repo = cache.repository(work.url)
    await repo.fetch()

    commits = await repo.log(base, merge)
    assert [c.hash for c in commits] == [one, two, merge]
    assert side not in {c.hash for c in commits}
    assert commits[0].parent == base
    assert (commits[0].author, commits[0].email) == ("Bob B", "bob@example.com")
    assert commits[0].message == "one\n\nwith a body"
    assert commits[0].subject == "one"
    assert commits[0].committed_at == "2026-01-02T03:04:05+00:00"
    assert commits[2].parent == two
    everything = await repo.log(None, merge)
    assert [c.hash for c in everything] == [base, one, two, merge]
    assert everything[0].parent == ""
    assert [c.hash for c in await repo.log(None, merge, max_count=1)] == [merge]
    assert (await repo.commit(merge)).message == "Merge feature"


async def test_changed_paths_between_commits_and_of_a_root(work: WorkRepo, cache: GitCache) -> None:
    """Changed paths include additions, edits, deletions and both sides of a rename."""
    root = work.commit({"keep.txt": "k", "old/name.txt": "n", "gone.txt": "g"}, "root")
    work.commit({"keep.txt": "k2", "gone.txt": None}, "edit and delete")
    (work.path / "new").mkdir()
    (work.path / "old" / "name.txt").rename(work.path / "new" / "name.txt")
    after = work.commit({"new/name.txt": "n", "old/name.txt": None, "sp ace.txt": "s"}, "move")
    repo = cache.repository(work.url)
    await repo.fetch()
    assert await repo.changed_paths(root, after) == [
        "gone.txt",
        "keep.txt",
        "new/name.txt",
        "old/name.txt",
        "sp ace.txt",
    ]
    assert await repo.changed_paths(None, root) == ["gone.txt", "keep.txt", "old/name.txt"]


async def test_read_file_and_list_tree(work: WorkRepo, cache: GitCache) -> None:
    """Files read back byte for byte; a missing file or a directory reads as None."""
    commit = work.commit(
        {
            "svc/dev/.pipe.yaml": "a: 1\n",
            "svc/prd/app.pipecd.yaml": "b: 2\n",
            "svcx/other.yaml": "c",
            "bin.dat": b"\x00\x01\xff",
        }
    )
    repo = cache.repository(work.url)
    await repo.fetch()
    assert await repo.read_file(commit, "svc/dev/.pipe.yaml") == b"a: 1\n"
    assert await repo.read_file(commit, "/svc/dev/.pipe.yaml") == b"a: 1\n"
    assert await repo.read_file(commit, "bin.dat") == b"\x00\x01\xff"
    assert await repo.read_file(commit, "svc/none.yaml") is None
    assert await repo.read_file(commit, "svc") is None
    assert await repo.list_tree(commit, "svc") == ["svc/dev/.pipe.yaml", "svc/prd/app.pipecd.yaml"]
    assert len(await repo.list_tree(commit)) == 4


async def test_checkout_materialises_a_commit_and_cleans_up(
    work: WorkRepo, cache: GitCache
) -> None:
    """`checkout` gives that commit's files in a temporary directory, removed on exit."""
    first = work.commit({"app/x.yaml": "v1", "README": "r"})
    work.commit({"app/x.yaml": "v2"})
    repo = cache.repository(work.url)
    await repo.fetch()
    async with repo.checkout(first) as tree:
        assert (tree / "app" / "x.yaml").read_text() == "v1"
        assert (tree / "README").read_text() == "r"
        assert not (tree / ".git").exists()
        kept = tree
    assert not kept.exists()


async def test_concurrent_fetches_of_one_repository_do_not_collide(
    work: WorkRepo, cache: GitCache
) -> None:
    """Many fetches of one repository at once all succeed (the per-repository lock)."""
    work.commit({"a": "1"})
    repo = cache.repository(work.url)
    await asyncio.gather(*(repo.fetch() for _ in range(6)))
    assert await repo.branch_head("main") == work.head()


async def test_missing_remote_is_a_git_error_with_a_kind(tmp_path: Path, cache: GitCache) -> None:
    """A file:// remote that does not exist fails with kind not_found and git's words."""
    repo = cache.repository((tmp_path / "nowhere").as_uri())
    with pytest.raises(GitError) as caught:
        await repo.fetch()
    assert caught.value.kind == "not_found"
    assert "does not appear to be a git repository" in caught.value.stderr_tail
    assert caught.value.reason.startswith("not_found: ")


async def test_unknown_revision_is_not_found(work: WorkRepo, cache: GitCache) -> None:
    """Resolving a ref that does not exist raises GitError(kind=not_found)."""
    work.commit({"a": "1"})
    repo = cache.repository(work.url)
    await repo.fetch()
    with pytest.raises(GitError) as caught:
        await repo.resolve("refs/heads/nope")
    assert caught.value.kind == "not_found"
    with pytest.raises(ValueError, match="revision"):
        await repo.resolve("--upload-pack=evil")


@pytest.fixture
async def http_401() -> AsyncIterator[str]:
    """An HTTP server that demands credentials for every path."""

    async def deny(_: web.Request) -> web.Response:
        return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="git"'})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", deny)
    server = await serve(app, "127.0.0.1", 0)
    yield f"{server.url}/org/repo.git"
    await server.stop()


async def test_auth_failure_never_prompts_and_is_kind_auth(
    http_401: str, cache: GitCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A remote asking for credentials fails at once as kind auth, even with an askpass set."""
    monkeypatch.setenv("GIT_ASKPASS", "/bin/echo")
    monkeypatch.setenv("SSH_ASKPASS", "/bin/echo")
    repo = cache.repository(http_401)
    async with asyncio.timeout(10):
        with pytest.raises(GitError) as caught:
            await repo.fetch()
    assert caught.value.kind == "auth"


async def test_unreachable_host_is_kind_unreachable(cache: GitCache) -> None:
    """A refused connection is kind unreachable."""
    repo = cache.repository("http://127.0.0.1:9/x.git")
    with pytest.raises(GitError) as caught:
        await repo.fetch()
    assert caught.value.kind == "unreachable"


async def test_timeout_kills_git_and_reports_unreachable(tmp_path: Path) -> None:
    """A command that outlives its timeout is killed and reported as unreachable."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    # `git hash-object` blocks reading a FIFO nobody writes to.
    with pytest.raises(GitError) as caught:
        await run_git("hash-object", str(fifo), cwd=tmp_path, timeout_s=0.5)
    assert caught.value.kind == "unreachable"
    assert "0.5" in caught.value.stderr_tail


def test_credentials_are_redacted_from_errors() -> None:
    """A token in a remote URL never reaches an error message."""
    text = "fatal: unable to access 'https://x-access-token:s3cr3t@github.com/o/r.git/'"
    assert "s3cr3t" not in redact(text)
    assert "https://x-access-token:*****@github.com/o/r.git" in redact(text)


@pytest.mark.parametrize(
    ("stderr", "kind"),
    [
        ("fatal: Authentication failed for 'https://h/r.git/'", "auth"),
        ("git@github.com: Permission denied (publickey).", "auth"),
        ("remote: Repository not found.\nfatal: repository 'https://h/r/' not found", "not_found"),
        ("fatal: Could not resolve host: github.invalid", "unreachable"),
        ("ssh: connect to host h port 22: Connection refused", "unreachable"),
        ("fatal: something else entirely", "other"),
    ],
)
def test_stderr_classification(stderr: str, kind: str) -> None:
    """git's stderr maps onto unreachable / auth / not_found / other."""
    assert classify_stderr(stderr) == kind


def test_environment_is_non_interactive() -> None:
    """The git environment disables prompts and askpass, and drops inherited GIT_* variables."""
    env = git_env({"GIT_DIR": "/elsewhere", "GIT_ASKPASS": "x", "SSH_ASKPASS": "y", "HOME": "/h"})
    assert env["GIT_TERMINAL_PROMPT"] == "0"
    assert "GIT_DIR" not in env and "GIT_ASKPASS" not in env and "SSH_ASKPASS" not in env
    assert env["GIT_SSH_COMMAND"] == "ssh -o BatchMode=yes"
    assert env["HOME"] == "/h"


async def test_read_files_reads_many_in_one_go(work: WorkRepo, cache: GitCache) -> None:
    """`read_files` answers each path, present, missing, a directory, or with spaces in its name."""
    commit = work.commit({"a b 12": "spaced", "d/x": "x", "e": ""})
    repo = cache.repository(work.url)
    await repo.fetch()
    assert await repo.read_files(commit, ["d/x", "missing 1", "d", "a b 12", "e"]) == {
        "d/x": b"x",
        "missing 1": None,
        "d": None,
        "a b 12": b"spaced",
        "e": b"",
    }


async def test_two_caches_on_one_directory_fetch_one_after_the_other(
    work: WorkRepo, tmp_path: Path
) -> None:
    """Two caches sharing a directory (two processes) queue their fetches on a file lock."""
    work.commit({"a": "1"})
    caches = [GitCache(tmp_path / "shared", timeout_s=10, fetch_timeout_s=10) for _ in range(2)]
    repos = [cache.repository(work.url) for cache in caches]
    for _ in range(3):
        work.commit({"a": work.head()})
        await asyncio.gather(*(repo.fetch() for repo in repos for _ in range(3)))
        assert {await repo.branch_head("main") for repo in repos} == {work.head()}
    assert repos[0].path == repos[1].path


async def test_read_only_checkouts_of_one_commit_share_one_tree(
    work: WorkRepo, tmp_path: Path
) -> None:
    """With share_checkouts, callers of one commit get one tree; idle trees beyond two go."""
    commits = [work.commit({"app/x.yaml": f"v{n}"}) for n in range(4)]
    cache = GitCache(tmp_path / "cache", timeout_s=10, fetch_timeout_s=10, share_checkouts=True)
    repo = cache.repository(work.url)
    await repo.fetch()
    trees: list[Path] = []

    async def read(commit: str) -> None:
        async with repo.read_only_checkout(commit) as tree:
            trees.append(tree)
            await asyncio.sleep(0.01)  # hold the checkout, so the five readers overlap

    await asyncio.gather(*(read(commits[0]) for _ in range(5)))
    assert len(set(trees)) == 1 and (trees[0] / "app" / "x.yaml").read_text() == "v0"
    for commit in commits[1:]:
        await read(commit)
    assert not trees[0].exists(), "the oldest idle tree is removed"
    assert trees[-1].exists()
    await cache.close()
    assert not trees[-1].exists()


async def test_read_only_checkout_is_private_by_default(work: WorkRepo, cache: GitCache) -> None:
    """Without share_checkouts, each reader gets its own tree, removed on exit."""
    commit = work.commit({"a": "1"})
    repo = cache.repository(work.url)
    await repo.fetch()
    async with repo.read_only_checkout(commit) as one, repo.read_only_checkout(commit) as two:
        assert one != two
    assert not one.exists() and not two.exists()


async def test_fetch_unless_present_skips_a_fetch_that_is_not_needed(
    work: WorkRepo, cache: GitCache, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A commit the clone already has is not fetched for, and is resolved once only."""
    commit = work.commit({"a": "1"})
    repo = cache.repository(work.url)
    await repo.fetch()
    verbs: list[str] = []
    real = run_git

    async def counting(*args: str, **kw: object) -> bytes:
        verbs.append(next(a for a in args if not a.startswith("-")))
        return await real(*args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr("shared.git.repository.run_git", counting)
    await asyncio.gather(*(repo.fetch(unless_present=commit) for _ in range(3)))
    assert await repo.resolve(commit) == commit
    assert "fetch" not in verbs and verbs.count("rev-parse") == 1
