"""Side effects fenced in time: a lease holder whose database hangs stops its script before
its lease can expire, so the replica that takes over never runs it at the same time.

Replica `a` reaches PostgreSQL through a TCP proxy that black-holes its connections
(open, nothing passes) while a long SCRIPT_RUN runs: its renewals hang, and only its
local watchdog (shared/leases.py) can stop the script. Replica `b` takes the deployment
over once the lease has expired and runs the stage again from its start. Each run of the
script appends `<its pid> <time>` to a file every 0.1 s: the two runs' intervals must not
overlap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from kubesim import KubeSim
from services.executor.leases import Leases
from services.executor.service import Executor
from shared.config.control import KubernetesProviderConfig
from shared.db import create_pool
from shared.eventlog import EventStore
from shared.events.catalog import default_registry
from shared.git import GitCache
from shared.stagelog import StageLogs
from shared.testing import wait_until
from tests.support import Backends, running
from tests.support.executor import Harness, app_files
from tests.support.git_helpers import WorkRepo
from tests.support.tcp_proxy import PostgresCutProxy

LEASE_TTL_S = 3.0
TICKS = 40
SCRIPT = f"""\
  pipeline:
    stages:
      - name: SCRIPT_RUN
        id: effect
        with:
          timeout: 1m
          run: |
            i=0
            while [ $i -lt {TICKS} ]; do
              echo "$$ $(date +%s.%N)" >> {{marker}}
              echo "tick $i"
              sleep 0.1
              i=$((i+1))
            done
"""


@pytest.fixture
async def sim() -> AsyncIterator[KubeSim]:
    async with KubeSim(ready_delay_s=0.1) as sim:
        yield sim


def runs(marker: Path) -> dict[str, list[float]]:
    """The times each run of the script (by its pid) wrote, in order."""
    times: dict[str, list[float]] = {}
    for line in marker.read_text().splitlines():
        pid, _, at = line.partition(" ")
        times.setdefault(pid, []).append(float(at))
    return times


async def test_a_holder_cut_off_from_the_database_kills_its_script_before_a_takeover(
    backends: Backends,
    sim: KubeSim,
    work: WorkRepo,
    tmp_path: Path,
    script_scratch: Path,
) -> None:
    harness = await Harness.over(backends, sim, work, tmp_path)
    marker = script_scratch / "effects"
    marker.touch()
    marker.chmod(0o666)  # scripts may run as another account (see `script_scratch`)
    host, port = backends.app_database_url.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    async with PostgresCutProxy(host, int(port)) as proxy:
        # A short statement limit, so `a`'s calls stuck in the black hole give up soon after.
        pool = await create_pool(
            proxy.url(backends.app_database_url),
            schema=backends.schema,
            min_size=1,
            max_size=6,
            statement_timeout_s=1.0,
        )
        a = Executor(
            store=EventStore(pool, default_registry()),
            stage_logs=StageLogs(pool, backends.nc, backends.subjects),
            git=GitCache(tmp_path / "cache-a"),
            repositories={"config": work.url},
            platforms={
                "kubesim": KubernetesProviderConfig(kubeconfig_path=str(harness.kubeconfig))
            },
            holder="a",
            lease_ttl_s=LEASE_TTL_S,
            poll_s=0.2,
            claim_interval_s=0.3,
        )
        b = harness.replica("b", lease_ttl_s=LEASE_TTL_S)
        [registrar] = harness.consumers  # `b`'s consumer registers the deployment for both
        try:
            async with running(harness.relay.run, registrar.run, a.schedule, stop_within_s=30):
                await harness.register()
                commit = work.commit(app_files(extra=SCRIPT.format(marker=marker)), "effect")
                await harness.plan("d1", commit)

                async def a_running() -> bool:
                    return len(marker.read_text().splitlines()) >= 5

                await wait_until(a_running, within_s=30, what="a's script running")
                proxy.black_hole()
                cut_at = time.time()
                async with running(b.schedule):
                    done = await harness.completed("d1", within=40)
                proxy.heal()  # `a` may now learn from the log what it lost
        finally:
            proxy.heal()
            pool.terminate()  # connections that were black-holed: nothing to close gracefully

    assert done.status == "SUCCESS", done.reason
    by_run = runs(marker)
    assert len(by_run) == 2, by_run.keys()
    first, second = sorted(by_run.values(), key=lambda times: times[0])
    # `a`'s run was stopped (never finished), within the lease after its last renewal…
    assert len(first) < TICKS
    assert first[-1] - cut_at < LEASE_TTL_S
    # …and `b` ran the stage again from its start, whole, and only after.
    assert len(second) == TICKS
    assert first[-1] < second[0], f"side effects overlap: {first[-1]} ≥ {second[0]}"


async def test_the_watchdog_stops_the_holder_before_its_lease_expires(
    backends: Backends, store: EventStore
) -> None:
    """`held` (executor and analysis alike): the body hangs on a black-holed database; the
    watchdog calls `abandon` while the lease, on the server's clock, still has time left."""
    async with store.pool.acquire() as conn:
        await Leases.register(conn, "d1", "app")
    host, port = backends.app_database_url.rsplit("@", 1)[1].split("/", 1)[0].rsplit(":", 1)
    async with PostgresCutProxy(host, int(port)) as proxy:
        pool = await create_pool(proxy.url(backends.app_database_url), schema=backends.schema)
        try:
            leases = Leases(EventStore(pool, default_registry()), "a", ttl_s=LEASE_TTL_S)
            [lease] = await leases.claim(1)
            abandoned = asyncio.Event()
            lost, stop = asyncio.Event(), asyncio.Event()
            began = time.monotonic()
            async with leases.held(
                lease, stop=stop, lost=lost, finished=lambda: False, abandon=abandoned.set
            ):
                proxy.black_hole()
                async with asyncio.timeout(LEASE_TTL_S * 3):
                    await abandoned.wait()
                took = time.monotonic() - began
                left = await store.pool.fetchval(
                    "SELECT extract(epoch FROM expires_at - clock_timestamp()) "
                    "FROM executor_leases WHERE deployment_id = 'd1'"
                )
            assert lost.is_set()
            assert took < LEASE_TTL_S - leases.margin_s + 0.5, took
            assert left > 0, f"the lease had expired {-left} s before the holder stopped"
        finally:
            proxy.heal()
            pool.terminate()
