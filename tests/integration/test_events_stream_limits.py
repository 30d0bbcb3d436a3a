"""The JetStream events stream is bounded: NATS keeps a replay window, the log keeps everything.

On the real nats-server: a stream made without limits (as by an older version) gets them
when the relay starts; a new one has them from its creation; and the bytes limit does
drop the oldest messages.
"""

from __future__ import annotations

from pathlib import Path

from nats.aio.client import Client as NatsClient
from nats.js import api as js_api

from shared.messaging import DEFAULT_STREAM_MAX_AGE_S, DEFAULT_STREAM_MAX_BYTES, ensure_event_stream
from shared.subjects import Subjects
from shared.testing import wait_until
from tests.support import Backends
from tests.support.processes import service_env, service_processes

MAX_AGE_S = 3600.0
MAX_BYTES = 8 * 1024 * 1024


async def _limits(nc: NatsClient, subjects: Subjects) -> tuple[float | None, int | None]:
    config = (await nc.jetstream().stream_info(subjects.events_stream)).config
    return config.max_age, config.max_bytes


async def test_the_relay_puts_limits_on_an_existing_stream_at_start(
    backends: Backends, tmp_path: Path
) -> None:
    js = backends.nc.jetstream()
    subjects = backends.subjects
    unbounded = js_api.StreamConfig(name=subjects.events_stream, subjects=[subjects.all_events])
    await js.add_stream(unbounded)
    assert await _limits(backends.nc, subjects) in ((0, -1), (None, -1), (0.0, -1))
    env = service_env(
        backends,
        SLIPWAY_EVENTS_STREAM_MAX_AGE_S=str(MAX_AGE_S),
        SLIPWAY_EVENTS_STREAM_MAX_BYTES=str(MAX_BYTES),
    )
    async with service_processes(env, tmp_path) as services:
        services.start("relay")

        async def bounded() -> bool:
            return await _limits(backends.nc, subjects) == (MAX_AGE_S, MAX_BYTES)

        await wait_until(bounded, within_s=30, what="the relay's limits on the stream")


async def test_a_new_stream_is_bounded_from_its_creation(
    nc: NatsClient, subjects: Subjects
) -> None:
    """By whoever makes it first: a consumer's service makes it with the same settings."""
    await ensure_event_stream(nc.jetstream(), subjects)
    assert await _limits(nc, subjects) == (DEFAULT_STREAM_MAX_AGE_S, DEFAULT_STREAM_MAX_BYTES)


async def test_the_oldest_events_go_first_past_the_bytes_limit(
    nc: NatsClient, subjects: Subjects
) -> None:
    js = nc.jetstream()
    await ensure_event_stream(js, subjects, max_bytes=256 * 1024)
    subject = subjects.all_events.replace(">", "deployment.d1.deployment_started")
    for _ in range(20):
        await js.publish(subject, b"x" * 32 * 1024)
    state = (await js.stream_info(subjects.events_stream)).state
    assert state.last_seq == 20
    assert state.first_seq > 1  # the oldest were dropped…
    assert state.bytes <= 256 * 1024  # …to keep the stream within its limit
