"""`slipway event register|list`: PipeCD's `pipectl event register`, and what each event changed.

- `slipway event register --name image-update --data registry/app:v1.2.3
  --labels env=dev,app=web` records an event (`POST /api/v1/event-watcher/events`,
  a read-write key); the gitwatcher's event watcher writes the value into every
  `eventWatcher` whose matcher has this name and exactly these labels, commits
  and pushes. Prints the event id.
- `slipway event list [--name N]` shows registered events, newest first, with
  what each repository's watcher did and the commit it pushed (from the log).
"""

from __future__ import annotations

import argparse

from slipway_cli.command import common_options, positive_int, print_json, run_with_client, table
from slipway_client import ApiClient

__all__ = ["parse_pairs", "register"]


def parse_pairs(text: str) -> dict[str, str]:
    """PipeCD's `key=value,key2=value2` (cobra's StringToString)."""
    pairs: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise argparse.ArgumentTypeError(f"expected key=value[,key=value…], got {item!r}")
        pairs[key] = value
    return pairs


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway event` (register and list event-watcher events) to the parser."""
    parser = subparsers.add_parser(
        "event", help="register events for the event watcher (image updates), list them"
    )
    commands = parser.add_subparsers(dest="event_command", required=True)
    add = commands.add_parser(
        "register",
        parents=[common_options()],
        help="record an event: its value is written into every matching eventWatcher's files",
    )
    add.add_argument("--name", required=True, help="the event name (a matcher's name)")
    add.add_argument("--data", required=True, help="the value to write, e.g. an image")
    add.add_argument(
        "--labels", type=parse_pairs, default={}, help="key=value,key2=value2 (exact match)"
    )
    add.add_argument(
        "--contexts", type=parse_pairs, default={}, help="key=value,…: trailers of the commit"
    )
    add.add_argument("--commit-hash", default="", help="the commit that produced the value")
    add.set_defaults(handler=run_with_client(_register))
    show = commands.add_parser(
        "list", parents=[common_options()], help="registered events and the commit each made"
    )
    show.add_argument("--name", default="", help="only events of this name")
    show.add_argument("--limit", type=positive_int, default=50)
    show.set_defaults(handler=run_with_client(_list))


def _register(client: ApiClient, args: argparse.Namespace) -> int:
    event_id = client.register_event(
        name=args.name,
        data=args.data,
        labels=args.labels,
        contexts=args.contexts,
        commit_hash=args.commit_hash,
    )
    if args.json:
        print_json({"event_id": event_id})
    else:
        print(event_id)
    return 0


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    events = client.list_watched_events(name=args.name, limit=args.limit)
    if args.json:
        print_json(events)
        return 0
    rows = [["REGISTERED", "NAME", "LABELS", "DATA", "REPOSITORY", "STATUS", "COMMIT"]]
    for event in events:
        labels = ",".join(f"{k}={v}" for k, v in sorted(event["labels"].items()))
        outcomes = event["handled"] or [
            {"repository_id": "-", "status": "PENDING", "commit_hash": ""}
        ]
        for outcome in outcomes:
            commit = outcome["commit_hash"][:12] or outcome.get("description", "")[:60]
            rows.append(
                [
                    event["registered_at"][:19],
                    event["name"],
                    labels,
                    event["data"],
                    outcome["repository_id"],
                    outcome["status"],
                    commit,
                ]
            )
    print(table(rows))
    return 0
