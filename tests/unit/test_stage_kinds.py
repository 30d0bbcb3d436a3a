"""Stage kinds are registered once (`shared.config.stage_kinds`); what is derived stays whole."""

from __future__ import annotations

import json
from typing import Any, get_args

import msgspec
import pytest

from services.executor.stages import STAGE_EXECUTORS
from shared.config import STAGE_NAMES, StageOptions
from shared.config.stage_kinds import (
    REREAD_OPTIONS,
    SKIPPABLE,
    STAGE_KINDS,
    TIMED,
    FinishedBy,
    executor_table,
    kind_of,
)
from shared.events.vocabulary import StageName
from shared.planning.spec import PlanningSpec, StageSpec
from shared.planning.stages import pipeline_stages


@pytest.mark.parametrize("name", sorted(STAGE_NAMES))
def test_every_stage_the_config_accepts_can_run(name: str) -> None:
    """A stage name the config takes has work in the executor's table or is the decider's."""
    kind = kind_of(name)
    assert kind is not None
    if kind.finished_by is FinishedBy.EXECUTOR:
        assert name in STAGE_EXECUTORS, f"{name}: the config accepts it, nothing runs it"
    else:
        assert name not in STAGE_EXECUTORS
        assert name in TIMED, f"{name}: decided, yet the decider has no deadline for it"


def test_every_planned_only_stage_can_run_too() -> None:
    """The stages the planner adds on its own (rollback companions) also have their work."""
    planned_only = [k for k in STAGE_KINDS if k.options is None]
    assert planned_only
    for kind in planned_only:
        assert kind.name in STAGE_EXECUTORS
    companions = {k.rollback for k in STAGE_KINDS if k.rollback is not None}
    assert companions <= set(STAGE_EXECUTORS)


def test_the_executor_table_must_cover_exactly_the_executor_kinds() -> None:
    """A table missing a kind the executor finishes, or running a decided one, is refused."""
    work: dict[StageName, Any] = {StageName(name): fn for name, fn in STAGE_EXECUTORS.items()}
    assert executor_table(work) == STAGE_EXECUTORS
    without_sync: dict[StageName, Any] = {
        n: fn for n, fn in work.items() if n is not StageName.K8S_SYNC
    }
    with pytest.raises(ValueError, match=r"missing \['K8S_SYNC'\]"):
        executor_table(without_sync)
    with pytest.raises(ValueError, match=r"not the executor's \['WAIT'\]"):
        executor_table({**work, StageName.WAIT: work[StageName.K8S_SYNC]})


def test_the_options_union_is_the_configurable_kinds_options() -> None:
    """`PipelineStage.with_` decodes into exactly the options of the configurable kinds."""
    assert set(get_args(StageOptions)) == set(STAGE_NAMES.values())
    for name, options in STAGE_NAMES.items():
        decoded = msgspec.json.decode(json.dumps({"stage": name}).encode(), type=StageOptions)
        assert type(decoded) is options


def test_derived_sets_follow_the_records() -> None:
    """TIMED, SKIPPABLE and REREAD_OPTIONS are read off the records, not listed beside them."""
    assert {k.name for k in STAGE_KINDS if k.timed} == TIMED
    assert {k.name for k in STAGE_KINDS if k.skippable} == SKIPPABLE
    assert {k.name for k in STAGE_KINDS if k.reads_config_options} == REREAD_OPTIONS
    assert kind_of("NO_SUCH_STAGE") is None


def test_a_script_runs_rollback_companion_is_planned_from_its_kind() -> None:
    """The hidden stage after a SCRIPT_RUN with `onRollback` is its kind's rollback companion."""
    spec = PlanningSpec(
        stages=(StageSpec(name="SCRIPT_RUN", options={"run": "true", "onRollback": "undo"}),),
        auto_rollback=True,
    )
    names = [s.name for s in pipeline_stages(spec)]
    script_run = kind_of("SCRIPT_RUN")
    assert script_run is not None and script_run.rollback is not None
    assert names == ["SCRIPT_RUN", "ROLLBACK", script_run.rollback]
