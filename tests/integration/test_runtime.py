"""The service runtime: start-up, readiness, graceful shutdown on SIGTERM, failures, burst mode.

The SIGTERM and settings cases run `tests/fixtures_services/worker.py` as a
real process against the session's NATS and PostgreSQL; the others run the
runtime in this process, which is quicker and lets a test see each outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import asyncpg
import msgspec
import pytest
import structlog
from nats.aio.client import Client as NatsClient

from shared.events.streams import service_stream
from shared.runtime import (
    EXIT_CONFIG,
    Component,
    Outcome,
    ServiceRuntime,
    unless_stopped,
)
from shared.settings import ServiceSettings
from shared.subjects import Subjects
from tests.fixtures_services.worker import NAME as WORKER
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT


class ServiceProcess:
    """A service subprocess whose JSON log lines can be awaited as they arrive."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[dict[str, Any]] = []
        self.raw: list[str] = []
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stderr is not None
        async for line in self.process.stderr:
            text = line.decode().rstrip("\n")
            async with self._arrived:
                self.raw.append(text)
                with contextlib.suppress(ValueError):
                    self.lines.append(json.loads(text))
                self._arrived.notify_all()

    async def log_line(self, event: str, within: float = 10.0) -> dict[str, Any]:
        """The first line logging `event`, waiting for it if need be."""

        def found() -> dict[str, Any] | None:
            return next((line for line in self.lines if line.get("event") == event), None)

        async with asyncio.timeout(within), self._arrived:
            await self._arrived.wait_for(lambda: found() is not None or self._reader.done())
        line = found()
        assert line is not None, f"{event!r} never logged; output:\n" + "\n".join(self.raw)
        return line

    async def exit_code(self, within: float) -> int:
        """Wait for the process to exit, and for its last log lines to be read."""
        async with asyncio.timeout(within):
            code = await self.process.wait()
            await self._reader
        return code

    def events(self) -> list[str]:
        return [line.get("event", "") for line in self.lines]


@contextlib.asynccontextmanager
async def worker_process(**settings: str) -> AsyncIterator[ServiceProcess]:
    """Run the test worker with `SLIPWAY_<KEY>` settings; killed on the way out if still up."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLIPWAY_", "OTEL_"))}
    env.update({f"SLIPWAY_{key.upper()}": value for key, value in settings.items()})
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.fixtures_services.worker",
        cwd=REPO,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    service = ServiceProcess(process)
    try:
        yield service
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await service._reader


@pytest.fixture
def worker_env(app_database_url: str, schema: str, nats_url: str, test_id: str) -> dict[str, str]:
    return {
        "database_url": app_database_url,
        "database_schema": schema,
        "nats_url": nats_url,
        "subject_prefix": test_id,
        "health_port": "0",
    }


async def start_work(nc: NatsClient, subjects: Subjects) -> uuid.UUID:
    """Hand the worker one unit of work; returns once the worker has started it."""
    event_id = uuid.uuid4()
    reply = await nc.request(subjects.request("worker", "work"), str(event_id).encode(), timeout=5)
    assert reply.data == b"started"
    return event_id


async def recorded(pool: asyncpg.Pool, event_id: uuid.UUID) -> bool:
    count = await pool.fetchval(
        "SELECT count(*) FROM consumer_inbox WHERE consumer = $1 AND event_id = $2",
        WORKER,
        event_id,
    )
    return bool(count)


async def lifecycle_of(pool: asyncpg.Pool, service: str, instance: str) -> list[dict[str, Any]]:
    """The start and stop events `instance` of `service` recorded, in log order."""
    rows = await pool.fetch(
        "SELECT payload FROM events WHERE stream_id = $1 ORDER BY global_position",
        service_stream(service),
    )
    payloads = [json.loads(row["payload"]) for row in rows]
    return [p for p in payloads if p["instance"] == instance]


async def test_sigterm_lets_in_flight_work_finish(
    worker_env: dict[str, str],
    nc: NatsClient,
    subjects: Subjects,
    pool: asyncpg.Pool,
    test_id: str,
) -> None:
    """Ready once up; on SIGTERM the running unit of work completes and the process exits 0;
    its start and its stop are on the log, with its instance and why it stopped."""
    instance = f"worker-{test_id}"
    async with worker_process(
        **worker_env, work_s="1.0", shutdown_grace_s="10", service_instance=instance
    ) as service:
        port = (await service.log_line("health_server_started"))["port"]
        await service.log_line("service_started")
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/readyz") as response,
        ):
            assert response.status == 200
            checks = (await response.json())["checks"]
        assert checks["postgres"]["ok"] and checks["nats"]["ok"]

        event_id = await start_work(nc, subjects)
        service.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert await service.exit_code(within=10) == 0

    assert time.monotonic() - sent < 10
    assert await recorded(pool, event_id)
    events = service.events()
    assert "component_cancelled" not in events
    order = ["signal_received", "shutdown_started", "work_finished", "component_finished"]
    order += ["nats_drained", "service_stopped"]
    assert [e for e in events if e in order] == order
    assert service.lines[-1]["exit_code"] == 0
    started, stopped = await lifecycle_of(pool, WORKER, instance)
    assert (started["type"], started["service"]) == ("service_started", WORKER)
    assert started["version"]
    assert (stopped["type"], stopped["reason"], stopped["crashed"]) == (
        "service_stopped",
        "SIGTERM",
        False,
    )


async def test_work_outlasting_the_grace_is_cancelled_and_reported(
    worker_env: dict[str, str], nc: NatsClient, subjects: Subjects, pool: asyncpg.Pool
) -> None:
    """Work still running when the grace period ends is cancelled, logged, and the exit is 0."""
    async with worker_process(**worker_env, work_s="60", shutdown_grace_s="0.3") as service:
        await service.log_line("service_started")
        event_id = await start_work(nc, subjects)
        service.process.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert await service.exit_code(within=10) == 0

    assert time.monotonic() - sent < 5
    assert not await recorded(pool, event_id)
    cancelled = await service.log_line("component_cancelled")
    assert cancelled["component"] == "worker"
    assert cancelled["level"] == "warning"
    assert "0.3 s grace" in cancelled["reason"]
    assert (await service.log_line("service_stopped"))["outcomes"] == {"worker": "cancelled"}


async def test_bad_settings_exit_non_zero_naming_every_key() -> None:
    """Bad settings end the process with EX_CONFIG and one log line naming each bad key."""
    async with worker_process(
        health_port="eighty", log_format="xml", shutdown_grace_s="soon", work_s="-1"
    ) as service:
        assert await service.exit_code(within=10) == EXIT_CONFIG
    assert len(service.raw) == 1, service.raw
    [line] = service.lines
    assert line["event"] == "settings_invalid"
    assert line["level"] == "error"
    keys = [problem.split(":")[0].split("=")[0] for problem in line["problems"]]
    assert keys == [
        "SLIPWAY_DATABASE_URL",
        "SLIPWAY_HEALTH_PORT",
        "SLIPWAY_LOG_FORMAT",
        "SLIPWAY_SHUTDOWN_GRACE_S",
        "SLIPWAY_WORK_S",
    ]


@pytest.fixture
def settings(app_database_url: str, schema: str, nats_url: str, test_id: str) -> ServiceSettings:
    return ServiceSettings(
        database_url=app_database_url,
        database_schema=schema,
        nats_url=nats_url,
        subject_prefix=test_id,
        shutdown_grace_s=5.0,
    )


async def test_crash_stops_siblings_gracefully_and_fails(
    settings: ServiceSettings, pool: asyncpg.Pool
) -> None:
    """A crashing component is logged, siblings finish their work, and the exit code is 1;
    the stop is recorded as a crash, naming the component."""
    sibling_saw_stop = asyncio.Event()

    async def steady(stop: asyncio.Event) -> None:
        await stop.wait()
        sibling_saw_stop.set()

    async def crashing(_stop: asyncio.Event) -> None:
        raise RuntimeError("poison message")

    async def setup(_: ServiceRuntime[ServiceSettings]) -> list[Component]:
        return [steady, crashing]

    runtime = ServiceRuntime("crashy", settings, handle_signals=False)
    with structlog.testing.capture_logs() as captured:
        report = await runtime.run(setup)
    assert report.exit_code == 1
    assert report.outcomes == {"steady": Outcome.FINISHED, "crashing": Outcome.CRASHED}
    assert report.failure == "component crashed: crashing"
    assert sibling_saw_stop.is_set()
    [crash] = [e for e in captured if e["event"] == "component_crashed"]
    assert crash["component"] == "crashing"
    assert crash["exc_info"] is True
    started, stopped = await lifecycle_of(pool, "crashy", settings.instance)
    assert started["type"] == "service_started"
    assert (stopped["type"], stopped["reason"], stopped["crashed"]) == (
        "service_stopped",
        "component crashing crashed",
        True,
    )


async def test_burst_mode_ends_cleanly_when_components_return(settings: ServiceSettings) -> None:
    """In burst mode, components returning when idle end the run with exit code 0."""
    seen: list[int] = []

    async def one_batch(_stop: asyncio.Event) -> None:
        seen.append(await runtime.pool.fetchval("SELECT count(*) FROM events"))  # its start

    async def setup(_: ServiceRuntime[ServiceSettings]) -> list[Component]:
        return [one_batch]

    runtime = ServiceRuntime("bursty", settings, burst=True, handle_signals=False)
    report = await runtime.run(setup)
    assert (report.exit_code, report.outcomes) == (0, {"one_batch": Outcome.FINISHED})
    assert seen == [1]


async def test_components_all_returning_outside_burst_is_a_failure(
    settings: ServiceSettings,
) -> None:
    """Outside burst mode, every component returning on its own fails the service."""

    async def gives_up(_stop: asyncio.Event) -> None:
        return None

    async def setup(_: ServiceRuntime[ServiceSettings]) -> list[Component]:
        return [gives_up]

    report = await ServiceRuntime("quitter", settings, handle_signals=False).run(setup)
    assert report.exit_code == 1
    assert report.failure == "every component returned before a stop was requested"


async def test_readiness_follows_the_lifecycle(settings: ServiceSettings) -> None:
    """Ready (postgres and nats passing) while running; not ready once a stop is requested."""
    seen: list[tuple[int, dict[str, Any]]] = []

    async def probe(_stop: asyncio.Event) -> None:
        assert runtime.health is not None
        async with aiohttp.ClientSession() as http:
            for _ in range(2):
                async with http.get(runtime.health.url + "/readyz") as response:
                    seen.append((response.status, (await response.json())["checks"]))
                runtime.request_stop("probe done")

    async def setup(_: ServiceRuntime[ServiceSettings]) -> list[Component]:
        return [probe]

    runtime = ServiceRuntime("probed", settings, handle_signals=False)
    report = await runtime.run(setup)
    assert (report.exit_code, report.stop_reason) == (0, "probe done")
    (ready, checks), (stopping, later) = seen
    assert ready == 200
    assert {name: check["ok"] for name, check in checks.items()} == {
        "lifecycle": True,
        "postgres": True,
        "nats": True,
    }
    assert stopping == 503
    assert later["lifecycle"] == {"ok": False, "detail": "stopping"}


async def test_unreachable_nats_fails_start_up_after_the_timeout(settings: ServiceSettings) -> None:
    """If NATS cannot be reached within `startup_timeout_s`, the run fails without components."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    unreachable = msgspec.structs.replace(
        settings, nats_url=f"nats://127.0.0.1:{closed_port}", startup_timeout_s=0.5
    )

    async def setup(_: ServiceRuntime[ServiceSettings]) -> list[Component]:
        raise AssertionError("setup must not run without connections")

    report = await ServiceRuntime("lonely", unreachable, handle_signals=False).run(setup)
    assert report.exit_code == 1
    assert report.failure == "PostgreSQL and NATS not reachable within 0.5 s"


async def test_stop_before_start_up_completes_ends_quietly(settings: ServiceSettings) -> None:
    """A stop requested during start-up ends the run at once, with exit code 0."""

    async def setup(_: ServiceRuntime[ServiceSettings]) -> list[Component]:
        raise AssertionError("setup must not run after a stop")

    runtime = ServiceRuntime("brief", settings, handle_signals=False)
    runtime.request_stop("deploy rolled back")
    report = await runtime.run(setup)
    assert (report.exit_code, report.stop_reason, report.outcomes) == (
        0,
        "deploy rolled back",
        {},
    )


async def test_unless_stopped_gives_the_result_or_none() -> None:
    """`unless_stopped` returns the awaited result, or None and cancels it once stop is set."""
    stop = asyncio.Event()
    assert await unless_stopped(stop, asyncio.sleep(0, result="done")) == "done"
    never = asyncio.get_running_loop().create_future()
    stop.set()
    assert await unless_stopped(stop, never) is None
    assert never.cancelled()
