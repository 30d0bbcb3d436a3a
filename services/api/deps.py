"""What the API's handlers depend on, stored once on the aiohttp Application."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
from aiohttp import web

from services.api.service import ApplicationCommands
from shared.eventlog import EventStore

__all__ = ["DEPS", "Deps", "deps"]


@dataclass(frozen=True)
class Deps:
    store: EventStore
    pool: asyncpg.Pool
    commands: ApplicationCommands
    read_wait_s: float
    """How long a read with `min_position` waits for the projection at most."""


DEPS = web.AppKey("deps", Deps)


def deps(request: web.Request) -> Deps:
    return request.app[DEPS]
