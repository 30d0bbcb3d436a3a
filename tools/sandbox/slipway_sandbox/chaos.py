"""The chaos run: the seed's story across many applications, every service twice, faults at random.

    result = await run_chaos(ChaosOptions(data_dir, seed=7, deployments=50))

Real servers and processes throughout (PostgreSQL, nats-server, kubesim,
Prometheus, a local Slack-format receiver, `python -m services.<name>` for
each replica). Replica N of every service reaches PostgreSQL, NATS, kubesim
and Prometheus through replica group N's `FaultProxy`s, so a fault on a proxy
is a network fault of one "node", and the kubesim and Prometheus proxies see
which group sent each request (the side effects whose overlap is checked).

While the rounds of `slipway_sandbox.chaos_plan` run, faults from its seeded
schedule are injected: latency, black holes and connection resets on the
proxies, `kill -9` (the supervisor restarts the process, as Kubernetes
would) and SIGSTOP/SIGCONT of service processes, and restarts of PostgreSQL
and nats-server themselves. Then every fault is healed, the run waits for the
system to settle, and the invariants are counted from the event log, the
JetStream stream, kubesim and the receiver.

The rooms: this module plays the rounds (`ChaosRun`); `chaos_plan` is the
workload and the fault schedule, `chaos_layout` the config repository,
`chaos_stack` the services routed through the proxies, `chaos_injector` the
faults as injected, `chaos_world` the run's retried reads of the system,
`chaos_judge` settling and counting, `chaos_verdicts` the pure verdicts.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import asyncpg

from shared import deployments
from shared.apikeys import create_api_key
from shared.db import create_pool
from shared.errors import SlipwayError
from shared.eventlog import EventStore
from shared.events.catalog import DeploymentTriggered, default_registry
from slipway_client import ApiClient, ApiError
from slipway_sandbox._process import log_tail
from slipway_sandbox.chaos_injector import FaultInjector
from slipway_sandbox.chaos_judge import judge, settle
from slipway_sandbox.chaos_layout import TIMING, repository_files
from slipway_sandbox.chaos_plan import (
    BAD_PREFIX,
    FAULT_KINDS,
    GROUPS,
    App,
    Expected,
    OnStage,
    Round,
    Workload,
    plan_workload,
)
from slipway_sandbox.chaos_stack import (
    CHAOS_SERVICE_SETTINGS,
    ChaosStack,
    HttpRequests,
    Routes,
    kubesim_effect,
    prometheus_effect,
)
from slipway_sandbox.chaos_verdicts import FINAL, Invariants, SideEffect
from slipway_sandbox.chaos_world import POLL_S, ChaosWorld
from slipway_sandbox.control import (
    PLATFORM_PROVIDER,
    REPOSITORY_ID,
    ControlInputs,
    write_control_config,
)
from slipway_sandbox.demo_repo import DemoRepo, manifests
from slipway_sandbox.faults import FaultProxy, Observer
from slipway_sandbox.kubesim_client import Kubesim
from slipway_sandbox.prometheus import PrometheusServer, prometheus_binary
from slipway_sandbox.receiver import SlackReceiver
from slipway_sandbox.sandbox import DEMO_SERVICE_SETTINGS
from slipway_sandbox.stack import SERVICES

__all__ = ["ChaosOptions", "ChaosResult", "ChaosRun", "result_json", "run_chaos"]

Say = Callable[[str], None]

ROUND_TIMEOUT_S: Final = 150.0


@dataclass
class ChaosOptions:
    """How to run the chaos run: where, its seed, its size, how often and which faults."""

    data_dir: Path
    seed: int = 1
    deployments: int = 50
    mean_fault_gap_s: float = 1.2
    kinds: Sequence[str] = FAULT_KINDS
    replicas: int = 2
    script: Sequence[OnStage] = ()
    """Faults at given stages instead of at random (with `kinds` empty)."""
    restart_exited: bool = True
    """Restart a service process that exits on its own, as Kubernetes would; False: leave it
    exited, and count it (a service must ride out an outage, not crash on it)."""
    say: Say = print


@dataclass
class ChaosResult:
    """What a chaos run found: the invariants' counts and the faults it injected."""

    seed: int
    deployments: int
    invariants: Invariants
    faults: list[tuple[float, str]] = field(default_factory=list)
    """(seconds into the run, description) of each fault injected, in order."""
    run_s: float = 0.0
    restarts: int = 0
    """Service processes that exited on their own (not by `kill -9`) and were restarted."""
    exited: list[str] = field(default_factory=list)
    """Each service process that exited on its own, with its exit code."""
    observed: dict[str, int] = field(default_factory=dict)
    """What the invariants were counted over (so a run that saw nothing cannot look clean)."""

    @property
    def faults_by_kind(self) -> dict[str, int]:
        """How many faults of each kind were injected (every kind listed, zero included)."""
        counts = Counter(description.split(" ", 1)[0] for _, description in self.faults)
        return {kind: counts.get(kind, 0) for kind in FAULT_KINDS}

    def report(self) -> dict[str, Any]:
        """The run's JSON report: seed, size, each invariant's count, faults by kind, problems."""
        return {
            "seed": self.seed,
            "deployments": self.deployments,
            **self.invariants.counts(),
            "overlapping_by_kind": self.invariants.overlapping_by_kind,
            "faults_injected": len(self.faults),
            "faults_by_kind": self.faults_by_kind,
            "service_restarts_unplanned": self.restarts,
            "observed": self.observed,
            "run_s": round(self.run_s, 1),
        }

    def schedule(self) -> str:
        """The faults as injected, one per line: what to read beside a failed run."""
        return "\n".join(f"{at:8.2f}s  {description}" for at, description in self.faults)


class ChaosRun:
    """One chaos run: the proxied stack, the workload's rounds, the faults injected under them."""

    def __init__(self, options: ChaosOptions) -> None:
        self.options = options
        self.say = options.say
        self.rng = random.Random(options.seed)  # noqa: S311 - seeded for replay, not secrets
        self.workload: Workload = plan_workload(self.rng, options.deployments)
        data_dir = options.data_dir.resolve()
        self.stack = ChaosStack(
            data_dir,
            services=SERVICES,
            replicas=dict.fromkeys(SERVICES, options.replicas),
            service_settings={**DEMO_SERVICE_SETTINGS, **CHAOS_SERVICE_SETTINGS},
        )
        self.receiver = SlackReceiver()
        self.repo = DemoRepo(data_dir / "repo")
        self.prometheus: PrometheusServer | None = None
        self.world: ChaosWorld | None = None
        self._pool: asyncpg.Pool | None = None
        self.injector = FaultInjector(
            self.stack,
            rng=self.rng,
            mean_gap_s=options.mean_fault_gap_s,
            kinds=options.kinds,
            script=options.script,
            restart_exited=options.restart_exited,
            say=self.say,
        )
        self.effects: list[SideEffect] = []
        self.result = ChaosResult(
            options.seed,
            self.workload.deployments,
            Invariants(),
            faults=self.injector.faults,
            exited=self.injector.exited,
        )
        self.expected: dict[str, Expected] = {}
        self.missing: list[Expected] = []
        self.approved: set[str] = set()
        self._started = 0.0
        self._scratch = Path(tempfile.mkdtemp(prefix="slipway-chaos-ticks-"))
        """World-writable: scripts run as `nobody`, who cannot reach into `data_dir`."""
        self._scratch.chmod(0o777)
        self.ticks = self._scratch / "ticks"
        self.ticks.touch()
        self.ticks.chmod(0o666)

    # --- set-up ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Start the servers, proxies, kubesim, Prometheus and the service replicas."""
        if prometheus_binary() is None:
            raise RuntimeError("the chaos run needs prometheus (Debian package `prometheus`)")
        stack = self.stack
        await self.receiver.start()
        await asyncio.to_thread(stack.start_servers)
        kubesim = await asyncio.to_thread(stack.start_kubesim)
        self.prometheus = await asyncio.to_thread(
            lambda: PrometheusServer(
                stack.data_dir / "prometheus", sd_url=kubesim.targets_url
            ).start()
        )
        assert stack.postgres is not None and stack.nats is not None
        for group in GROUPS:
            routes = Routes(
                postgres=await FaultProxy(stack.postgres.port, name=f"postgres@{group}").start(),
                nats=await FaultProxy(stack.nats.port, name=f"nats@{group}").start(),
                kubesim=await FaultProxy(
                    kubesim.port, name=f"kubesim@{group}", observer=self._observer(group, True)
                ).start(),
                prometheus=await FaultProxy(
                    self.prometheus.port,
                    name=f"prometheus@{group}",
                    observer=self._observer(group, False),
                ).start(),
            )
            kubeconfig = stack.data_dir / f"kubesim-{group}.kubeconfig"
            kubeconfig.write_text(
                kubesim.kubeconfig.read_text().replace(
                    f"127.0.0.1:{kubesim.port}", f"127.0.0.1:{routes.kubesim.port}"
                )
            )
            stack.routes[group] = routes
        files = repository_files(self.workload, self.ticks)
        await asyncio.to_thread(self.repo.create, files, "chaos: every app at v1")
        for group, routes in stack.routes.items():
            routes.control = write_control_config(
                stack.data_dir / f"slipway-{group}.yaml",
                ControlInputs(
                    repository_url=self.repo.url,
                    kubeconfig=stack.data_dir / f"kubesim-{group}.kubeconfig",
                    prometheus_url=f"http://127.0.0.1:{routes.prometheus.port}",
                    slack_url=self.receiver.url,
                ),
            )
        pool = self._pool = await create_pool(
            stack.postgres.url, schema=stack.schema, min_size=0, max_size=4
        )
        store = EventStore(pool, default_registry())
        stack.api_key = await create_api_key(store, "admin", "chaos")
        self.world = ChaosWorld(
            store=store,
            api=ApiClient(stack.api_url, key=stack.api_key, timeout_s=10),
            nats_url=stack.nats.url,
            kubesim_url=kubesim.url,
            say=self.say,
        )
        await asyncio.to_thread(Kubesim(kubesim.url).add_image_rule, f"*:{BAD_PREFIX}*", 0.5)
        self.say(f"starting {len(SERVICES)} services × {self.options.replicas} replicas")
        await asyncio.to_thread(stack.start_services)
        not_ready = await asyncio.to_thread(stack.wait_ready, 120.0)
        if not_ready:
            tails = "".join(
                f"\n--- {p.instance} (exit {p.exited()})\n{log_tail(p.log_path, lines=8)}"
                for p in stack.processes
                if p.instance in not_ready
            )
            raise RuntimeError(f"not ready: {', '.join(not_ready)}{tails}")

    def _observer(self, group: int, kubesim: bool) -> Callable[[], Observer]:
        classify = kubesim_effect if kubesim else prometheus_effect

        def on_request(method: str, target: str, body: bytes) -> None:
            effect = classify(method, target, body)
            if effect is not None:
                self.effects.append(SideEffect(time.time(), group, *effect))

        return lambda: HttpRequests(on_request).feed

    async def stop(self) -> None:
        """Heal every fault, then stop everything the run started."""
        self.injector.heal_all()
        await self.injector.cancel()
        if self._pool is not None:
            await self._pool.close()
        await asyncio.to_thread(self.stack.stop)
        for routes in self.stack.routes.values():
            for backend in ("postgres", "nats", "kubesim", "prometheus"):
                await routes.proxy(backend).close()
        if self.prometheus is not None:
            await asyncio.to_thread(self.prometheus.stop)
        await self.receiver.stop()
        shutil.rmtree(self._scratch, ignore_errors=True)

    # --- the workload -----------------------------------------------------------------------

    async def run(self) -> ChaosResult:
        """Play every round under faults, let the system settle, and judge the invariants."""
        world = self.world
        assert world is not None
        await self._register(world)
        self._started = self.injector.started = time.monotonic()
        injector = self.injector
        # No kinds: the same workload without faults (what the verdicts are without them).
        injecting = asyncio.create_task(
            injector.inject() if self.options.kinds else asyncio.sleep(0)
        )
        supervisor = asyncio.create_task(injector.supervise())
        try:
            for number, planned in enumerate(self.workload.rounds):
                self.say(
                    f"round {number}: {len(planned.deployments)} deployments,"
                    f" {len(self.result.faults)} faults so far"
                )
                await self._play(world, planned)
        finally:
            injecting.cancel()
            await asyncio.gather(injecting, return_exceptions=True)
            await injector.cancel()
            injector.heal_all()
        self.say(f"faults stopped after {len(self.result.faults)}; settling")
        try:
            await settle(world, self.receiver, self._approve, self._services_ready)
            self.result.observed = await judge(
                world,
                self.result.invariants,
                workload=self.workload,
                expected=self.expected,
                missing=self.missing,
                effects=self.effects,
                ticks_file=self.ticks,
                deliveries=self.receiver.deliveries,
            )
        finally:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        self.result.restarts = injector.restarts
        self.result.run_s = time.monotonic() - self._started
        return self.result

    async def _register(self, world: ChaosWorld) -> None:
        api = world.api_client
        for app in self.workload.apps:

            def register(app: App = app) -> dict[str, Any]:
                try:
                    return api.register_application(
                        name=app.name,
                        repository_id=REPOSITORY_ID,
                        path=f"{app.service}/{app.env}",
                        config_filename=".pipe.yaml",
                        platform_provider=PLATFORM_PROVIDER,
                        labels={"env": app.env},
                    )
                except ApiError as exc:
                    if exc.status != 409:  # 409: an earlier attempt got through
                        raise
                    return api.get_application(app.name)

            answer = await world.api(register)
            world.app_names[str(answer["application_id"])] = app.name
        head = await asyncio.to_thread(self.repo.head)
        await world.until(lambda: world.observed(head), within=60, what=f"commit {head[:10]}")

    async def _play(self, world: ChaosWorld, planned: Round) -> None:
        mark = await world.db(
            lambda pool: pool.fetchval("SELECT coalesce(max(global_position), 0) FROM events")
        )
        commit = ""
        if planned.sync:
            for wanted in planned.deployments:
                await world.api(
                    functools.partial(world.api_client.sync_application, wanted.app.name)
                )
        else:
            files: dict[str, str] = {}
            for bumped, tag in planned.bumps().items():
                path = f"{bumped.service}/{bumped.env}/manifests.yaml"
                files[path] = manifests(tag, TIMING, bumped.service)
            commit = await asyncio.to_thread(
                self.repo.commit, files, f"chaos: round {planned.number}"
            )
        waiting = {w.app.name: w for w in planned.deployments}
        found: dict[str, str] = {}  # app → deployment id
        deadline = time.monotonic() + ROUND_TIMEOUT_S
        while time.monotonic() < deadline:
            for row in await world.db(
                lambda pool: pool.fetch(
                    "SELECT * FROM events WHERE event_type = 'deployment_triggered'"
                    " AND global_position > $1 ORDER BY global_position",
                    mark,
                )
            ):
                event = world.decode(row).event
                assert isinstance(event, DeploymentTriggered)
                name = world.app_name(event.application_id)
                if (
                    name in waiting
                    and name not in found
                    and (planned.sync or event.commit_hash == commit)
                ):
                    found[name] = event.deployment_id
                    self.expected[event.deployment_id] = waiting[name]
            states = {name: await world.deployment(d) for name, d in found.items()}
            await self._approve(states.values())
            await self.injector.scripted(states)
            if len(found) == len(waiting) and all(s.status in FINAL for s in states.values()):
                return
            await asyncio.sleep(POLL_S)
        self.missing += [w for app, w in waiting.items() if app not in found]
        self.say(f"round {planned.number} timed out: {sorted(set(waiting) - set(found))} missing")

    async def _approve(self, states: Iterable[deployments.Deployment]) -> None:
        """Approve each WAIT_APPROVAL stage running in `states` (once each), as an operator."""
        assert self.world is not None
        api = self.world.api_client
        for state in states:
            for stage in state.stages:
                key = f"{state.deployment_id}/{stage.id}"
                if (
                    stage.name == "WAIT_APPROVAL"
                    and stage.status == deployments.StageStatus.RUNNING
                    and key not in self.approved
                ):
                    with contextlib.suppress(ApiError, SlipwayError, OSError):
                        await asyncio.to_thread(api.approve_stage, state.deployment_id, stage.id)
                        self.approved.add(key)

    async def _services_ready(self) -> bool:
        """Every running service answers /readyz (one that exited for good is the
        `exited` verdict's, not waited on)."""
        processes = list(self.stack.processes)
        return await asyncio.to_thread(
            lambda: all(s.exited() is not None or s.ready() for s in processes)
        )


async def run_chaos(options: ChaosOptions) -> ChaosResult:
    """Start everything, play the workload under faults, judge, stop everything."""
    run = ChaosRun(options)
    try:
        await run.start()
        return await run.run()
    finally:
        await run.stop()


def result_json(result: ChaosResult) -> str:
    """The report as indented JSON."""
    return json.dumps(result.report(), indent=2)
