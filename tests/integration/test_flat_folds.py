"""Costs that stay flat as a stream grows (issue 16 §3): the services that act on each
event of a long stream read only what is new, never the whole stream again. Each test
counts the events read from the log (`CountingStore`) for a stream of 2,000+ events."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import pytest

from services.analysis.leases import Leases as AnalysisLeases
from services.analysis.runner import AnalysisRunner
from services.api.console import views
from services.api.decider import (
    Command,
    DeleteApplication,
    DisableApplication,
    EnableApplication,
    RegisterApplication,
    RequestSync,
)
from services.api.service import ApplicationCommands
from services.executor.decider import StageStatus
from services.executor.leases import Leases
from services.executor.runner import DeploymentRunner
from services.executor.stages import StageResult
from services.notifier.service import Notifier
from services.notifier.targets import Target
from services.planner.sources import PlanSources
from shared.analysis.checks import CheckPlan
from shared.applications import fold_recorded
from shared.config.control import NotificationRoute
from shared.deployments import Deployment, fold_history
from shared.eventlog import EventStore, new_events
from shared.eventlog.envelope import envelope
from shared.events.base import Metadata
from shared.events.catalog import (
    AnalysisConcluded,
    AnalysisMeasured,
    AnalysisRequested,
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentTriggered,
    StageCompleted,
    SyncRequested,
)
from shared.events.vocabulary import DeploymentStatus, Trigger
from shared.git import GitCache
from shared.planning import PlanError
from shared.snapshots import SNAPSHOT_EVERY, read_state
from shared.stagelog import StageLogs
from shared.stream_folds import APPLICATION, DEPLOYMENT
from tests.support import Backends
from tests.support.long_streams import T0, counting, long_pipeline, write_long

STAGES = 1_105
DONE = 1_100  # 3 + 2 × 1,100 = 2,203 events before the runner takes it


async def test_a_runner_folds_only_what_each_step_adds_to_a_long_deployment(
    store: EventStore,
) -> None:
    """A runner taking over a deployment of 2,203 events reads it from its snapshot, then
    each step reads only the events since the last one: its last five stages (ten steps and
    more) read fewer events in all than two snapshots' tails (each step read the whole
    stream before: 24,283)."""
    d = "longrun"
    stream = f"deployment-{d}"
    await write_long(store, stream, long_pipeline(d, STAGES, done=DONE))
    await read_state(store, stream, DEPLOYMENT)  # an earlier holder's read left a snapshot
    reads = counting(store)
    leases = Leases(reads, "executor-a", ttl_s=30.0)
    async with store.pool.acquire() as conn:
        await Leases.register(conn, d, "app1")
    [lease] = await leases.claim(1)
    ran: list[str] = []

    async def work(_state: Deployment, stage_id: str) -> StageResult:
        ran.append(stage_id)
        return StageResult(StageStatus.SUCCESS, "done")

    async def no_timeout(_state: Deployment) -> float:
        raise AssertionError("a running deployment does not load its timeout")

    runner = DeploymentRunner(
        lease=lease,
        store=reads,
        leases=leases,
        work=work,
        load_timeout=no_timeout,
        executor_name="executor-a",
        poll_s=0.05,
    )
    stop = asyncio.Event()
    steps = 0
    while not runner.completed:
        steps += 1
        assert steps < 100, "the runner does not finish"
        wait = await runner.step()
        if wait is not None and not runner.completed:
            await runner.wait(stop, wait)
    await runner.close()

    assert ran == [f"s{i}" for i in range(DONE, STAGES)]
    history = await store.read_stream(stream)
    assert len(history) == 3 + 2 * STAGES + 1
    assert isinstance(history[-1].event, DeploymentCompleted)
    assert history[-1].event.status == "SUCCESS"
    # The first load: the snapshot's tail (< SNAPSHOT_EVERY) and the stream's head for the
    # plan's trace; every later step: the events the step before appended (one or two).
    assert steps >= 10
    assert reads.rows < 2 * SNAPSHOT_EVERY, reads.rows


@dataclass
class _NoChecks:
    """An analysis with nothing to measure: it runs its duration, or until its stage ends."""

    plans: dict[str, CheckPlan] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    judge: str = "pipecd"
    duration_s: float = 600.0


class _NoMeasurer:
    async def measure(self, *_args: object, **_kwargs: object) -> list[AnalysisMeasured]:
        raise AssertionError("an analysis without checks measures nothing")


async def test_an_analysis_reads_only_the_new_events_of_a_long_deployment_each_tick(
    backends: Backends,
) -> None:
    """An analysis of a stage of a 2,203-event deployment reads the deployment's stream once,
    then only what each step adds, and still sees its stage end: six steps read fewer than
    2,203 + 100 events (each read the whole stream before: 11,026)."""
    store = backends.store
    d, stage = "longanalysed", f"s{DONE}"
    await write_long(store, f"deployment-{d}", long_pipeline(d, STAGES, done=DONE))
    analysis = f"an-{d}"
    requested = AnalysisRequested(
        analysis_id=analysis,
        deployment_id=d,
        application_id="app1",
        stage_id=stage,
        commit_hash="c0ffee1",
        running_commit_hash="",
        options_json="{}",
        requested_at=T0,
    )
    await store.append(f"analysis-{analysis}", new_events([requested]), expected_version=None)
    reads = counting(store)
    leases = AnalysisLeases(reads, "analysis-a", ttl_s=30.0)
    async with store.pool.acquire() as conn:
        await AnalysisLeases.register(conn, analysis, d, "app1", stage)
    [lease] = await leases.claim(1)

    async def setup(_request: AnalysisRequested) -> _NoChecks:
        return _NoChecks()

    runner = AnalysisRunner(
        lease=lease,
        store=reads,
        leases=leases,
        stage_logs=StageLogs(store.pool, None, backends.subjects),
        load_setup=setup,
        measurer=_NoMeasurer(),
        clock=lambda: T0,
    )
    assert await runner.step() is None  # the start
    for _ in range(5):
        assert await runner.step() == runner.poll_s  # the stage runs on: nothing to do
    assert reads.rows < 3 + 2 * DONE + SNAPSHOT_EVERY, reads.rows
    ended = StageCompleted(
        deployment_id=d, stage_id=stage, status=StageStatus.CANCELLED, completed_at=T0
    )
    await store.append(f"deployment-{d}", new_events([ended]), expected_version=None)
    assert await runner.step() is None
    assert runner.concluded
    [*_, concluded] = await store.read_stream(f"analysis-{analysis}")
    assert isinstance(concluded.event, AnalysisConcluded)
    assert concluded.event.verdict == "skipped", concluded.event


async def test_application_commands_read_a_long_application_from_its_snapshot(
    store: EventStore,
) -> None:
    """Disable, enable, sync and delete an application with 2,000 syncs in its stream: each
    reads the stream's snapshot and the events after it, not its 2,001 events twice (the
    four read 16,026 events before, 16 now); each answers with the application as recorded."""
    app = "appsynced"
    stream = f"application-{app}"
    commands = ApplicationCommands(store)
    register = RegisterApplication(application_id=app, name="web", repository_id="r1", path="w")
    await commands.register(register, envelope(actor="test"))
    syncs = [SyncRequested(application_id=app, request_id=f"q{i}") for i in range(2_000)]
    await write_long(store, stream, list(syncs))
    await read_state(store, stream, APPLICATION)  # an earlier read left a snapshot

    reads = counting(store)
    commands = ApplicationCommands(reads)
    steps: list[Command] = [
        DisableApplication(application_id=app),
        EnableApplication(application_id=app),
        RequestSync(application_id=app, request_id="now"),
    ]
    outcomes = [await commands.execute(step, envelope(actor="test")) for step in steps]
    deleted = await commands.delete(DeleteApplication(application_id=app), envelope(actor="t"))
    assert reads.rows < 4 * SNAPSHOT_EVERY, reads.rows

    disabled, enabled, synced = outcomes
    assert [o.appended[0].stream_version for o in (*outcomes, deleted)] == [2001, 2002, 2003, 2004]
    assert disabled.after is not None and disabled.after.application is not None
    assert disabled.after.application.disabled
    assert disabled.after.changed_position == disabled.appended[0].global_position
    assert enabled.before == disabled.after
    assert synced.before == synced.after == fold_recorded((await store.read_stream(stream))[:-1])
    assert deleted.before is not None and deleted.before.application is not None
    assert deleted.before.application.name == "web"
    assert deleted.after is not None and deleted.after.application is None


async def test_the_console_deployment_page_reads_a_long_deployment_from_its_snapshot(
    store: EventStore,
) -> None:
    """The console's page of a 2,203-event deployment: its state from the snapshot and the
    events after it, its plan and trace by lookups that stop at the stream's head (before:
    the whole stream, 2,203 events, for each view); the same page as the fold from the
    start, now and as of a moment in its past."""
    d = "longviewed"
    stream = f"deployment-{d}"
    events = long_pipeline(d, STAGES, done=DONE)
    trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    traced = Metadata(traceparent=f"00-{trace}-00f067aa0ba902b7-01")
    await store.append(stream, new_events(events[:1], metadata=traced), expected_version=None)
    await write_long(store, stream, events[1:])
    await read_state(store, stream, DEPLOYMENT)  # an earlier read left a snapshot
    history = await store.read_stream(stream)

    reads = counting(store)
    page = await views.deployment_page(reads, d)
    assert page is not None
    assert reads.rows < SNAPSHOT_EVERY, reads.rows
    assert page.view == fold_history(d, history)
    assert page.trace_id == trace
    assert page.plan == events[1]
    assert page.view.version == 3 + 2 * DONE - 1

    middle = history[len(history) // 2].recorded_at
    then = await views.deployment_page(store, d, up_to_time=middle)
    assert then is not None and then.plan == events[1] and then.trace_id == trace
    assert then.view == fold_history(d, [e for e in history if e.recorded_at <= middle])
    assert await views.deployment_page(store, "nosuchdeployment") is None


async def test_the_planner_reads_a_long_application_from_its_snapshot(
    store: EventStore, tmp_path: Path
) -> None:
    """Planning a trigger of an application with 2,000 syncs reads the application from its
    snapshot and the events after it (before: its 2,002 events for each deployment): here a
    disabled one, refused before any git work, as it was."""
    app = "appplanned"
    stream = f"application-{app}"
    commands = ApplicationCommands(store)
    register = RegisterApplication(application_id=app, name="api", repository_id="r1", path="a")
    await commands.register(register, envelope(actor="test"))
    syncs = [SyncRequested(application_id=app, request_id=f"q{i}") for i in range(2_000)]
    await write_long(store, stream, list(syncs))
    await commands.execute(DisableApplication(application_id=app), envelope(actor="test"))
    await read_state(store, stream, APPLICATION)  # an earlier read left a snapshot

    reads = counting(store)
    sources = PlanSources(store=reads, git=GitCache(tmp_path), repositories={})
    trigger = DeploymentTriggered(
        deployment_id="d1", application_id=app, trigger=Trigger.ON_COMMIT, commit_hash="c1"
    )
    with pytest.raises(PlanError, match="application api is disabled"):
        await sources.plan(trigger, "")
    assert reads.rows < SNAPSHOT_EVERY, reads.rows
    unknown = msgspec.structs.replace(trigger, application_id="nosuchapp")
    with pytest.raises(PlanError, match="not registered"):
        await sources.plan(unknown, "")


async def test_the_notifier_reads_a_long_application_stream_once(store: EventStore) -> None:
    """The notifier names the application of each event it routes: with 2,000 syncs in the
    application's stream, it reads that stream once, then only what follows (before: all of
    it for each event, 2,001 × 4 here), and still sees a registration appended later."""
    app, d = "appnotified", "dnotified"
    stream = f"application-{app}"
    register = ApplicationRegistered(application_id=app, name="web", repository_id="r", path="w")
    syncs = [SyncRequested(application_id=app, request_id=f"q{i}") for i in range(2_000)]
    await write_long(store, stream, [register, *syncs])
    events = [*long_pipeline(d, 1, done=0, app=app)]
    events.append(
        DeploymentCompleted(deployment_id=d, application_id=app, status=DeploymentStatus.SUCCESS)
    )
    await write_long(store, f"deployment-{d}", events)
    history = await store.read_stream(f"deployment-{d}")

    reads = counting(store)
    notifier = Notifier(
        store=reads,
        routes=[NotificationRoute(name="all", receiver="hook")],
        targets={"hook": Target(name="hook", kind="webhook", url="http://receiver.invalid/")},
    )
    async with store.pool.acquire() as conn:
        for recorded in history:
            async with conn.transaction():
                await notifier.handle(recorded, conn)
        assert reads.rows < 2_001 + SNAPSHOT_EVERY, reads.rows
        renamed = msgspec.structs.replace(register, name="web2")
        await store.append(stream, new_events([renamed]), expected_version=None)
        assert await notifier.applications.latest(app, conn) == renamed
    notified = await store.pool.fetchval(
        "SELECT count(*) FROM events WHERE stream_id LIKE 'notification-%'"
    )
    assert notified >= 2  # triggered and succeeded, at least
