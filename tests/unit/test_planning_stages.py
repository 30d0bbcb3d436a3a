"""Stage building: quick sync, the pipeline's ids and options, the hidden ROLLBACK stage."""

from __future__ import annotations

import json

import pytest

from shared.events import vocabulary
from shared.events.catalog import PlannedStage
from shared.planning import PlanError, PlanningSpec, StageSpec, Strategy, build_stages

SEED_PIPELINE = (
    StageSpec(name="K8S_CANARY_ROLLOUT", options={"replicas": "10%"}),
    StageSpec(
        name="ANALYSIS",
        id="analysis",
        desc="grpc error rate",
        timeout_s=1800.0,
        options={"duration": "30m", "templates": [{"name": "grpc_error_rate"}]},
    ),
    StageSpec(name="K8S_PRIMARY_ROLLOUT"),
    StageSpec(name="K8S_CANARY_CLEAN"),
)


def test_quick_sync_is_one_predefined_k8s_sync_stage_then_hidden_rollback() -> None:
    """Quick sync: K8S_SYNC with spec.quickSync as options, then the hidden ROLLBACK."""
    stages = build_stages(Strategy.QUICK_SYNC, PlanningSpec(quick_sync_options={"prune": True}))
    assert stages == (
        PlannedStage(
            id="K8sSync",
            name=vocabulary.StageName("K8S_SYNC"),
            index=0,
            desc="Sync by applying all manifests",
            options_json='{"prune":true}',
            predefined=True,
        ),
        PlannedStage(
            id="Rollback",
            name=vocabulary.StageName("ROLLBACK"),
            index=1,
            desc="Rollback the deployment",
            predefined=True,
            visible=False,
        ),
    )


def test_pipeline_stages_get_ids_options_requirements_and_timeouts() -> None:
    """Configured stages keep their id or get `stage-<index>`, chain, and carry `with` as JSON."""
    stages = build_stages(Strategy.PIPELINE, PlanningSpec(stages=SEED_PIPELINE))
    visible = [s for s in stages if s.visible]
    assert [(s.id, s.name, s.index) for s in visible] == [
        ("stage-0", "K8S_CANARY_ROLLOUT", 0),
        ("analysis", "ANALYSIS", 1),
        ("stage-2", "K8S_PRIMARY_ROLLOUT", 2),
        ("stage-3", "K8S_CANARY_CLEAN", 3),
    ]
    assert [s.requires for s in visible] == [(), ("stage-0",), ("analysis",), ("stage-2",)]
    assert json.loads(visible[0].options_json) == {"replicas": "10%"}
    assert json.loads(visible[1].options_json) == {
        "duration": "30m",
        "templates": [{"name": "grpc_error_rate"}],
    }
    assert (visible[1].desc, visible[1].timeout_s) == ("grpc error rate", 1800.0)
    assert not any(s.predefined for s in visible)
    [rollback] = [s for s in stages if not s.visible]
    assert (rollback.id, rollback.name, rollback.index, rollback.predefined) == (
        "Rollback",
        "ROLLBACK",
        4,
        True,
    )


def test_no_rollback_stage_when_auto_rollback_is_off() -> None:
    """`autoRollback: false` leaves out the hidden ROLLBACK stage, for both strategies."""
    planning = PlanningSpec(stages=SEED_PIPELINE, auto_rollback=False)
    assert all(s.visible for s in build_stages(Strategy.PIPELINE, planning))
    assert [s.name for s in build_stages(Strategy.QUICK_SYNC, planning)] == ["K8S_SYNC"]


def test_script_run_with_on_rollback_gets_a_hidden_rollback_stage() -> None:
    """A SCRIPT_RUN with `onRollback` adds a hidden SCRIPT_RUN_ROLLBACK naming its stage."""
    script = StageSpec(
        name="SCRIPT_RUN", options={"run": "echo hi", "onRollback": "echo bye", "env": {"A": "1"}}
    )
    stages = build_stages(Strategy.PIPELINE, PlanningSpec(stages=(script,)))
    assert [(s.id, s.name, s.visible) for s in stages] == [
        ("stage-0", "SCRIPT_RUN", True),
        ("Rollback", "ROLLBACK", False),
        ("ScriptRunRollback-stage-0", "SCRIPT_RUN_ROLLBACK", False),
    ]
    assert json.loads(stages[2].options_json) == {
        "baseStageId": "stage-0",
        "onRollback": "echo bye",
        "env": {"A": "1"},
    }


def test_duplicate_stage_ids_are_refused() -> None:
    """Two stages with the same id cannot be planned; the id and the file are named."""
    planning = PlanningSpec(
        stages=(StageSpec(name="WAIT", id="w"), StageSpec(name="WAIT", id="w")),
        config_path="app.pipecd.yaml",
    )
    with pytest.raises(PlanError, match=r"app\.pipecd\.yaml: spec\.pipeline\.stages: stage id 'w'"):
        build_stages(Strategy.PIPELINE, planning)
