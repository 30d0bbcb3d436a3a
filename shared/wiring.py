"""The start-up steps most services share, so each `__main__.py` keeps only what is its own.

- `control_config`: the control config that `SLIPWAY_CONTROL_CONFIG` names, its
  credentials registered with the redactor (`shared.config.secrets`) and its
  chart repositories given to helm (`shared.config.chart_repositories`). One
  that cannot be loaded is a `ConfigError` naming the setting and the file,
  which the runtime turns into exit 78 (EX_CONFIG), as for bad settings: a
  supervisor should not restart into the same mistake.
- `git_cache_dir`: where a service's bare clones live.
- `EventWiring`: the event store and JetStream of a service that consumes the
  events stream, its durable consumers and their backlog.

Settings classes stay with each service: what it can be told is part of it.
"""

from __future__ import annotations

import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict, Unpack

from nats.js import JetStreamContext
from opentelemetry import trace

from shared.config import ControlConfig, load_control_config
from shared.config.chart_repositories import install_chart_repositories
from shared.config.secrets import control_secrets
from shared.consumer import EventConsumer, Handler, Prepare
from shared.errors import ConfigError
from shared.eventlog import EventStore
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import default_registry
from shared.messaging import ensure_event_stream
from shared.redaction import REDACTOR
from shared.runtime import ServiceRuntime
from shared.settings import env_key

__all__ = ["ConsumerOptions", "EventWiring", "control_config", "git_cache_dir"]


def control_config(path: str) -> ControlConfig:
    """The control config at `path`, its secrets registered with the redactor; a
    `ConfigError` naming the setting and the file if it cannot be loaded."""
    try:
        control = load_control_config(Path(path))
    except ConfigError as exc:
        raise ConfigError(f"{env_key('control_config')}: {exc}") from exc
    # Before anything can log them: its credentials are masked in every log and record.
    REDACTOR.add(*control_secrets(control), pinned=True)
    # Helm finds the chart repositories an application names, as PipeCD's piped adds them.
    install_chart_repositories(control.spec.chart_repositories)
    return control


def git_cache_dir(configured: str, default_name: str) -> str:
    """`configured`, else `<tmp>/<default_name>`: each service clones into its own directory."""
    return configured or str(Path(tempfile.gettempdir()) / default_name)


class ConsumerOptions(TypedDict, total=False):
    """`EventConsumer`'s tuning, as a service passes it to `EventWiring.consumer`."""

    handles: Sequence[type[Event]] | None
    batch_size: int
    events_per_transaction: int
    fetch_timeout_s: float
    ack_wait_s: float
    max_deliver: int
    backoff_s: Sequence[float]
    after_commit: Callable[[RecordedEvent], Awaitable[None]] | None
    tracer: trace.Tracer | None
    concurrency: int
    ordering_key: Callable[[RecordedEvent], str] | None
    inbox_retention_s: float
    prepare: Prepare | None


@dataclass(frozen=True)
class EventWiring:
    """The event store and JetStream of a service, with the events stream known to exist."""

    runtime: ServiceRuntime[Any]
    store: EventStore
    js: JetStreamContext

    @classmethod
    async def start(cls, runtime: ServiceRuntime[Any]) -> EventWiring:
        """Open the store and make sure the events stream exists (created if missing only:
        its settings are the relay's to keep)."""
        js = runtime.nc.jetstream()
        settings = runtime.settings
        await ensure_event_stream(
            js,
            runtime.subjects,
            max_age_s=settings.events_stream_max_age_s,
            max_bytes=settings.events_stream_max_bytes,
        )
        return cls(
            runtime,
            EventStore(
                runtime.pool, default_registry(), max_event_bytes=runtime.settings.event_max_bytes
            ),
            js,
        )

    def consumer(
        self, name: str, handler: Handler, **options: Unpack[ConsumerOptions]
    ) -> EventConsumer:
        """The durable consumer `name` of the events stream, handling events with `handler`."""
        options.setdefault("inbox_retention_s", self.runtime.settings.consumer_inbox_retention_s)
        return EventConsumer(
            name=name,
            js=self.js,
            pool=self.runtime.pool,
            registry=self.store.registry,
            subjects=self.runtime.subjects,
            handler=handler,
            **options,
        )

    async def backlog(self, consumer_name: str) -> int:
        """Events the consumer has not acknowledged: not yet delivered, or delivered in flight."""
        info = await self.js.consumer_info(self.runtime.subjects.events_stream, consumer_name)
        return int(info.num_pending or 0) + int(info.num_ack_pending or 0)
