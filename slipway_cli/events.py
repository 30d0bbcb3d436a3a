"""`slipway events …`: the event log — follow it live, or show a stream and its state as of a point.

`events tail` prints events as they are committed (commit order, so none is
skipped) until Ctrl-C; `events show STREAM` prints a stream's events, or with
`--position N` / `--at TIME` its state then (time travel).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Mapping
from typing import Any, Final

from slipway_cli.command import (
    EXIT_FAILED,
    EXIT_OK,
    common_options,
    fail,
    print_json,
    run_with_client,
)
from slipway_client import ApiClient

_PAGE: Final = 500


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway events` (follow the log, a stream's state as of a point) to the parser."""
    parser = subparsers.add_parser(
        "events",
        help="follow the event log, or show a stream and its state as of a point",
        description="The event log: every change Slipway made, in order.",
    )
    commands = parser.add_subparsers(dest="events_command", required=True, metavar="COMMAND")
    common = common_options()

    tail = commands.add_parser("tail", parents=[common], help="print events as they happen")
    tail.add_argument("--category", help="only streams of this category (deployment, …)")
    tail.add_argument(
        "--from-position",
        type=int,
        metavar="N",
        help="start with the events from this position (default: only new ones)",
    )
    tail.add_argument(
        "--count", type=int, metavar="N", help="stop after N events (default: until Ctrl-C)"
    )
    tail.add_argument("--poll-interval", type=float, default=0.5, help=argparse.SUPPRESS)
    tail.set_defaults(handler=run_with_client(_tail))

    show = commands.add_parser("show", parents=[common], help="a stream's events, or its state")
    show.add_argument("stream", metavar="STREAM", help="e.g. deployment-<id>, application-<id>")
    point = show.add_mutually_exclusive_group()
    point.add_argument(
        "--position",
        type=int,
        metavar="N",
        help="its state as of the log's global position N (the first column of "
        "`events show STREAM` and `events tail`; not the stream's version)",
    )
    point.add_argument(
        "--at", metavar="TIME", help="its state as of an ISO 8601 time, e.g. 2026-01-31T12:00:00Z"
    )
    show.set_defaults(handler=run_with_client(_show))


def _tail(client: ApiClient, args: argparse.Namespace) -> int:
    # The head first, then the range: an event committed in between is in both,
    # and printed once (by position); one committed later is only in the tail.
    cursor = client.list_events(after="head", limit=1)["next_cursor"]
    printed: set[int] = set()  # the range's positions (only they can come round again)
    count = [0]
    if args.from_position is not None:
        position = args.from_position
        while True:
            page = client.list_events(from_position=position, category=args.category, limit=_PAGE)
            for event in page["items"]:
                printed.add(event["global_position"])
                if _emit(event, args, count):
                    return EXIT_OK
            if len(page["items"]) < _PAGE:
                break
            position = page["items"][-1]["global_position"] + 1
    while True:
        page = client.list_events(after=cursor, category=args.category, limit=_PAGE)
        for event in page["items"]:
            if event["global_position"] not in printed and _emit(event, args, count):
                return EXIT_OK
        cursor = page["next_cursor"]
        if not page["items"]:
            time.sleep(args.poll_interval)


def _emit(event: Mapping[str, Any], args: argparse.Namespace, count: list[int]) -> bool:
    """Print `event`; True once `--count` events have been printed."""
    _print(event, args.json)
    count[0] += 1
    return args.count is not None and count[0] >= args.count


def _show(client: ApiClient, args: argparse.Namespace) -> int:
    if args.position is None and args.at is None:
        events = client.stream_events(args.stream)
        if not events:
            # The log is append-only: a stream exists once it has an event.
            fail(f"no stream {args.stream!r} (no event was ever recorded on it)")
            return EXIT_FAILED
        if args.json:
            print_json(events)
        for event in [] if args.json else events:
            _print(event, False)
        return EXIT_OK
    state = client.stream_state(args.stream, position=args.position, at=args.at)
    if args.json:
        print_json(state)
        return EXIT_OK
    point = f"position {args.position}" if args.position is not None else args.at
    if not state["events"]:
        # Not `null`: say why, and what a position is (a newcomer tries the stream's version).
        print(
            f"{state['stream_id']} as of {point}: no event of it yet (positions are the "
            "log's, the first column of `slipway events show STREAM`)"
        )
        return EXIT_OK
    print(
        f"{state['stream_id']} as of {point}: {state['events']} event(s), "
        f"version {state['version']}"
    )
    print(json.dumps(state["state"], indent=2, sort_keys=True))
    return EXIT_OK


def _print(event: Mapping[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(event, sort_keys=True), flush=True)
        return
    data = ", ".join(f"{k}={_short(v)}" for k, v in sorted(event["data"].items()))
    print(
        f"{event['global_position']:>8} {str(event['recorded_at'])[:19].replace('T', ' ')} "
        f"{event['stream_id']} {event['event_type']} {data}",
        flush=True,
    )


def _short(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
