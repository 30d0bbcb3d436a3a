"""What the planner reads from an application config, and from the trigger, as plain values.

The rules and the stage builder take these instead of the config loader's
types, so they can be exercised with a one-line literal in a test and stay
independent of how the loader models the file; `spec_from_config` is the one
place that knows both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from shared.config.loader import ApplicationConfig
from shared.config.types import enc_hook
from shared.events.vocabulary import Strategy

__all__ = [
    "PlanningSpec",
    "StageSpec",
    "Strategy",
    "TriggerInfo",
    "WorkloadRef",
    "spec_from_config",
]


@dataclass(frozen=True)
class StageSpec:
    """One configured pipeline stage (`spec.pipeline.stages[i]`)."""

    name: str
    id: str = ""
    desc: str = ""
    timeout_s: float = 0.0
    options: Mapping[str, Any] = field(default_factory=dict)
    """The stage's `with:` block, as decoded from YAML."""


@dataclass(frozen=True)
class WorkloadRef:
    """An entry of `spec.workloads`: which resources are the application's workloads."""

    kind: str = "Deployment"
    name: str = ""


@dataclass(frozen=True)
class PlanningSpec:
    """The parts of a `KubernetesApp` config that decide a plan."""

    stages: tuple[StageSpec, ...] = ()
    always_use_pipeline: bool = False
    commit_matcher_quick_sync: str = ""
    commit_matcher_pipeline: str = ""
    auto_rollback: bool = True
    quick_sync_options: Mapping[str, Any] = field(default_factory=dict)
    """`spec.quickSync` (for instance `prune: true`), the K8S_SYNC stage's options."""
    workloads: tuple[WorkloadRef, ...] = ()
    config_path: str = ""
    """Where the config lives in the repository, for messages that name it."""
    on_command_disabled: bool = False
    """`trigger.onCommand.disabled`: a sync command does not deploy this application."""

    @property
    def has_pipeline(self) -> bool:
        """Whether `spec.pipeline` has stages (a PIPELINE is possible)."""
        return bool(self.stages)


@dataclass(frozen=True)
class TriggerInfo:
    """What the trigger says about intent: a forced strategy, a commit message, a commander."""

    strategy: str = "auto"
    """`auto`, or a strategy forced by the command that triggered the deployment."""
    commit_message: str = ""
    commander: str = ""
    """Who asked, when a command (not a commit) triggered the deployment."""
    kind: str = "on_commit"

    @property
    def by_command(self) -> bool:
        """Whether a person's command, not a commit, triggered the deployment."""
        return bool(self.commander) or self.kind == "on_command"


def spec_from_config(config: ApplicationConfig, config_path: str = "") -> PlanningSpec:
    """The planning view of a loaded `KubernetesApp`; `config_path` names it in messages.

    A stage's options are its decoded `with:` block written back out in full
    (defaults included, camelCase, with the `stage` tag), so the executor can
    decode `options_json` straight into the same options type.
    """
    spec = config.spec
    return PlanningSpec(
        stages=tuple(
            StageSpec(
                name=stage.name,
                id=stage.id,
                desc=stage.desc,
                timeout_s=stage.timeout.seconds,
                options=_builtins(stage.with_),
            )
            for stage in spec.stages
        ),
        always_use_pipeline=spec.planner.always_use_pipeline,
        commit_matcher_quick_sync=spec.commit_matcher.quick_sync.pattern,
        commit_matcher_pipeline=spec.commit_matcher.pipeline.pattern,
        auto_rollback=spec.auto_rollback,
        quick_sync_options=_builtins(spec.quick_sync),
        workloads=tuple(
            WorkloadRef(kind=ref.kind or "Deployment", name=ref.name) for ref in spec.workloads
        ),
        config_path=config_path or str(config.path),
        on_command_disabled=spec.trigger.on_command.disabled,
    )


def _builtins(options: msgspec.Struct) -> dict[str, Any]:
    value = msgspec.to_builtins(options, enc_hook=enc_hook)
    assert isinstance(value, dict)
    return value
