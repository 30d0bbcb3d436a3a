"""`slipway analysis rejudge DEPLOYMENT [--judge pipecd|sequential] [--json]`.

Recomputes every tick verdict of a deployment's analyses from the samples
recorded in the log (`AnalysisMeasured`), with the judge that ran (default)
or another one, and prints, per analysis and check, the recorded verdict
beside the recomputed one. With the judge that ran they must be identical, to
the last bit of every statistic; with another judge it back-tests that judge
on a real deployment. Exit 0 when every recomputed tick verdict is identical
to the recorded one, 1 when one differs (expected when `--judge` names
another judge), 2 for bad arguments.

Reads the event log directly (like `slipway replay`): the analysis service
need not be running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import dataclass
from typing import Any

from shared.analysis.judges import JUDGE_NAMES, Judge, judge_named
from shared.analysis.record import AnalysisRecord, Rejudged, first_decision, fold, rejudge
from shared.db import create_pool
from shared.errors import ConfigError
from shared.eventlog import EventStore, deterministic_event_id
from shared.events.catalog import DeploymentPlanned, default_registry
from shared.streams import stream_id

__all__ = ["analysis_id_of", "register", "run"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "analysis",
        help="automated analysis: recompute recorded verdicts",
        description="Work with the recorded analyses of ANALYSIS stages.",
    )
    commands = parser.add_subparsers(dest="analysis_command", required=True, metavar="COMMAND")
    rejudge_parser = commands.add_parser(
        "rejudge",
        help="recompute a deployment's analysis verdicts from the recorded samples",
        description="Recompute every tick verdict of the deployment's analyses from the "
        "recorded samples and print them beside the recorded ones.",
    )
    rejudge_parser.add_argument("deployment", metavar="DEPLOYMENT", help="the deployment id")
    rejudge_parser.add_argument(
        "--judge",
        choices=JUDGE_NAMES,
        help="judge comparisons with this judge (default: the one each analysis ran with)",
    )
    rejudge_parser.add_argument("--json", action="store_true", help="print JSON")
    rejudge_parser.add_argument(
        "--database-url",
        default=os.environ.get("SLIPWAY_READER_DATABASE_URL")
        or os.environ.get("SLIPWAY_DATABASE_URL"),
        help="it only reads: the read-only role's URL will do "
        "(default: $SLIPWAY_READER_DATABASE_URL, then $SLIPWAY_DATABASE_URL)",
    )
    rejudge_parser.add_argument(
        "--schema", default=os.environ.get("SLIPWAY_DATABASE_SCHEMA", "slipway")
    )
    rejudge_parser.set_defaults(handler=run)


def analysis_id_of(deployment_id: str, stage_id: str) -> str:
    """The id the executor gives the analysis of a stage (its README's ANALYSIS contract)."""
    return deterministic_event_id("analysis", deployment_id, stage_id).hex


@dataclass(frozen=True)
class _Analysis:
    stage_id: str
    analysis_id: str
    record: AnalysisRecord
    judge: Judge | None
    rows: list[Rejudged]


def run(args: argparse.Namespace) -> int:
    if not args.database_url:
        raise ConfigError("analysis rejudge needs --database-url or SLIPWAY_READER_DATABASE_URL")
    analyses = asyncio.run(_load(args.database_url, args.schema, args.deployment, args.judge))
    if not analyses:
        print(f"deployment {args.deployment} has no recorded analysis", file=sys.stderr)
        return 1
    identical = all(row.identical for a in analyses for row in a.rows)
    if args.json:
        print(json.dumps(_as_json(args.deployment, analyses, identical), indent=2))
    else:
        for line in _as_text(analyses):
            print(line)
    return 0 if identical else 1


async def _load(
    url: str, schema: str, deployment_id: str, judge_name: str | None
) -> list[_Analysis]:
    pool = await create_pool(url, schema=schema, min_size=1, max_size=2)
    try:
        store = EventStore(pool, default_registry())
        deployment = await store.read_stream(stream_id("deployment", deployment_id))
        planned = next(
            (e.event for e in deployment if isinstance(e.event, DeploymentPlanned)), None
        )
        if planned is None:
            raise ConfigError(
                f"deployment {deployment_id!r} was never planned (no such deployment?)"
            )
        out = []
        for stage in planned.stages:
            if stage.name != "ANALYSIS":
                continue
            analysis_id = analysis_id_of(deployment_id, stage.id)
            history = await store.read_stream(stream_id("analysis", analysis_id))
            record = fold((e.stream_version, e.event) for e in history)
            if record.started is None:
                out.append(_Analysis(stage.id, analysis_id, record, None, []))
                continue
            judge = judge_named(judge_name or record.started.judge)
            out.append(_Analysis(stage.id, analysis_id, record, judge, rejudge(record, judge)))
        return out
    finally:
        await pool.close()


def _by_check(analysis: _Analysis) -> dict[str, list[Rejudged]]:
    checks: dict[str, list[Rejudged]] = {key: [] for key in analysis.record.checks}
    for row in analysis.rows:
        checks[row.check].append(row)
    return checks


def _as_text(analyses: list[_Analysis]) -> list[str]:
    lines = []
    for a in analyses:
        concluded = a.record.concluded
        verdict = f"{concluded.verdict}: {concluded.reason}" if concluded else "no verdict yet"
        judge = f"{a.judge.name} {a.judge.version}" if a.judge else "-"
        lines.append(f"analysis {a.analysis_id} (stage {a.stage_id}), rejudged with {judge}")
        lines.append(f"  recorded verdict: {verdict}")
        for key, rows in _by_check(a).items():
            recorded = first_decision(rows, recomputed=False)
            recomputed = first_decision(rows, recomputed=True)
            same = sum(r.identical for r in rows)
            lines.append(f"  {key}: {same}/{len(rows)} tick verdict(s) identical")
            lines.append(f"    recorded:   {recorded[0]}: {recorded[1]}")
            lines.append(f"    recomputed: {recomputed[0]}: {recomputed[1]}")
    return lines


def _as_json(deployment_id: str, analyses: list[_Analysis], identical: bool) -> dict[str, Any]:
    return {
        "deployment_id": deployment_id,
        "identical": identical,
        "analyses": [
            {
                "analysis_id": a.analysis_id,
                "stage_id": a.stage_id,
                "judge": a.judge.name if a.judge else None,
                "judge_version": a.judge.version if a.judge else None,
                "recorded_judge": a.record.started.judge if a.record.started else None,
                "recorded_judge_version": (
                    a.record.started.judge_version if a.record.started else None
                ),
                "verdict": a.record.concluded.verdict if a.record.concluded else None,
                "reason": a.record.concluded.reason if a.record.concluded else None,
                "checks": [
                    {
                        "check": key,
                        "recorded": _decision(rows, recomputed=False),
                        "recomputed": _decision(rows, recomputed=True),
                        "ticks": [_tick_json(row) for row in rows],
                    }
                    for key, rows in _by_check(a).items()
                ],
            }
            for a in analyses
        ],
    }


def _decision(rows: list[Rejudged], *, recomputed: bool) -> dict[str, str]:
    outcome, reason = first_decision(rows, recomputed=recomputed)
    return {"outcome": outcome, "reason": reason}


def _tick_json(row: Rejudged) -> dict[str, Any]:
    r, c = row.recorded, row.recomputed
    return {
        "tick": row.tick,
        "identical": row.identical,
        "recorded": {
            "outcome": r.outcome,
            "reason": r.reason,
            "judge": r.judge,
            "judge_version": r.judge_version,
            "failures": r.failures,
            "statistics": dict(r.statistics),
        },
        "recomputed": {
            "outcome": c.outcome,
            "reason": c.reason,
            "judge": c.judge,
            "judge_version": c.judge_version,
            "failures": c.failures,
            "statistics": dict(c.statistics),
        },
    }
