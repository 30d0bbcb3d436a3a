"""What the API's handlers depend on, stored once on the aiohttp Application."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import asyncpg
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from nats.aio.client import Client as NatsClient

from services.api.limits import DEFAULT_MAX_BODY_BYTES, StreamSlots
from services.api.service import ApplicationCommands
from shared.eventlog import EventStore
from shared.git import GitCache
from shared.subjects import Subjects

__all__ = ["DEPS", "Deps", "PlanPreviewSource", "deps"]


@dataclass(frozen=True)
class Deps:
    """What every route handler needs, stored once on the aiohttp application."""

    store: EventStore
    pool: asyncpg.Pool
    commands: ApplicationCommands
    read_wait_s: float
    """How long a read with `min_position` waits for the projection at most."""
    nc: NatsClient | None = None
    """For live stage logs; None: a follow polls the `stage_logs` table instead."""
    subjects: Subjects = field(default_factory=Subjects)
    plan_preview: PlanPreviewSource | None = None
    """The control config's repositories and providers, and a clone cache; None: the API runs
    without a control config (no plan previews, registrations not checked against it)."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    """The largest request body read (413 beyond)."""
    log_streams: StreamSlots = field(default_factory=StreamSlots)
    """Each key's open log follows, capped."""
    secret_public_key: rsa.RSAPublicKey | None = None
    """What `/secrets:encrypt` encrypts for: the control config's secretManagement key."""


@dataclass(frozen=True)
class PlanPreviewSource:
    """The control config as the API uses it: plan previews and registration checks."""

    repositories: Mapping[str, tuple[str, str]]
    """repository id → (remote, watched branch), from the control config."""
    cache: GitCache
    platform_providers: tuple[str, ...] | None = None
    """The platform providers' names in the config's order; None: not known, not checked."""


DEPS = web.AppKey("deps", Deps)


def deps(request: web.Request) -> Deps:
    """The route dependencies of the application serving `request`."""
    return request.app[DEPS]
