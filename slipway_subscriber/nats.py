"""Following the events stream on NATS JetStream through a durable consumer of one's own.

Log in as a subscriber identity (docs/events.md): it may create, read and
delete only its own durables. The consumer is created afresh at each start,
at the stream sequence after the checkpoint (or where `start` says for a
first start), with no acks: the checkpoint, not the server, says what was
handled, and messages come strictly in stream order — the relay's commit
order. A checkpoint older than the stream's replay window raises
`FellBehind`: read over HTTP from the checkpoint (`SseSource`, same
positions) until caught up, then come back.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from datetime import datetime
from typing import Final

import nats
from nats.errors import Error as NatsError
from nats.errors import TimeoutError as NatsTimeout
from nats.js import api
from nats.js.errors import NotFoundError

from shared.errors import ConfigError
from shared.events.base import RecordedEvent
from shared.events.catalog import default_registry
from shared.events.feed import Feed, selection_of
from shared.events.outbound import Format
from shared.messaging import event_from_message
from shared.subjects import Subjects
from slipway_subscriber.checkpoint import State
from slipway_subscriber.decode import from_recorded
from slipway_subscriber.received import Received

__all__ = ["FellBehind", "NatsSource", "NotPermitted"]

_BATCH: Final = 256


class FellBehind(Exception):
    """The checkpoint is older than what the stream still holds (its replay window)."""

    def __init__(self, wanted: int, first: int, cursor: str) -> None:
        super().__init__(
            f"the events stream starts at sequence {first}, after the checkpoint's {wanted - 1}: "
            f"read over HTTP (SseSource / GET /api/v1/events?after={cursor}) until caught up"
        )
        self.cursor = cursor


class NotPermitted(ConfigError):
    """NATS refused this identity a request: its durable, or its user, is not one it may use."""


class NatsSource:
    """The events stream through the durable `durable` of a subscriber identity.

    `start` applies to a first start (no checkpoint): "all" (the beginning of
    the replay window), a stream sequence (int) or a time (aware datetime).
    `categories` / `types` filter by subject. `format`: native, cloudevents or
    cdevents, rendered here as the server renders them over HTTP; CDEvents of
    a deployment joined part-way need its earlier events: `read_stream`
    (e.g. over the API) gives them, or they are mapped from what was seen.
    """

    def __init__(
        self,
        url: str,
        *,
        durable: str,
        user: str = "subscriber",
        subjects: Subjects | None = None,
        categories: Iterable[str] = (),
        types: Iterable[str] = (),
        start: str | int | datetime = "all",
        format: Format = "native",  # as the API spells it
        read_stream: Callable[[str, int], Awaitable[list[RecordedEvent]]] | None = None,
        fetch_timeout_s: float = 1.0,
    ) -> None:
        self.url = url
        self.durable = durable
        self.inbox_prefix = f"_INBOX.{user}"
        self.subjects = subjects or Subjects()
        self.categories = tuple(categories)
        self.types = tuple(types)
        self.start = start
        self.format = format
        self.fetch_timeout_s = fetch_timeout_s
        self._feed = Feed(
            selection_of(categories=self.categories, types=self.types, fmt=format),
            read_stream or _nothing_before,
        )
        self.connections = 0

    def _filters(self) -> list[str]:
        layout = self.subjects
        if self.types and self.categories:
            return [f"{layout.prefix}.evt.{c}.*.{t}" for c in self.categories for t in self.types]
        if self.types:
            return [layout.events_of_type(t) for t in self.types]
        if self.categories:
            return [layout.events_of_category(c) for c in self.categories]
        return [layout.all_events]

    def _config(self, since: State, first_sequence: int) -> api.ConsumerConfig:
        filters = self._filters()
        config = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.NONE,
            filter_subject=filters[0] if len(filters) == 1 else None,
            filter_subjects=filters if len(filters) > 1 else None,
            description="a Slipway subscriber (slipway_subscriber)",
        )
        if since.stream_sequence:
            wanted = since.stream_sequence + 1
            if wanted < first_sequence:
                cursor = since.position.cursor if since.position else "0:0"
                raise FellBehind(wanted, first_sequence, cursor)
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = wanted
        elif isinstance(self.start, int):
            config.deliver_policy = api.DeliverPolicy.BY_START_SEQUENCE
            config.opt_start_seq = self.start
        elif isinstance(self.start, datetime):
            if self.start.tzinfo is None:
                raise ValueError("start: a time needs a zone (e.g. datetime.now(UTC))")
            config.deliver_policy = api.DeliverPolicy.BY_START_TIME
            config.opt_start_time = self.start
        elif self.start == "all":
            config.deliver_policy = api.DeliverPolicy.ALL
        else:
            raise ValueError(f"start must be 'all', a sequence or a time, not {self.start!r}")
        return config

    async def follow(self, since: State) -> AsyncIterator[Received]:
        """Events after `since`, from NATS, for ever (reconnecting with back-off)."""
        registry = default_registry()
        sequence = since.stream_sequence
        backoff = 0.05
        # NATS answers a denied request with an asynchronous error, and the request itself
        # times out; permissions do not change by retrying, so that ends the subscription.
        refused: list[str] = []

        async def on_error(error: Exception) -> None:
            if "permissions violation" in str(error).lower():
                refused.append(str(error))

        while True:
            nc = None
            try:
                nc = await nats.connect(
                    self.url,
                    inbox_prefix=self.inbox_prefix,
                    allow_reconnect=False,
                    error_cb=on_error,
                )
                js = nc.jetstream()
                stream = self.subjects.events_stream
                info = await js.stream_info(stream)
                resume = State(position=since.position, stream_sequence=sequence)
                config = self._config(resume, info.state.first_seq)
                with contextlib.suppress(NotFoundError):
                    await js.delete_consumer(stream, self.durable)
                await js.add_consumer(stream, config)
                subscription = await js.pull_subscribe_bind(durable=self.durable, stream=stream)
                self.connections += 1
                backoff = 0.05
                pending = _BATCH
                while True:
                    # A backlog is fetched in batches (the server answers at once with what it
                    # has); once caught up, one at a time: a lingering fetch of many returns only
                    # when they are all there or it expires, which would hold a live event back.
                    size = _BATCH if pending > 0 else 1
                    try:
                        messages = await subscription.fetch(size, timeout=self.fetch_timeout_s)
                    except NatsTimeout:
                        continue
                    pending = messages[-1].metadata.num_pending if messages else 0
                    for msg in messages:
                        recorded = event_from_message(msg.headers, msg.data, registry)
                        at = msg.metadata.sequence.stream
                        for received in await from_recorded(recorded, self.format, self._feed, at):
                            yield received
                        sequence = at
            except (NatsError, OSError, TimeoutError):
                if refused:
                    raise NotPermitted(
                        f"{refused[0]}: durable {self.durable!r} is not one this NATS user may "
                        "own (the sandbox's `subscriber` owns subscriber-1 … subscriber-8; "
                        "another identity's are those given to shared.natsauth.subscriber_role)"
                    ) from None
                # otherwise reconnect below, from `sequence`
            finally:
                if nc is not None:
                    with contextlib.suppress(NatsError, OSError):
                        await nc.close()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)


async def _nothing_before(_stream_id: str, _count: int) -> list[RecordedEvent]:
    return []
