"""The stages of a plan, as the executor will run them (PipeCD's `buildQuickSyncPipeline`
and `buildProgressivePipeline`).

Quick sync is one predefined `K8S_SYNC` stage. A pipeline is the configured
stages, each with the id it was given or `stage-<index>`, each requiring the
one before it. With auto-rollback on, a hidden predefined `ROLLBACK` stage
follows (the executor runs it only when the deployment fails or is cancelled
with rollback), and for each `SCRIPT_RUN` stage with an `onRollback` script, a
hidden `SCRIPT_RUN_ROLLBACK` stage that runs it.

A plan is an event, and the event log never forgets, so a stage's options are
recorded as people may read them (`recorded_options`): a SCRIPT_RUN's
`secretEnv` keeps its names only, and the text of the stages whose work reads
its options again from the config at the commit (SCRIPT_RUN, its rollback,
ANALYSIS — see `shared.executor.options.configured_options`) is redacted
(credentials in URLs, `TOKEN=…` assignments, registered secrets).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

from shared.config.stage_kinds import REREAD_OPTIONS, kind_of
from shared.events.catalog import PlannedStage
from shared.events.vocabulary import StageName
from shared.planning.rules import PlanError
from shared.planning.spec import PlanningSpec, StageSpec, Strategy
from shared.redaction import MASK, redact_all

__all__ = [
    "K8S_SYNC_STAGE_ID",
    "REREAD_OPTIONS",
    "ROLLBACK_STAGE_ID",
    "build_stages",
    "options_json",
    "pipeline_stage_id",
    "pipeline_stages",
    "quick_sync_stages",
    "recorded_options",
]

K8S_SYNC_STAGE_ID: Final = "K8sSync"
ROLLBACK_STAGE_ID: Final = "Rollback"
SCRIPT_RUN_ROLLBACK_STAGE_ID: Final = "ScriptRunRollback"


def pipeline_stage_id(index: int, configured_id: str) -> str:
    """The id of the pipeline's stage at `index`: the one it was given, or `stage-<index>`."""
    return configured_id or f"stage-{index}"


def build_stages(strategy: Strategy, spec: PlanningSpec) -> tuple[PlannedStage, ...]:
    """The stages of a deployment with this strategy."""
    if strategy is Strategy.PIPELINE:
        return pipeline_stages(spec)
    return quick_sync_stages(spec)


def quick_sync_stages(spec: PlanningSpec) -> tuple[PlannedStage, ...]:
    """A QUICK_SYNC's stages: one K8S_SYNC (and its hidden rollback)."""
    sync = PlannedStage(
        id=K8S_SYNC_STAGE_ID,
        name=StageName.K8S_SYNC,
        index=0,
        desc="Sync by applying all manifests",
        options_json=options_json(spec.quick_sync_options),
        predefined=True,
    )
    return (sync, *_rollback(spec, 1))


def pipeline_stages(spec: PlanningSpec) -> tuple[PlannedStage, ...]:
    """A PIPELINE's stages from `spec.pipeline`, and the hidden rollback; `PlanError` if none."""
    if not spec.has_pipeline:
        raise PlanError("cannot build a pipeline: no spec.pipeline.stages are configured")
    stages: list[PlannedStage] = []
    previous = ""
    for index, configured in enumerate(spec.stages):
        stage_id = pipeline_stage_id(index, configured.id)
        stages.append(
            PlannedStage(
                id=stage_id,
                name=StageName(configured.name),
                index=index,
                desc=configured.desc,
                options_json=options_json(recorded_options(configured.name, configured.options)),
                requires=(previous,) if previous else (),
                timeout_s=configured.timeout_s,
            )
        )
        previous = stage_id
    duplicated = sorted(i for i, n in Counter(s.id for s in stages).items() if n > 1)
    if duplicated:
        where = f"{spec.config_path}: " if spec.config_path else ""
        raise PlanError(
            f"{where}spec.pipeline.stages: stage id {', '.join(map(repr, duplicated))} is used "
            "more than once; give each stage a unique id"
        )
    stages += _rollback(spec, len(stages))
    return tuple(stages)


def _rollback(spec: PlanningSpec, index: int) -> list[PlannedStage]:
    if not spec.auto_rollback:
        return []
    out = [
        PlannedStage(
            id=ROLLBACK_STAGE_ID,
            name=StageName.ROLLBACK,
            index=index,
            desc="Rollback the deployment",
            predefined=True,
            visible=False,
        )
    ]
    for position, configured in enumerate(spec.stages):
        # Only a SCRIPT_RUN has a companion (its `onRollback` script), and only if it has one.
        kind = kind_of(configured.name)
        companion = kind.rollback if kind is not None else None
        on_rollback = _on_rollback(configured)
        if companion is None or not on_rollback:
            continue
        base_id = pipeline_stage_id(position, configured.id)
        rollback_options = {
            "baseStageId": base_id,
            "onRollback": on_rollback,
            "env": configured.options.get("env") or {},
        }
        if configured.options.get("secretEnv"):
            rollback_options["secretEnv"] = configured.options["secretEnv"]
        out.append(
            PlannedStage(
                # PipeCD gives every one of these the same id; ours stay unique per deployment.
                id=f"{SCRIPT_RUN_ROLLBACK_STAGE_ID}-{base_id}",
                name=companion,
                index=index + len(out),
                desc=f"Rollback the script of stage {base_id}",
                options_json=options_json(recorded_options(companion, rollback_options)),
                predefined=True,
                visible=False,
            )
        )
    return out


def _on_rollback(stage: StageSpec) -> str:
    value = stage.options.get("onRollback")
    return value if isinstance(value, str) else ""


def recorded_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """`options` of a stage `name` as a plan records them: no secret in them."""
    recorded = dict(options)
    secret_env = recorded.get("secretEnv")
    if isinstance(secret_env, Mapping):
        recorded["secretEnv"] = dict.fromkeys(secret_env, MASK)
    if name in REREAD_OPTIONS:
        recorded = redact_all(recorded)
    return recorded


def options_json(options: Mapping[str, Any]) -> str:
    """A stage's options as compact JSON with sorted keys, so equal plans encode equally."""
    return json.dumps(
        dict(options), sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )
