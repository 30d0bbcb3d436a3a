"""Fault tolerance under real faults (issue 11): server restarts mid-pipeline, the chaos run.

Both run the chaos run of `slipway_sandbox.chaos` — real PostgreSQL, nats-server, kubesim,
Prometheus, a local Slack-format receiver and every service as its own process — and check
its invariants from the event log, the JetStream stream, kubesim and the receiver:

- a PostgreSQL restart while a canary rolls out and a nats-server restart during its
  analysis (item 5): every deployment ends with the verdict its design decides, no event is
  lost, no notification arrives twice, and no service process exits (they reconnect);
- the short chaos run (`python -m benchmarks.chaos --short`): two replicas of every service,
  faults of every kind at random from a fixed seed, all invariants 0.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from slipway_sandbox.chaos import ChaosOptions, ChaosResult, run_chaos
from slipway_sandbox.chaos_plan import FAULT_KINDS, OnStage
from slipway_sandbox.prometheus import prometheus_binary

pytestmark = pytest.mark.slow

SHORT_SEED = 3


def _require_prometheus() -> None:
    if prometheus_binary() is not None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail("prometheus is required in CI (scripts/ensure-system-packages.sh installs it)")
    pytest.skip("prometheus is not installed (make test installs it)")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Not under pytest's tmp_path: PostgreSQL runs as its own user, and every pytest session
    that starts makes /tmp/pytest-of-<user> private again (0700), under a running server."""
    path = Path(tempfile.mkdtemp(prefix="slipway-chaos-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _explain(result: ChaosResult) -> str:
    return (
        "\n".join(result.invariants.problems)
        + f"\nexited: {result.exited}\nfaults as injected (seed {result.seed}):\n"
        + result.schedule()
    )


async def test_postgres_and_nats_restarts_in_the_middle_of_a_canary_pipeline(
    data_dir: Path,
) -> None:
    _require_prometheus()
    result = await run_chaos(
        ChaosOptions(
            data_dir,
            seed=1,
            deployments=8,
            kinds=(),
            replicas=1,
            # svc1-prd is round 1's good canary: canary → analysis → primary → clean.
            script=(
                OnStage("svc1-prd", "K8S_CANARY_ROLLOUT", "postgres_restart"),
                OnStage("svc1-prd", "ANALYSIS", "nats_restart"),
            ),
            restart_exited=False,
            say=lambda _: None,
        )
    )
    injected = [description for _, description in result.faults]
    assert injected == [
        "postgres_restart during svc1-prd K8S_CANARY_ROLLOUT",
        "nats_restart during svc1-prd ANALYSIS",
    ], _explain(result)
    assert result.invariants.held, _explain(result)
    assert result.exited == [], _explain(result)
    # What the invariants were counted over: both verdicts, notifications, the whole stream.
    observed = result.observed
    assert observed["deployments"] == 10 and observed["deployments_failed"] == 1, observed
    assert observed["notifications_received"] == observed["notifications_scheduled"] > 0
    assert observed["events_on_jetstream"] == observed["events"], observed


async def test_short_chaos_run_breaks_no_invariant(data_dir: Path) -> None:
    _require_prometheus()
    result = await run_chaos(
        ChaosOptions(
            data_dir, seed=SHORT_SEED, deployments=8, mean_fault_gap_s=0.6, say=lambda _: None
        )
    )
    assert result.invariants.held, _explain(result)
    assert len(result.faults) >= 20, _explain(result)
    assert set(result.faults_by_kind) == set(FAULT_KINDS)
    assert all(result.faults_by_kind.values()), result.faults_by_kind
    assert result.observed["deployments"] >= 8, result.observed
    # The SCRIPT_RUN overlap check had a script's ticks to read (it runs as `nobody`).
    assert result.observed["script_ticks"] >= 2, result.observed
