"""Raw-event webhooks: every selected event to the URL in commit order, signed, retried with
back-off, recorded, at least once with a stable `Slipway-Delivery` id; one leader per hook."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from aiohttp import web

from services.notifier.event_hooks import EventHookWorker, HookTarget, hook_targets_of
from services.notifier.notify.retry import RetryPolicy
from services.notifier.notify.webhook import DELIVERY_HEADER, verify
from shared.config import load_control_config
from shared.eventlog import EventStore
from shared.events.feed import Feed, selection_of
from shared.testing import wait_until
from tests.support import running
from tests.support.subscriber import all_events, append_story

SECRET = b"hook-secret"


class Receiver:
    """A webhook receiver that refuses each delivery's first `fail_first` attempts (503)."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.attempts: dict[str, int] = {}
        self.accepted: list[tuple[str, bytes, dict[str, str]]] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        delivery = request.headers[DELIVERY_HEADER]
        self.attempts[delivery] = self.attempts.get(delivery, 0) + 1
        if self.attempts[delivery] <= self.fail_first:
            return web.Response(status=503, text="busy")
        self.accepted.append((delivery, body, dict(request.headers)))
        return web.Response(status=204)

    def unique(self) -> list[tuple[str, bytes, dict[str, str]]]:
        """What a receiver that dedupes by delivery id keeps."""
        seen: set[str] = set()
        out = []
        for item in self.accepted:
            if item[0] not in seen:
                seen.add(item[0])
                out.append(item)
        return out


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    target = Receiver()
    app = web.Application()
    app.router.add_post("/hook", target.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    target.url = f"http://127.0.0.1:{port}/hook"
    yield target
    await runner.cleanup()


def worker(
    store: EventStore, url: str, schema: str, hook: HookTarget, **options: Any
) -> EventHookWorker:
    return EventHookWorker(
        store=store,
        database_url=url,
        schema=schema,
        hooks=[hook],
        policy=RetryPolicy(base_s=0.01, cap_s=0.05),
        standby_poll_s=0.05,
        **options,
    )


async def expected_documents(store: EventStore, fmt: str, **selection: Any) -> list[bytes]:
    async def read_stream(stream_id: str, count: int) -> list[Any]:
        return await store.read_stream(stream_id, limit=count)

    feed = Feed(selection_of(fmt=fmt, **selection), read_stream)
    return [d.body for e in await all_events(store) for d in await feed.documents(e)]


async def test_cdevents_hook_gets_every_document_in_order_signed_and_retried(
    store: EventStore, pool: asyncpg.Pool, app_database_url: str, schema: str, receiver: Receiver
) -> None:
    receiver.fail_first = 2
    hook = HookTarget("dora", receiver.url, selection_of(fmt="cdevents"), secret=SECRET)
    await append_story(store)
    expected = await expected_documents(store, "cdevents")
    the_worker = worker(store, app_database_url, schema, hook)
    async with running(the_worker.run):
        await wait_until(lambda: len(receiver.unique()) >= len(expected), what="every document")
    got = receiver.unique()
    assert [body for _, body, _ in got] == expected
    for _, body, headers in got:
        assert verify(SECRET, body, headers["Slipway-Signature"])
        assert headers["Content-Type"] == "application/cloudevents+json"
        assert headers["Slipway-Event"].startswith("dev.cdevents.")
    assert all(n == 3 for n in receiver.attempts.values()), "two refusals, then delivered"
    rows = await pool.fetch("SELECT * FROM event_hook_deliveries ORDER BY global_position")
    assert {str(r["delivery_id"]) for r in rows} == {d for d, _, _ in got}
    assert all(r["delivered"] and r["attempts"] == 3 and r["status"] == 204 for r in rows)
    assert "503" in rows[0]["error"]


async def test_a_restarted_hook_goes_on_and_replicas_deliver_once(
    store: EventStore, app_database_url: str, schema: str, receiver: Receiver
) -> None:
    """Stopped part-way and started again (twice over: two replicas at once), the hook goes
    on from its checkpoint: every document, in order, none accepted twice."""
    hook = HookTarget(
        "audit", receiver.url, selection_of(categories=["deployment"], fmt="native"), secret=SECRET
    )
    await append_story(store)
    first = worker(store, app_database_url, schema, hook)
    async with running(first.run):
        await wait_until(lambda: len(receiver.accepted) >= 5, what="a few deliveries")
    await append_story(store)
    expected = await expected_documents(store, "native", categories=["deployment"])
    replicas = [worker(store, app_database_url, schema, hook) for _ in range(2)]
    async with running(*(r.run for r in replicas)):
        await wait_until(lambda: len(receiver.unique()) >= len(expected), what="the rest")
        await asyncio.sleep(0)
    assert [body for _, body, _ in receiver.unique()] == expected
    ids = [d for d, _, _ in receiver.accepted]
    # At most the event in flight when the first worker stopped comes twice (same id).
    assert len(ids) - len(set(ids)) <= 1
    assert all(json.loads(b)["stream_id"].startswith("deployment-") for b in expected)


def test_hooks_from_the_control_config_read_their_secret_file(tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s3cret\n")
    path = tmp_path / "slipway.yaml"
    path.write_text(
        "apiVersion: slipway.dev/v1\nkind: Slipway\nspec:\n  project: p\n  eventHooks:\n"
        "    - {name: dora, url: 'http://127.0.0.1:1/x', format: cdevents,"
        " types: [deployment_completed], signatureSecretFile: secret}\n"
    )
    (hook,) = hook_targets_of(load_control_config(path))
    assert hook.secret == b"s3cret" and hook.selection.format == "cdevents"
    assert hook.selection.types == frozenset({"deployment_completed"})
