"""ANALYSIS: the executor's side of the analysis protocol.

Appends `AnalysisRequested` to `analysis-<analysis_id>` (once: a new stream
under a derived event id) and waits, re-reading that stream, for the analysis
service's `AnalysisConcluded`: success → SUCCESS, failure → FAILURE with its
reason, skipped → SKIPPED; none by the stage's start plus `duration` plus a
grace (`ANALYSIS_GRACE_S`) → FAILURE.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from datetime import timedelta

from services.executor.decider import StageStatus
from services.executor.stage_context import (
    StageContext,
    StageFailed,
    StageResult,
    seconds_text,
)
from shared.config.application import (
    AnalysisOptions,
)
from shared.decider import OPENING, StreamTaken
from shared.errors import Unavailable
from shared.eventlog import EventStore
from shared.eventlog.envelope import envelope
from shared.eventlog.execute import execute
from shared.events.base import RecordedEvent
from shared.events.catalog import AnalysisConcluded, AnalysisRequested
from shared.events.ids import analysis_id_of, analysis_request_event_id
from shared.events.streams import analysis_stream
from shared.executor.options import stage_options


async def analysis(ctx: StageContext) -> StageResult:
    """Ask the analysis service for a verdict and wait for it (the contract in the README)."""
    options = stage_options("ANALYSIS", ctx.stage.options_json)
    assert isinstance(options, AnalysisOptions)
    store = ctx.store
    if store is None:
        raise StageFailed("ANALYSIS needs the event log, and this executor was given none")
    deployment, stage = ctx.deployment, ctx.stage
    analysis_id = analysis_id_of(deployment.deployment_id, stage.id)
    stream = analysis_stream(analysis_id)
    # From the stage's start, so that after a restart it waits only the time left.
    limit_s = options.duration.seconds + ctx.analysis_grace_s
    deadline = (stage.started_at or ctx.clock()) + timedelta(seconds=limit_s)
    history = await store.read_stream(stream)
    if any(isinstance(e.event, AnalysisRequested) for e in history):
        await ctx.log.info(f"Waiting again for the verdict of analysis {analysis_id}")
    else:
        await _request_analysis(ctx, store, stream, analysis_id)
        await ctx.log.info(
            f"Requested analysis {analysis_id} for {options.duration or '0s'}; "
            "waiting for the analysis service's verdict"
        )
    while True:
        concluded = _concluded(history)
        if concluded is not None:
            return await _analysis_result(ctx, concluded)
        left = (deadline - ctx.clock()).total_seconds()
        if left <= 0:
            raise StageFailed(
                f"no verdict from the analysis service within {seconds_text(limit_s)} "
                f"(duration {options.duration or '0s'} plus {seconds_text(ctx.analysis_grace_s)}"
                " grace)"
            )
        await asyncio.sleep(min(ctx.poll_s, left))
        try:
            history = await store.read_stream(stream)
        except Unavailable:
            continue  # the database is away for a moment: read again at the next poll


async def _request_analysis(
    ctx: StageContext, store: EventStore, stream: str, analysis_id: str
) -> None:
    deployment, stage = ctx.deployment, ctx.stage
    now = ctx.clock()
    request = AnalysisRequested(
        analysis_id=analysis_id,
        deployment_id=deployment.deployment_id,
        application_id=deployment.application_id,
        stage_id=stage.id,
        commit_hash=deployment.commit_hash,
        running_commit_hash=deployment.running_commit_hash,
        options_json=stage.options_json,
        requested_at=now,
    )
    event_id = analysis_request_event_id(analysis_id)
    # A new stream under a derived id: a retry of this append is a no-op, and a stream
    # that exists already holds a request for this stage (nothing else starts one),
    # asked at another time by an earlier holder: that one stands.
    with contextlib.suppress(StreamTaken):
        await execute(
            store,
            stream,
            OPENING,
            request,
            envelope(actor="executor", correlation_id=deployment.deployment_id, occurred_at=now),
            event_ids=lambda _index, _event: event_id,
        )


def _concluded(history: Sequence[RecordedEvent]) -> AnalysisConcluded | None:
    """The first verdict on the stream, if any (a verdict is final)."""
    return next((e.event for e in history if isinstance(e.event, AnalysisConcluded)), None)


async def _analysis_result(ctx: StageContext, concluded: AnalysisConcluded) -> StageResult:
    judge = f" (judge {concluded.judge} {concluded.judge_version})" if concluded.judge else ""
    reason = concluded.reason or f"the analysis concluded {concluded.verdict}"
    match concluded.verdict:
        case "success":
            await ctx.log.success(f"The analysis succeeded{judge}: {reason}")
            return StageResult(StageStatus.SUCCESS, reason)
        case "skipped":
            await ctx.log.info(f"The analysis was skipped{judge}: {reason}")
            return StageResult(StageStatus.SKIPPED, reason)
        case "failure":
            raise StageFailed(f"the analysis failed{judge}: {reason}")
        case other:
            raise StageFailed(f"the analysis service gave an unknown verdict {other!r}: {reason}")
