"""`slipway migrate`: create or update the event log's schema."""

from __future__ import annotations

import argparse
import asyncio
import os

from shared.db import connect
from shared.errors import ConfigError
from shared.eventlog import (
    DEFAULT_API_ROLE,
    DEFAULT_APP_ROLE,
    DEFAULT_PROJECTOR_ROLE,
    DEFAULT_READER_ROLE,
    migrate,
)


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway migrate` (create or update the schema) to the parser."""
    parser = subparsers.add_parser("migrate", help="create or update the database schema")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("SLIPWAY_MIGRATE_DATABASE_URL")
        or os.environ.get("SLIPWAY_DATABASE_URL"),
        help="an owner's URL (default: $SLIPWAY_MIGRATE_DATABASE_URL, then $SLIPWAY_DATABASE_URL)",
    )
    parser.add_argument("--schema", default=os.environ.get("SLIPWAY_DATABASE_SCHEMA", "slipway"))
    parser.add_argument("--app-role", default=DEFAULT_APP_ROLE, help="the services' role")
    parser.add_argument(
        "--projector-role", default=DEFAULT_PROJECTOR_ROLE, help="the projector's role"
    )
    parser.add_argument(
        "--reader-role", default=DEFAULT_READER_ROLE, help="the read-only query role"
    )
    parser.add_argument(
        "--api-role", default=DEFAULT_API_ROLE, help="the API's role (the console's secrets)"
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Apply the schema migrations and say which ran."""
    if not args.database_url:
        raise ConfigError("migrate needs --database-url or SLIPWAY_MIGRATE_DATABASE_URL")
    applied = asyncio.run(_migrate(args))
    print(f"schema {args.schema}: " + (f"applied {applied}" if applied else "up to date"))
    return 0


async def _migrate(args: argparse.Namespace) -> list[int]:
    # No statement limit: a migration may index or rewrite the whole log.
    conn = await connect(args.database_url, schema="public", statement_timeout_s=0)
    try:
        return await migrate(
            conn,
            schema=args.schema,
            app_role=args.app_role,
            projector_role=args.projector_role,
            reader_role=args.reader_role,
            api_role=args.api_role,
        )
    finally:
        await conn.close()
