"""The scale benchmark: ten times the seed's applications, and a million events of history.

`python -m benchmarks.scale --json` measures issue 16's figures in three parts,
each against durable servers of its own (fsync on), the services as processes:

1. quick syncs: `benchmarks.executor`'s stack (relay, executors, a KubeSim in
   this process) with 1,000 quick-sync applications planned in one
   transaction, timed until all are completed. The executor runs as
   `--quick-sync-replicas` replicas (processes, as pods would be) of
   `--quick-sync-slots` deployments each (`SLIPWAY_EXECUTOR_MAX_CONCURRENT`);
   the report says which. `bench_process_cpu_s` is KubeSim's cost (with
   this process's polling), `executor_cpu_s` the replicas' together;
2. GitOps at scale: `benchmarks.gitops`'s run with 200 repositories of 50
   applications (10,000) — the webhook latency, then one commit per
   repository bumping every image until all 10,000 are planned; each
   service's RSS at the end;
3. history: the services stopped, the log of part 2 grown to 1,000,000
   events (a realistic mix, `benchmarks._history`), every projection
   rebuilt by `shared.projections.replay` and the snapshots of long streams
   by `shared.snapshots.rebuild` (as `slipway replay` does), then
   `python -m services.api` started and the application and deployment
   lists and the state reads of long streams (as of now and as of a
   position) timed one request at a time.

`--repositories`, `--apps-per-repository`, `--history-events` and
`--quick-sync-apps` shrink it for development. Progress goes to stderr;
stdout has the report only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter, process_time
from typing import Any, Final

import aiohttp

from benchmarks import executor, gitops
from benchmarks._history import Written, write_history
from benchmarks._machine import busy_cores_before
from benchmarks._report import percentile, print_report, progress, quiet_logging
from benchmarks._servers import running_servers
from benchmarks.gitops import SCHEMA, Bench, cpu_seconds, memory_mb, phase, work_directory
from kubesim import KubeSim
from shared.apikeys import create_api_key
from shared.db import connect, create_pool
from shared.eventlog import EventStore
from shared.projections.catalog import default_projections
from shared.projections.replay import replay
from shared.snapshots import rebuild
from shared.stream_folds import BY_CATEGORY
from slipway_sandbox._process import free_port

REPOSITORIES: Final = 200
APPS_PER_REPOSITORY: Final = 50
HISTORY_EVENTS: Final = 1_000_000
QUICK_SYNC_APPS: Final = 1_000
# A quick sync's latency is mostly waiting (the cluster, commits): 16 slots on one replica
# left the CPU idle. Two replicas, as a team running 1,000 applications would run them.
QUICK_SYNC_REPLICAS: Final = 2
QUICK_SYNC_SLOTS: Final = 32
# At 10,000 applications one planner's event loop was the ceiling (0.72 of a core at 7 ms
# of Python per plan) while the machine had a core to spare: two, as such a team would run.
PLANNER_REPLICAS: Final = 2
REQUESTS: Final = 100  # per route, one at a time, after WARM_UP
WARM_UP: Final = 3
ROUTE_BUDGET_S: Final = 15.0  # fewer requests for a route slower than that allows
MIN_REQUESTS: Final = 5
# Setup and planning waits grow with the size: a loaded machine planned 2,000 at 31/s.
SECONDS_PER_APPLICATION: Final = 0.1
BUDGET_S: Final = 3600.0

TARGETS: Final = {
    "commit_to_all_planned_s": 60.0,
    "webhook_commit_to_triggered_p95_s": 1.0,
    "quick_sync_apps_s": 60.0,
    "rss_mb": 300.0,
    "api_list_p95_ms": 100.0,
    "state_read_p95_ms": 20.0,
}
REPLAY_TARGET_PER_S: Final = 100_000.0


@dataclass(frozen=True)
class Size:
    """The benchmark's size: repositories, apps in each, history events, quick-sync apps."""

    repositories: int
    apps_per_repository: int
    history_events: int
    quick_sync_apps: int

    @property
    def applications(self) -> int:
        """How many applications in all."""
        return self.repositories * self.apps_per_repository


# ----------------------------------------------------------------------------- 1. quick syncs


async def quick_syncs(
    bench: Bench, apps: int, *, replicas: int = QUICK_SYNC_REPLICAS, slots: int = QUICK_SYNC_SLOTS
) -> dict[str, Any]:
    """Part 1: `apps` quick syncs planned in one transaction, timed until all complete."""
    await bench.servers.migrated_schema(SCHEMA)
    pool = await create_pool(bench.servers.app_url, schema=SCHEMA, min_size=2, max_size=4)
    store = EventStore(pool, bench.registry)
    try:
        async with KubeSim(ready_delay_s=0.0) as sim:
            kubeconfig = sim.write_kubeconfig(bench.root / "kubeconfig")
            with phase(bench, "quick_sync_setup"):
                names = executor.quick_sync_names(apps)
                files: dict[str, str] = {}
                for name in names:
                    files |= executor.app_files(name)
                repo = await executor.start_executor(
                    bench, store, kubeconfig, files, names, max_concurrent=slots, replicas=replicas
                )
            with phase(bench, "quick_syncs"):
                measured = await executor.measure_quick_syncs(bench, store, repo.head, apps)
        services = ("relay", *executor.executors(bench))
        memory = {name: memory_mb(bench.pid(name)) for name in services}
    finally:
        await pool.close()
    seconds = measured.pop(f"quick_sync_{apps}_apps_s")
    return {
        "seconds": seconds,
        "succeeded": measured["quick_sync_succeeded"],
        "details": measured["details_quick_sync"]
        | {
            "append_s": measured["quick_sync_append_s"],
            "executor_replicas": replicas,
            "executor_max_concurrent": slots,
        },
        "rss_mb": {name: round(m["VmHWM"], 1) for name, m in memory.items()},
    }


# ----------------------------------------------------------------------------- 2. GitOps


async def gitops_at_scale(bench: Bench) -> dict[str, Any]:
    """benchmarks.gitops's run at `bench`'s size; the services keep running afterwards."""
    await bench.servers.migrated_schema(SCHEMA)
    conn = await connect(bench.servers.admin_url, schema=SCHEMA)
    pool = await create_pool(bench.servers.app_url, schema=SCHEMA, min_size=4, max_size=4)
    store = EventStore(pool, bench.registry)
    try:
        timeout = aiohttp.ClientTimeout(total=60)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            await gitops.setup(bench, conn, store)
            with phase(bench, "webhooks"):
                webhooks = await gitops.measure_webhooks(bench, conn, session)
            with phase(bench, "completions"):
                await gitops.complete(bench, conn, store, webhooks)
            with phase(bench, "planning"):
                planning, mark, t0 = await gitops.measure_planning(bench, conn, session)
            bench.details |= await gitops.planning_details(conn, bench, mark, t0)
        memory = gitops.memory_of(bench)
        version = await conn.fetchval("SHOW server_version")
    finally:
        await pool.close()
        await conn.close()
    report = gitops.report(bench, webhooks, planning, memory, version)
    report["rss_now_mb"] = {name: round(m["VmRSS"], 1) for name, m in memory.items()}
    return report


# ----------------------------------------------------------------------------- 3. history


async def replay_all(bench: Bench) -> dict[str, Any]:
    """Every projection rebuilt from position 0 and the snapshots of long streams rebuilt,
    as `slipway replay` does, as the projector.

    With each rate, what bounds it: the CPU seconds of this process (reading, decoding,
    folding) and of PostgreSQL (all its processes: reading, writing, indexing) it took."""
    pool = await create_pool(bench.servers.projector_url, schema=SCHEMA, min_size=1, max_size=2)
    store = EventStore(pool, bench.registry)
    rates: dict[str, float] = {}
    seconds: dict[str, float] = {}
    cpu: dict[str, dict[str, float]] = {}
    try:
        for projection in default_projections():
            client, (database, _) = process_time(), bench.servers.cpu_seconds()
            result = await replay(store, projection)
            cpu[projection.name] = {
                "client_s": round(process_time() - client, 2),
                "postgres_s": round(bench.servers.cpu_seconds()[0] - database, 2),
            }
            rates[projection.name] = result.events_per_second
            seconds[projection.name] = result.seconds
            progress(f"  replay {projection.name}: {result.events} events in {result.seconds:.1f}s")
        started = perf_counter()
        streams = await rebuild(store, BY_CATEGORY.values())
        seconds["snapshots"] = perf_counter() - started
        progress(f"  snapshots of {streams} long streams in {seconds['snapshots']:.1f}s")
    finally:
        await pool.close()
    return {"per_s": rates, "seconds": seconds, "cpu_s": cpu}


async def timed(
    session: aiohttp.ClientSession, url: str, requests: int = REQUESTS
) -> dict[str, float]:
    """p50/p95/max in ms of GET `url`, one request at a time, after a warm-up.

    A slow route gets fewer samples (at least MIN_REQUESTS): its figure misses by far."""
    samples: list[float] = []
    deadline = perf_counter() + ROUTE_BUDGET_S
    for i in range(WARM_UP + requests):
        if len(samples) >= MIN_REQUESTS and perf_counter() > deadline:
            break
        started = perf_counter()
        async with session.get(url) as reply:
            body = await reply.read()
            if reply.status != 200:
                raise RuntimeError(f"GET {url}: {reply.status} {body[:300]!r}")
        if i >= WARM_UP:
            samples.append((perf_counter() - started) * 1000)
    return {
        "p50_ms": round(percentile(samples, 50), 2),
        "p95_ms": round(percentile(samples, 95), 2),
        "max_ms": round(max(samples), 2),
        "requests": len(samples),
        "bytes": len(body),
    }


async def api_reads(bench: Bench, written: Written) -> dict[str, dict[str, float]]:
    """The lists and state reads through `python -m services.api`, one request at a time."""
    pool = await create_pool(bench.servers.app_url, schema=SCHEMA, min_size=1, max_size=1)
    try:
        key = await create_api_key(EventStore(pool, bench.registry), "admin", "bench")
        middle: int = await pool.fetchval(
            "SELECT global_position FROM events WHERE stream_id = $1 "
            "ORDER BY stream_version LIMIT 1 OFFSET "
            "(SELECT count(*) / 2 FROM events WHERE stream_id = $1)",
            written.long_deployment_stream,
        )
    finally:
        await pool.close()
    port = free_port()
    bench.start_service("api", api_port=str(port))
    await bench.wait_ready("api")
    base = f"http://127.0.0.1:{port}/api/v1"
    deployment = written.long_deployment_stream.removeprefix("deployment-")
    application = written.long_application_stream.removeprefix("application-")
    routes: dict[str, str] = {
        "list_applications": f"{base}/applications",
        "list_deployments": f"{base}/deployments",
        "list_deployments_of_application": f"{base}/deployments?application={application}",
        "get_application_long": f"{base}/applications/{application}",
        "get_deployment_long": f"{base}/deployments/{deployment}",
        "state_application_long": f"{base}/events/streams/{written.long_application_stream}/state",
        "state_deployment_long": f"{base}/events/streams/{written.long_deployment_stream}/state",
        "state_deployment_long_as_of": f"{base}/events/streams/"
        f"{written.long_deployment_stream}/state?position={middle}",
    }
    headers = {"Authorization": f"Bearer {key}"}
    timeout = aiohttp.ClientTimeout(total=60)
    results: dict[str, dict[str, float]] = {}
    async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
        for name, url in routes.items():
            # What each request costs, apart from waiting for the machine: the API's CPU,
            # PostgreSQL's, and this process's (the client reading the answer).
            api_cpu, (postgres_cpu, _) = (
                cpu_seconds(bench.pid("api"))[0],
                bench.servers.cpu_seconds(),
            )
            own_cpu = process_time()
            results[name] = await timed(session, url)
            count = results[name]["requests"] + WARM_UP
            results[name] |= {
                "api_cpu_ms": round((cpu_seconds(bench.pid("api"))[0] - api_cpu) * 1000 / count, 2),
                "postgres_cpu_ms": round(
                    (bench.servers.cpu_seconds()[0] - postgres_cpu) * 1000 / count, 2
                ),
                "client_cpu_ms": round((process_time() - own_cpu) * 1000 / count, 2),
            }
            progress(f"  {name}: p95 {results[name]['p95_ms']} ms")
    return results


async def history(bench: Bench, events: int) -> dict[str, Any]:
    """Grow part 2's log to `events`, replay every projection, time the API's reads."""
    bench.stop_services()
    bench.services.clear()  # stopped on purpose: a later liveness check must not fail on them
    conn = await connect(bench.servers.admin_url, schema=SCHEMA)
    try:
        application_ids = [a.application_id for r in bench.repositories for a in r.apps]
        already: int = await conn.fetchval("SELECT count(*) FROM events")
        with phase(bench, "history"):
            written = await write_history(
                conn, bench.registry, application_ids, max(0, events - already)
            )
        total: int = await conn.fetchval("SELECT count(*) FROM events")
    finally:
        await conn.close()
    with phase(bench, "replay"):
        replayed = await replay_all(bench)
    with phase(bench, "api"):
        reads = await api_reads(bench, written)
    return {
        "events": total,
        "written": written,
        "replay": replayed,
        "reads": reads,
        "api_rss_mb": round(memory_mb(bench.pid("api"))["VmHWM"], 1),
    }


# ----------------------------------------------------------------------------- the report


def _target(value: float | None, goal: float, *, at_least: bool = False) -> dict[str, Any]:
    met = value is not None and (value >= goal if at_least else value <= goal)
    return {"goal": f"{'>=' if at_least else '<='} {goal:g}", "value": value, "met": met}


def report(
    size: Size, quick: dict[str, Any], gitops_report: dict[str, Any], grown: dict[str, Any]
) -> dict[str, Any]:
    """Every figure of the three parts with its target, as the JSON report."""
    reads = grown["reads"]
    lists = [v["p95_ms"] for k, v in reads.items() if k.startswith("list_")]
    states = [v["p95_ms"] for k, v in reads.items() if not k.startswith("list_")]
    replay_per_s = round(min(grown["replay"]["per_s"].values()))
    rss = gitops_report["peak_rss_mb"] | {"api": grown["api_rss_mb"]}
    rss |= {f"{name} (quick syncs)": mb for name, mb in quick["rss_mb"].items()}
    planned_s = gitops_report["commit_to_all_planned_s"]
    p95_s = gitops_report["webhook_commit_to_triggered_p95_s"]
    quick_key = f"quick_sync_{size.quick_sync_apps}_apps_s"
    written: Written = grown["written"]
    return {
        "applications": size.applications,
        "commit_to_all_planned_s": planned_s,
        "planned": gitops_report["planned"],
        "planner_replicas": gitops_report["planner_replicas"],
        "webhook_commit_to_triggered_p95_s": p95_s,
        quick_key: quick["seconds"],
        "rss_mb": rss,
        "events_in_log": grown["events"],
        "api_list_p95_ms": max(lists),
        "replay_per_s": replay_per_s,
        "state_read_p95_ms": max(states),
        "targets": {
            "commit_to_all_planned_s": _target(planned_s, TARGETS["commit_to_all_planned_s"]),
            "webhook_commit_to_triggered_p95_s": _target(
                p95_s, TARGETS["webhook_commit_to_triggered_p95_s"]
            ),
            quick_key: _target(quick["seconds"], TARGETS["quick_sync_apps_s"]),
            "rss_mb (each)": _target(max(rss.values()), TARGETS["rss_mb"]),
            "api_list_p95_ms": _target(max(lists), TARGETS["api_list_p95_ms"]),
            "replay_per_s (slowest projection)": _target(
                replay_per_s, REPLAY_TARGET_PER_S, at_least=True
            ),
            "state_read_p95_ms": _target(max(states), TARGETS["state_read_p95_ms"]),
        },
        "details": {
            "api": reads,
            "replay_per_s": {k: round(v) for k, v in grown["replay"]["per_s"].items()},
            "replay_s": {k: round(v, 2) for k, v in grown["replay"]["seconds"].items()},
            "replay_cpu_s": grown["replay"]["cpu_s"],
            "history": {
                "written_events": written.events,
                "written_deployments": written.deployments,
                "written_s": round(written.seconds, 1),
                "long_application_stream": written.long_application_stream,
                "long_deployment_stream": written.long_deployment_stream,
            },
            "quick_syncs": quick["details"] | {"succeeded": quick["succeeded"]},
            "gitops": gitops_report["details"]
            | {
                "webhook_commit_to_triggered_p50_s": gitops_report[
                    "webhook_commit_to_triggered_p50_s"
                ],
                "webhook_commit_to_triggered_max_s": gitops_report[
                    "webhook_commit_to_triggered_max_s"
                ],
                "rss_now_mb": gitops_report["rss_now_mb"],
            },
        },
        "duration_s": {},
        "machine": gitops_report["machine"],
    }


# ----------------------------------------------------------------------------- main


def _part(
    root: Path,
    name: str,
    body: Callable[[Bench], Coroutine[Any, Any, dict[str, Any]]],
    **sizes: Any,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run `body` against servers of its own; its result and its phases' durations."""
    with running_servers() as servers:
        bench = Bench(servers, root / name, "info", budget_s=BUDGET_S, **sizes)
        (root / name).mkdir()
        try:
            result: dict[str, Any] = asyncio.run(body(bench))
        finally:
            bench.stop_services()
    return result, bench.durations


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: run the three parts and print the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR (new) and keep it")
    parser.add_argument("--repositories", type=int, default=REPOSITORIES)
    parser.add_argument(
        "--apps-per-repository",
        type=int,
        default=APPS_PER_REPOSITORY,
        help="even: each service is deployed to dev and prd",
    )
    parser.add_argument("--history-events", type=int, default=HISTORY_EVENTS)
    parser.add_argument("--quick-sync-apps", type=int, default=QUICK_SYNC_APPS)
    parser.add_argument(
        "--quick-sync-replicas",
        type=int,
        default=QUICK_SYNC_REPLICAS,
        help="executor processes for the quick syncs",
    )
    parser.add_argument(
        "--quick-sync-slots",
        type=int,
        default=QUICK_SYNC_SLOTS,
        help="SLIPWAY_EXECUTOR_MAX_CONCURRENT of each (the service's default is 16)",
    )
    parser.add_argument(
        "--planner-replicas",
        type=int,
        default=PLANNER_REPLICAS,
        help="planner processes sharing the triggers (each its own git cache, as pods)",
    )
    args = parser.parse_args(argv)
    if args.apps_per_repository < 2 or args.apps_per_repository % 2:
        parser.error("--apps-per-repository must be even and at least 2 (dev and prd)")
    if min(args.quick_sync_replicas, args.quick_sync_slots, args.planner_replicas) < 1:
        parser.error(
            "--quick-sync-replicas, --quick-sync-slots and --planner-replicas must be at least 1"
        )
    if args.repositories < 1 or args.quick_sync_apps < 1 or args.history_events < 0:
        parser.error("sizes must be positive")
    size = Size(
        args.repositories, args.apps_per_repository, args.history_events, args.quick_sync_apps
    )
    quiet_logging()
    started = perf_counter()
    busy_before = busy_cores_before()
    wait_s = max(60.0, size.applications * SECONDS_PER_APPLICATION)

    async def gitops_and_history(bench: Bench) -> dict[str, Any]:
        gitops_report = await gitops_at_scale(bench)
        return {"gitops": gitops_report, "history": await history(bench, size.history_events)}

    with work_directory(args.keep) as root:
        progress(f"quick syncs of {size.quick_sync_apps} applications…")
        quick, quick_durations = _part(
            root,
            "quick-syncs",
            lambda bench: quick_syncs(
                bench,
                size.quick_sync_apps,
                replicas=args.quick_sync_replicas,
                slots=args.quick_sync_slots,
            ),
        )
        progress(f"{size.applications} applications in {size.repositories} repositories…")
        both, durations = _part(
            root,
            "gitops",
            gitops_and_history,
            repository_count=size.repositories,
            services_per_repository=size.apps_per_repository // 2,
            setup_timeout_s=wait_s,
            planned_timeout_s=wait_s,
            planner_replicas=args.planner_replicas,
        )
    result = report(size, quick, both["gitops"], both["history"])
    result["duration_s"] = quick_durations | durations | {"total": round(perf_counter() - started)}
    result["machine"] |= {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "busy_cores_before": round(busy_before, 2),
    }
    print_report(result, as_json=args.json)


if __name__ == "__main__":
    main()
