"""Stage executors: the work of each Kubernetes stage, against the platform adapter.

Each takes a `StageContext` and returns a `StageResult`; every expected
failure (the cluster refused, a rollout never got healthy, the config does
not load at the commit, a variant cannot be made) is a FAILURE with a reason
a person can act on, and the stage log says what was done step by step.
Every executor is safe to run again from the start: a replica that takes a
deployment over after a crash re-runs the stage that was running (applies are
idempotent server-side applies; deletes of what is gone are skipped).

WAIT and WAIT_APPROVAL are the decider's (time and approvals). Which stage
kinds this table must run is said by their `StageKind`
(`shared.config.stage_kinds`); `executor_table` refuses a table that misses one.

Each module's docstring says what its stages do: `k8s_stages` (K8S_SYNC,
K8S_PRIMARY_ROLLOUT, the canary and baseline variants, ROLLBACK) and
`k8s_resources` (the apply, wait, prune and delete they share), `traffic`
(K8S_TRAFFIC_ROUTING), `script_stages` and `script` (SCRIPT_RUN and its
rollback; the process), `analysis_stage` (the ANALYSIS protocol),
`stage_context` (what a stage's work is given and returns).
"""

from __future__ import annotations

from typing import Final

from services.executor.analysis_stage import analysis
from services.executor.decider import StageStatus
from services.executor.k8s_stages import (
    k8s_baseline_clean,
    k8s_baseline_rollout,
    k8s_canary_clean,
    k8s_canary_rollout,
    k8s_primary_rollout,
    k8s_sync,
    rollback,
)
from services.executor.script_stages import custom_sync, script_run, script_run_rollback
from services.executor.stage_context import (
    ANALYSIS_GRACE_S,
    Executor,
    Sources,
    StageContext,
    StageFailed,
    StageResult,
)
from services.executor.traffic import k8s_traffic_routing
from services.executor.variants import (
    VariantError,
)
from shared.config.stage_kinds import executor_table
from shared.errors import ConfigError, PlatformError, Unavailable
from shared.events.vocabulary import StageName
from shared.executor.options import OptionsError

__all__ = [
    "ANALYSIS_GRACE_S",
    "STAGE_EXECUTORS",
    "Sources",
    "StageContext",
    "StageResult",
    "run_stage",
]


STAGE_EXECUTORS: Final[dict[str, Executor]] = executor_table(
    {
        StageName.K8S_SYNC: k8s_sync,
        StageName.K8S_PRIMARY_ROLLOUT: k8s_primary_rollout,
        StageName.K8S_CANARY_ROLLOUT: k8s_canary_rollout,
        StageName.K8S_CANARY_CLEAN: k8s_canary_clean,
        StageName.K8S_BASELINE_ROLLOUT: k8s_baseline_rollout,
        StageName.K8S_BASELINE_CLEAN: k8s_baseline_clean,
        StageName.ROLLBACK: rollback,
        StageName.K8S_TRAFFIC_ROUTING: k8s_traffic_routing,
        StageName.SCRIPT_RUN: script_run,
        StageName.SCRIPT_RUN_ROLLBACK: script_run_rollback,
        StageName.CUSTOM_SYNC: custom_sync,
        StageName.ANALYSIS: analysis,
    }
)
"""Each stage kind's work, by name: exactly the kinds the executor finishes."""


async def run_stage(ctx: StageContext) -> StageResult:
    """Run the stage's executor; every expected failure becomes a FAILURE with its reason.

    `Unavailable` (the database or the cluster unreachable) is raised as it is: the runner
    waits the outage out and runs the work again (`runner.OUTAGE_GRACE_S`)."""
    executor = STAGE_EXECUTORS.get(ctx.stage.name)
    if executor is None:
        reason = f"stage {ctx.stage.name} is not supported by this executor yet"
        await ctx.log.error(reason)
        return StageResult(StageStatus.FAILURE, reason)
    try:
        return await executor(ctx)
    except StageFailed as exc:
        reason = str(exc)
    except Unavailable:
        raise  # an outage, not the stage's failure: the runner runs the work again
    except (PlatformError, OptionsError, VariantError, ConfigError) as exc:
        reason = f"{type(exc).__name__}: {exc}"
    await ctx.log.error(reason)
    return StageResult(StageStatus.FAILURE, reason)
