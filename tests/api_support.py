"""Serving the API in the test's own event loop, with the `applications` projection kept live."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import asyncpg

from services.api.app import ApiServer, create_app
from shared.eventlog import EventStore
from shared.projections import ProjectionRunner
from shared.projections.applications import ApplicationsProjection
from tests.support import running


@contextlib.asynccontextmanager
async def running_projection(store: EventStore) -> AsyncIterator[ProjectionRunner]:
    """The `applications` projection, installed and applying events until the block ends."""
    runner = ProjectionRunner(store, ApplicationsProjection(), idle_sleep_s=0.01)
    await runner.install()
    async with running(runner.run):
        yield runner


@contextlib.asynccontextmanager
async def served_api(
    store: EventStore, pool: asyncpg.Pool, *, read_wait_s: float = 5.0
) -> AsyncIterator[str]:
    """The API on a free loopback port; yields its base URL."""
    server = ApiServer(
        create_app(store=store, pool=pool, read_wait_s=read_wait_s), port=0, grace_s=1.0
    )
    await server.start()
    try:
        yield server.url
    finally:
        await server.stop()
