"""A batch's slow work before its transaction: the planner's `prepare` and what it keeps.

The consumer hands a fetched batch to `PreparedPlans.prepare` before its one
transaction (`shared.consumer.runtime`, "Prepared batches"). It enqueues the
batch's triggers in one statement (their places outlive any failed attempt),
reads their applications' queues and running commits without locks, and for
each trigger that would be planned now makes its plan outside any transaction,
several applications at once (one checkout per repository commit serves all
its applications); the batch's applications are read from their streams in
two round trips for all of them. In the transaction the handler asks `plan` for
a trigger's plan: it is taken from here only when it was made for the running
commit read under the lock and from the application as its stream still stands
(its version, read with the queue: a disable or a new registration since
`prepare` read it makes the plan stale); otherwise the handler plans in place
when its event is first in the transaction, and raises `HandleAlone` when not,
so that its slow work gets a transaction of its own.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Final

from structlog.contextvars import bound_contextvars as structlog_bound

from services.planner import queue as queues
from services.planner.decider import PlanNow, on_triggered
from services.planner.sources import AppRead, PlanSources
from shared.applications import Application
from shared.consumer.handling import HandleAlone, first_in_transaction
from shared.errors import ConfigError, Rejected, Unavailable
from shared.eventlog import EventStore
from shared.events.base import RecordedEvent
from shared.events.catalog import DeploymentTriggered
from shared.logs import get_logger
from shared.planning import Plan, PlanError

__all__ = ["PREPARED_FOR_S", "PreparedPlans", "Sourced"]

log = get_logger("slipway.planner")

PREPARED_FOR_S: Final = 30.0
"""How long a plan made by `prepare` may be used: the events of a batch handled again
(after one of them failed) still find theirs, and no older (the application may change)."""

Sourced = tuple[Plan, Application, str, str]
"""`PlanSources.plan`'s answer: the plan, the application, its repository id, its config."""
_Key = tuple[str, str, int]
"""(deployment, running commit, application stream version) a plan was made for."""
_Prepared = Sourced | PlanError | Rejected | ConfigError | Unavailable
"""A plan made by `prepare`, or why the deployment cannot be planned (a decision too), or
git being unreachable (the handler waits it out, or gives up, as when it meets it itself;
the next `prepare` of the deployment tries git again)."""


class PreparedPlans:
    """What `prepare` did, for the handler: plans by (deployment, running commit assumed,
    application stream version read) and the triggers it enqueued, each with when it was
    made (`time.monotonic()`)."""

    def __init__(
        self,
        *,
        store: EventStore,
        sources: PlanSources,
        clock: Callable[[], datetime],
        concurrency: int = 4,
    ) -> None:
        self.store = store
        self.sources = sources
        self.clock = clock
        self.concurrency = concurrency
        self._plans: dict[_Key, tuple[float, _Prepared]] = {}
        self._enqueued: dict[str, float] = {}

    def enqueued(self, deployment_id: str) -> bool:
        """Whether `prepare` gave the deployment its place in the queue lately."""
        return deployment_id in self._enqueued

    async def prepare(self, events: Sequence[RecordedEvent]) -> None:
        """Before a batch's transaction: enqueue its triggers, and plan those at the head of
        an idle queue against the running commit (both read without locks)."""
        triggers = [e.event for e in events if isinstance(e.event, DeploymentTriggered)]
        fresh_after = time.monotonic() - PREPARED_FOR_S
        self._plans = {k: v for k, v in self._plans.items() if v[0] > fresh_after}
        self._enqueued = {k: at for k, at in self._enqueued.items() if at > fresh_after}
        if not triggers:
            return
        await queues.enqueue_many(
            self.store.pool,
            [(t.deployment_id, t.application_id, t.commit_hash) for t in triggers],
            self.clock(),
        )
        now = time.monotonic()
        self._enqueued |= {trigger.deployment_id: now for trigger in triggers}
        app_ids = list(dict.fromkeys(t.application_id for t in triggers))
        loaded = await queues.load_queues(self.store.pool, app_ids)
        apps = await self.sources.applications(app_ids)
        slots = asyncio.Semaphore(self.concurrency)

        async def prepare_one(trigger: DeploymentTriggered, key: _Key) -> None:
            async with slots:
                with structlog_bound(
                    deployment_id=trigger.deployment_id, application_id=trigger.application_id
                ):
                    prepared = await self._prepare_plan(
                        trigger, key[1], apps[trigger.application_id]
                    )
            if prepared is not None:
                self._plans[key] = (time.monotonic(), prepared)

        made = self._fresh_plans()
        to_plan = [
            (trigger, key)
            for trigger in triggers
            if (key := _key(trigger, loaded[trigger.application_id].running_commit, apps))
            not in made
            and isinstance(
                on_triggered(loaded[trigger.application_id].queue, trigger.deployment_id),
                PlanNow,
            )
        ]
        await asyncio.gather(*(prepare_one(trigger, key) for trigger, key in to_plan))
        log.info("batch_prepared", triggers=len(triggers), **self._outcomes(to_plan))

    async def plan(self, trigger: DeploymentTriggered, running: str, app_version: int) -> Sourced:
        """`sources.plan`, from `prepare` when it was made against `running` and the
        application's stream at `app_version` (both read under the application's lock);
        raises `HandleAlone` when it must be made here but others were handled before it."""
        made = self._plans.get((trigger.deployment_id, running, app_version))
        fresh = made is not None and made[0] > time.monotonic() - PREPARED_FOR_S
        prepared = made[1] if made is not None and fresh else None
        if prepared is None:
            if not first_in_transaction():
                raise HandleAlone(
                    f"deployment {trigger.deployment_id} was not prepared against running "
                    f"commit {running[:12] or '(none)'} and application version {app_version}"
                )
            return await self.sources.plan(trigger, running)
        if isinstance(prepared, Exception):
            raise prepared
        return prepared

    def _outcomes(self, planned: Sequence[tuple[DeploymentTriggered, _Key]]) -> dict[str, int]:
        """How `prepare` left the plans it made: planned, failed (a decision too), git
        unavailable, or not prepared (the handler plans those itself)."""
        outcomes = dict.fromkeys(("planned", "failed", "unavailable", "not_prepared"), 0)
        for _, key in planned:
            made = self._plans.get(key)
            match made[1] if made is not None else None:
                case None:
                    outcomes["not_prepared"] += 1
                case Unavailable():
                    outcomes["unavailable"] += 1
                case Exception():
                    outcomes["failed"] += 1
                case _:
                    outcomes["planned"] += 1
        return outcomes

    async def _prepare_plan(
        self, trigger: DeploymentTriggered, running: str, app: AppRead
    ) -> _Prepared | None:
        """The plan, or why there is none; None when the handler must try again itself.

        No span of its own: this runs before the handler's, outside any trace a person
        follows; the handler's `plan deployment` span is the plan's."""
        try:
            return await self.sources.plan(trigger, running, app)
        except (PlanError, Rejected, ConfigError, Unavailable) as exc:
            return exc
        # A bug: the handler meets it again, and decides.
        except Exception as exc:  # noqa: BLE001 - an optimisation only
            log.info("plan_not_prepared", error=f"{type(exc).__name__}: {exc}")
            return None

    def _fresh_plans(self) -> set[_Key]:
        """The plans `prepare` need not make again: all it kept but git's failures."""
        return {k for k, (_, made) in self._plans.items() if not isinstance(made, Unavailable)}


def _key(trigger: DeploymentTriggered, running: str, apps: Mapping[str, AppRead]) -> _Key:
    return (trigger.deployment_id, running, apps[trigger.application_id].version)
