"""Serving the API in the test's own event loop, with its read models kept live, and its keys."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping
from typing import Any

import asyncpg
from nats.aio.client import Client as NatsClient

from services.api.app import ApiServer, create_app
from services.api.deps import PlanPreviewSource
from shared.apikeys import create_api_key
from shared.eventlog import EventStore
from shared.projections import ProjectionRunner
from shared.projections.applications import ApplicationsProjection
from shared.projections.deployments import DeploymentsProjection
from shared.projections.discovered import DiscoveredConfigsProjection
from shared.projections.insights import InsightsProjection
from shared.projections.stream_stats import StreamStatsProjection
from shared.subjects import Subjects
from tests.support import running

_KEYS: dict[str, str] = {}


def api_key_for(url: str) -> str:
    """The admin key `served_api` made for the API at `url`."""
    return _KEYS[url]


def auth_headers(key: str) -> Mapping[str, str]:
    return {"Authorization": f"Bearer {key}"}


@contextlib.asynccontextmanager
async def running_projection(projector: EventStore) -> AsyncIterator[ProjectionRunner]:
    """The projections the API reads (`applications`, `deployments`, `insights`,
    `stream_stats`, `discovered_configs`), applying
    events until the block ends; yields the `applications` runner.

    `projector` is a store as the projector's role: only it may build projections.
    """
    runner = ProjectionRunner(projector, ApplicationsProjection(), idle_sleep_s=0.01)
    deployments = ProjectionRunner(projector, DeploymentsProjection(), idle_sleep_s=0.01)
    insights = ProjectionRunner(projector, InsightsProjection(), idle_sleep_s=0.01)
    stats = ProjectionRunner(projector, StreamStatsProjection(), idle_sleep_s=0.01)
    discovered = ProjectionRunner(projector, DiscoveredConfigsProjection(), idle_sleep_s=0.01)
    for each in (runner, deployments, insights, stats, discovered):
        await each.install()
    async with running(runner.run, deployments.run, insights.run, stats.run, discovered.run):
        yield runner


@contextlib.asynccontextmanager
async def served_api(
    store: EventStore,
    pool: asyncpg.Pool,
    *,
    read_wait_s: float = 5.0,
    nc: NatsClient | None = None,
    subjects: Subjects | None = None,
    key_cache_ttl_s: float = 0.5,
    plan_preview: PlanPreviewSource | None = None,
    admin_name: str = "test-admin",
    **options: Any,
) -> AsyncIterator[str]:
    """The API on a free loopback port, with an admin key (`api_key_for(url)`); yields its URL.

    Key names are unique: a second API on the same schema needs another `admin_name`.

    `options` go to `create_app` as they are (limits such as `max_body_bytes`)."""
    server = ApiServer(
        create_app(
            store=store,
            pool=pool,
            read_wait_s=read_wait_s,
            nc=nc,
            subjects=subjects,
            key_cache_ttl_s=key_cache_ttl_s,
            plan_preview=plan_preview,
            **options,
        ),
        port=0,
        grace_s=1.0,
    )
    key = await create_api_key(store, "admin", admin_name)
    await server.start()
    _KEYS[server.url] = key
    try:
        yield server.url
    finally:
        _KEYS.pop(server.url, None)
        await server.stop()
