"""After the faults: the chaos run waits for the system to settle, then counts the invariants.

Settling is bounded by one deadline (`SETTLE_TIMEOUT_S`): every triggered
deployment final, every event relayed to JetStream, every scheduled
notification delivered, the projections caught up; a run that will not settle
is judged, not waited on. Judging reads the whole event log, the JetStream
stream, kubesim and the receiver, and hands what it saw to the pure verdicts
of `slipway_sandbox.chaos_verdicts`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Final

from shared import deployments
from shared.events.base import RecordedEvent
from shared.events.catalog import (
    DeploymentCompleted,
    NotificationScheduled,
    StageCompleted,
    StageStarted,
)
from slipway_sandbox.chaos_plan import Expected, Workload
from slipway_sandbox.chaos_verdicts import (
    FINAL,
    Invariants,
    Outcome,
    SideEffect,
    judge_deployments,
    notification_verdicts,
    overlapping_script_runs,
    overlapping_side_effects,
    parse_ticks,
)
from slipway_sandbox.chaos_world import ChaosWorld
from slipway_sandbox.receiver import SlackReceiver

__all__ = ["SETTLE_TIMEOUT_S", "judge", "settle"]

SETTLE_TIMEOUT_S: Final = 90.0
_STREAM_STATS_DIFF: Final = """
SELECT coalesce(l.stream_id, s.stream_id) AS stream_id,
       coalesce(l.n, 0) AS logged, coalesce(s.events, 0) AS projected
FROM (SELECT stream_id, count(*) AS n FROM events GROUP BY stream_id) l
FULL JOIN stream_stats s ON s.stream_id = l.stream_id
WHERE coalesce(l.n, 0) <> coalesce(s.events, 0)
"""
_STREAM_STATS_BEHIND: Final = f"SELECT count(*) FROM ({_STREAM_STATS_DIFF}) d"

Approve = Callable[[Iterable[deployments.Deployment]], Awaitable[None]]
"""Approves the WAIT_APPROVAL stages running in the deployments given, as an operator."""


async def settle(
    world: ChaosWorld,
    receiver: SlackReceiver,
    approve: Approve,
    services_ready: Callable[[], Awaitable[bool]],
) -> None:
    """Until every service is ready again, every triggered deployment is final, every
    scheduled notification has arrived and the projector has caught up, all at once
    (bounded: what is not is counted)."""

    async def deployments_final() -> bool:
        rows = await world.db(
            lambda pool: pool.fetch(
                "SELECT t.stream_id FROM events t WHERE t.event_type = 'deployment_triggered'"
                " AND NOT EXISTS (SELECT 1 FROM events c WHERE c.stream_id = t.stream_id"
                " AND c.event_type IN ('deployment_completed', 'deployment_plan_failed'))"
            )
        )
        if rows:
            states = [await world.deployment(r["stream_id"].split("-", 1)[1]) for r in rows]
            await approve(states)
        return not rows

    async def notified() -> bool:
        scheduled = await world.scheduled_notifications()
        failed = await world.db(
            lambda pool: pool.fetch(
                "SELECT * FROM events WHERE event_type = 'deployment_completed'"
            )
        )
        announced = {n.deployment_id for n in scheduled}
        return all(receiver.deliveries.get(n.notification_id, 0) for n in scheduled) and all(
            event.deployment_id in announced
            for row in failed
            if isinstance(event := world.decode(row).event, DeploymentCompleted)
            and event.status == "FAILURE"
        )

    async def projected() -> bool:
        behind = await world.db(lambda pool: pool.fetchval(_STREAM_STATS_BEHIND))
        return not behind

    async def relayed() -> bool:
        logged = await world.db(lambda pool: pool.fetchval("SELECT count(*) FROM events"))
        return bool(await world.stream_messages() >= logged)

    async def head() -> int:
        return int(
            await world.db(
                lambda pool: pool.fetchval("SELECT coalesce(max(global_position), 0) FROM events")
            )
        )

    checks = (
        # First: a service killed late records its start once it reaches PostgreSQL again,
        # and /readyz answers only after that record (shared/runtime).
        (services_ready, "services ready"),
        (deployments_final, "deployments final"),
        (relayed, "events relayed"),
        (notified, "notifications delivered"),
        (projected, "projections caught up"),
    )

    async def all_at_once() -> bool:
        before = await head()
        for check, _ in checks:
            if not await check():
                return False
        return await head() == before

    # One deadline for all of them: a run that will not settle is judged, not waited on.
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    # Each in turn (a timeout says which one did not settle), then all in one pass over an
    # unmoving log: an event recorded after `relayed` held must not reach the judge unrelayed.
    for check, what in (*checks, (all_at_once, "all settled in one pass")):
        with contextlib.suppress(TimeoutError):
            await world.until(check, within=max(deadline - time.monotonic(), 0.0), what=what)


async def judge(
    world: ChaosWorld,
    invariants: Invariants,
    *,
    workload: Workload,
    expected: Mapping[str, Expected],
    missing: Sequence[Expected],
    effects: Sequence[SideEffect],
    ticks_file: Path,
    deliveries: Mapping[str, int],
) -> dict[str, int]:
    """Count every invariant broken into `invariants`; what they were counted over."""
    rows = await world.db(lambda pool: pool.fetch("SELECT * FROM events ORDER BY global_position"))
    recorded = [world.decode(row) for row in rows]
    streams: dict[str, list[RecordedEvent]] = {}
    for event in recorded:
        streams.setdefault(event.stream_id, []).append(event)
    # Lost: a stream whose versions have a hole, an event JetStream never got.
    for stream_id, events in streams.items():
        versions = [e.stream_version for e in events]
        if sorted(versions) != list(range(len(versions))):
            invariants.add("lost", f"stream {stream_id} has versions {sorted(versions)}")
    published = await world.published_ids()
    for event in recorded:
        if str(event.event_id) not in published:
            invariants.add(
                "lost",
                f"{event.stream_id}@{event.stream_version} ({event.event_type}) never reached"
                " the JetStream stream",
            )
    # Deployments: every triggered one final, with the verdict its design decides.
    outcomes: dict[str, Outcome] = {}
    windows: dict[str, list[tuple[float, str]]] = {}
    for stream_id, events in streams.items():
        if not stream_id.startswith("deployment-"):
            continue
        deployment_id = stream_id.split("-", 1)[1]
        state = deployments.fold((e.stream_version, e.event) for e in events)
        app = world.app_name(state.application_id)
        status = str(state.status)
        outcomes[deployment_id] = Outcome(deployment_id, app, status, state.rolled_back)
        _lost_or_doubled(invariants, deployment_id, app, events, str(state.status))
        for e in events:
            if isinstance(e.event, StageStarted):
                windows.setdefault(app, []).append((e.recorded_at.timestamp(), e.event.name))
    live = {app.name: await asyncio.to_thread(world.live_tag, app) for app in workload.apps}
    final_live: dict[str, str] = {}
    for planned in workload.rounds:
        for wanted in planned.deployments:
            final_live[wanted.app.name] = wanted.live_tag
    judge_deployments(invariants, expected, outcomes, missing, live, final_live)
    # Projections: stream_stats agrees with the log, stream by stream.
    for row in await world.db(lambda pool: pool.fetch(_STREAM_STATS_DIFF)):
        name = "duplicated_effects" if row["projected"] > row["logged"] else "lost"
        invariants.add(
            name,
            f"stream_stats says {row['projected']} events in {row['stream_id']},"
            f" the log has {row['logged']}",
        )
    # Side effects of one stage by two replicas at once.
    for kind, problem in overlapping_side_effects(
        effects, {app: sorted(w) for app, w in windows.items()}
    ):
        invariants.add_overlap(kind, problem)
    ticks = parse_ticks(await asyncio.to_thread(ticks_file.read_text))
    for problem in overlapping_script_runs(ticks):
        deployment_id = problem.split("/", 1)[0]
        app = outcomes[deployment_id].app if deployment_id in outcomes else "?"
        invariants.add_overlap("script", f"{app} {problem}")
    # Notifications: each scheduled one delivered, exactly once.
    scheduled = [e.event for e in recorded if isinstance(e.event, NotificationScheduled)]
    failed = {d: o.app for d, o in outcomes.items() if o.status == "FAILURE"}
    notification_verdicts(
        invariants,
        {
            n.notification_id: f"{n.notification_type} {world.app_name(n.application_id)}"
            for n in scheduled
        },
        deliveries,
        failed,
        [n.deployment_id for n in scheduled],
    )
    return {
        "events": len(recorded),
        "events_on_jetstream": len(published),
        "deployments": len(outcomes),
        "deployments_failed": len(failed),
        "applies": sum(e.what == "apply" for e in effects),
        "analysis_queries": sum(e.what == "analysis" for e in effects),
        "script_runs": len({(t.stage, t.run) for t in ticks}),
        "script_ticks": len(ticks),
        "notifications_scheduled": len(scheduled),
        "notifications_received": sum(deliveries.values()),
    }


def _lost_or_doubled(
    invariants: Invariants,
    deployment_id: str,
    app: str,
    events: Sequence[RecordedEvent],
    status: str,
) -> None:
    """A final deployment lacks none of its events, and has none twice."""
    kinds = Counter(e.event_type for e in events)
    completed = Counter(e.event.stage_id for e in events if isinstance(e.event, StageCompleted))
    started = {e.event.stage_id for e in events if isinstance(e.event, StageStarted)}
    for stage_id, times in completed.items():
        if times > 1:
            invariants.add(
                "duplicated_effects",
                f"{app} {deployment_id}: stage {stage_id} completed {times}×",
            )
    if kinds["deployment_completed"] > 1:
        invariants.add("duplicated_effects", f"{app} {deployment_id}: completed twice")
    if status in FINAL and kinds["deployment_plan_failed"] == 0:
        for needed in ("deployment_planned", "deployment_started", "deployment_completed"):
            if not kinds[needed]:
                invariants.add("lost", f"{app} {deployment_id}: no {needed}")
        for stage_id in started - set(completed):
            invariants.add("lost", f"{app} {deployment_id}: stage {stage_id} never completed")
