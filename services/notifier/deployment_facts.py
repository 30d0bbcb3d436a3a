"""A deployment's facts at an event, folded on from the last event of it the notifier folded.

Every routed event of a deployment needs `DeploymentFacts` as they were at that
event. Folding `deployment-<id>` from its start each time read the whole stream
per event: a deployment of n events cost n²/2 reads. The notifier handles a
deployment's events in order (`service.ordering_key`), so this keeps, per
deployment, the facts folded so far and the version they reach, and reads only
the events after it.

The cache is never the truth: what it holds is a fold of events that are in
the log for good (a stream's committed versions never change), and anything
it cannot extend — an earlier event redelivered, a deployment it has dropped
or never seen — is folded from the stream's start, as before.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import asyncpg

from services.notifier.notify.facts import DeploymentFacts, fold_deployment
from shared.eventlog import NO_STREAM, EventStore
from shared.events.base import RecordedEvent
from shared.events.streams import deployment_stream

DEFAULT_CAPACITY = 4096
"""Deployments whose folds are kept: far more than run at once, a few MB at most."""


@dataclass(frozen=True)
class _Folded:
    facts: DeploymentFacts
    version: int  # the stream's last version folded into `facts`
    position: int  # the largest global position among the events folded


class DeploymentFactsCache:
    """`DeploymentFacts` of a deployment as of a recorded event, read incrementally."""

    def __init__(self, store: EventStore, *, capacity: int = DEFAULT_CAPACITY) -> None:
        self.store = store
        self.capacity = capacity
        self._folded: OrderedDict[str, _Folded] = OrderedDict()
        self.events_read = 0
        """Events read from deployment streams so far: what tests and benchmarks watch."""

    async def facts_at(
        self, deployment_id: str, recorded: RecordedEvent, conn: asyncpg.Connection
    ) -> DeploymentFacts:
        """The deployment as of `recorded`: its stream up to `recorded` itself when it is one
        of the deployment's events, else up to `recorded`'s global position."""
        stream = deployment_stream(deployment_id)
        own = recorded.stream_id == stream
        known = self._folded.get(deployment_id)
        if known is not None and (
            known.version > recorded.stream_version
            if own
            else known.position > recorded.global_position
        ):
            known = None  # an earlier event (redelivered): fold it from the start
        start = NO_STREAM if known is None else known.version
        if own:
            limit = recorded.stream_version - start
            history = []
            if limit > 0:
                history = await self.store.read_stream(
                    stream, from_version=start + 1, limit=limit, conn=conn
                )
        else:
            history = await self.store.read_stream(
                stream, from_version=start + 1, up_to_position=recorded.global_position, conn=conn
            )
        self.events_read += len(history)
        if [e.stream_version for e in history] != list(range(start + 1, start + 1 + len(history))):
            # Not a gap-free run after what is folded (a position-bounded read of a stream
            # whose positions do not rise with its versions): fold it whole instead.
            history = await self.store.read_stream(
                stream, up_to_position=recorded.global_position, conn=conn
            )
            self.events_read += len(history)
            return fold_deployment(deployment_id, (e.event for e in history))
        facts = fold_deployment(
            deployment_id, (e.event for e in history), None if known is None else known.facts
        )
        if history:
            position = max(e.global_position for e in history)
            if known is not None:
                position = max(position, known.position)
            self._keep(deployment_id, _Folded(facts, history[-1].stream_version, position))
        elif known is not None:
            self._folded.move_to_end(deployment_id)
        return facts

    def _keep(self, deployment_id: str, folded: _Folded) -> None:
        self._folded[deployment_id] = folded
        self._folded.move_to_end(deployment_id)
        while len(self._folded) > self.capacity:
            self._folded.popitem(last=False)
