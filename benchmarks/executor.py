"""The executor benchmark: orchestration overhead per stage and 200 quick syncs at once.

`python -m benchmarks.executor --json` starts one nats-server, one durable
PostgreSQL (fsync on) and a KubeSim (pods ready at once), makes one config
repository holding 200 quick-sync applications (a Deployment of one replica
and a Service each) and one application whose pipeline is `WAIT_STAGES`
`WAIT duration: 0s` stages, registers them (`ApplicationRegistered` appended
directly) and runs `python -m services.relay` and `python -m services.executor`
as subprocesses configured through `SLIPWAY_*` variables. Then:

1. stage transitions: the WAIT pipeline is planned (`DeploymentTriggered` +
   `DeploymentPlanned` appended as the planner writes them) and run; from its
   log, `StageCompleted(n).recorded_at → StageStarted(n+1).recorded_at`
   (the spec'd figure) and `StageStarted(n) → StageStarted(n+1)` (a whole
   instant stage, decide and append included);
2. 200 quick syncs: all 200 planned in one transaction; from that commit
   until all 200 have `DeploymentCompleted` SUCCESS.

A `WAIT 0s` (and a finished stage's successor) starts in the same append as
the stage before it completes, so the spec'd transition is ~0 by construction;
`cycle` (StageStarted to StageStarted of K8S_SYNC stages: apply, rollout, and
the orchestration around them) is the figure that moves.

Peak RSS (VmHWM) of each service comes from /proc. Progress goes to stderr;
stdout has the report only.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from time import perf_counter, process_time
from typing import Any, Final

import yaml

from benchmarks._report import percentile, print_report, quiet_logging
from benchmarks._servers import running_servers
from benchmarks.gitops import (
    SCHEMA,
    Bench,
    Repository,
    cpu_seconds,
    memory_mb,
    phase,
    work_directory,
)
from kubesim import KubeSim
from shared.config import load_application_config
from shared.db import create_pool
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events import vocabulary
from shared.events.base import Event
from shared.events.catalog import (
    ApplicationRegistered,
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentTriggered,
    PlannedStage,
    StageCompleted,
    StageStarted,
)
from shared.planning import Strategy, build_stages, spec_from_config

QUICK_SYNC_APPS: Final = 200
WAIT_STAGES: Final = 100
SYNC_STAGES: Final = 50
MAX_CONCURRENT: Final = 16  # the service's default; --max-concurrent to compare
SERVICES: Final = ("relay", "executor")
TIMEOUT_S: Final = 120.0

CONFIG: Final = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {name}
  input:
    namespace: {name}
    autoCreateNamespace: true
"""

MANIFESTS: Final = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
        - name: web
          image: ghcr.io/acme/web:v1
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web}
  ports: [{port: 80}]
"""


def app_files(name: str, *, stages: int = 0, kind: str = "WAIT") -> dict[str, str]:
    """An application's files: its config, with `stages` stages of `kind` if a pipeline."""
    config = CONFIG.format(name=name)
    with_ = "{duration: 0s}" if kind == "WAIT" else "{}"
    if stages:
        config += "  pipeline:\n    stages:\n" + "".join(
            f"      - name: {kind}\n        id: w{i:03d}\n        with: {with_}\n"
            for i in range(stages)
        )
    return {f"apps/{name}/.pipe.yaml": config, f"apps/{name}/manifests.yaml": MANIFESTS}


def control_config(remote: str, kubeconfig: Path) -> str:
    """The control config: the bench repository and kubesim as the one provider."""
    text: str = yaml.safe_dump(
        {
            "apiVersion": "slipway.dev/v1",
            "kind": "Slipway",
            "spec": {
                "project": "bench",
                "repositories": [{"repoId": "config", "remote": remote, "branch": "main"}],
                "platformProviders": [
                    {
                        "name": "kubesim",
                        "type": "KUBERNETES",
                        "config": {"kubeconfigPath": str(kubeconfig)},
                    }
                ],
            },
        }
    )
    return text


def stages_of(work: Path, name: str, strategy: Strategy) -> tuple[PlannedStage, ...]:
    """The stages the planner would plan for the app with `strategy`."""
    config = load_application_config(work / "apps" / name / ".pipe.yaml")
    return build_stages(strategy, spec_from_config(config, f"apps/{name}/.pipe.yaml"))


def plan(
    name: str, commit: str, stages: tuple[PlannedStage, ...], strategy: Strategy
) -> list[Event]:
    """A deployment's triggered and planned events, as the planner would record them."""
    deployment_id = f"d-{name}"
    return [
        DeploymentTriggered(
            deployment_id=deployment_id,
            application_id=name,
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash=commit,
        ),
        DeploymentPlanned(
            deployment_id=deployment_id,
            application_id=name,
            commit_hash=commit,
            strategy=vocabulary.Strategy(str(strategy)),
            summary="bench",
            reason="bench",
            stages=stages,
            config_filename=".pipe.yaml",
            path=f"apps/{name}",
            repository_id="config",
        ),
    ]


async def completed(store: EventStore, names: Sequence[str]) -> dict[str, str]:
    """The completed deployments among `names`, with their status."""
    rows = await store.pool.fetch(
        "SELECT stream_id FROM events WHERE event_type = 'deployment_completed' "
        "AND stream_id = ANY($1::text[])",
        [f"deployment-d-{n}" for n in names],
    )
    statuses: dict[str, str] = {}
    for row in rows:
        stream = row["stream_id"]
        for recorded in await store.read_stream(stream):
            if isinstance(recorded.event, DeploymentCompleted):
                statuses[stream] = recorded.event.status
    return statuses


async def measure_transitions(
    bench: Bench, store: EventStore, commit: str, name: str, stage_count: int
) -> dict[str, Any]:
    """Stage transitions per second through one long pipeline."""
    stages = stages_of(bench.root / "work", name, Strategy.PIPELINE)
    await store.append(
        f"deployment-d-{name}",
        new_events(plan(name, commit, stages, Strategy.PIPELINE)),
        expected_version=NO_STREAM,
    )

    async def done() -> bool:
        return bool(await completed(store, [name]))

    await bench.wait_for(done, what="the WAIT pipeline", timeout_s=TIMEOUT_S)
    started: dict[str, datetime] = {}
    ended: dict[str, datetime] = {}
    for recorded in await store.read_stream(f"deployment-d-{name}"):
        event = recorded.event
        if isinstance(event, StageStarted):
            started[event.stage_id] = recorded.recorded_at
        elif isinstance(event, StageCompleted):
            ended[event.stage_id] = recorded.recorded_at
    status = (await completed(store, [name]))[f"deployment-d-{name}"]
    if status != "SUCCESS":
        raise RuntimeError(f"the WAIT pipeline ended {status}: see the executor's log")
    ids = [f"w{i:03d}" for i in range(stage_count)]
    gaps = [(started[b] - ended[a]).total_seconds() * 1000 for a, b in itertools.pairwise(ids)]
    cycles = [(started[b] - started[a]).total_seconds() * 1000 for a, b in itertools.pairwise(ids)]
    return {
        "transition_p50_ms": round(percentile(gaps, 50), 2),
        "transition_p99_ms": round(percentile(gaps, 99), 2),
        "cycle_p50_ms": round(percentile(cycles, 50), 2),
        "cycle_p99_ms": round(percentile(cycles, 99), 2),
    }


def quick_sync_names(apps: int = QUICK_SYNC_APPS) -> list[str]:
    """The quick-sync benchmark's application names."""
    return [f"app{i:03d}" for i in range(apps)]


async def measure_quick_syncs(
    bench: Bench, store: EventStore, commit: str, apps: int = QUICK_SYNC_APPS
) -> dict[str, Any]:
    """`apps` quick syncs planned in one transaction, timed until all are completed."""
    names = quick_sync_names(apps)
    stages = stages_of(bench.root / "work", names[0], Strategy.QUICK_SYNC)
    executor_cpu = executors_cpu_seconds(bench)
    servers_cpu = bench.servers.cpu_seconds()
    own_cpu = process_time()
    t0 = perf_counter()
    async with store.pool.acquire() as conn, conn.transaction():
        for name in names:
            await store.append(
                f"deployment-d-{name}",
                new_events(plan(name, commit, stages, Strategy.QUICK_SYNC)),
                expected_version=NO_STREAM,
                conn=conn,
            )
    appended = perf_counter() - t0
    count = 0

    async def done() -> bool:
        nonlocal count
        count = await store.pool.fetchval(
            "SELECT count(*) FROM events WHERE event_type = 'deployment_completed' "
            "AND stream_id LIKE 'deployment-d-app%'"
        )
        return bool(count == len(names))

    timeout_s = TIMEOUT_S * max(1.0, apps / QUICK_SYNC_APPS)
    await bench.wait_for(done, what=f"{apps} quick syncs", timeout_s=timeout_s, every_s=0.02)
    elapsed = perf_counter() - t0
    executor_own, executor_children = (
        a - b for a, b in zip(executors_cpu_seconds(bench), executor_cpu, strict=True)
    )
    own_cpu = process_time() - own_cpu
    postgres_cpu, nats_cpu = (
        a - b for a, b in zip(bench.servers.cpu_seconds(), servers_cpu, strict=True)
    )
    statuses = await completed(store, names)
    rows = await store.pool.fetch(_TIMES, [f"deployment-d-{n}" for n in names])
    claim = [r["started"] - r["planned"] for r in rows]
    run_s = [r["completed"] - r["started"] for r in rows]
    return {
        f"quick_sync_{apps}_apps_s": round(elapsed, 2),
        "quick_sync_append_s": round(appended, 3),
        "quick_sync_succeeded": sum(1 for s in statuses.values() if s == "SUCCESS"),
        "details_quick_sync": {
            "planned_to_started_p50_s": round(percentile(claim, 50), 2),
            "planned_to_started_max_s": round(max(claim), 2),
            "started_to_completed_p50_s": round(percentile(run_s, 50), 2),
            "started_to_completed_max_s": round(max(run_s), 2),
            "executor_cpu_s": round(executor_own, 2),
            "executor_git_children_cpu_s": round(executor_children, 2),
            "bench_process_cpu_s (kubesim, nats client, polling)": round(own_cpu, 2),
            "postgres_cpu_s": round(postgres_cpu, 2),
            "nats_cpu_s": round(nats_cpu, 2),
            # CPU per quick sync: the figures to compare between runs on a shared machine.
            "cpu_ms_per_sync": {
                "executor": round(executor_own * 1000 / apps, 2),
                "bench_process": round(own_cpu * 1000 / apps, 2),
                "postgres": round(postgres_cpu * 1000 / apps, 2),
                "nats": round(nats_cpu * 1000 / apps, 2),
            },
        },
    }


def executors(bench: Bench) -> list[str]:
    """The running executor replicas, by their key in `bench.services`."""
    return [key for key in bench.services if key == "executor" or key.startswith("executor-")]


def executors_cpu_seconds(bench: Bench) -> tuple[float, float]:
    """CPU seconds of every executor replica so far: (their own, their git children's)."""
    times = [cpu_seconds(bench.pid(key)) for key in executors(bench)]
    return sum(own for own, _ in times), sum(children for _, children in times)


_TIMES: Final = """
SELECT stream_id,
  extract(epoch FROM max(recorded_at) FILTER (WHERE event_type = 'deployment_planned'))::float8
    AS planned,
  extract(epoch FROM max(recorded_at) FILTER (WHERE event_type = 'deployment_started'))::float8
    AS started,
  extract(epoch FROM max(recorded_at) FILTER (WHERE event_type = 'deployment_completed'))::float8
    AS completed
FROM events WHERE stream_id = ANY($1::text[]) GROUP BY stream_id
"""


async def start_executor(
    bench: Bench,
    store: EventStore,
    kubeconfig: Path,
    files: dict[str, str],
    names: Sequence[str],
    max_concurrent: int = MAX_CONCURRENT,
    replicas: int = 1,
) -> Repository:
    """One config repository of `files`, the apps `names` registered, relay and `replicas`
    executors up (each with `max_concurrent` slots and a git cache of its own, as pods)."""
    repo = Repository("config", bench.root / "work", bench.root / "remote.git", ())
    repo._write(files)
    repo.create()
    async with store.pool.acquire() as conn, conn.transaction():
        for name in names:
            registered = ApplicationRegistered(
                application_id=name,
                name=name,
                repository_id="config",
                path=f"apps/{name}",
                config_filename=".pipe.yaml",
                platform_provider="kubesim",
            )
            await store.append(
                f"application-{name}",
                new_events([registered]),
                expected_version=NO_STREAM,
                conn=conn,
            )
    control = bench.root / "slipway.yaml"
    control.write_text(control_config(repo.url, kubeconfig))
    bench.start_service("relay")
    await bench.wait_ready("relay")
    for replica in range(replicas):
        bench.start_service(
            "executor",
            replica=replica,
            control_config=str(control),
            git_cache_dir=str(bench.root / (f"git-cache-{replica}" if replica else "git-cache")),
            executor_max_concurrent=str(max_concurrent),
        )
    await bench.wait_ready(*executors(bench))
    return repo


async def run(bench: Bench, max_concurrent: int = MAX_CONCURRENT) -> dict[str, Any]:
    """Every executor figure against one KubeSim, the executor as a process."""
    await bench.servers.migrated_schema(SCHEMA)
    pool = await create_pool(bench.servers.app_url, schema=SCHEMA, min_size=2, max_size=4)
    store = EventStore(pool, bench.registry)
    try:
        async with KubeSim(ready_delay_s=0.0) as sim:
            kubeconfig = sim.write_kubeconfig(bench.root / "kubeconfig")
            with phase(bench, "setup"):
                files = app_files("waits", stages=WAIT_STAGES)
                files |= app_files("syncs", stages=SYNC_STAGES, kind="K8S_SYNC")
                names = ["waits", "syncs", *quick_sync_names()]
                for name in names[2:]:
                    files |= app_files(name)
                repo = await start_executor(bench, store, kubeconfig, files, names, max_concurrent)
            with phase(bench, "transitions"):
                syncs = await measure_transitions(bench, store, repo.head, "syncs", SYNC_STAGES)
                waits = await measure_transitions(bench, store, repo.head, "waits", WAIT_STAGES)
                transitions = {
                    "stage_transition_p50_ms": syncs["transition_p50_ms"],
                    "stage_transition_p99_ms": syncs["transition_p99_ms"],
                    "details_k8s_sync_pipeline": syncs,
                    "details_wait_0s_pipeline": waits,
                }
            with phase(bench, "quick_syncs"):
                quick = await measure_quick_syncs(bench, store, repo.head)
        memory = {name: memory_mb(bench.pid(name)) for name in SERVICES}
    finally:
        await pool.close()
    return (
        transitions
        | quick
        | {
            "peak_rss_mb": {name: round(m["VmHWM"], 1) for name, m in memory.items()},
            "targets": {
                "stage_transition_p50_le_20ms": transitions["stage_transition_p50_ms"] <= 20,
                "quick_sync_200_apps_le_20s": quick["quick_sync_200_apps_s"] <= 20,
            },
            "settings": {
                "executor_max_concurrent": max_concurrent,
                "kubesim_ready_delay_s": 0.0,
                "wait_stages": WAIT_STAGES,
                "k8s_sync_stages": SYNC_STAGES,
            },
            "duration_s": dict(bench.durations),
        }
    )


def main(argv: Sequence[str] | None = None) -> None:
    """The command line: run and print the report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.executor", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep", metavar="DIR", help="work in DIR (new) and keep it")
    parser.add_argument(
        "--max-concurrent",
        type=int,
        default=MAX_CONCURRENT,
        help="SLIPWAY_EXECUTOR_MAX_CONCURRENT (default: the service's, 16)",
    )
    args = parser.parse_args(argv)
    quiet_logging()
    started = perf_counter()
    with running_servers() as servers, work_directory(args.keep) as root:
        bench = Bench(servers, root, "info", started=started)
        try:
            result = asyncio.run(run(bench, args.max_concurrent))
        finally:
            bench.stop_services()
    result["duration_s"]["total"] = round(perf_counter() - started, 2)
    result["cpu_count"] = os.cpu_count()
    print_report(result, as_json=args.json)


if __name__ == "__main__":
    main()
