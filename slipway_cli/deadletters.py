"""`slipway deadletters list|show|redrive`: the messages consumers gave up on.

Consumers keep a message they cannot handle whole in `dead_letters`
(shared/consumer/). `redrive` only marks letters: the consumer that wrote
each one picks the request up and handles the stored event through its inbox,
so it is processed once even if it had been handled after all.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from shared.db import connect
from shared.errors import ConfigError

_STATES = {
    "dead": "redrive_requested_at IS NULL AND redriven_at IS NULL",
    "redrive-requested": "redrive_requested_at IS NOT NULL AND redriven_at IS NULL",
    "redriven": "redriven_at IS NOT NULL",
}
_COLUMNS = (
    "id, consumer, subject, stream_seq, deliveries, error, recorded_at, "
    "redrive_requested_at, redriven_at, redrive_error"
)
_REQUEST_REDRIVE = """
UPDATE dead_letters SET redrive_requested_at = clock_timestamp(), redrive_error = NULL
WHERE id = ANY($1::bigint[]) AND redriven_at IS NULL
RETURNING id
"""


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway deadletters` (list, show, redrive) to the parser."""
    parser = subparsers.add_parser(
        "deadletters",
        help="list, show and redrive the messages consumers gave up on",
        description="Dead letters are messages a consumer could not handle (kept whole in "
        "the dead_letters table). Redrive asks the consumer that gave up to handle one again.",
    )
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SLIPWAY_DATABASE_URL"),
        help="the services' database URL (default: $SLIPWAY_DATABASE_URL)",
    )
    parser.add_argument("--schema", default=os.environ.get("SLIPWAY_DATABASE_SCHEMA", "slipway"))
    parser.add_argument("--json", action="store_true", help="one JSON object per letter")
    # Also after the action (`deadletters list --json`); SUPPRESS keeps the one above otherwise.
    also = argparse.ArgumentParser(add_help=False)
    also.add_argument("--json", action="store_true", default=argparse.SUPPRESS)
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    listing = actions.add_parser("list", parents=[also], help="dead letters, newest last")
    listing.add_argument("--consumer", help="only this consumer's")
    listing.add_argument("--state", choices=sorted(_STATES), help="only letters in this state")
    listing.add_argument("--subject", help="only subjects containing this text")
    listing.add_argument("--limit", type=int, default=100, help="at most this many (newest)")
    listing.set_defaults(handler=_list)

    show = actions.add_parser(
        "show", parents=[also], help="one dead letter with its headers and data"
    )
    show.add_argument("id", type=int)
    show.set_defaults(handler=_show)

    redrive = actions.add_parser(
        "redrive", help="ask the consumer that dead-lettered these to handle them again"
    )
    redrive.add_argument("ids", type=int, nargs="*", metavar="ID")
    redrive.add_argument(
        "--all-of", metavar="CONSUMER", help="every dead (not yet redriven) letter of CONSUMER"
    )
    redrive.set_defaults(handler=_redrive)


def _database(args: argparse.Namespace) -> str:
    if not args.database_url:
        raise ConfigError("deadletters needs --database-url or SLIPWAY_DATABASE_URL")
    url: str = args.database_url
    return url


def _list(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise ConfigError("--limit must be at least 1")
    where, params = ["TRUE"], list[Any]()
    if args.consumer:
        params.append(args.consumer)
        where.append(f"consumer = ${len(params)}")
    if args.subject:
        params.append(args.subject)
        where.append(f"strpos(subject, ${len(params)}) > 0")
    if args.state:
        where.append(_STATES[args.state])
    params.append(args.limit)
    query = (
        f"SELECT * FROM (SELECT {_COLUMNS} FROM dead_letters WHERE {' AND '.join(where)} "
        f"ORDER BY id DESC LIMIT ${len(params)}) AS newest ORDER BY id"
    )
    rows = asyncio.run(_fetch(args, query, params))
    for row in rows:
        letter = _letter(row)
        if args.json:
            print(json.dumps(letter, sort_keys=True))
        else:
            print(
                f"{letter['id']}\t{letter['state']}\t{letter['consumer']}\t{letter['subject']}\t"
                f"deliveries={letter['deliveries']}\t{letter['error']}"
            )
    return 0


def _show(args: argparse.Namespace) -> int:
    query = f"SELECT {_COLUMNS}, headers, data FROM dead_letters WHERE id = $1"
    rows = asyncio.run(_fetch(args, query, [args.id]))
    if not rows:
        print(f"slipway: no dead letter {args.id} in schema {args.schema}", file=sys.stderr)
        return 1
    row = rows[0]
    letter = _letter(row)
    raw = row["headers"]
    letter["headers"] = raw if isinstance(raw, dict) else json.loads(raw)
    data = bytes(row["data"])
    try:
        letter["data"] = data.decode()
    except UnicodeDecodeError:
        letter["data_hex"] = data.hex()
    if args.json:
        print(json.dumps(letter, sort_keys=True))
    else:
        for key, value in letter.items():
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
            print(f"{key}: {text}")
    return 0


def _redrive(args: argparse.Namespace) -> int:
    if bool(args.ids) == bool(args.all_of):
        raise ConfigError("redrive takes dead-letter ids or --all-of CONSUMER, not both or neither")
    asked: Sequence[int] = args.ids
    if args.all_of:
        rows = asyncio.run(
            _fetch(
                args,
                f"SELECT id FROM dead_letters WHERE consumer = $1 AND {_STATES['dead']} "
                "ORDER BY id",
                [args.all_of],
            )
        )
        asked = [row["id"] for row in rows]
    marked = {row["id"] for row in asyncio.run(_fetch(args, _REQUEST_REDRIVE, [list(asked)]))}
    for letter_id in asked:
        if letter_id in marked:
            print(f"redrive requested\t{letter_id}")
    missing = [letter_id for letter_id in asked if letter_id not in marked]
    if missing:
        print(
            "slipway: not redriven (no such dead letter, or already redriven): "
            + ", ".join(map(str, missing)),
            file=sys.stderr,
        )
        return 1
    return 0


async def _fetch(
    args: argparse.Namespace, query: str, params: Sequence[Any]
) -> list[asyncpg.Record]:
    conn = await connect(_database(args), schema=args.schema)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(query, *params)
    finally:
        await conn.close()
    return rows


def _letter(row: asyncpg.Record) -> dict[str, Any]:
    if row["redriven_at"] is not None:
        state = "redriven"
    elif row["redrive_requested_at"] is not None:
        state = "redrive-requested"
    else:
        state = "dead"
    letter: dict[str, Any] = {"state": state}
    for key in _COLUMNS.split(", "):
        value = row[key]
        letter[key] = value.isoformat() if isinstance(value, datetime) else value
    return letter
