"""Waiting for a deployment from the command line: `--wait-status`, progress, the outcome.

`slipway app sync --wait-status` and `slipway deployment wait` poll the API
(`api_client.wait_for_status`) and print a line on stderr whenever the
deployment's status or running stage changes; the exit code says how the wait
ended (`slipway_cli.command`: 0, 1 failed or not wanted, 3 unreachable, 4 timed out).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Mapping
from typing import Any

from slipway_cli.api_client import DEPLOYMENT_STATUSES, FAILED_STATUSES, WaitOutcome
from slipway_cli.command import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    among,
    fail,
    print_json,
    seconds,
)


def wait_options(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    parser.add_argument(
        "--wait-status",
        type=statuses,
        required=required,
        metavar="STATUS[,STATUS…]",
        help="wait for the deployment to reach one of these statuses (e.g. SUCCESS,FAILURE); "
        "exit 0 only if it is not FAILURE or CANCELLED",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=1800.0,
        metavar="SECONDS",
        help="give up waiting after this long, exit 4 (default: 1800)",
    )
    parser.add_argument(
        "--poll-interval", type=seconds, default=1.0, metavar="SECONDS", help=argparse.SUPPRESS
    )


def statuses(text: str) -> tuple[str, ...]:
    """An argparse type: comma-separated deployment statuses (any case); a usage error else."""
    return among(text, DEPLOYMENT_STATUSES, "statuses")


def progress_printer() -> Callable[[Mapping[str, Any] | None], None]:
    """Prints a line to stderr whenever the deployment's status or running stage changes."""
    last: list[str] = []

    def show(deployment: Mapping[str, Any] | None) -> None:
        if deployment is None:
            line = "waiting for the deployment to be triggered"
        else:
            line = f"{deployment['deployment_id']}: {deployment['status']}"
            running = [s for s in deployment.get("stages", []) if s["status"] == "RUNNING"]
            done = [s for s in deployment.get("stages", []) if s["visible"]]
            if running:
                stage = running[0]
                line += f" — stage {stage['stage_id']} {stage['name']} running"
            if done:
                finished = sum(1 for s in done if s["status"] not in ("NOT_STARTED_YET", "RUNNING"))
                line += f" ({finished}/{len(done)} stages done)"
        if last != [line]:
            last[:] = [line]
            print(line, file=sys.stderr, flush=True)

    return show


def report_outcome(outcome: WaitOutcome, as_json: bool) -> int:
    """Print how the wait ended (stdout: the deployment; stderr: why) and its exit code."""
    deployment = outcome.deployment
    if as_json and deployment is not None:
        print_json(deployment)
    if outcome.timed_out:
        status = deployment["status"] if deployment else "not triggered yet"
        fail(f"timed out after {outcome.waited_s:.0f} s; the deployment is {status}")
        return EXIT_UNREACHABLE if outcome.unreachable else EXIT_TIMEOUT
    assert deployment is not None
    status = deployment["status"]
    reason = f": {deployment['reason']}" if deployment.get("reason") else ""
    if not as_json:
        print(f"deployment {deployment['deployment_id']} {status}{reason}")
    if status in FAILED_STATUSES or not outcome.wanted:
        if not outcome.wanted:
            fail(f"the deployment ended {status}, which was not waited for")
        return EXIT_FAILED
    return EXIT_OK
