"""Waiting for a deployment, or a cascade delete, by polling the API; progress and outcome.

`slipway app sync --wait-status` and `slipway deployment wait-status` poll the API
(`wait_for_status`) and print a line on stderr whenever the deployment's
status or running stage changes; the exit code says how the wait ended
(`slipway_cli.command`: 0, 1 failed or not wanted, 3 unreachable, 4 timed
out). `slipway app delete --cascade` waits for the drift service's verdict
(`wait_for_cascade`).
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.events.streams import drift_stream
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
from slipway_client import ApiClient, ApiError, ApiUnreachable, JsonObject

DEPLOYMENT_STATUSES: Final = (
    "PENDING",
    "PLANNED",
    "RUNNING",
    "ROLLING_BACK",
    "SUCCESS",
    "FAILURE",
    "CANCELLED",
)
TERMINAL_STATUSES: Final = frozenset({"SUCCESS", "FAILURE", "CANCELLED"})
FAILED_STATUSES: Final = frozenset({"FAILURE", "CANCELLED"})
CASCADE_DELETED: Final = "application_resources_deleted"
CASCADE_FAILED: Final = "application_resources_deletion_failed"


@dataclass(frozen=True)
class WaitOutcome:
    """How waiting for a deployment ended."""

    deployment: JsonObject | None
    """Its last state seen (None: never triggered within the wait)."""
    wanted: bool
    """It reached one of the wanted statuses."""
    timed_out: bool
    unreachable: bool
    """The last attempt to ask found no API (only meaningful with `timed_out`)."""
    waited_s: float


def wait_for_status(
    client: ApiClient,
    deployment_id: str,
    wanted: Iterable[str],
    *,
    timeout_s: float,
    poll_s: float = 1.0,
    progress: Callable[[JsonObject | None], None] = lambda _: None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> WaitOutcome:
    """Poll the deployment until it reaches a wanted status or a terminal one, or time runs out.

    A 404 means the gitwatcher has not triggered it yet (a sync's deployment id
    is known before it exists), and an unreachable API or a 503 may be a
    restart: both are waited through until the timeout. Other refusals raise.
    """
    wanted_set = frozenset(wanted)
    started = clock()
    deployment: JsonObject | None = None
    unreachable = False
    while True:
        try:
            deployment = client.get_deployment(deployment_id)
            unreachable = False
        except ApiUnreachable:
            unreachable = True
        except ApiError as exc:
            if exc.status not in (404, 503):
                raise
            unreachable = False
        progress(deployment)
        if deployment is not None:
            status = deployment["status"]
            if status in wanted_set or status in TERMINAL_STATUSES:
                return WaitOutcome(
                    deployment, status in wanted_set, False, False, clock() - started
                )
        if clock() - started >= timeout_s:
            return WaitOutcome(deployment, False, True, unreachable, clock() - started)
        sleep(poll_s)


def wait_for_cascade(
    client: ApiClient,
    application_id: str,
    *,
    after_position: int,
    timeout_s: float,
    poll_s: float = 1.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> JsonObject | None:
    """How a cascade delete ended: the drift service's first verdict after `after_position`.

    That is an `application_resources_deleted` (`data.resources`: what it
    deleted) or an `application_resources_deletion_failed` (`data.reason`,
    `data.remaining`) event on `drift-<application_id>`; None when neither came
    within `timeout_s`. An unreachable API or a 503 is waited through.
    """
    started = clock()
    stream = drift_stream(application_id)
    while True:
        try:
            for event in client.stream_events(stream):
                if event["global_position"] > after_position and event["event_type"] in (
                    CASCADE_DELETED,
                    CASCADE_FAILED,
                ):
                    return event
        except ApiUnreachable:
            pass
        except ApiError as exc:
            if exc.status != 503:
                raise
        if clock() - started >= timeout_s:
            return None
        sleep(poll_s)


def wait_options(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """Add the `--wait-status` and timeout options to a command that can wait."""
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
