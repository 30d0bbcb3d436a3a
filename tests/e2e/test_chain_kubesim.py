"""A dev → stg → prd deployment chain on kubesim: the planner, the executor and the gitwatcher's
chain consumer together, over the relay and NATS.

account-dev's config chains account-stg, then account-prd. Its deployment
succeeds on kubesim; the chain opens account-stg's deployment, whose image
crash-loops (kubesim's rule for `:bad`), so its rollout fails: the chain ends
FAILURE and account-prd is never deployed — not in the log, not in the cluster.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubesim import ImageRule, KubeSim
from services.executor.handlers import HANDLES as EXECUTOR_HANDLES
from services.executor.service import CONSUMER_NAME as EXECUTOR
from services.executor.service import Executor
from services.gitwatcher.chains import ChainRunner
from services.gitwatcher.configs import read_app_config
from services.gitwatcher.service import Gitwatcher, WatchedRepository
from services.planner.service import CONSUMER_NAME as PLANNER
from services.planner.service import HANDLES as PLANNER_HANDLES
from services.planner.service import Planner, RepositoryRef
from shared.chains import CHAIN
from shared.config.control import KubernetesProviderConfig
from shared.consumer import EventConsumer, Handler
from shared.decider import fold
from shared.eventlog import NO_STREAM, EventStore, new_events
from shared.events.base import Event
from shared.events.catalog import ApplicationRegistered, DeploymentCompleted, DeploymentTriggered
from shared.events.ids import chain_id_of, on_chain_deployment_id
from shared.events.streams import chain_stream, deployment_stream
from shared.events.vocabulary import Trigger
from shared.git import GitCache
from shared.platform import KubernetesPlatform
from shared.projections import ProjectionRunner
from shared.projections.applications import ApplicationsProjection
from shared.stagelog import StageLogs
from shared.testing import wait_until
from tests.support import Backends, running
from tests.support.git_helpers import WorkRepo

CONFIG = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: account-{env}
  labels: {{env: {env}}}
  input:
    namespace: {env}
    autoCreateNamespace: true
{extra}"""

CHAINS_ON = "  trigger:\n    onChain:\n      disabled: false\n"
POST_SYNC = """\
  postSync:
    chain:
      applications:
        - name: account-stg
        - name: account-prd
"""

MANIFEST = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: account
spec:
  replicas: 1
  selector:
    matchLabels: {{app: account}}
  template:
    metadata:
      labels: {{app: account}}
    spec:
      containers:
        - name: account
          image: ghcr.io/acme/account:{tag}
"""


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1, rules=[ImageRule(image="*:bad", crash_loop=True)]) as sim:
        yield sim


def _consumer(
    backends: Backends, name: str, handler: Handler, handles: object, **kw: object
) -> EventConsumer:
    return EventConsumer(
        name=name,
        js=backends.nc.jetstream(),
        pool=backends.store.pool,
        registry=backends.store.registry,
        subjects=backends.subjects,
        handler=handler,
        handles=handles,  # type: ignore[arg-type]
        fetch_timeout_s=0.2,
        backoff_s=(0.1,),
        **kw,  # type: ignore[arg-type]
    )


async def test_a_failure_in_stg_stops_the_chain_before_prd(
    backends: Backends,
    projector_store: EventStore,
    sim: KubeSim,
    work: WorkRepo,
    tmp_path: Path,
) -> None:
    store = backends.store
    head = work.commit(
        {
            "account/dev/.pipe.yaml": CONFIG.format(env="dev", extra=POST_SYNC),
            "account/dev/manifests.yaml": MANIFEST.format(tag="v2"),
            "account/stg/.pipe.yaml": CONFIG.format(env="stg", extra=CHAINS_ON),
            "account/stg/manifests.yaml": MANIFEST.format(tag="bad"),  # crash-loops
            "account/prd/.pipe.yaml": CONFIG.format(env="prd", extra=CHAINS_ON),
            "account/prd/manifests.yaml": MANIFEST.format(tag="v2"),
        },
        "account v2 everywhere (stg's image is broken)",
    )
    for env in ("dev", "stg", "prd"):
        registered = ApplicationRegistered(
            application_id=f"account-{env}",
            name=f"account-{env}",
            repository_id="config",
            path=f"account/{env}",
            config_filename=".pipe.yaml",
            platform_provider="kubesim",
        )
        await store.append(
            f"application-account-{env}",
            new_events([registered]),
            expected_version=NO_STREAM,
        )
    applications = ProjectionRunner(projector_store, ApplicationsProjection(), idle_sleep_s=0.01)
    await applications.install()
    await applications.run_until_caught_up()

    await backends.ensure_event_stream()
    kubeconfig = sim.write_kubeconfig(tmp_path / "kubeconfig")
    planner = Planner(
        store=store,
        git=GitCache(tmp_path / "planner"),
        repositories={"config": RepositoryRef(remote=work.url, branch="main")},
    )
    executor = Executor(
        store=store,
        stage_logs=StageLogs(store.pool, backends.nc, backends.subjects),
        git=GitCache(tmp_path / "executor"),
        repositories={"config": work.url},
        platforms={"kubesim": KubernetesProviderConfig(kubeconfig_path=str(kubeconfig))},
        holder="x1",
        lease_ttl_s=3.0,
        poll_s=0.2,
        claim_interval_s=0.3,
        rollout_timeout_s=3.0,
    )
    gitwatcher = Gitwatcher(
        store=store,
        cache=GitCache(tmp_path / "gitwatcher"),
        repositories=[WatchedRepository(repository_id="config", remote=work.url)],
        read_config=read_app_config,
    )
    chains = ChainRunner(store, gitwatcher.watchers, gitwatcher.metrics)
    components = [
        backends.relay().run,
        applications.run,
        _consumer(backends, PLANNER, planner.handle, PLANNER_HANDLES, max_deliver=50).run,
        planner.retry_waiting,
        _consumer(
            backends,
            EXECUTOR,
            executor.handle,
            EXECUTOR_HANDLES,
            after_commit=executor.after_commit,
        ).run,
        executor.schedule,
        _consumer(
            backends, "gitwatcher-chains", chains.handle_completed, (DeploymentCompleted,)
        ).run,
    ]
    dev = "devdeploy01"
    chain = chain_id_of(dev)
    stg = on_chain_deployment_id(chain, "account-stg")

    async def chain_ended() -> str | None:
        history = await store.read_stream(chain_stream(chain))
        state = fold(CHAIN, [r.event for r in history])
        return state.status if state.status not in ("", "RUNNING") else None

    async with running(*components, stop_within_s=20):
        # The dev deployment, as the gitwatcher triggers it for the commit.
        triggered = DeploymentTriggered(
            deployment_id=dev,
            application_id="account-dev",
            trigger=Trigger.ON_COMMIT,
            commit_hash=head,
            repository_id="config",
            commit_branch="main",
        )
        await store.append(deployment_stream(dev), new_events([triggered]), expected_version=-1)
        assert await wait_until(chain_ended, within_s=60, what="the chain to end") == "FAILURE"

    async def completion(deployment_id: str) -> DeploymentCompleted | None:
        events: list[Event] = [
            r.event for r in await store.read_stream(deployment_stream(deployment_id))
        ]
        return next((e for e in events if isinstance(e, DeploymentCompleted)), None)

    assert (await completion(dev)).status == "SUCCESS"  # type: ignore[union-attr]
    assert (await completion(stg)).status == "FAILURE"  # type: ignore[union-attr]
    state = fold(CHAIN, [r.event for r in await store.read_stream(chain_stream(chain))])
    assert [state.block_status(i) for i in range(3)] == ["SUCCESS", "FAILURE", "SKIPPED"]
    prd = on_chain_deployment_id(chain, "account-prd")
    assert await store.read_stream(deployment_stream(prd)) == []  # never triggered
    async with KubernetesPlatform(kubeconfig) as cluster:
        assert await cluster.get("apps/Deployment/dev/account") is not None
        assert await cluster.get("apps/Deployment/prd/account") is None
