"""The test harness: real nats-server and PostgreSQL, started once per session.

The tests are layered by folder (tests/README.md says which test goes where): `unit`,
`property`, `integration`, `e2e`, `chaos`, `deploy`, `security`; each test is marked with
its layer (`pytest -m unit`). The server fixtures here are session-scoped and lazy: only
a test that asks for one starts it, so `pytest tests/unit` starts no server. What tests
share that is not a fixture lives in `tests/support/`; no test module imports another.

`SLIPWAY_TEST_NATS_URL` / `SLIPWAY_TEST_DATABASE_URL` point the suite at
servers that are already running instead. Tests isolate themselves: each gets
its own PostgreSQL schema and its own NATS subject prefix and stream names.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import nats
import pytest
from hypothesis import settings
from nats.aio.client import Client as NatsClient
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from services.relay.relay import Relay
from shared.db import create_pool
from shared.eventlog import (
    DEFAULT_API_ROLE,
    DEFAULT_APP_ROLE,
    DEFAULT_PROJECTOR_ROLE,
    DEFAULT_READER_ROLE,
    EventStore,
    migrate,
)
from shared.events.catalog import default_registry
from shared.messaging import ensure_event_stream
from shared.subjects import Subjects
from slipway_sandbox import NatsServer, PostgresServer
from tests.support import Backends
from tests.support.git_helpers import WorkRepo
from tests.support.relay import create_counts_table

# The sandbox is a distribution of its own (tools/sandbox). pyproject's `pytest.pythonpath`
# finds it for this process; the CLI and lint-imports subprocesses the tests start find it
# here, so the suite runs whether or not it is installed (`make` installs it editable).
_SANDBOX_SOURCE = str(Path(__file__).resolve().parents[1] / "tools" / "sandbox")
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [_SANDBOX_SOURCE, os.environ.get("PYTHONPATH")])
)


# Hypothesis's per-example deadline (200 ms) is a timing assertion: on a machine that other
# test workers and sessions keep busy, one slow example fails a correct property. Examples
# stay bounded by their count; a hang is still caught by the tests' own timeouts.
settings.register_profile("slipway", deadline=None)
settings.load_profile("slipway")


LAYERS = ("unit", "property", "integration", "e2e", "chaos", "deploy", "security")
"""The folders of tests/, each also a marker (registered in pyproject.toml)."""


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if not item.path.is_relative_to(_TESTS):
            continue
        layer = item.path.relative_to(_TESTS).parts[0]
        if layer in LAYERS:
            item.add_marker(getattr(pytest.mark, layer))


_TESTS = Path(__file__).resolve().parent


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """URL of a JetStream-enabled nats-server for the whole session, logged in as its `admin`
    user (every permission; services' own users are tested in tests/security/test_nats.py)."""
    if url := os.environ.get("SLIPWAY_TEST_NATS_URL"):
        yield url
        return
    with NatsServer() as server:
        yield server.url


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | None]:
    if os.environ.get("SLIPWAY_TEST_DATABASE_URL"):
        yield None
        return
    # fsync off: the suite checks behaviour, not durability of this disk.
    with PostgresServer(durable=False) as server:
        yield server


@pytest.fixture(scope="session")
def database_url(postgres: PostgresServer | None) -> str:
    """Superuser URL: creates schemas and runs migrations."""
    if postgres is None:
        return os.environ["SLIPWAY_TEST_DATABASE_URL"]
    return postgres.url


@pytest.fixture(scope="session")
def app_database_url(database_url: str) -> str:
    """The same server as the application role, which may not UPDATE or DELETE events."""
    return _with_user(database_url, DEFAULT_APP_ROLE)


@pytest.fixture(scope="session")
def api_database_url(database_url: str) -> str:
    """The same server as the API's role: the services' rights and the console's secrets."""
    return _with_user(database_url, DEFAULT_API_ROLE)


@pytest.fixture(scope="session")
def projector_database_url(database_url: str) -> str:
    """The same server as the projector's role, the only one that may build projections."""
    return _with_user(database_url, DEFAULT_PROJECTOR_ROLE)


@pytest.fixture(scope="session")
def reader_database_url(database_url: str) -> str:
    """The same server as the read-only role of query paths."""
    return _with_user(database_url, DEFAULT_READER_ROLE)


def _with_user(url: str, user: str) -> str:
    scheme, rest = url.split("://", 1)
    host = rest.split("@", 1)[-1]
    return f"{scheme}://{user}@{host}"


@pytest.fixture
def test_id() -> str:
    """A short unique id for this test's schema, subjects and streams."""
    return "t" + uuid.uuid4().hex[:12]


@pytest.fixture
async def schema(database_url: str, test_id: str) -> AsyncIterator[str]:
    """A freshly migrated schema of this test's own, dropped afterwards."""
    conn = await asyncpg.connect(database_url)
    try:
        await migrate(conn, schema=test_id)
    finally:
        await conn.close()
    yield test_id
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f'DROP SCHEMA "{test_id}" CASCADE')
    finally:
        await conn.close()


@pytest.fixture
async def pool(app_database_url: str, schema: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool in the test's schema, logged in as the services' role (`slipway_app`), as every
    service but the API and the projector is: what they may not do, code tested on it may
    not either (read the console's secrets, for one)."""
    pool = await create_pool(app_database_url, schema=schema, min_size=1, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture
async def api_pool(api_database_url: str, schema: str) -> AsyncIterator[asyncpg.Pool]:
    """A pool in the test's schema as the API's role (`slipway_api`), for a test that serves
    the API (`tests.support.api.served_api`) or uses the console's tables: the services'
    rights and, beside them, only the console's secrets (migration 0015)."""
    pool = await create_pool(api_database_url, schema=schema, min_size=1, max_size=10)
    yield pool
    await pool.close()


@pytest.fixture
def store(pool: asyncpg.Pool) -> EventStore:
    return EventStore(pool, default_registry())


@pytest.fixture
async def projector_store(projector_database_url: str, schema: str) -> AsyncIterator[EventStore]:
    """A store in the test's schema as the projector's role: runs and replays projections."""
    pool = await create_pool(projector_database_url, schema=schema, min_size=1, max_size=8)
    yield EventStore(pool, default_registry())
    await pool.close()


@pytest.fixture
def subjects(test_id: str) -> Subjects:
    """Subjects and stream names private to this test."""
    return Subjects(prefix=test_id)


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NatsClient]:
    client = await nats.connect(nats_url)
    yield client
    await client.drain()


@pytest.fixture
def work(tmp_path: Path) -> WorkRepo:
    """A config repository to commit to, fresh for each test."""
    return WorkRepo(tmp_path / "config")


@pytest.fixture
def backends(
    app_database_url: str,
    schema: str,
    nats_url: str,
    nc: NatsClient,
    store: EventStore,
    subjects: Subjects,
) -> Backends:
    """This test's database schema, NATS connection and subjects, in one value."""
    return Backends(app_database_url, schema, nats_url, nc, store, subjects)


@pytest.fixture
def script_scratch() -> Iterator[Path]:
    """A directory any SCRIPT_RUN can write to, whatever account it runs as (an executor
    running as root runs scripts as `nobody`): markers a script creates go here, so a test
    that checks a marker is absent cannot pass merely because the script could not write."""
    path = Path(tempfile.mkdtemp(prefix="slipway-test-scratch-"))
    path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sandbox_dir() -> Iterator[Path]:
    """A data directory for a whole sandbox (`slipway up`, `Sandbox`), outside pytest's
    temporary root: every pytest session that starts (another engineer's, or CI's next job)
    makes that root 0700 again, locking out the user the sandbox's PostgreSQL runs as when
    the tests run as root."""
    path = Path(tempfile.mkdtemp(prefix="slipway-sandbox-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def counts_table(database_url: str, schema: str) -> None:
    """The table `tests.support.relay.counting_handler` writes to, in this test's schema."""
    await create_counts_table(database_url, schema)


@pytest.fixture
async def relay(app_database_url: str, schema: str, nc: NatsClient, subjects: Subjects) -> Relay:
    """A relay of this test's schema into its own event stream (created here, before the test)."""
    await ensure_event_stream(nc.jetstream(), subjects)
    return Relay(database_url=app_database_url, schema=schema, js=nc.jetstream(), subjects=subjects)


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Every span this process ends while the test runs (the services' tracers are global)."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    exporter = InMemorySpanExporter()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield exporter
    exporter.shutdown()  # a provider cannot drop a processor: this one just stops keeping
