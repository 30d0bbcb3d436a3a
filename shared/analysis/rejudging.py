"""Rejudging a deployment: its analyses' recorded tick verdicts beside recomputed ones, as a report.

`slipway analysis rejudge` shows it and `GET /deployments/{id}/rejudge`
answers it (the API needs no more than read access; the CLI's `--direct`
reads the database itself). Both build it here from the event log, so the
JSON is the same either way, and the CLI prints its text from that JSON.
Reading goes through an `EventStore`; the rest is pure.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from shared.analysis.judges import judge_named
from shared.analysis.record import Rejudged, first_decision, fold, rejudge
from shared.eventlog import EventStore
from shared.events.catalog import DeploymentPlanned
from shared.events.ids import analysis_id_of
from shared.events.streams import analysis_stream, deployment_stream

__all__ = [
    "CheckReport",
    "Decision",
    "RejudgeReport",
    "RejudgedAnalysis",
    "TickReport",
    "TickVerdictReport",
    "analysis_id_of",
    "rejudge_deployment",
    "report_lines",
]


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    """A check's decision: its first `pass`/`fail`, else its last `continue`."""

    outcome: str
    reason: str


class TickVerdictReport(msgspec.Struct, frozen=True, kw_only=True):
    """A tick's verdict as reported by `slipway analysis rejudge`."""

    outcome: str
    reason: str
    judge: str
    judge_version: str
    failures: int
    statistics: dict[str, str]


class TickReport(msgspec.Struct, frozen=True, kw_only=True):
    """One tick: its recorded and its recomputed verdict, and whether they agree."""

    tick: int
    identical: bool
    recorded: TickVerdictReport
    recomputed: TickVerdictReport


class CheckReport(msgspec.Struct, frozen=True, kw_only=True):
    """One check: the recorded and recomputed decision, tick by tick."""

    check: str
    recorded: Decision
    recomputed: Decision
    ticks: list[TickReport]


class RejudgedAnalysis(msgspec.Struct, frozen=True, kw_only=True):
    """One ANALYSIS stage's analysis, rejudged with `judge` (None: it never started)."""

    analysis_id: str
    stage_id: str
    judge: str | None
    judge_version: str | None
    recorded_judge: str | None
    recorded_judge_version: str | None
    verdict: str | None
    reason: str | None
    checks: list[CheckReport]


class RejudgeReport(msgspec.Struct, frozen=True, kw_only=True):
    """Every analysis of a deployment, rejudged; `identical` when no tick verdict differs."""

    deployment_id: str
    identical: bool
    analyses: list[RejudgedAnalysis]


async def rejudge_deployment(
    store: EventStore, deployment_id: str, judge_name: str | None = None
) -> RejudgeReport | None:
    """The deployment's analyses rejudged with `judge_name` (default: the judge each ran).

    None when the deployment does not exist; no analyses when it was never
    planned or has no ANALYSIS stage. `judge_name` must be in `JUDGE_NAMES`.
    """
    deployment = await store.read_stream(deployment_stream(deployment_id))
    if not deployment:
        return None
    planned = next((e.event for e in deployment if isinstance(e.event, DeploymentPlanned)), None)
    analyses: list[RejudgedAnalysis] = []
    for stage in planned.stages if planned else ():
        if stage.name != "ANALYSIS":
            continue
        analysis_id = analysis_id_of(deployment_id, stage.id)
        history = await store.read_stream(analysis_stream(analysis_id))
        record = fold((e.stream_version, e.event) for e in history)
        started, concluded = record.started, record.concluded
        judge = judge_named(judge_name or started.judge) if started else None
        rows = rejudge(record, judge) if judge else []
        by_check: dict[str, list[Rejudged]] = {key: [] for key in record.checks}
        for row in rows:
            by_check[row.check].append(row)
        analyses.append(
            RejudgedAnalysis(
                analysis_id=analysis_id,
                stage_id=stage.id,
                judge=judge.name if judge else None,
                judge_version=judge.version if judge else None,
                recorded_judge=started.judge if started else None,
                recorded_judge_version=started.judge_version if started else None,
                verdict=concluded.verdict if concluded else None,
                reason=concluded.reason if concluded else None,
                checks=[_check(key, checked) for key, checked in by_check.items()] if judge else [],
            )
        )
    identical = all(t.identical for a in analyses for c in a.checks for t in c.ticks)
    return RejudgeReport(deployment_id=deployment_id, identical=identical, analyses=analyses)


def _check(key: str, rows: Sequence[Rejudged]) -> CheckReport:
    recorded = first_decision(rows, recomputed=False)
    recomputed = first_decision(rows, recomputed=True)
    return CheckReport(
        check=key,
        recorded=Decision(outcome=recorded[0], reason=recorded[1]),
        recomputed=Decision(outcome=recomputed[0], reason=recomputed[1]),
        ticks=[
            TickReport(
                tick=row.tick,
                identical=row.identical,
                recorded=_verdict(row.recorded),
                recomputed=_verdict(row.recomputed),
            )
            for row in rows
        ],
    )


def _verdict(v: Any) -> TickVerdictReport:
    # A recorded `AnalysisTickJudged` and a recomputed `TickVerdict` have these fields alike.
    return TickVerdictReport(
        outcome=v.outcome,
        reason=v.reason,
        judge=v.judge,
        judge_version=v.judge_version,
        failures=v.failures,
        statistics=dict(v.statistics),
    )


def report_lines(report: dict[str, Any]) -> list[str]:
    """The report (as JSON, from the API or built here) for people, a few lines per analysis."""
    lines = []
    for a in report["analyses"]:
        verdict = f"{a['verdict']}: {a['reason']}" if a["verdict"] else "no verdict yet"
        judge = f"{a['judge']} {a['judge_version']}" if a["judge"] else "-"
        lines.append(f"analysis {a['analysis_id']} (stage {a['stage_id']}), rejudged with {judge}")
        lines.append(f"  recorded verdict: {verdict}")
        for c in a["checks"]:
            same = sum(1 for t in c["ticks"] if t["identical"])
            lines.append(f"  {c['check']}: {same}/{len(c['ticks'])} tick verdict(s) identical")
            lines.append(f"    recorded:   {c['recorded']['outcome']}: {c['recorded']['reason']}")
            lines.append(
                f"    recomputed: {c['recomputed']['outcome']}: {c['recomputed']['reason']}"
            )
    return lines
