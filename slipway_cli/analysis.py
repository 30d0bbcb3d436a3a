"""`slipway analysis rejudge DEPLOYMENT [--judge pipecd|sequential] [--json] [--direct]`.

Recomputes every tick verdict of a deployment's analyses from the samples
recorded in the log (`AnalysisMeasured`), with the judge that ran (default)
or another one, and prints, per analysis and check, the recorded verdict
beside the recomputed one. With the judge that ran they must be identical, to
the last bit of every statistic; with another judge it back-tests that judge
on a real deployment. Exit 0 when every recomputed tick verdict is identical
to the recorded one, 1 when one differs (expected when `--judge` names
another judge) or the deployment does not exist or has no analysis, 2 for bad
arguments, 3 when the API is unreachable.

Asks the API (`GET /deployments/{id}/rejudge`, a read-only key will do), so
the analysis service need not be running and no database access is needed.
`--direct` (or `--database-url`) reads the event log itself instead, as
`slipway replay` does; both build the same report (`shared.analysis.rejudging`).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

import msgspec

from shared.analysis.judges import JUDGE_NAMES
from shared.analysis.rejudging import rejudge_deployment, report_lines
from shared.db import create_pool
from shared.errors import ConfigError
from shared.eventlog import EventStore
from shared.events.catalog import default_registry
from slipway_cli.command import (
    EXIT_FAILED,
    EXIT_OK,
    common_options,
    fail,
    print_json,
    run_with_client,
)
from slipway_client import ApiClient

__all__ = ["register", "run"]

_DATABASE_URL_ENVS = ("SLIPWAY_READER_DATABASE_URL", "SLIPWAY_DATABASE_URL")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway analysis` (recompute recorded verdicts) to the parser."""
    parser = subparsers.add_parser(
        "analysis",
        help="automated analysis: recompute recorded verdicts",
        description="Work with the recorded analyses of ANALYSIS stages.",
    )
    commands = parser.add_subparsers(dest="analysis_command", required=True, metavar="COMMAND")
    rejudge_parser = commands.add_parser(
        "rejudge",
        parents=[common_options()],
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
    rejudge_parser.add_argument(
        "--direct",
        action="store_true",
        help="read the event log from the database instead of asking the API",
    )
    rejudge_parser.add_argument(
        "--database-url",
        help="with --direct (implies it); it only reads: the read-only role's URL will do "
        "(default: $SLIPWAY_READER_DATABASE_URL, then $SLIPWAY_DATABASE_URL)",
    )
    rejudge_parser.add_argument(
        "--schema", default=os.environ.get("SLIPWAY_DATABASE_SCHEMA", "slipway")
    )
    rejudge_parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run an analysis subcommand: over the API, or on the database with `--direct`."""
    if args.direct or args.database_url:
        return _direct(args)
    return run_with_client(_via_api)(args)


def _via_api(client: ApiClient, args: argparse.Namespace) -> int:
    return _print(client.rejudge(args.deployment, judge=args.judge), args.json)


def _direct(args: argparse.Namespace) -> int:
    url = args.database_url or next(
        (os.environ[name] for name in _DATABASE_URL_ENVS if os.environ.get(name)), None
    )
    if not url:
        raise ConfigError(
            "analysis rejudge --direct needs --database-url or SLIPWAY_READER_DATABASE_URL"
        )
    report = asyncio.run(_load(url, args.schema, args.deployment, args.judge))
    if report is None:
        fail(f"no deployment {args.deployment!r}")
        return EXIT_FAILED
    return _print(report, args.json)


async def _load(
    url: str, schema: str, deployment_id: str, judge: str | None
) -> dict[str, Any] | None:
    pool = await create_pool(url, schema=schema, min_size=1, max_size=2)
    try:
        report = await rejudge_deployment(
            EventStore(pool, default_registry()), deployment_id, judge
        )
    finally:
        await pool.close()
    return None if report is None else msgspec.to_builtins(report)


def _print(report: dict[str, Any], as_json: bool) -> int:
    if not report["analyses"]:
        print(f"deployment {report['deployment_id']} has no recorded analysis", file=sys.stderr)
        return EXIT_FAILED
    if as_json:
        print_json(report)
    else:
        for line in report_lines(report):
            print(line)
    return EXIT_OK if report["identical"] else EXIT_FAILED
