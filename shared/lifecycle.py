"""A service process's start and stop, recorded on the log (PipeCD's PIPED_STARTED / _STOPPED).

The runtime (`shared.runtime`) calls `record_started` once the process is
ready and `record_stopped` once its components have finished, while the pool
is still open. Every replica and every restart of a service appends to the
one stream `service-<service name>` with no version check (`ANY`): two
replicas starting together must both be recorded, never refused.

Recording is best effort, bounded in time: a log that cannot be written is
logged as a warning and never keeps a process from starting or stopping
(a service that could not reach PostgreSQL at shutdown still exits).

The projector logs in as a role that reads the log and appends nothing
(shared/eventlog/roles.py), so its processes are not recorded.
"""

from __future__ import annotations

import asyncio
from importlib import metadata
from typing import Final

import asyncpg

from shared.errors import SlipwayError
from shared.eventlog.envelope import envelope
from shared.eventlog.roles import appends_events, role_of_service
from shared.eventlog.store import ANY, EventStore, new_events
from shared.events.base import Event
from shared.events.catalog import ServiceStarted, ServiceStopped, default_registry
from shared.events.streams import service_stream
from shared.logs import get_logger

__all__ = ["VERSION", "record_started", "record_stopped", "records_lifecycle"]

log = get_logger(__name__)

_RECORD_TIMEOUT_S: Final = 5.0
_REASON_MAX: Final = 200
"""A stop reason is a signal name or a component's name; long ones are cut, payloads stay
small."""


def _version() -> str:
    try:
        return metadata.version("slipway")
    except metadata.PackageNotFoundError:
        return "unknown"


VERSION: Final = _version()
"""The version of Slipway this process runs (the installed distribution's)."""


def records_lifecycle(service: str) -> bool:
    """Whether `service`'s processes record their start and stop (its role may append)."""
    return appends_events(role_of_service(service))


async def record_started(pool: asyncpg.Pool, service: str, instance: str) -> None:
    """Record that `instance` of `service` is ready."""
    await _record(pool, ServiceStarted(service=service, instance=instance, version=VERSION))


async def record_stopped(
    pool: asyncpg.Pool, service: str, instance: str, *, reason: str, crashed: bool
) -> None:
    """Record that `instance` of `service` stopped, why, and whether that was a failure."""
    event = ServiceStopped(
        service=service,
        instance=instance,
        version=VERSION,
        reason=reason[:_REASON_MAX],
        crashed=crashed,
    )
    await _record(pool, event)


async def _record(pool: asyncpg.Pool, event: ServiceStarted | ServiceStopped) -> None:
    store = EventStore(pool, default_registry())
    events: list[Event] = [event]
    try:
        async with asyncio.timeout(_RECORD_TIMEOUT_S):
            await store.append(
                service_stream(event.service),
                new_events(events, metadata=envelope(actor=event.service)),
                expected_version=ANY,
            )
    # Best effort at the edge of the process: the start or stop goes on without its record.
    except (TimeoutError, OSError, asyncpg.PostgresError, SlipwayError) as exc:
        log.warning("lifecycle_not_recorded", type=type(event).__name__, error=str(exc))
