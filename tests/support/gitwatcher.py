"""Helpers for the gitwatcher tests: the seed's config-repo layout, registration, a gitwatcher."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TypeVar

import aiohttp

from services.gitwatcher.configs import read_app_config
from services.gitwatcher.server import WebhookServer
from services.gitwatcher.service import Gitwatcher, WatchedRepository
from shared.eventlog import ANY, EventStore, new_events
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationDisabled,
    ApplicationRegistered,
)
from shared.git import GitCache
from shared.projections import ProjectionRunner
from shared.projections.applications import ApplicationsProjection
from tests.support.git_helpers import WorkRepo, app_config

E = TypeVar("E", bound=Event)

ANALYSIS_TEMPLATE = """\
apiVersion: pipecd.dev/v1beta1
kind: AnalysisTemplate
spec:
  metrics:
    grpc_error_rate:
      interval: 1m
      provider: prometheus
      expected:
        max: 0.1
      query: sum(rate(grpc_server_handled_total{grpc_code!="OK"}[1m]))
"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: 2
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      containers:
        - name: {name}
          image: ghcr.io/example/{name}:{tag}
"""


SEED_SERVICES = ("account", "auth", "billing")


def seed_layout(services: Iterable[str] = SEED_SERVICES) -> dict[str, str]:
    """The seed's config repo: a folder per service, one per environment, shared `.pipe/`."""
    files = {".pipe/analysis-template.yaml": ANALYSIS_TEMPLATE, "README.md": "config repo\n"}
    for service in services:
        files[f"{service}/dev/.pipe.yaml"] = app_config(f"{service}-dev", "dev")
        files[f"{service}/dev/deployment.yaml"] = DEPLOYMENT.format(name=service, tag="v1")
    return files


def seeded_repo(path: Path, message: str = "initial layout") -> WorkRepo:
    """A config repository at `path` whose one commit is the seed's layout."""
    repo = WorkRepo(path)
    repo.commit(seed_layout(), message)
    return repo


def registration(
    service: str, env: str = "dev", repository_id: str = "config"
) -> ApplicationRegistered:
    return ApplicationRegistered(
        application_id=f"{service}-{env}",
        name=f"{service}-{env}",
        repository_id=repository_id,
        path=f"{service}/{env}",
        config_filename=".pipe.yaml",
    )


async def register(store: EventStore, projector: EventStore, *apps: ApplicationRegistered) -> None:
    """Register `apps` and bring the `applications` view up to date (as the projector's role)."""
    for app in apps:
        await store.append(
            f"application-{app.application_id}", new_events([app]), expected_version=ANY
        )
    runner = ProjectionRunner(projector, ApplicationsProjection())
    await runner.install()
    await runner.run_until_caught_up()


async def disable(store: EventStore, projector: EventStore, application_id: str) -> None:
    """Disable `application_id` and bring the `applications` view up to date."""
    await store.append(
        f"application-{application_id}",
        new_events([ApplicationDisabled(application_id=application_id)]),
        expected_version=ANY,
    )
    await register(store, projector)


async def events_of(store: EventStore, kind: type[E]) -> list[E]:
    """Every stored event of type `kind`, in log order."""
    recorded = await store.read_all(limit=100_000)
    return [r.event for r in recorded if isinstance(r.event, kind)]


async def has_events(store: EventStore, kind: type[Event], count: int) -> bool:
    """Whether `store` holds at least `count` events of type `kind`."""
    return len(await events_of(store, kind)) >= count


def make_gitwatcher(
    store: EventStore,
    cache_dir: Path,
    *repositories: WatchedRepository,
    **kw: Any,
) -> Gitwatcher:
    return Gitwatcher(
        store=store,
        cache=GitCache(cache_dir, timeout_s=10, fetch_timeout_s=10),
        repositories=repositories,
        read_config=read_app_config,
        **kw,
    )


def watched(work: WorkRepo, repository_id: str = "config", **kw: Any) -> WatchedRepository:
    return WatchedRepository(repository_id=repository_id, remote=work.url, **kw)


SECRET = "It's a Secret to Everybody"


def github_push(url: str, ref: str = "refs/heads/main", after: str = "a" * 40) -> bytes:
    return json.dumps(
        {
            "ref": ref,
            "before": "0" * 40,
            "after": after,
            "repository": {"clone_url": url, "ssh_url": "git@example.com:o/r.git"},
        }
    ).encode()


async def post(
    server: WebhookServer, provider: str, body: bytes, headers: dict[str, str], query: str = ""
) -> tuple[int, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.url}/webhooks/{provider}{query}", data=body, headers=headers) as r,
    ):
        return r.status, await r.json()
