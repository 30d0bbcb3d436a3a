"""`slipway insights`: the four DORA metrics over a time range, as a table or the API's JSON.

Exit codes as for `slipway app` (see `slipway_cli/command.py`).
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from typing import Any, Final

from slipway_cli.command import EXIT_OK, common_options, print_json, run_with_client, table
from slipway_client import ApiClient

_COLUMNS: Final = (
    "DEPLOYS",
    "OK",
    "FAILED",
    "PER DAY",
    "LEAD TIME",
    "FAILURE RATE",
    "RECOVERY",
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway insights` (the four DORA metrics) to the parser."""
    parser = subparsers.add_parser(
        "insights",
        parents=[common_options()],
        help="the four DORA metrics: deployment frequency, lead time, failure rate, recovery",
        description=(
            "Deployment frequency, lead time for changes (commit → SUCCESS), change failure "
            "rate and failed-deployment recovery time (medians), per period and application, "
            "from the event log (docs/insights.md)."
        ),
    )
    parser.add_argument("--since", help="a date or ISO 8601 time (default: 30 days / 12 weeks ago)")
    parser.add_argument("--until", help="a date or ISO 8601 time, excluded (default: now)")
    parser.add_argument("--period", choices=("day", "week"), default="day", help="default: day")
    parser.add_argument("--app", dest="application", help="only this application (name or id)")
    parser.add_argument(
        "--label",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="only applications with this label (repeat: all must match)",
    )
    parser.set_defaults(handler=run_with_client(_insights))


def _insights(client: ApiClient, args: argparse.Namespace) -> int:
    report = client.insights(
        since=args.since,
        until=args.until,
        period=args.period,
        application=args.application,
        labels=args.label,
    )
    if args.json:
        print_json(report)
    else:
        print(describe(report))
    return EXIT_OK


def describe(report: Mapping[str, Any]) -> str:
    """The report as three tables: the range's totals, each period, each application."""
    labels = ",".join(f"{k}={v}" for k, v in sorted(report["labels"].items()))
    scope = report["application_id"] or (f"applications with {labels}" if labels else "all")
    lines = [f"{report['since']} → {report['until']}  ({scope})", ""]
    lines.append(table([("", *_COLUMNS), ("total", *_cells(report["totals"]))]))
    lines += ["", f"per {report['period']}:"]
    lines.append(
        table(
            [
                ("START", *_COLUMNS),
                *((p["start"][:10], *_cells(p["figures"])) for p in report["periods"]),
            ]
        )
    )
    if report["applications"]:
        lines += ["", "per application:"]
        lines.append(
            table(
                [
                    ("APPLICATION", *_COLUMNS),
                    *(
                        (a["name"] or a["application_id"], *_cells(a["figures"]))
                        for a in report["applications"]
                    ),
                ]
            )
        )
    return "\n".join(lines)


def _cells(figures: Mapping[str, Any]) -> tuple[str, ...]:
    rate = figures["change_failure_rate"]
    return (
        str(figures["deployments"]),
        str(figures["successful"]),
        str(figures["failed"]),
        f"{figures['deployment_frequency_per_day']:.2f}",
        duration(figures["lead_time_median_s"]),
        "-" if rate is None else f"{rate:.0%}",
        duration(figures["recovery_time_median_s"]),
    )


def duration(seconds: float | None) -> str:
    """`1d 2h`, `3h 5m`, `4m 10s`, `12s`; `-` for none."""
    if seconds is None:
        return "-"
    s = round(seconds)
    days, s = divmod(s, 86_400)
    hours, s = divmod(s, 3_600)
    minutes, s = divmod(s, 60)
    if days:
        return f"{days}d {hours}h"
    if hours:
        return f"{hours}h {minutes}m"
    if minutes:
        return f"{minutes}m {s}s"
    return f"{s}s"
