"""Push webhooks: verification and parsing, and the real HTTP endpoint waking a poll."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.gitwatcher.server import WebhookServer
from services.gitwatcher.service import Gitwatcher
from services.gitwatcher.webhooks import (
    WebhookPayloadError,
    github_signature,
    match_repository,
    normalize_remote,
    parse_github_push,
    parse_gitlab_push,
    verify_github,
    verify_gitlab,
)
from shared.eventlog import EventStore
from shared.events.catalog import CommitObserved, DeploymentTriggered, WebhookRejected
from shared.testing import wait_until
from tests.support import running
from tests.support.git_helpers import WorkRepo
from tests.support.gitwatcher import (
    SECRET,
    events_of,
    github_push,
    has_events,
    make_gitwatcher,
    post,
    register,
    registration,
    seeded_repo,
    watched,
)


def gitlab_push(url: str, ref: str = "refs/heads/main") -> bytes:
    return json.dumps(
        {"object_kind": "push", "ref": ref, "after": "b" * 40, "project": {"git_http_url": url}}
    ).encode()


# Pure verification -----------------------------------------------------------------


def test_github_signature_matches_githubs_documented_example() -> None:
    """The HMAC is GitHub's: its documentation's example secret and body give its signature."""
    assert github_signature(SECRET, b"Hello, World!") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


@pytest.mark.parametrize(
    ("secret", "signature", "problem"),
    [
        (SECRET, None, "missing X-Hub-Signature-256 header"),
        (SECRET, "sha1=abc", "X-Hub-Signature-256 is not a sha256= signature"),
        (SECRET, "sha256=" + "0" * 64, "signature does not match the body"),
        (SECRET, "sha256=ü", "signature does not match the body"),
        ("", "sha256=" + "0" * 64, "no webhook secret is configured for this repository"),
    ],
)
def test_github_verification_refuses(secret: str, signature: str | None, problem: str) -> None:
    """A missing, malformed or wrong signature, or no secret configured, is refused with why."""
    assert verify_github(secret, b"{}", signature) == problem


def test_github_verification_accepts_the_right_signature() -> None:
    """The signature over the exact body is accepted; one byte more is not."""
    body = b'{"ref": "refs/heads/main"}'
    assert verify_github(SECRET, body, github_signature(SECRET, body)) is None
    assert verify_github(SECRET, body + b" ", github_signature(SECRET, body)) is not None


def test_gitlab_token_verification() -> None:
    """GitLab's token must equal the secret."""
    assert verify_gitlab(SECRET, SECRET) is None
    assert verify_gitlab(SECRET, "guess") == "token does not match"
    assert verify_gitlab(SECRET, None) == "missing X-Gitlab-Token header"
    assert verify_gitlab("", "x") == "no webhook secret is configured for this repository"


def test_push_payloads_parse() -> None:
    """GitHub and GitLab push payloads give the repository URLs, branch and new head."""
    push = parse_github_push(github_push("https://github.com/o/r.git"))
    assert push.branch == "main" and push.after == "a" * 40 and not push.deleted
    assert "https://github.com/o/r.git" in push.repository_urls
    assert parse_github_push(github_push("u", ref="refs/tags/v1")).branch == ""
    lab = parse_gitlab_push(gitlab_push("https://gitlab.com/g/p.git", ref="refs/heads/dev"))
    assert lab.branch == "dev" and lab.repository_urls == ("https://gitlab.com/g/p.git",)
    with pytest.raises(WebhookPayloadError):
        parse_github_push(b"not json")
    with pytest.raises(WebhookPayloadError):
        parse_github_push(b'{"ref": 1}')


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ("https://github.com/Org/Repo.git", "git@github.com:org/repo.git"),
        ("ssh://git@github.com:22/org/repo", "https://token:x@github.com/org/repo/"),
        ("file:///tmp/x/config", "file:///tmp/x/config/"),
    ],
)
def test_remote_spellings_match(a: str, b: str) -> None:
    """https, ssh and scp-like spellings of one repository normalise to the same key."""
    assert normalize_remote(a) == normalize_remote(b)


def test_repository_matching() -> None:
    """A payload URL picks the repository with that remote (and branch, if several), or none."""
    remotes = {
        "config": ("git@github.com:acme/config.git", "main"),
        "config-rel": ("https://github.com/acme/config", "release"),
        "other": ("https://gitlab.com/a/b", "main"),
    }
    url = ("https://github.com/acme/config.git",)
    assert match_repository(url, remotes, "main") == "config"
    assert match_repository(url, remotes, "release") == "config-rel"
    assert match_repository(url, remotes, "feature") == "config"
    assert match_repository(("https://github.com/acme/nope.git",), remotes) is None


# The HTTP endpoint ---------------------------------------------------------------------


@pytest.fixture
def work(tmp_path: Path) -> WorkRepo:
    return seeded_repo(tmp_path / "config")


@pytest.fixture
def gitwatcher(store: EventStore, work: WorkRepo, tmp_path: Path) -> Gitwatcher:
    # A poll interval far beyond the test: only a webhook can make it fetch again.
    return make_gitwatcher(
        store, tmp_path / "cache", watched(work, poll_interval_s=3600, webhook_secret=SECRET)
    )


@pytest.fixture
async def server(gitwatcher: Gitwatcher) -> AsyncIterator[WebhookServer]:
    server = gitwatcher.webhook_server(reject_record_window_s=0)
    await server.start()
    yield server
    await server.stop()


async def test_signed_github_push_fetches_at_once(
    store: EventStore,
    projector_store: EventStore,
    work: WorkRepo,
    gitwatcher: Gitwatcher,
    server: WebhookServer,
) -> None:
    """A correctly signed GitHub push wakes the poll loop, which observes the new commit."""
    await register(store, projector_store, registration("account"))
    watcher = gitwatcher.watchers["config"]
    async with running(watcher.run):
        await wait_until(lambda: has_events(store, CommitObserved, 1), what="first observation")
        commit = work.commit({"account/dev/deployment.yaml": "v2"}, "bump account")
        body = github_push(work.url, after=commit)
        headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(SECRET, body)}
        status, answer = await post(server, "github", body, headers)
        assert (status, answer) == (202, {"status": "fetching", "repository": "config"})
        await wait_until(lambda: has_events(store, CommitObserved, 2), what="webhook-driven fetch")
    observed = await events_of(store, CommitObserved)
    assert (observed[1].commit_hash, observed[1].source) == (commit, "webhook")
    assert [t.commit_hash for t in await events_of(store, DeploymentTriggered)] == [commit]
    assert await events_of(store, WebhookRejected) == []


async def test_bad_github_signature_is_refused_and_recorded(
    store: EventStore, work: WorkRepo, gitwatcher: Gitwatcher, server: WebhookServer
) -> None:
    """A GitHub delivery with a wrong signature gets 401, a WebhookRejected, and no fetch."""
    body = github_push(work.url)
    forged = {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature("guess", body)}
    status, answer = await post(server, "github", body, forged)
    assert (status, answer) == (401, {"error": "signature does not match the body"})
    status, _ = await post(server, "github", body, {"X-GitHub-Event": "push"})
    assert status == 401
    rejected = await events_of(store, WebhookRejected)
    assert [(r.repository_id, r.provider, r.reason) for r in rejected] == [
        ("config", "github", "signature does not match the body"),
        ("config", "github", "missing X-Hub-Signature-256 header"),
    ]
    assert rejected[0].remote_addr == "127.0.0.1"
    assert gitwatcher.watchers["config"].polls == 0


async def test_gitlab_token_accepted_and_refused(
    store: EventStore, work: WorkRepo, gitwatcher: Gitwatcher, server: WebhookServer
) -> None:
    """GitLab: the right X-Gitlab-Token wakes the poll (202); a wrong one is refused, recorded."""
    body = gitlab_push(work.url)
    status, _ = await post(
        server, "gitlab", body, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "nope"}
    )
    assert status == 401
    status, answer = await post(
        server, "gitlab", body, {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": SECRET}
    )
    assert (status, answer["status"]) == (202, "fetching")
    assert gitwatcher.watchers["config"]._wake.is_set()
    (rejected,) = await events_of(store, WebhookRejected)
    assert (rejected.provider, rejected.reason) == ("gitlab", "token does not match")


@pytest.mark.usefixtures("work")
async def test_repository_by_query_other_branch_ping_and_unknown(
    server: WebhookServer, store: EventStore
) -> None:
    """`?repo=` selects the repository; other branches and pings are 200; unknown ids are 404."""
    body = github_push("https://unrelated.example/x.git", ref="refs/heads/feature")
    signed = {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(SECRET, body)}
    status, answer = await post(server, "github", body, signed, "?repo=config")
    assert (status, answer["status"]) == (200, "ignored")
    status, _ = await post(server, "github", body, signed)
    assert status == 404
    status, _ = await post(server, "github", body, signed, "?repo=nope")
    assert status == 404
    ping = b'{"zen": "Keep it logically awesome."}'
    headers = {"X-GitHub-Event": "ping", "X-Hub-Signature-256": github_signature(SECRET, ping)}
    status, answer = await post(server, "github", ping, headers, "?repo=config")
    assert (status, answer) == (200, {"status": "pong"})
    # Garbage is only parsed (and found wanting) once it is signed.
    signed_garbage = {
        "X-GitHub-Event": "push",
        "X-Hub-Signature-256": github_signature(SECRET, b"garbage"),
    }
    status, _ = await post(server, "github", b"garbage", signed_garbage)
    assert status == 400
    assert await events_of(store, WebhookRejected) == []


async def test_refusals_are_recorded_at_most_once_per_window(
    store: EventStore, work: WorkRepo, gitwatcher: Gitwatcher
) -> None:
    """A flood of forged deliveries records one WebhookRejected per window, not one each."""
    server = gitwatcher.webhook_server(reject_record_window_s=3600)
    await server.start()
    try:
        body = github_push(work.url)
        for _ in range(5):
            status, _ = await post(server, "github", body, {"X-Hub-Signature-256": "sha256=00"})
            assert status == 401
    finally:
        await server.stop()
    assert len(await events_of(store, WebhookRejected)) == 1
