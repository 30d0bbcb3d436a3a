"""What each stage kind is, registered once: everything else about stages is derived from here.

A `StageKind` says, for one `StageName`: the options Struct its `with:` decodes
into (none: the planner adds it, no config names it), who finishes it (the
executor runs its work, or the executor's decider ends it by time and
approvals), whether it is timed, whether a person may skip it, whether its
work reads its options again from the config at the commit (the plan keeps
them redacted), and the hidden stage that undoes it on rollback.

Derived from `STAGE_KINDS`: `STAGE_NAMES` (the names a pipeline may use, with
their options: the loader's check and its error message), the `StageOptions`
union `PipelineStage.with_` decodes into, the decider's timed stages
(`TIMED`), `SKIPPABLE`, the planner's `REREAD_OPTIONS`, and the executor's
table (`executor_table` refuses one that misses a kind or runs a decided one).

Adding a stage kind: its name in `shared.events.vocabulary.StageName`, its
options in `stage_options.py`, a record here, its work in the executor's
table, and its test.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from functools import reduce
from operator import or_
from typing import TYPE_CHECKING, Final, TypeVar

from shared.config.stage_options import (
    AnalysisOptions,
    CustomSyncOptions,
    K8sBaselineCleanOptions,
    K8sBaselineRolloutOptions,
    K8sCanaryCleanOptions,
    K8sCanaryRolloutOptions,
    K8sPrimaryRolloutOptions,
    K8sSyncOptions,
    K8sTrafficRoutingOptions,
    RollbackOptions,
    ScriptRunOptions,
    StageOptionsBase,
    WaitApprovalOptions,
    WaitOptions,
)
from shared.events.vocabulary import StageName

__all__ = [
    "REREAD_OPTIONS",
    "SKIPPABLE",
    "STAGE_KINDS",
    "STAGE_NAMES",
    "TIMED",
    "FinishedBy",
    "StageKind",
    "StageOptions",
    "executor_table",
    "kind_of",
]


class FinishedBy(enum.Enum):
    """Who ends a stage: the executor's work, or the pure decider alone."""

    EXECUTOR = "executor"
    """The executor runs the stage's work (`services/executor`'s table) and records its end."""
    DECIDER = "decider"
    """The executor's pure decider ends it by itself: by time, approvals or a skip."""


@dataclass(frozen=True)
class StageKind:
    """One stage kind's registration: its options, who ends it, whether it is timed."""

    name: StageName
    options: type[StageOptionsBase] | None
    """What its `with:` decodes into; None: not configurable (the planner adds it)."""
    finished_by: FinishedBy = FinishedBy.EXECUTOR
    timed: bool = False
    """Ends at a time the decider computes (`next_deadline`)."""
    skippable: bool = False
    """A person may skip it: waiting and checking, never a change to the cluster."""
    reads_config_options: bool = False
    """Its work reads its options from the config at the commit, not from the (redacted) plan."""
    rollback: StageName | None = None
    """The hidden stage the planner adds to undo it when the deployment rolls back."""


STAGE_KINDS: Final[tuple[StageKind, ...]] = (
    StageKind(name=StageName.K8S_SYNC, options=K8sSyncOptions),
    StageKind(name=StageName.K8S_PRIMARY_ROLLOUT, options=K8sPrimaryRolloutOptions),
    StageKind(name=StageName.K8S_CANARY_ROLLOUT, options=K8sCanaryRolloutOptions),
    StageKind(name=StageName.K8S_CANARY_CLEAN, options=K8sCanaryCleanOptions),
    StageKind(name=StageName.K8S_BASELINE_ROLLOUT, options=K8sBaselineRolloutOptions),
    StageKind(name=StageName.K8S_BASELINE_CLEAN, options=K8sBaselineCleanOptions),
    StageKind(name=StageName.K8S_TRAFFIC_ROUTING, options=K8sTrafficRoutingOptions),
    StageKind(
        name=StageName.WAIT,
        options=WaitOptions,
        finished_by=FinishedBy.DECIDER,
        timed=True,
        skippable=True,
    ),
    StageKind(
        name=StageName.WAIT_APPROVAL,
        options=WaitApprovalOptions,
        finished_by=FinishedBy.DECIDER,
        timed=True,
        skippable=True,
    ),
    StageKind(
        name=StageName.ANALYSIS, options=AnalysisOptions, skippable=True, reads_config_options=True
    ),
    StageKind(
        name=StageName.SCRIPT_RUN,
        options=ScriptRunOptions,
        reads_config_options=True,
        rollback=StageName.SCRIPT_RUN_ROLLBACK,
    ),
    StageKind(name=StageName.SCRIPT_RUN_ROLLBACK, options=None, reads_config_options=True),
    StageKind(name=StageName.ROLLBACK, options=RollbackOptions),
    StageKind(name=StageName.CUSTOM_SYNC, options=CustomSyncOptions, reads_config_options=True),
)
"""Every stage kind, in the order the config's error messages list them."""

_BY_NAME: Final = {kind.name: kind for kind in STAGE_KINDS}
if set(_BY_NAME) != set(StageName) or len(_BY_NAME) != len(STAGE_KINDS):
    raise ImportError("STAGE_KINDS must hold exactly one StageKind for each StageName")
if any(k.options is not None and k.options.__struct_config__.tag != k.name for k in STAGE_KINDS):
    # The loader tags a stage's `with:` with its name: the options must answer to it.
    raise ImportError("a StageKind's options Struct must have the stage's name as its tag")
if any(k.finished_by is FinishedBy.DECIDER and not k.timed for k in STAGE_KINDS):
    # The decider ends a stage only at a time it computes (or on approvals and skips).
    raise ImportError("a StageKind finished by the decider must be timed")


def kind_of(name: str) -> StageKind | None:
    """The kind of stage `name`; None for a name no kind has."""
    try:
        return _BY_NAME[StageName(name)]
    except ValueError:
        return None


STAGE_NAMES: Final[dict[str, type[StageOptionsBase]]] = {
    kind.name.value: kind.options for kind in STAGE_KINDS if kind.options is not None
}
"""The stage names a Kubernetes pipeline may use, each with its options Struct."""

TIMED: Final = frozenset(kind.name for kind in STAGE_KINDS if kind.timed)
SKIPPABLE: Final = frozenset(kind.name for kind in STAGE_KINDS if kind.skippable)
REREAD_OPTIONS: Final = frozenset(kind.name for kind in STAGE_KINDS if kind.reads_config_options)

if TYPE_CHECKING:
    StageOptions = StageOptionsBase
else:
    # The tagged union `PipelineStage.with_` decodes into (msgspec picks by the `stage` tag).
    StageOptions = reduce(or_, STAGE_NAMES.values())

_Work = TypeVar("_Work")


def executor_table(work: Mapping[StageName, _Work]) -> dict[str, _Work]:
    """The executor's table, keyed by stage name: `work` checked against the kinds.

    Raises ValueError naming the kinds the executor runs but `work` lacks, and the
    ones `work` has although the decider finishes them.
    """
    runs = {kind.name for kind in STAGE_KINDS if kind.finished_by is FinishedBy.EXECUTOR}
    missing = sorted(name.value for name in runs - set(work))
    extra = sorted(name.value for name in set(work) - runs)
    if missing or extra:
        raise ValueError(
            f"the executor's table must run exactly the stage kinds finished by the executor: "
            f"missing {missing}, not the executor's {extra}"
        )
    return {name.value: work[name] for name in StageName if name in work}
