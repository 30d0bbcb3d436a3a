"""`python -m services.api`: wiring only — settings, connections, serve HTTP until SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Annotated

from msgspec import Meta

from services.api.app import DEFAULT_READ_WAIT_S, ApiServer, create_app
from shared.eventlog import EventStore
from shared.events.catalog import default_registry
from shared.runtime import Component, ServiceRuntime, run_service
from shared.settings import ServiceSettings

NAME = "api"


class ApiSettings(ServiceSettings, frozen=True, kw_only=True):
    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Meta(ge=0, le=65535)] = 8080
    """0 picks a free port (the bound one is logged as `api_server_started`)."""
    api_read_wait_s: Annotated[float, Meta(ge=0, le=60)] = DEFAULT_READ_WAIT_S
    """How long a read with `min_position` waits for the read model before answering 503."""


async def setup(runtime: ServiceRuntime[ApiSettings]) -> Sequence[Component]:
    settings = runtime.settings
    app = create_app(
        store=EventStore(runtime.pool, default_registry()),
        pool=runtime.pool,
        read_wait_s=settings.api_read_wait_s,
    )
    # Requests in flight get most of the grace; the rest is for the runtime's own steps.
    server = ApiServer(
        app,
        host=settings.api_host,
        port=settings.api_port,
        grace_s=max(settings.shutdown_grace_s - 1.0, 0.0),
    )
    await server.start()

    async def serve(stop: asyncio.Event) -> None:
        try:
            await stop.wait()
        finally:
            await server.stop()

    return [serve]


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, ApiSettings, setup))
