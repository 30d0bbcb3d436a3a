"""The push-webhook endpoint against forged and oversized deliveries (DESIGN §14).

A real gitwatcher webhook server on loopback, a real PostgreSQL: a delivery
is read only up to a cap, and nothing of it is parsed before its signature
(or token) has been verified.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from services.gitwatcher import webhooks
from services.gitwatcher.server import WebhookServer
from services.gitwatcher.service import Gitwatcher
from services.gitwatcher.webhooks import github_signature
from shared.eventlog import EventStore
from shared.events.catalog import WebhookRejected
from tests.support.git_helpers import WorkRepo
from tests.support.gitwatcher import events_of, make_gitwatcher, seeded_repo, watched

SECRET = "It's a Secret to Everybody"
CAP = 64 * 1024


@pytest.fixture
def work(tmp_path: Path) -> WorkRepo:
    return seeded_repo(tmp_path / "config")


@pytest.fixture
def gitwatcher(store: EventStore, work: WorkRepo, tmp_path: Path) -> Gitwatcher:
    return make_gitwatcher(
        store, tmp_path / "cache", watched(work, poll_interval_s=3600, webhook_secret=SECRET)
    )


@pytest.fixture
async def server(gitwatcher: Gitwatcher) -> AsyncIterator[WebhookServer]:
    server = gitwatcher.webhook_server(reject_record_window_s=0, max_body_bytes=CAP)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
def parsed(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every body the webhook module's JSON decoding is handed (the decoder itself still runs)."""
    seen: list[bytes] = []
    decode = webhooks._decode

    def spy(body: bytes) -> dict[str, Any]:
        seen.append(body)
        return decode(body)

    monkeypatch.setattr(webhooks, "_decode", spy)
    return seen


def push(url: str) -> bytes:
    return json.dumps(
        {"ref": "refs/heads/main", "after": "a" * 40, "repository": {"clone_url": url}}
    ).encode()


async def post(
    server: WebhookServer, provider: str, body: Any, headers: dict[str, str], query: str = ""
) -> tuple[int, dict[str, Any]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.url}/webhooks/{provider}{query}", data=body, headers=headers) as r,
    ):
        return r.status, await r.json(content_type=None)


async def test_an_unsigned_delivery_is_refused_before_its_body_is_parsed(
    server: WebhookServer, work: WorkRepo, store: EventStore, parsed: list[bytes]
) -> None:
    """Forged or unsigned GitHub and GitLab deliveries are 401 and never reach the JSON decoder."""
    body = push(work.url)
    forged = {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature("guess", body)}
    assert (await post(server, "github", body, forged))[0] == 401
    assert (await post(server, "github", b"{not json", {"X-GitHub-Event": "push"}))[0] == 401
    gitlab = {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": "guess"}
    assert (await post(server, "gitlab", body, gitlab))[0] == 401
    assert (await post(server, "github", body, forged, "?repo=config"))[0] == 401
    assert parsed == []
    # Refusals are still recorded against the only repository there is.
    assert len(await events_of(store, WebhookRejected)) == 4
    # A signed delivery is parsed, once verified.
    signed = {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(SECRET, body)}
    assert (await post(server, "github", body, signed))[0] == 202
    assert parsed


async def test_a_delivery_over_the_cap_is_413(
    server: WebhookServer, work: WorkRepo, parsed: list[bytes]
) -> None:
    """A body over `max_body_bytes` is 413 — declared, or streamed without a length."""
    big = push(work.url) + b" " * CAP
    signed = {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(SECRET, big)}
    status, answer = await post(server, "github", big, signed)
    assert status == 413, answer

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(1000):  # 64 MB if it were all read
            yield b" " * 65536

    status, _ = await post(server, "github", endless(), {"X-GitHub-Event": "push"})
    assert status == 413
    assert parsed == []


async def test_a_huge_declared_length_is_refused_without_waiting_for_the_body(
    server: WebhookServer,
) -> None:
    """`Content-Length: 1 GB` is answered 413 at once, before the server reads (or waits for) it."""
    reader, writer = await asyncio.open_connection(server.host, server.port)
    try:
        writer.write(
            b"POST /webhooks/github HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n{"
        )
        await writer.drain()
        async with asyncio.timeout(5):
            status_line = await reader.readline()
    finally:
        writer.close()
    assert status_line.split()[1] == b"413", status_line


async def test_one_repositorys_secret_cannot_wake_another(
    store: EventStore, work: WorkRepo, tmp_path: Path
) -> None:
    """Without `?repo=`, a delivery signed with A's secret but naming B's remote wakes nobody."""
    other = seeded_repo(tmp_path / "other")
    gitwatcher = make_gitwatcher(
        store,
        tmp_path / "cache2",
        watched(work, poll_interval_s=3600, webhook_secret=SECRET),
        watched(other, "other", poll_interval_s=3600, webhook_secret="B's own secret"),
    )
    server = gitwatcher.webhook_server(reject_record_window_s=0, max_body_bytes=CAP)
    await server.start()
    try:
        body = push(other.url)
        signed_by_a = {
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": github_signature(SECRET, body),
        }
        assert (await post(server, "github", body, signed_by_a))[0] == 404
        assert not gitwatcher.watchers["other"]._wake.is_set()
        signed_by_b = {
            "X-GitHub-Event": "push",
            "X-Hub-Signature-256": github_signature("B's own secret", body),
        }
        assert (await post(server, "github", body, signed_by_b))[0] == 202
        assert gitwatcher.watchers["other"]._wake.is_set()
        assert not gitwatcher.watchers["config"]._wake.is_set()
    finally:
        await server.stop()


async def test_a_signed_body_nested_too_deeply_is_a_400_not_a_crash(
    server: WebhookServer, parsed: list[bytes]
) -> None:
    """A genuine signer sending JSON nested beyond the decoder's stack gets 400, not a 500."""
    body = b"[" * 30_000 + b"]" * 30_000  # under the test server's 64 KiB cap
    signed = {"X-GitHub-Event": "push", "X-Hub-Signature-256": github_signature(SECRET, body)}
    status, answer = await post(server, "github", body, signed)
    assert status == 400, answer
    assert parsed  # it was verified, then refused while parsing
