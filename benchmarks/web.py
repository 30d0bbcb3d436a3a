"""The web console benchmark: the applications page at 1,000 applications and 100,000 events.

`python -m benchmarks.web --json` starts one nats-server and one durable
PostgreSQL, writes `APPS` applications with their deployment histories
(`EVENTS` events in all: each app registered, then deployments of three
events each), lets the applications and deployments projections catch up,
serves the API (console included) in this process, and measures:

- `apps_page_p50_ms` / `apps_page_p95_ms`: `GET /console/applications`
  (first page of 100 rows, counts of all 1,000) as a signed-in client sees it
  over loopback, `SAMPLES` times, with and without a search and a label filter;
- `apps_page_kb`: the page's HTML, and `apps_page_total_kb` with its scripts
  and stylesheet;
- `event_to_browser_p50_ms` / `event_to_browser_p95_ms`: in Debian's headless
  Chromium on the applications page, from an `ApplicationDisabled` append's
  commit until the row shows "disabled" (the projection, the live stream,
  htmx's fetch and swap): what a person waits for. Null without Chromium.

Progress goes to stderr; stdout has the report only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from time import perf_counter
from typing import Any, Final

import aiohttp

from benchmarks._report import percentile, print_report, progress, quiet_logging
from benchmarks._servers import Servers, running_servers
from services.api.app import ApiServer, create_app
from shared.apikeys import create_api_key
from shared.db import create_pool
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationDisabled,
    ApplicationEnabled,
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentStarted,
    DeploymentTriggered,
    default_registry,
)
from shared.ids import new_id
from shared.projections import ProjectionRunner
from shared.projections.applications import ApplicationsProjection
from shared.projections.deployments import DeploymentsProjection

APPS: Final = 1000
EVENTS: Final = 100_000
SAMPLES: Final = 200
LIVE_SAMPLES: Final = 20
WRITERS: Final = 4
CHROMIUM: Final = "/usr/bin/chromium"
_CSRF: Final = re.compile(r'name="csrf" value="([^"]+)"')
_ASSETS: Final = re.compile(r'(?:src|href)="(/console/(?:assets|static)/[^"]+)"')
_T0: Final = datetime(2026, 1, 1, tzinfo=UTC)


def _history(name: str, deployments: int) -> list[tuple[str, list[Event]]]:
    """One application's streams: its registration, then `deployments` finished ones."""
    app_id = new_id()
    env = "prd" if name.endswith(("0", "2", "4")) else "dev"
    streams: list[tuple[str, list[Event]]] = [
        (
            f"application-{app_id}",
            [
                ApplicationRegistered(
                    application_id=app_id,
                    name=name,
                    repository_id="config",
                    path=name,
                    labels=(("env", env), ("team", f"team-{name[-2:]}")),
                )
            ],
        )
    ]
    for n in range(deployments):
        d = new_id()
        at = f"c{n:07d}"
        streams.append(
            (
                f"deployment-{d}",
                [
                    DeploymentTriggered(
                        deployment_id=d,
                        application_id=app_id,
                        trigger=vocabulary.Trigger("on_commit"),
                        commit_hash=at,
                        commit_message=f"bump {n}",
                    ),
                    DeploymentStarted(deployment_id=d, application_id=app_id, started_at=_T0),
                    DeploymentCompleted(
                        deployment_id=d,
                        application_id=app_id,
                        status=vocabulary.DeploymentStatus("SUCCESS"),
                        commit_hash=at,
                    ),
                ],
            )
        )
    return streams


async def _preload(store: EventStore, apps: int, events: int) -> None:
    per_app = max((events // apps - 1) // 3, 0)
    names = iter(range(apps))

    async def writer() -> None:
        for i in names:
            async with store.pool.acquire() as conn, conn.transaction():
                for stream, stream_events in _history(f"app-{i:04d}", per_app):
                    await store.append(
                        stream, new_events(stream_events), expected_version=NO_STREAM, conn=conn
                    )
            if i % 100 == 0:
                progress(f"  {i} applications written")

    await asyncio.gather(*(writer() for _ in range(WRITERS)))


async def _caught_up(store: EventStore) -> None:
    while True:
        lag = await store.pool.fetchval(
            "SELECT (SELECT max(global_position) FROM events) - min(position) "
            "FROM projection_state WHERE name IN ('applications', 'deployments')"
        )
        if lag == 0:
            return
        await asyncio.sleep(0.2)


async def _signed_in(http: aiohttp.ClientSession, key: str) -> None:
    async with http.get("/console/sign-in") as form:
        token = _CSRF.search(await form.text())
    assert token is not None
    async with http.post(
        "/console/sign-in", data={"csrf": token.group(1), "api_key": key}, allow_redirects=False
    ) as reply:
        assert reply.status == 303, await reply.text()


async def _page_times(http: aiohttp.ClientSession) -> tuple[list[float], int, int]:
    paths = (
        "/console/applications",
        "/console/applications?q=app-01",
        "/console/applications?label=env%3Dprd",
    )
    times: list[float] = []
    for n in range(SAMPLES):
        started = perf_counter()
        async with http.get(paths[n % len(paths)]) as reply:
            body = await reply.read()
            assert reply.status == 200
        times.append((perf_counter() - started) * 1000)
    async with http.get(paths[0]) as reply:
        html = await reply.text()
    total = len(html.encode())
    for asset in set(_ASSETS.findall(html)):
        async with http.get(asset) as reply:
            total += len(await reply.read())
    del body
    return times, len(html.encode()), total


async def _event_to_browser(
    url: str, key: str, store: EventStore, app_ids: list[str]
) -> list[float]:
    if shutil.which(CHROMIUM) is None:
        return []
    from playwright.async_api import async_playwright

    times: list[float] = []
    async with async_playwright() as driver:
        browser = await driver.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--headless", "--disable-gpu", "--no-first-run"],
        )
        try:
            page = await browser.new_page()
            await page.goto(f"{url}/console/sign-in")
            await page.fill("#api_key", key)
            await page.click("button[type=submit]")
            await page.wait_for_url("**/console/applications")
            # The first change also waits for the page's live stream to connect: not counted.
            for n in range(LIVE_SAMPLES + 1):
                name = f"app-{n:04d}"
                app_id = app_ids[n]
                started = perf_counter()
                await store.append(
                    f"application-{app_id}",
                    new_events([ApplicationDisabled(application_id=app_id)]),
                    expected_version=None,
                )
                await page.wait_for_function(
                    f"() => document.querySelector('tr[data-app=\"{name}\"]')"
                    "?.textContent.includes('disabled')",
                    timeout=30_000,
                )
                if n > 0:
                    times.append((perf_counter() - started) * 1000)
                await store.append(
                    f"application-{app_id}",
                    new_events([ApplicationEnabled(application_id=app_id)]),
                    expected_version=None,
                )
        finally:
            await browser.close()
    return times


async def run(servers: Servers, apps: int, events: int) -> dict[str, Any]:
    """The console's figures at `apps` applications and `events` events in the log."""
    schema = await servers.migrated_schema("bench_web")
    pool = await create_pool(servers.app_url, schema=schema, min_size=2, max_size=10)
    projector_pool = await create_pool(servers.projector_url, schema=schema, min_size=1, max_size=4)
    store = EventStore(pool, default_registry())
    projector = EventStore(projector_pool, default_registry())
    report: dict[str, Any] = {"applications": apps}
    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        progress(f"writing {apps} applications and about {events} events…")
        started = perf_counter()
        await _preload(store, apps, events)
        report["events"] = await pool.fetchval("SELECT count(*) FROM events")
        report["preload_s"] = round(perf_counter() - started, 1)
        runners = [
            ProjectionRunner(projector, ApplicationsProjection(), idle_sleep_s=0.01),
            ProjectionRunner(projector, DeploymentsProjection(), idle_sleep_s=0.01),
        ]
        for runner in runners:
            await runner.install()
            tasks.append(asyncio.create_task(runner.run(stop)))
        progress("projecting…")
        started = perf_counter()
        await _caught_up(store)
        report["projection_catch_up_s"] = round(perf_counter() - started, 1)
        server = ApiServer(create_app(store=store, pool=pool), port=0, grace_s=1.0)
        await server.start()
        try:
            key = await create_api_key(store, "read-only", "bench")
            async with aiohttp.ClientSession(
                base_url=server.url, cookie_jar=aiohttp.CookieJar(unsafe=True)
            ) as http:
                await _signed_in(http, key)
                progress("measuring the applications page…")
                times, html, total = await _page_times(http)
            report["apps_page_p50_ms"] = round(percentile(times, 50), 1)
            report["apps_page_p95_ms"] = round(percentile(times, 95), 1)
            report["apps_page_kb"] = round(html / 1024, 1)
            report["apps_page_total_kb"] = round(total / 1024, 1)
            app_ids = [
                r["application_id"]
                for r in await pool.fetch(
                    "SELECT application_id FROM applications ORDER BY name LIMIT $1",
                    LIVE_SAMPLES + 1,
                )
            ]
            progress("measuring event to browser…")
            live = await _event_to_browser(server.url, key, store, app_ids)
            report["event_to_browser_p50_ms"] = round(percentile(live, 50), 1) if live else None
            report["event_to_browser_p95_ms"] = round(percentile(live, 95), 1) if live else None
        finally:
            await server.stop()
    finally:
        stop.set()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await pool.close()
        await projector_pool.close()
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: run and print the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.web", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--apps", type=int, default=APPS, help=f"applications (default {APPS})")
    parser.add_argument("--events", type=int, default=EVENTS, help=f"events (default {EVENTS})")
    args = parser.parse_args(argv)
    quiet_logging()
    started = perf_counter()
    with running_servers() as servers:
        result = asyncio.run(run(servers, args.apps, args.events))
    result["duration_s"] = round(perf_counter() - started, 2)
    result["cpu_count"] = os.cpu_count()
    print_report(result, as_json=args.json)


if __name__ == "__main__":
    main()
