"""The executor under test: a config repo, kubesim, the relay and executor replicas in-process.

Plans are made the way the planner makes them (`shared.planning.build_stages`
over the config at the commit), so the options the executor decodes are the
planner's own, not hand-written JSON.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from kubesim import KubeSim
from services.executor.handlers import HANDLES
from services.executor.service import CONSUMER_NAME, STAGE_LOG_BATCH_S, Executor
from shared.config import load_application_config
from shared.config.control import KubernetesProviderConfig
from shared.consumer import EventConsumer, Handler
from shared.eventlog import NO_STREAM, new_events
from shared.events import vocabulary
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    ApplicationRegistered,
    DeploymentCancelRequested,
    DeploymentCompleted,
    DeploymentPlanned,
    DeploymentTriggered,
    StageStarted,
)
from shared.git import GitCache
from shared.planning import Strategy, build_stages, spec_from_config
from shared.stagelog import StageLogs
from shared.testing import wait_until
from tests.support import Backends, Component, running, write_control_yaml
from tests.support.git_helpers import WorkRepo

APP = "app01web"
APP_PATH = "web/prd"

CONFIG = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: web-prd
  input:
    namespace: shop
    autoCreateNamespace: true
{extra}"""

DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {{app: web}}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: web, pipecd.dev/variant: primary}}
  template:
    metadata:
      labels: {{app: web, pipecd.dev/variant: primary}}
    spec:
      containers:
        - name: web
          image: ghcr.io/acme/web:{tag}
          ports: [{{containerPort: 8080}}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {{app: web}}
  ports: [{{port: 80, targetPort: 8080}}]
"""

CONFIG_MAP = """\
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: web-extra
data: {a: "1"}
"""


def app_files(
    *, tag: str = "v1", replicas: int = 2, extra: str = "", config_map: bool = False
) -> dict[str, str | bytes | None]:
    """The app's `.pipe.yaml` (with `extra` YAML under `spec:`) and its manifests."""
    manifests = DEPLOYMENT.format(tag=tag, replicas=replicas) + (CONFIG_MAP if config_map else "")
    return {
        f"{APP_PATH}/.pipe.yaml": CONFIG.format(extra=extra),
        f"{APP_PATH}/manifests.yaml": manifests,
    }


class Harness:
    """One test's world: its schema, subjects, config repo, kubesim and executor replicas."""

    def __init__(
        self, backends: Backends, *, work: WorkRepo, kubeconfig: Path, cache: Path
    ) -> None:
        self.store = backends.store
        self.nc = backends.nc
        self.subjects = backends.subjects
        self.work = work
        self.kubeconfig = kubeconfig
        self.cache = cache
        self.relay = backends.relay()
        # The platform providers (name → kubeconfig) and their labels; kubesim alone unless
        # a test gives several (`resourceRoutes`).
        self.platforms: dict[str, Path] = {"kubesim": kubeconfig}
        self.provider_labels: dict[str, dict[str, str]] = {}
        self.platform_provider = "kubesim"
        """The provider the application is registered with."""
        self.executors: list[Executor] = []
        self.consumers: list[EventConsumer] = []

    @classmethod
    async def over(
        cls, backends: Backends, sim: KubeSim, work: WorkRepo, tmp_path: Path
    ) -> Harness:
        """The usual harness: kubesim `sim` as the platform, its kubeconfig and the git caches
        under `tmp_path`, and the test's event stream made."""
        await backends.ensure_event_stream()
        kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
        return cls(backends, work=work, kubeconfig=kubeconfig, cache=tmp_path / "cache")

    def replica(
        self, name: str, *, stage_log_batch_s: float = STAGE_LOG_BATCH_S, **options: Any
    ) -> Executor:
        """An executor replica, its stage logs batched as the service's are by default."""
        settings: dict[str, Any] = {
            "lease_ttl_s": 3.0,
            "poll_s": 0.2,
            "claim_interval_s": 0.3,
            "rollout_timeout_s": 20.0,
        } | options
        executor = Executor(
            store=self.store,
            stage_logs=StageLogs(
                self.store.pool, self.nc, self.subjects, batch_window_s=stage_log_batch_s
            ),
            git=GitCache(self.cache / name),
            repositories={"config": self.work.url},
            platforms={
                provider: KubernetesProviderConfig(kubeconfig_path=str(path))
                for provider, path in self.platforms.items()
            },
            provider_labels=self.provider_labels,
            holder=name,
            **settings,
        )
        consumer = self.consumer(
            CONSUMER_NAME,
            executor.handle,
            after_commit=executor.after_commit,
            handles=HANDLES,
        )
        self.executors.append(executor)
        self.consumers.append(consumer)
        return executor

    def consumer(
        self,
        name: str,
        handler: Handler,
        *,
        after_commit: Callable[[RecordedEvent], Awaitable[None]],
        handles: Sequence[type[Event]],
    ) -> EventConsumer:
        """A service's consumer of the events it `handles`, on this test's subjects, quick to
        fetch and to redeliver (a test waits on it)."""
        return EventConsumer(
            name=name,
            js=self.nc.jetstream(),
            pool=self.store.pool,
            registry=self.store.registry,
            subjects=self.subjects,
            handler=handler,
            after_commit=after_commit,
            handles=handles,
            fetch_timeout_s=0.2,
            backoff_s=(0.1,),
        )

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        if not self.executors:
            self.replica("x1")
        components: list[Component] = [self.relay.run]
        for executor, consumer in zip(self.executors, self.consumers, strict=True):
            components += [consumer.run, executor.schedule]
        async with running(*components, stop_within_s=20):
            yield

    @contextlib.asynccontextmanager
    async def running_app(self) -> AsyncIterator[None]:
        """`running`, with the application registered first thing."""
        async with self.running():
            await self.register()
            yield

    async def register(self) -> None:
        await self.store.append(
            f"application-{APP}",
            new_events(
                [
                    ApplicationRegistered(
                        application_id=APP,
                        name="web-prd",
                        repository_id="config",
                        path=APP_PATH,
                        config_filename=".pipe.yaml",
                        platform_provider=self.platform_provider,
                    )
                ]
            ),
            expected_version=NO_STREAM,
        )

    async def plan(
        self, deployment_id: str, commit: str, *, strategy: str = "pipeline", running: str = ""
    ) -> DeploymentPlanned:
        """Trigger and plan `commit` as the planner would (stages from the config there)."""
        files = self.work.path / APP_PATH
        config = load_application_config(files / ".pipe.yaml")
        stages = build_stages(
            Strategy(strategy), spec_from_config(config, f"{APP_PATH}/.pipe.yaml")
        )
        planned = DeploymentPlanned(
            deployment_id=deployment_id,
            application_id=APP,
            commit_hash=commit,
            strategy=vocabulary.Strategy(strategy),
            summary="test",
            reason="test",
            stages=stages,
            running_commit_hash=running,
            config_filename=".pipe.yaml",
            path=APP_PATH,
            repository_id="config",
        )
        trigger = DeploymentTriggered(
            deployment_id=deployment_id,
            application_id=APP,
            trigger=vocabulary.Trigger("on_commit"),
            commit_hash=commit,
        )
        await self.store.append(
            f"deployment-{deployment_id}",
            new_events([trigger, planned]),
            expected_version=NO_STREAM,
        )
        return planned

    async def request(self, deployment_id: str, event: Event) -> None:
        """Append a person's request (what the API will do) at the stream's end."""
        await self.store.append(
            f"deployment-{deployment_id}", new_events([event]), expected_version=None
        )

    async def cancel(self, deployment_id: str, *, with_rollback: bool = True) -> None:
        """Bob asks to cancel `deployment_id` (with or without a rollback)."""
        await self.request(
            deployment_id,
            DeploymentCancelRequested(
                deployment_id=deployment_id, with_rollback=with_rollback, commander="bob"
            ),
        )

    async def events(self, deployment_id: str) -> list[Event]:
        return [e.event for e in await self.store.read_stream(f"deployment-{deployment_id}")]

    async def wait_for(
        self, deployment_id: str, predicate: Callable[[Event], bool], *, within: float = 25.0
    ) -> Event:
        async def probe() -> Event | None:
            return next((e for e in await self.events(deployment_id) if predicate(e)), None)

        found: Event = await wait_until(probe, within_s=within, what=f"event in {deployment_id}")
        return found

    async def stage_started(self, deployment_id: str, stage_id: str) -> None:
        """Wait until stage `stage_id` of `deployment_id` has started."""
        await self.wait_for(
            deployment_id, lambda e: isinstance(e, StageStarted) and e.stage_id == stage_id
        )

    async def completed(self, deployment_id: str, *, within: float = 25.0) -> DeploymentCompleted:
        event = await self.wait_for(
            deployment_id, lambda e: isinstance(e, DeploymentCompleted), within=within
        )
        assert isinstance(event, DeploymentCompleted)
        return event


async def deploy_v1(harness: Harness, extra: str = "") -> str:
    """The first deployment (quick sync, as the planner plans a first deploy): v1 is running."""
    commit = harness.work.commit(app_files(tag="v1", extra=extra), "v1")
    await harness.plan("d1", commit, strategy="quick_sync")
    assert (await harness.completed("d1")).status == "SUCCESS"
    return commit


async def deploy_v2(
    harness: Harness, extra: str, *, tag: str = "v2", message: str = "v2"
) -> tuple[str, str]:
    """v1 running (`deploy_v1`), then d2 planned over it at a commit of image `tag`."""
    v1 = await deploy_v1(harness, extra)
    v2 = harness.work.commit(app_files(tag=tag, extra=extra), message)
    await harness.plan("d2", v2, running=v1)
    return v1, v2


def write_control_config(
    path: Path, *, remote: str, kubeconfig: Path | None = None, **spec: Any
) -> Path:
    """A control config (`slipway.yaml`) for a service process: the config repository at
    `remote`, kubesim as platform provider `kubesim` if `kubeconfig`, and the other `spec`."""
    if kubeconfig is not None:
        kubesim = {"kubeconfigPath": str(kubeconfig)}
        spec["platformProviders"] = [{"name": "kubesim", "type": "KUBERNETES", "config": kubesim}]
    repository = {"repoId": "config", "remote": remote, "branch": "main"}
    return write_control_yaml(path, repositories=[repository], **spec)
