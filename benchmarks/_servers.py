"""The servers a benchmark runs against: one nats-server and one durable PostgreSQL.

Every figure of a run is measured against the same two processes, so that the
figures can be compared with each other; each measurement isolates itself in
a schema (and a NATS subject prefix) of its own. PostgreSQL keeps fsync on:
durable commits are what Slipway promises and what its peers pay for.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import nats
from nats.aio.client import Client as NatsClient

from benchmarks._report import progress
from shared.db import check_schema_name, connect
from shared.eventlog import DEFAULT_APP_ROLE, DEFAULT_PROJECTOR_ROLE, migrate, role_of_service
from slipway_sandbox import NatsServer, PostgresServer


@dataclass(frozen=True)
class WalFlushes:
    """PostgreSQL's WAL flushes so far (or between two samples) and the seconds they took."""

    count: int
    seconds: float

    def __sub__(self, earlier: WalFlushes) -> WalFlushes:
        return WalFlushes(self.count - earlier.count, self.seconds - earlier.seconds)


@dataclass(frozen=True)
class Servers:
    postgres: PostgresServer
    nats: NatsServer

    @property
    def admin_url(self) -> str:
        """The superuser: creates schemas, runs migrations, owns the peers' tables."""
        return self.postgres.url

    @property
    def app_url(self) -> str:
        """The role Slipway's services log in as (created by the first migration)."""
        return self.postgres.url_for(DEFAULT_APP_ROLE)

    @property
    def projector_url(self) -> str:
        """The projector's role: the one that builds (and replays) projections."""
        return self.postgres.url_for(DEFAULT_PROJECTOR_ROLE)

    def url_of_service(self, service: str) -> str:
        """The URL `python -m services.<service>` logs in with, as in production."""
        return self.postgres.url_for(role_of_service(service))

    async def migrated_schema(self, schema: str) -> str:
        """A schema with Slipway's tables, as `migrate` makes them in production."""
        conn = await asyncpg.connect(self.admin_url)
        try:
            await migrate(conn, schema=schema)
        finally:
            await conn.close()
        return schema

    async def plain_schema(self, schema: str, *ddl: str) -> str:
        """An empty schema (plus `ddl`, run inside it) for the raw limit and the peer."""
        conn = await connect(self.admin_url, schema=check_schema_name(schema))
        try:
            await conn.execute(f'CREATE SCHEMA "{schema}"')
            for statement in ddl:
                await conn.execute(statement)
        finally:
            await conn.close()
        return schema

    async def postgres_version(self) -> str:
        conn = await asyncpg.connect(self.admin_url)
        try:
            version: str = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        return version

    @contextlib.asynccontextmanager
    async def wal_flush_counter(self) -> AsyncIterator[Callable[[], Awaitable[WalFlushes]]]:
        """A function returning the WAL flushes (fsyncs) PostgreSQL has made so far, and the
        time they took (0 unless `time_wal_flushes` turned the timing on).

        Each durable commit waits for one flush, and one flush may carry several commits:
        appends per flush says how well commits share them, and the flush time is the part
        of every commit's latency that no client can shorten. Backends report their counts
        to `pg_stat_io` about once a second, so a count lags by up to a second: figures
        over a few seconds of steady load are fair, shorter ones are not.
        """
        conn = await asyncpg.connect(self.admin_url)
        try:

            async def flushes() -> WalFlushes:
                row = await conn.fetchrow(
                    "SELECT coalesce(sum(fsyncs), 0)::bigint AS count,"
                    " coalesce(sum(fsync_time), 0)::float8 AS ms"
                    " FROM pg_stat_io WHERE object = 'wal'"
                )
                assert row is not None
                return WalFlushes(row["count"], row["ms"] / 1000)

            yield flushes
        finally:
            await conn.close()

    async def time_wal_flushes(self) -> None:
        """Have PostgreSQL time its WAL flushes (`track_wal_io_timing`, off by default).

        Not on by default in the benchmarks: in back-to-back runs the 8-writer group's
        round was 0.5-0.8 ms longer with it (two ABBA runs; no difference with one writer),
        which would move the very figure it explains."""
        conn = await asyncpg.connect(self.admin_url)
        try:
            await conn.execute("ALTER SYSTEM SET track_wal_io_timing = on")
            await conn.execute("SELECT pg_reload_conf()")  # every backend re-reads it
        finally:
            await conn.close()

    def cpu_seconds(self) -> tuple[float, float]:
        """CPU seconds used so far by (PostgreSQL with all its backends, nats-server)."""
        assert self.postgres.process is not None and self.nats.process is not None
        return _tree_cpu_seconds(self.postgres.process.pid), _tree_cpu_seconds(
            self.nats.process.pid
        )

    @contextlib.asynccontextmanager
    async def nats_client(self) -> AsyncIterator[NatsClient]:
        client = await nats.connect(self.nats.url)
        try:
            yield client
        finally:
            await client.drain()


@contextlib.contextmanager
def running_servers() -> Iterator[Servers]:
    """Start both servers on free ports; stop them and delete their data afterwards."""
    progress("starting nats-server and PostgreSQL (durable)…")
    with NatsServer() as nats_server, PostgresServer(durable=True) as postgres:
        yield Servers(postgres=postgres, nats=nats_server)


def _tree_cpu_seconds(root: int) -> float:
    """CPU seconds of `root`, of its children that have exited, and of those still running."""
    total, children = 0.0, 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # exited while we looked
            continue
        # Fields after the command name (which may hold spaces): state ppid … utime stime
        # cutime cstime (proc(5) fields 3, 4, 14-17).
        fields = stat[stat.rindex(")") + 2 :].split()
        if int(entry.name) == root:
            total += sum(int(f) for f in fields[11:15])
        elif int(fields[1]) == root:
            children += int(fields[11]) + int(fields[12])
    return (total + children) / os.sysconf("SC_CLK_TCK")
