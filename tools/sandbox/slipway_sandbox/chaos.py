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
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
import re
import shutil
import signal
import tempfile
import time
import urllib.error
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar
from urllib.parse import parse_qs, unquote_plus, urlsplit

import asyncpg
import nats
from nats.js.api import ConsumerConfig, DeliverPolicy

from shared import deployments
from shared.apikeys import create_api_key
from shared.db import CONNECTION_ERRORS, create_pool
from shared.errors import SlipwayError, Unavailable
from shared.eventlog import EventStore
from shared.events.base import RecordedEvent
from shared.events.catalog import (
    CommitObserved,
    DeploymentCompleted,
    DeploymentTriggered,
    NotificationScheduled,
    StageCompleted,
    StageStarted,
    default_registry,
)
from shared.messaging import MSG_ID
from shared.subjects import Subjects
from slipway_client import ApiClient, ApiError
from slipway_sandbox._process import log_tail
from slipway_sandbox.chaos_plan import (
    BAD_PREFIX,
    FAULT_KINDS,
    FINAL,
    GATE,
    GROUPS,
    App,
    Expected,
    Fault,
    Invariants,
    OnStage,
    Outcome,
    Round,
    SideEffect,
    Workload,
    fault_schedule,
    judge_deployments,
    notification_verdicts,
    overlapping_script_runs,
    overlapping_side_effects,
    parse_ticks,
    plan_workload,
)
from slipway_sandbox.control import (
    PLATFORM_PROVIDER,
    REPOSITORY_ID,
    ControlInputs,
    write_control_config,
)
from slipway_sandbox.demo_repo import DemoRepo, DemoTiming, image, initial_files, manifests
from slipway_sandbox.faults import FaultProxy, Observer, signal_process
from slipway_sandbox.prometheus import PrometheusServer, prometheus_binary
from slipway_sandbox.receiver import SlackReceiver
from slipway_sandbox.sandbox import DEMO_SERVICE_SETTINGS
from slipway_sandbox.stack import SERVICES, ServiceProcess, Stack
from slipway_sandbox.storyrunner import Kubesim

T = TypeVar("T")
Say = Callable[[str], None]

TIMING: Final = DemoTiming(analysis_s=8, analysis_interval_s=2, rate_window_s=4, canary="50%")
CHAOS_SERVICE_SETTINGS: Final = {
    "SLIPWAY_LOG_LEVEL": "warning",
    "SLIPWAY_EXECUTOR_LEASE_TTL_S": "6",
    "SLIPWAY_DRIFT_INTERVAL_S": "30",
}
GATE_CONFIG: Final = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {name}
  labels:
    env: prd
  input:
    namespace: prd
    autoCreateNamespace: true
  pipeline:
    stages:
      - name: WAIT_APPROVAL
      - name: K8S_PRIMARY_ROLLOUT
"""
SCRIPT_TICKS: Final = 20
"""Ticks each SCRIPT_RUN writes, 0.1 s apart (a run lasts about 2 s)."""
SCRIPT_CONFIG: Final = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: {name}
  labels:
    env: prd
  input:
    namespace: prd
    autoCreateNamespace: true
  pipeline:
    stages:
      - name: SCRIPT_RUN
        id: effect
        with:
          timeout: 1m
          env:
            TICKS: {ticks}
          run: |
            run="$$-$(date +%s%N)"
            i=0
            while [ $i -lt {count} ]; do
              echo "$SR_DEPLOYMENT_ID/effect $run $(date +%s.%N)" >> "$TICKS"
              sleep 0.1
              i=$((i+1))
            done
      - name: K8S_PRIMARY_ROLLOUT
"""
"""SCRIPT_RUN → K8S_PRIMARY_ROLLOUT; the script appends `<deployment>/<stage> <run> <time>`
to a file the run reads back (it runs as `nobody` in a clean environment: only `SR_*` and
its `env` tell it where it is)."""
POLL_S: Final = 0.5
ROUND_TIMEOUT_S: Final = 150.0
SETTLE_TIMEOUT_S: Final = 90.0
API_RETRY_S: Final = 60.0
_MUTATING: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_OBJECT_PATH: Final = re.compile(
    r"^/(?:api/v1|apis/apps/v1)/namespaces/(?P<ns>[^/]+)/(?:deployments|services)/(?P<name>[^/?]+)"
)
_PROMQL_JOB: Final = re.compile(r'namespace="(?P<ns>[^"]+)",\s*job="(?P<job>[^"]+)"')


@dataclass
class ChaosOptions:
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
        counts = Counter(description.split(" ", 1)[0] for _, description in self.faults)
        return {kind: counts.get(kind, 0) for kind in FAULT_KINDS}

    def report(self) -> dict[str, Any]:
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


# --- HTTP requests seen by a proxy ----------------------------------------------------------


class HttpRequests:
    """Splits what an HTTP/1.1 client sends into requests: `(method, target, body)` each."""

    def __init__(self, on_request: Callable[[str, str, bytes], None]) -> None:
        self._on_request = on_request
        self._buffer = bytearray()
        self._head: tuple[str, str, int] | None = None

    def feed(self, data: bytes) -> None:
        self._buffer += data
        while True:
            if self._head is None:
                end = self._buffer.find(b"\r\n\r\n")
                if end < 0:
                    return
                lines = bytes(self._buffer[:end]).decode("latin-1").split("\r\n")
                del self._buffer[: end + 4]
                method, target = ([*lines[0].split(" "), "", ""])[:2]
                length = 0
                for line in lines[1:]:
                    key, _, value = line.partition(":")
                    if key.strip().lower() == "content-length" and value.strip().isdigit():
                        length = int(value.strip())
                self._head = (method, target, length)
            method, target, length = self._head
            if len(self._buffer) < length:
                return
            body = bytes(self._buffer[:length])
            del self._buffer[:length]
            self._head = None
            self._on_request(method, target, body)


def kubesim_effect(method: str, target: str, _body: bytes) -> tuple[str, str] | None:
    """(app, "apply") for a mutating request on an app's Deployment or Service."""
    if method not in _MUTATING:
        return None
    match = _OBJECT_PATH.match(urlsplit(target).path)
    if match is None:
        return None
    service = match["name"].removesuffix("-canary")
    return f"{service}-{match['ns']}", "apply"


def prometheus_effect(method: str, target: str, body: bytes) -> tuple[str, str] | None:
    """(app, "analysis") for a Prometheus query naming an app's namespace and service."""
    parts = urlsplit(target)
    if not parts.path.startswith("/api/v1/query"):
        return None
    form = parse_qs(parts.query) | (parse_qs(body.decode("latin-1")) if method == "POST" else {})
    for query in form.get("query", []):
        if match := _PROMQL_JOB.search(unquote_plus(query)):
            return f"{match['job']}-{match['ns']}", "analysis"
    return None


# --- The stack, routed through per-group proxies ------------------------------------------


@dataclass
class Routes:
    """One replica group's proxies and control config."""

    postgres: FaultProxy
    nats: FaultProxy
    kubesim: FaultProxy
    prometheus: FaultProxy
    control: Path | None = None

    def proxy(self, backend: str) -> FaultProxy:
        proxy: FaultProxy = getattr(self, backend)
        return proxy


@dataclass
class ChaosStack(Stack):
    """A `Stack` whose replica N of each service talks to the servers through `routes[N]`."""

    routes: dict[int, Routes] = field(default_factory=dict)

    def service_env(self, name: str, health_port: int, instance: str) -> dict[str, str]:
        env = super().service_env(name, health_port, instance)
        assert self.postgres is not None
        group = self.routes[group_of(instance)]
        env["SLIPWAY_DATABASE_URL"] = env["SLIPWAY_DATABASE_URL"].replace(
            f"127.0.0.1:{self.postgres.port}", f"127.0.0.1:{group.postgres.port}"
        )
        env["SLIPWAY_NATS_URL"] = f"nats://127.0.0.1:{group.nats.port}"
        assert group.control is not None
        env["SLIPWAY_CONTROL_CONFIG"] = str(group.control)
        return env


def group_of(instance: str) -> int:
    """`executor-1` → 1: the replica's index, which is its group."""
    return int(instance.rsplit("-", 1)[1]) % len(GROUPS)


# --- The run ----------------------------------------------------------------------------------


class ChaosRun:
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
        self.pool: asyncpg.Pool | None = None
        self.store: EventStore | None = None
        self.api: ApiClient | None = None
        self.effects: list[SideEffect] = []
        self.result = ChaosResult(options.seed, self.workload.deployments, Invariants())
        self.expected: dict[str, Expected] = {}
        self.missing: list[Expected] = []
        self.approved: set[str] = set()
        self.app_names: dict[str, str] = {}
        """Application id → name, as the API registered them."""
        self._started = 0.0
        self._fault_tasks: set[asyncio.Task[None]] = set()
        self._stopped: dict[str, ServiceProcess] = {}
        self._killed: set[str] = set()
        self._server_lock = asyncio.Lock()
        self._script = list(options.script)
        self._scratch = Path(tempfile.mkdtemp(prefix="slipway-chaos-ticks-"))
        """World-writable: scripts run as `nobody`, who cannot reach into `data_dir`."""
        self._scratch.chmod(0o777)
        self.ticks = self._scratch / "ticks"
        self.ticks.touch()
        self.ticks.chmod(0o666)

    # --- set-up ---------------------------------------------------------------------------

    async def start(self) -> None:
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
        files: dict[str, str] = {}
        for service in self.workload.services:
            files |= initial_files(TIMING, tag="v1", service=service)
        files[f"{GATE}/prd/.pipe.yaml"] = GATE_CONFIG.format(name=f"{GATE}-prd")
        files[f"{GATE}/prd/manifests.yaml"] = manifests("v1", TIMING, GATE)
        for app in self.workload.apps:
            if app.kind == "script":
                files[f"{app.service}/prd/.pipe.yaml"] = SCRIPT_CONFIG.format(
                    name=app.name, ticks=self.ticks, count=SCRIPT_TICKS
                )
                files[f"{app.service}/prd/manifests.yaml"] = manifests("v1", TIMING, app.service)
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
        self.pool = await create_pool(
            stack.postgres.url, schema=stack.schema, min_size=0, max_size=4
        )
        self.store = EventStore(self.pool, default_registry())
        stack.api_key = await create_api_key(self.store, "admin", "chaos")
        self.api = ApiClient(stack.api_url, key=stack.api_key, timeout_s=10)
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
        self._heal_all()
        for task in list(self._fault_tasks):
            task.cancel()
        await asyncio.gather(*self._fault_tasks, return_exceptions=True)
        if self.pool is not None:
            await self.pool.close()
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
        await self._register()
        self._started = time.monotonic()
        # No kinds: the same workload without faults (what the verdicts are without them).
        injector = asyncio.create_task(self._inject() if self.options.kinds else asyncio.sleep(0))
        supervisor = asyncio.create_task(self._supervise())
        try:
            for number, planned in enumerate(self.workload.rounds):
                self.say(
                    f"round {number}: {len(planned.deployments)} deployments,"
                    f" {len(self.result.faults)} faults so far"
                )
                await self._play(planned)
        finally:
            injector.cancel()
            await asyncio.gather(injector, return_exceptions=True)
            for task in list(self._fault_tasks):
                task.cancel()
            await asyncio.gather(*self._fault_tasks, return_exceptions=True)
            self._heal_all()
        self.say(f"faults stopped after {len(self.result.faults)}; settling")
        try:
            await self._settle()
            await self._judge()
        finally:
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
        self.result.run_s = time.monotonic() - self._started
        return self.result

    async def _register(self) -> None:
        api = self.api
        assert api is not None
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

            answer = await self._api(register)
            self.app_names[str(answer["application_id"])] = app.name
        head = await asyncio.to_thread(self.repo.head)
        await self._until(lambda: self._observed(head), within=60, what=f"commit {head[:10]}")

    async def _observed(self, head: str) -> bool:
        """The gitwatcher has recorded `head`: only commits after it trigger deployments."""
        rows = await self._db(
            lambda pool: pool.fetch(
                "SELECT * FROM events WHERE stream_id = $1", f"repository-{REPOSITORY_ID}"
            )
        )
        return any(
            isinstance(event := self._decode(row).event, CommitObserved)
            and event.commit_hash == head
            for row in rows
        )

    async def _play(self, planned: Round) -> None:
        api = self.api
        assert api is not None
        mark = await self._db(
            lambda pool: pool.fetchval("SELECT coalesce(max(global_position), 0) FROM events")
        )
        commit = ""
        if planned.sync:
            for wanted in planned.deployments:
                await self._api(functools.partial(api.sync_application, wanted.app.name))
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
            for row in await self._db(
                lambda pool: pool.fetch(
                    "SELECT * FROM events WHERE event_type = 'deployment_triggered'"
                    " AND global_position > $1 ORDER BY global_position",
                    mark,
                )
            ):
                event = self._decode(row).event
                assert isinstance(event, DeploymentTriggered)
                name = self._app_name(event.application_id)
                if (
                    name in waiting
                    and name not in found
                    and (planned.sync or event.commit_hash == commit)
                ):
                    found[name] = event.deployment_id
                    self.expected[event.deployment_id] = waiting[name]
            states = {name: await self._deployment(d) for name, d in found.items()}
            await self._approve(states.values())
            await self._scripted(states)
            if len(found) == len(waiting) and all(s.status in FINAL for s in states.values()):
                return
            await asyncio.sleep(POLL_S)
        self.missing += [w for app, w in waiting.items() if app not in found]
        self.say(f"round {planned.number} timed out: {sorted(set(waiting) - set(found))} missing")

    async def _approve(self, states: Iterable[deployments.Deployment]) -> None:
        """Approve each WAIT_APPROVAL stage running in `states` (once each), as an operator."""
        api = self.api
        assert api is not None
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

    # --- faults -------------------------------------------------------------------------------

    async def _scripted(self, states: dict[str, deployments.Deployment]) -> None:
        """Inject each scripted fault whose app is running its stage now (once each)."""
        for fault in list(self._script):
            state = states.get(fault.app)
            if state is None or not any(
                stage.name == fault.stage and stage.status == deployments.StageStatus.RUNNING
                for stage in state.stages
            ):
                continue
            self._script.remove(fault)
            self.result.faults.append(
                (time.monotonic() - self._started, f"{fault.kind} during {fault.app} {fault.stage}")
            )
            await self._apply(Fault(0.0, fault.kind))

    async def _inject(self) -> None:
        instances = [p.instance for p in self.stack.processes]
        for fault in fault_schedule(
            self.rng, instances, mean_gap_s=self.options.mean_fault_gap_s, kinds=self.options.kinds
        ):
            await asyncio.sleep(fault.gap_s)  # the schedule's own clock
            self.result.faults.append((time.monotonic() - self._started, fault.describe()))
            task = asyncio.create_task(self._apply(fault))
            self._fault_tasks.add(task)
            task.add_done_callback(self._fault_tasks.discard)

    async def _apply(self, fault: Fault) -> None:
        stack = self.stack
        match fault.kind:
            case "latency" | "black_hole" | "reset":
                backend, group = fault.target.split("@")
                proxy = stack.routes[int(group)].proxy(backend)
                if fault.kind == "reset":
                    proxy.reset_connections()
                    return
                if fault.kind == "latency":
                    proxy.add_latency(fault.latency_s)
                else:
                    proxy.black_hole()
                try:
                    await asyncio.sleep(fault.duration_s)
                finally:
                    proxy.heal()
            case "kill_9" | "sigstop":
                service = next(p for p in stack.processes if p.instance == fault.target)
                if service.process is None or fault.target in self._stopped:
                    return
                if fault.kind == "kill_9":
                    self._killed.add(fault.target)
                    signal_process(service.process.pid, signal.SIGKILL)
                    await asyncio.to_thread(service.process.wait)
                    try:
                        await asyncio.sleep(fault.duration_s)  # down this long before its restart
                    finally:
                        service.start()
                        self._killed.discard(fault.target)
                    return
                self._stopped[fault.target] = service
                signal_process(service.process.pid, signal.SIGSTOP)
                try:
                    await asyncio.sleep(fault.duration_s)
                finally:
                    self._stopped.pop(fault.target, None)
                    if service.process is not None:
                        signal_process(service.process.pid, signal.SIGCONT)
            case "postgres_restart":
                async with self._server_lock:
                    assert stack.postgres is not None
                    await asyncio.to_thread(stack.postgres.restart)
            case "nats_restart":
                async with self._server_lock:
                    assert stack.nats is not None
                    await asyncio.to_thread(stack.nats.restart)

    def _heal_all(self) -> None:
        for routes in self.stack.routes.values():
            for backend in ("postgres", "nats", "kubesim", "prometheus"):
                routes.proxy(backend).heal()
        for instance, service in list(self._stopped.items()):
            if service.process is not None:
                signal_process(service.process.pid, signal.SIGCONT)
            self._stopped.pop(instance, None)

    async def _supervise(self) -> None:
        """Restart service processes that exited on their own, as Kubernetes would."""
        while True:
            for service in self.stack.processes:
                if service.exited() is not None and service.instance not in self._killed:
                    self.result.restarts += 1
                    self.result.exited.append(f"{service.instance} (exit {service.exited()})")
                    if not self.options.restart_exited:
                        self._killed.add(service.instance)  # left exited, counted once
                        continue
                    self.say(f"  {service.instance} exited ({service.exited()}); restarting")
                    service.start()
            await asyncio.sleep(POLL_S)

    # --- settling and judging ------------------------------------------------------------------

    async def _settle(self) -> None:
        """Until every triggered deployment is final, every scheduled notification has
        arrived and the projector has caught up (each bounded: what is not is counted)."""

        async def deployments_final() -> bool:
            rows = await self._db(
                lambda pool: pool.fetch(
                    "SELECT t.stream_id FROM events t WHERE t.event_type = 'deployment_triggered'"
                    " AND NOT EXISTS (SELECT 1 FROM events c WHERE c.stream_id = t.stream_id"
                    " AND c.event_type IN ('deployment_completed', 'deployment_plan_failed'))"
                )
            )
            if rows:
                states = [await self._deployment(r["stream_id"].split("-", 1)[1]) for r in rows]
                await self._approve(states)
            return not rows

        async def notified() -> bool:
            scheduled = await self._scheduled_notifications()
            failed = await self._db(
                lambda pool: pool.fetch(
                    "SELECT * FROM events WHERE event_type = 'deployment_completed'"
                )
            )
            announced = {n.deployment_id for n in scheduled}
            return all(
                self.receiver.deliveries.get(n.notification_id, 0) for n in scheduled
            ) and all(
                event.deployment_id in announced
                for row in failed
                if isinstance(event := self._decode(row).event, DeploymentCompleted)
                and event.status == "FAILURE"
            )

        async def projected() -> bool:
            behind = await self._db(lambda pool: pool.fetchval(_STREAM_STATS_BEHIND))
            return not behind

        async def relayed() -> bool:
            logged = await self._db(lambda pool: pool.fetchval("SELECT count(*) FROM events"))
            return bool(await self._stream_messages() >= logged)

        # One deadline for all of them: a run that will not settle is judged, not waited on.
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        for check, what in (
            (deployments_final, "deployments final"),
            (relayed, "events relayed"),
            (notified, "notifications delivered"),
            (projected, "projections caught up"),
        ):
            with contextlib.suppress(TimeoutError):
                await self._until(check, within=max(deadline - time.monotonic(), 0.0), what=what)

    async def _judge(self) -> None:
        invariants = self.result.invariants
        rows = await self._db(
            lambda pool: pool.fetch("SELECT * FROM events ORDER BY global_position")
        )
        recorded = [self._decode(row) for row in rows]
        streams: dict[str, list[RecordedEvent]] = {}
        for event in recorded:
            streams.setdefault(event.stream_id, []).append(event)
        # Lost: a stream whose versions have a hole, an event JetStream never got.
        for stream_id, events in streams.items():
            versions = [e.stream_version for e in events]
            if sorted(versions) != list(range(len(versions))):
                invariants.add("lost", f"stream {stream_id} has versions {sorted(versions)}")
        published = await self._published_ids()
        for event in recorded:
            if str(event.event_id) not in published:
                invariants.add(
                    "lost",
                    f"{event.stream_id}@{event.stream_version} ({event.event_type}) never reached"
                    " the JetStream stream",
                )
        # Deployments: every triggered one final, with the verdict its design decides.
        outcomes: dict[str, Outcome] = {}
        windows: dict[str, list[tuple[float, str]]] = {}
        for stream_id, events in streams.items():
            if not stream_id.startswith("deployment-"):
                continue
            deployment_id = stream_id.split("-", 1)[1]
            state = deployments.fold((e.stream_version, e.event) for e in events)
            app = self._app_name(state.application_id)
            status = str(state.status)
            outcomes[deployment_id] = Outcome(deployment_id, app, status, state.rolled_back)
            self._lost_or_doubled(invariants, deployment_id, app, events, str(state.status))
            for e in events:
                if isinstance(e.event, StageStarted):
                    windows.setdefault(app, []).append((e.recorded_at.timestamp(), e.event.name))
        live = {
            app.name: await asyncio.to_thread(self._live_tag, app) for app in self.workload.apps
        }
        final_live: dict[str, str] = {}
        for planned in self.workload.rounds:
            for wanted in planned.deployments:
                final_live[wanted.app.name] = wanted.live_tag
        judge_deployments(invariants, self.expected, outcomes, self.missing, live, final_live)
        # Projections: stream_stats agrees with the log, stream by stream.
        for row in await self._db(lambda pool: pool.fetch(_STREAM_STATS_DIFF)):
            name = "duplicated_effects" if row["projected"] > row["logged"] else "lost"
            invariants.add(
                name,
                f"stream_stats says {row['projected']} events in {row['stream_id']},"
                f" the log has {row['logged']}",
            )
        # Side effects of one stage by two replicas at once.
        for kind, problem in overlapping_side_effects(
            self.effects, {app: sorted(w) for app, w in windows.items()}
        ):
            invariants.add_overlap(kind, problem)
        ticks = parse_ticks(await asyncio.to_thread(self.ticks.read_text))
        for problem in overlapping_script_runs(ticks):
            deployment_id = problem.split("/", 1)[0]
            app = outcomes[deployment_id].app if deployment_id in outcomes else "?"
            invariants.add_overlap("script", f"{app} {problem}")
        # Notifications: each scheduled one delivered, exactly once.
        scheduled = [e.event for e in recorded if isinstance(e.event, NotificationScheduled)]
        failed = {d: o.app for d, o in outcomes.items() if o.status == "FAILURE"}
        self.result.observed = {
            "events": len(recorded),
            "events_on_jetstream": len(published),
            "deployments": len(outcomes),
            "deployments_failed": len(failed),
            "applies": sum(e.what == "apply" for e in self.effects),
            "analysis_queries": sum(e.what == "analysis" for e in self.effects),
            "script_runs": len({(t.stage, t.run) for t in ticks}),
            "script_ticks": len(ticks),
            "notifications_scheduled": len(scheduled),
            "notifications_received": sum(self.receiver.deliveries.values()),
        }
        notification_verdicts(
            invariants,
            {
                n.notification_id: f"{n.notification_type} {self._app_name(n.application_id)}"
                for n in scheduled
            },
            self.receiver.deliveries,
            failed,
            [n.deployment_id for n in scheduled],
        )

    def _lost_or_doubled(
        self,
        invariants: Invariants,
        deployment_id: str,
        app: str,
        events: Sequence[RecordedEvent],
        status: str,
    ) -> None:
        """A final deployment lacks none of its events, and has none twice."""
        kinds = Counter(e.event_type for e in events)
        completed = Counter(e.event.stage_id for e in events if isinstance(e.event, StageCompleted))
        started = {e.event.stage_id for e in events if isinstance(e.event, StageStarted)}
        for stage_id, times in completed.items():
            if times > 1:
                invariants.add(
                    "duplicated_effects",
                    f"{app} {deployment_id}: stage {stage_id} completed {times}×",
                )
        if kinds["deployment_completed"] > 1:
            invariants.add("duplicated_effects", f"{app} {deployment_id}: completed twice")
        if status in FINAL and kinds["deployment_plan_failed"] == 0:
            for needed in ("deployment_planned", "deployment_started", "deployment_completed"):
                if not kinds[needed]:
                    invariants.add("lost", f"{app} {deployment_id}: no {needed}")
            for stage_id in started - set(completed):
                invariants.add("lost", f"{app} {deployment_id}: stage {stage_id} never completed")

    async def _stream_messages(self) -> int:
        """How many messages the JetStream events stream holds."""
        assert self.stack.nats is not None
        nc = await nats.connect(self.stack.nats.url)
        try:
            info = await nc.jetstream().stream_info(Subjects().events_stream)
            return int(info.state.messages)
        finally:
            await nc.close()

    async def _published_ids(self) -> set[str]:
        """The event ids in the JetStream events stream (the relay's `Nats-Msg-Id`)."""
        assert self.stack.nats is not None
        nc = await nats.connect(self.stack.nats.url)
        try:
            js = nc.jetstream()
            stream = Subjects().events_stream
            info = await js.stream_info(stream)
            total = info.state.messages
            sub = await js.subscribe(
                Subjects().all_events,
                ordered_consumer=True,
                config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL),
                stream=stream,
            )
            ids: set[str] = set()
            seen = 0
            with contextlib.suppress(TimeoutError, nats.errors.TimeoutError):
                while seen < total:
                    msg = await sub.next_msg(timeout=10)
                    seen += 1
                    if msg.headers and MSG_ID in msg.headers:
                        ids.add(msg.headers[MSG_ID])
            await sub.unsubscribe()
            return ids
        finally:
            await nc.close()

    def _live_tag(self, app: App) -> str | None:
        assert self.stack.kubesim is not None
        live = Kubesim(self.stack.kubesim.url).deployment(app.env, app.service)
        if live is None:
            return None
        containers = live.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
        wanted = image("", app.service)
        name = str(containers[0].get("image", "")) if containers else ""
        return name.removeprefix(wanted) if name.startswith(wanted) else name

    async def _scheduled_notifications(self) -> list[NotificationScheduled]:
        rows = await self._db(
            lambda pool: pool.fetch(
                "SELECT * FROM events WHERE event_type = 'notification_scheduled'"
            )
        )
        scheduled = []
        for row in rows:
            event = self._decode(row).event
            assert isinstance(event, NotificationScheduled)
            scheduled.append(event)
        return scheduled

    # --- helpers --------------------------------------------------------------------------------

    async def _deployment(self, deployment_id: str) -> deployments.Deployment:
        rows = await self._db(
            lambda pool: pool.fetch(
                "SELECT * FROM events WHERE stream_id = $1 ORDER BY stream_version",
                f"deployment-{deployment_id}",
            )
        )
        events = [self._decode(row) for row in rows]
        return deployments.fold((e.stream_version, e.event) for e in events)

    def _decode(self, row: asyncpg.Record) -> RecordedEvent:
        assert self.store is not None
        return self.store.decode_row(row)

    def _app_name(self, application_id: str) -> str:
        return self.app_names.get(application_id, application_id)

    async def _db(self, query: Callable[[asyncpg.Pool], Awaitable[T]]) -> T:
        """`query` on the run's own pool, retried while PostgreSQL restarts under it."""
        assert self.pool is not None
        deadline = time.monotonic() + API_RETRY_S
        while True:
            try:
                return await query(self.pool)
            except (*CONNECTION_ERRORS, Unavailable, asyncpg.PostgresError):
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(POLL_S)

    async def _api(self, call: Callable[[], T]) -> T:
        """`call` (an `ApiClient` method), retried while the API or its backends are faulted;
        an `ApiError` below 500 is the answer, and raised."""
        deadline = time.monotonic() + API_RETRY_S
        while True:
            try:
                return await asyncio.to_thread(call)
            except ApiError as exc:
                if exc.status < 500 or time.monotonic() > deadline:
                    raise
            except (SlipwayError, OSError, urllib.error.URLError):
                if time.monotonic() > deadline:
                    raise
            await asyncio.sleep(POLL_S)

    async def _until(
        self, check: Callable[[], Awaitable[bool]], *, within: float, what: str
    ) -> None:
        deadline = time.monotonic() + within
        while not await check():
            if time.monotonic() > deadline:
                self.say(f"  not {what} within {within:.0f} s")
                raise TimeoutError(what)
            await asyncio.sleep(POLL_S)


_STREAM_STATS_DIFF: Final = """
SELECT coalesce(l.stream_id, s.stream_id) AS stream_id,
       coalesce(l.n, 0) AS logged, coalesce(s.events, 0) AS projected
FROM (SELECT stream_id, count(*) AS n FROM events GROUP BY stream_id) l
FULL JOIN stream_stats s ON s.stream_id = l.stream_id
WHERE coalesce(l.n, 0) <> coalesce(s.events, 0)
"""
_STREAM_STATS_BEHIND: Final = f"SELECT count(*) FROM ({_STREAM_STATS_DIFF}) d"


async def run_chaos(options: ChaosOptions) -> ChaosResult:
    """Start everything, play the workload under faults, judge, stop everything."""
    run = ChaosRun(options)
    try:
        await run.start()
        return await run.run()
    finally:
        await run.stop()


def result_json(result: ChaosResult) -> str:
    return json.dumps(result.report(), indent=2)
