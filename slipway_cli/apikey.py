"""`slipway apikey …`: make, list and revoke API keys.

`apikey create --direct` writes the key straight into the database (like
`slipway replay`), which is how the first admin key is made: no key is
needed to make it, only the database URL. Without `--direct` it asks the API,
with an admin key. Either way the secret is printed once, on stdout; only its
SHA-256 is stored.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys

from shared.apikeys import ROLES, create_key
from shared.db import create_pool
from shared.errors import ConfigError
from shared.eventlog import EventStore
from shared.events.catalog import default_registry
from slipway_cli.command import EXIT_OK, common_options, print_json, run_with_client, table
from slipway_client import ApiClient


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway apikey` (make, list, revoke API keys) to the parser."""
    parser = subparsers.add_parser(
        "apikey",
        help="make, list and revoke API keys",
        description="API keys: read-only may read, read-write may also command and register, "
        "admin may also manage keys and delete applications.",
    )
    commands = parser.add_subparsers(dest="apikey_command", required=True, metavar="COMMAND")
    common = common_options()

    create = commands.add_parser("create", parents=[common], help="make a key; prints its secret")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--name", default="", help="who uses it (the actor of its requests)")
    create.add_argument(
        "--direct",
        action="store_true",
        help="write it into the database instead of asking the API (to make the first admin key)",
    )
    create.add_argument(
        "--database-url",
        default=os.environ.get("SLIPWAY_DATABASE_URL"),
        help="with --direct (default: $SLIPWAY_DATABASE_URL)",
    )
    create.add_argument("--schema", default=os.environ.get("SLIPWAY_DATABASE_SCHEMA", "slipway"))
    create.set_defaults(handler=_create)

    listing = commands.add_parser("list", parents=[common], help="every key, revoked ones too")
    listing.set_defaults(handler=run_with_client(_list))

    revoke = commands.add_parser("revoke", parents=[common], help="revoke a key")
    revoke.add_argument("key_id", metavar="KEY_ID")
    revoke.set_defaults(handler=run_with_client(_revoke))


def _create(args: argparse.Namespace) -> int:
    if args.direct:
        if not args.database_url:
            raise ConfigError("apikey create --direct needs --database-url or SLIPWAY_DATABASE_URL")
        key_id, role, secret = asyncio.run(
            _create_direct(args.database_url, args.schema, args.role, args.name)
        )
        return _print_created(args, {"key_id": key_id, "role": role}, secret)
    return run_with_client(_create_via_api)(args)


async def _create_direct(url: str, schema: str, role: str, name: str) -> tuple[str, str, str]:
    pool = await create_pool(url, schema=schema, min_size=1, max_size=1)
    try:
        key, secret = await create_key(
            EventStore(pool, default_registry()), role=role, name=name, creator="cli"
        )
    finally:
        await pool.close()
    return key.key_id, key.role, secret


def _create_via_api(client: ApiClient, args: argparse.Namespace) -> int:
    created = client.create_api_key(role=args.role, name=args.name)
    return _print_created(args, created["key"], created["secret"])


def _print_created(args: argparse.Namespace, key: dict[str, object], secret: str) -> int:
    if args.json:
        print_json({"key": key, "secret": secret})
    else:
        print(secret)
        print(
            f"key {key['key_id']} ({key['role']}) created; the secret above is shown only once. "
            "Use it as SLIPWAY_API_KEY.",
            file=sys.stderr,
        )
    return EXIT_OK


def _list(client: ApiClient, args: argparse.Namespace) -> int:
    keys = client.list_api_keys()
    if args.json:
        print_json(keys)
        return EXIT_OK
    if not keys:
        print("no API keys")
        return EXIT_OK
    rows = [("ID", "NAME", "ROLE", "STATE")] + [
        (
            key["key_id"],
            key["name"] or "-",
            key["role"],
            f"revoked {key['revoked_at'][:19]}" if key["revoked"] else "active",
        )
        for key in keys
    ]
    print(table(rows))
    return EXIT_OK


def _revoke(client: ApiClient, args: argparse.Namespace) -> int:
    key = client.revoke_api_key(args.key_id)
    if args.json:
        print_json(key)
    else:
        print(f"key {key['key_id']} ({key['name']}) revoked")
    return EXIT_OK
