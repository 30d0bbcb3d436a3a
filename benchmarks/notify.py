"""The notifier benchmark: delivery throughput, and a `kill -9` mid-burst.

`python -m benchmarks.notify --json` starts one nats-server and one durable
PostgreSQL (fsync on), and a local HTTP receiver in this process that keeps,
per delivery id (`Slipway-Delivery`), how often it arrived and for which
source event. `python -m services.relay` and `python -m services.notifier`
run as subprocesses configured through `SLIPWAY_*` variables, with one route
sending every `DEPLOYMENT_TRIGGERED` to a signed generic webhook. Sections:

1. `raw`: the same bodies POSTed by a bare aiohttp client at the notifier's
   concurrency, nothing recorded: the limit of this receiver on this machine;
2. `throughput`: after a warm-up notification, `EVENTS` triggers appended in
   one transaction; from its commit until the receiver has every delivery id
   (`deliveries_per_s`) and until every `NotificationDelivered` is in the log;
3. `kill`: `EVENTS` triggers appended; once a third has arrived the notifier
   is `kill -9`ed and another (under another instance name: it takes the dead
   one's claims when their lease ends) is started; then every notification
   must arrive and be recorded.

`lost`: source events that never reached the receiver. `duplicated`: source
events that reached it under more than one delivery id — the same
notification made twice, which a receiver de-duplicating by delivery id would
show twice. `redelivered_same_id`: requests repeated with the same id (the
at-least-once window between the receiver's answer and the notifier recording
it; a receiver that remembers delivery ids drops them). Progress goes to
stderr; stdout has the report only.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter
from typing import Any, Final

import aiohttp
import yaml
from aiohttp import web

from benchmarks._report import print_report, progress, quiet_logging
from benchmarks._servers import Servers, running_servers
from services.notifier.notify.webhook import DELIVERY_HEADER, verify
from shared.db import create_pool
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.catalog import DeploymentTriggered, default_registry
from shared.http import RunningServer, serve

EVENTS: Final = 2000
CONCURRENCY: Final = 32  # the service's default
SECRET: Final = b"bench-secret"
TIMEOUT_S: Final = 120.0
LEASE_S: Final = 4.0


@dataclass
class Receiver:
    """Counts what arrives per section (URL path): by delivery id, and source events per id."""

    by_id: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    ids_of_source: dict[str, dict[str, set[str]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(set))
    )
    bad_signatures: int = 0
    server: RunningServer | None = None

    async def start(self) -> None:
        """Listen on a free port for the notifier's posts."""
        app = web.Application()
        app.router.add_post("/{section}", self._receive)
        self.server = await serve(app, "127.0.0.1", 0)

    def url(self, section: str) -> str:
        """The URL the notifier posts a section's notifications to."""
        assert self.server is not None
        return f"{self.server.url}/{section}"

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not verify(SECRET, body, request.headers.get("Slipway-Signature")):
            self.bad_signatures += 1
            return web.Response(status=401)
        section = request.match_info["section"]
        delivery_id = request.headers.get(DELIVERY_HEADER, "")
        self.by_id[section][delivery_id] += 1
        source = json.loads(body).get("source_event_id", "")
        self.ids_of_source[section][source].add(delivery_id)
        return web.Response(status=204)


class Services:
    """The relay and notifier processes of one section (schema and subject prefix)."""

    def __init__(self, servers: Servers, root: Path, schema: str, control: Path) -> None:
        self.env = os.environ | {
            "SLIPWAY_DATABASE_URL": servers.app_url,
            "SLIPWAY_DATABASE_SCHEMA": schema,
            "SLIPWAY_NATS_URL": servers.nats.url,
            "SLIPWAY_SUBJECT_PREFIX": schema,
            "SLIPWAY_HEALTH_PORT": "-1",
            "SLIPWAY_LOG_FORMAT": "json",
            "SLIPWAY_LOG_LEVEL": "warning",
            "SLIPWAY_CONTROL_CONFIG": str(control),
            "SLIPWAY_NOTIFIER_CONCURRENCY": str(CONCURRENCY),
            "SLIPWAY_NOTIFIER_LEASE_S": str(LEASE_S),
            "SLIPWAY_NOTIFIER_HTTP_TIMEOUT_S": "3",
            "SLIPWAY_NOTIFIER_ACK_WAIT_S": "3",
            "SLIPWAY_NOTIFIER_POLL_INTERVAL_S": "0.2",
        }
        self.root = root
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, module: str, instance: str) -> None:
        """Start `python -m services.<module>` as `instance`, logging to the work directory."""
        log = (self.root / f"{instance}.log").open("ab")
        self.processes[instance] = subprocess.Popen(
            [sys.executable, "-m", f"services.{module}"],
            env=self.env | {"SLIPWAY_SERVICE_INSTANCE": instance},
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def kill(self, instance: str) -> None:
        """Kill `instance` at once (SIGKILL), as a crash would."""
        process = self.processes[instance]
        process.send_signal(signal.SIGKILL)
        process.wait()

    def stop_all(self) -> None:
        """Terminate every process and wait for each."""
        for process in self.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def check_alive(self) -> None:
        """Raise if a process exited other than by the benchmark's SIGKILL, with its log's tail."""
        for name, process in self.processes.items():
            if process.poll() not in (None, -signal.SIGKILL):
                tail = (self.root / f"{name}.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"{name} exited with {process.returncode}:\n{tail}")


def control_config(path: Path, url: str) -> Path:
    """Write a control config whose one webhook receiver takes every event, posting to `url`."""
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "slipway.dev/v1",
                "kind": "Slipway",
                "spec": {
                    "project": "bench",
                    "notifications": {
                        "routes": [
                            {"name": "all", "receiver": "hook", "events": ["DEPLOYMENT_TRIGGERED"]}
                        ],
                        "receivers": [
                            {
                                "name": "hook",
                                "webhook": {"url": url, "signatureValue": SECRET.decode()},
                            }
                        ],
                    },
                },
            }
        )
    )
    return path


async def wait_for(condition: Any, what: str, services: Services) -> None:
    """Poll `condition` until true; fail on timeout or when a service died."""
    deadline = perf_counter() + TIMEOUT_S
    while not await condition():
        services.check_alive()
        if perf_counter() > deadline:
            raise RuntimeError(f"{what}: not reached within {TIMEOUT_S:g} s")
        await asyncio.sleep(0.02)


async def append_triggers(store: EventStore, prefix: str, count: int) -> list[str]:
    """`count` DeploymentTriggered, one stream each, committed in one transaction."""
    ids: list[str] = []
    async with store.pool.acquire() as conn, conn.transaction():
        for i in range(count):
            batch = new_events(
                [
                    DeploymentTriggered(
                        deployment_id=f"{prefix}{i}",
                        application_id="web",
                        trigger=vocabulary.Trigger("on_commit"),
                        commit_hash=f"{i:040x}",
                    )
                ]
            )
            await store.append(
                f"deployment-{prefix}{i}", batch, expected_version=NO_STREAM, conn=conn
            )
            ids.append(str(batch[0].event_id))
    return ids


async def delivered_in_log(store: EventStore) -> int:
    """How many `NotificationDelivered` events the log holds."""
    return int(
        await store.pool.fetchval(
            "SELECT count(*) FROM events WHERE event_type = 'notification_delivered'"
        )
    )


async def measure_raw(receiver: Receiver, events: int) -> dict[str, Any]:
    """The same kind of signed POSTs from a bare client: this receiver's limit here."""
    from services.notifier.notify.webhook import request_headers

    body = json.dumps({"source_event_id": "raw", "padding": "x" * 600}).encode()
    slots = asyncio.Semaphore(CONCURRENCY)
    connector = aiohttp.TCPConnector(limit=CONCURRENCY)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def post(i: int) -> None:
            headers = request_headers(
                delivery_id=f"raw-{i}",
                notification_type="DEPLOYMENT_TRIGGERED",
                body=body,
                signature_key="Slipway-Signature",
                secret=SECRET,
            )
            async with slots, session.post(receiver.url("raw"), data=body, headers=headers) as r:
                r.raise_for_status()

        started = perf_counter()
        await asyncio.gather(*(post(i) for i in range(events)))
        elapsed = perf_counter() - started
    return {"raw_http_per_s": round(events / elapsed, 1)}


@contextlib.asynccontextmanager
async def section_services(
    servers: Servers, root: Path, receiver: Receiver, name: str
) -> AsyncIterator[tuple[Services, EventStore]]:
    """Section `name`'s own schema, services (that notify the receiver's `name` path) and store.

    The services stop and the store's pool closes when the block ends.
    """
    schema = await servers.migrated_schema(f"n{name}")
    services = Services(
        servers, root, schema, control_config(root / f"{name}.yaml", receiver.url(name))
    )
    pool = await create_pool(servers.app_url, schema=schema, min_size=1, max_size=4)
    try:
        yield services, EventStore(pool, default_registry())
    finally:
        services.stop_all()
        await pool.close()


async def measure_throughput(
    servers: Servers, root: Path, receiver: Receiver, events: int
) -> dict[str, Any]:
    """Notifications per second from one relay and one notifier."""
    async with section_services(servers, root, receiver, "tput") as (services, store):
        pool = store.pool
        services.start("relay", "relay-tput")
        services.start("notifier", "notifier-tput")
        await append_triggers(store, "warm", 1)
        seen = receiver.by_id["tput"]
        await wait_for(lambda: _true(len(seen) >= 1), "the warm-up notification", services)
        progress(f"throughput: {events} notifications…")
        started = perf_counter()
        await append_triggers(store, "t", events)
        committed = perf_counter()
        committed_at = await pool.fetchval("SELECT clock_timestamp()")
        await wait_for(lambda: _true(len(seen) >= events + 1), "every delivery id", services)
        received = perf_counter()
        await wait_for(
            lambda: _at_least(delivered_in_log(store), events + 1),
            "every delivery recorded",
            services,
        )
        recorded = perf_counter()
        last_scheduled = await pool.fetchval(
            "SELECT max(recorded_at) FROM events WHERE event_type = 'notification_scheduled'"
        )
    return {
        "deliveries_per_s": round(events / (received - committed), 1),
        "scheduled_per_s": round(events / (last_scheduled - committed_at).total_seconds(), 1),
        "recorded_per_s": round(events / (recorded - committed), 1),
        "append_s": round(committed - started, 2),
    }


async def measure_kill(
    servers: Servers, root: Path, receiver: Receiver, events: int
) -> dict[str, Any]:
    """Kill the notifier mid-run: every notification still arrives, none twice."""
    seen = receiver.by_id["kill"]
    async with section_services(servers, root, receiver, "kill") as (services, store):
        services.start("relay", "relay-kill")
        services.start("notifier", "notifier-a")
        sources = await append_triggers(store, "k", events)
        await wait_for(lambda: _true(len(seen) >= events // 3), "a third delivered", services)
        services.kill("notifier-a")
        killed = perf_counter()
        at_kill = len(seen)
        progress(f"kill: notifier killed after {at_kill} of {events} deliveries")
        services.start("notifier", "notifier-b")
        await wait_for(
            lambda: _true(len(seen) >= events), "every delivery id after the kill", services
        )
        await wait_for(
            lambda: _at_least(delivered_in_log(store), events), "every delivery recorded", services
        )
        recovered = perf_counter()
        await asyncio.sleep(1.0)  # anything still on its way arrives before counting
        scheduled = int(
            await store.pool.fetchval(
                "SELECT count(*) FROM events WHERE event_type = 'notification_scheduled'"
            )
        )
        recorded = await delivered_in_log(store)
    per_source = receiver.ids_of_source["kill"]
    return {
        "lost": sum(1 for s in sources if not per_source.get(s)),
        "duplicated": sum(1 for s in sources if len(per_source.get(s, ())) > 1),
        "redelivered_same_id": sum(n - 1 for n in seen.values()),
        "delivered_before_kill": at_kill,
        "kill_to_all_recorded_s": round(recovered - killed, 2),
        "scheduled": scheduled,
        "recorded_delivered": recorded,
    }


async def _true(value: bool) -> bool:
    return value


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count >= n)


async def run(servers: Servers, root: Path, events: int) -> dict[str, Any]:
    """Both sections against one receiver; their figures and durations."""
    receiver = Receiver()
    await receiver.start()
    durations: dict[str, float] = {}
    try:
        report: dict[str, Any] = {}
        sections: list[tuple[str, Callable[[], Awaitable[dict[str, Any]]]]] = [
            ("raw", functools.partial(measure_raw, receiver, events)),
            ("throughput", functools.partial(measure_throughput, servers, root, receiver, events)),
            ("kill", functools.partial(measure_kill, servers, root, receiver, events)),
        ]
        for name, section in sections:
            progress(f"{name}…")
            started = perf_counter()
            report |= await section()
            durations[name] = round(perf_counter() - started, 2)
    finally:
        assert receiver.server is not None
        await receiver.server.stop()
    report["bad_signatures"] = receiver.bad_signatures
    report["targets"] = {
        "lost_is_0": report["lost"] == 0,
        "duplicated_is_0": report["duplicated"] == 0,
    }
    report["settings"] = {"events": events, "concurrency": CONCURRENCY, "lease_s": LEASE_S}
    report["duration_s"] = durations
    return report


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: run both sections and print the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.notify", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument(
        "--events", type=int, default=EVENTS, help=f"per section (default {EVENTS})"
    )
    args = parser.parse_args(argv)
    quiet_logging()
    started = perf_counter()
    with (
        running_servers() as servers,
        tempfile.TemporaryDirectory(prefix="slipway-bench-notify-") as tmp,
    ):
        result = asyncio.run(run(servers, Path(tmp), args.events))
    result["duration_s"]["total"] = round(perf_counter() - started, 2)
    result["cpu_count"] = os.cpu_count()
    print_report(result, as_json=args.json)


if __name__ == "__main__":
    main()
