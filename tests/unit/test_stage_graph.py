"""The stage graph's layout: the pipeline in columns by `requires`, the rollback lane below
it branching from the stage that failed, and stages from a repository that do not add up."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.api.console.stage_graph import NODE_H, NODE_W, stage_graph
from shared.deployments import Deployment, Stage
from shared.events.vocabulary import StageStatus

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def _stage(i: int, name: str, *, requires: tuple[str, ...] = (), **kw: object) -> Stage:
    return Stage(id=f"stage-{i}", name=name, index=i, requires=requires, **kw)  # type: ignore[arg-type]


def _pipeline(*stages: Stage) -> Deployment:
    return Deployment(deployment_id="d1", stages=stages)


def test_a_pipeline_is_a_row_with_an_edge_between_neighbours_and_each_stages_duration() -> None:
    view = _pipeline(
        _stage(
            0,
            "K8S_CANARY_ROLLOUT",
            status=StageStatus.SUCCESS,
            started_at=T0,
            completed_at=T0 + timedelta(seconds=12.34),
        ),
        _stage(
            1,
            "ANALYSIS",
            requires=("stage-0",),
            status=StageStatus.RUNNING,
            started_at=T0 + timedelta(seconds=13),
        ),
        _stage(2, "K8S_PRIMARY_ROLLOUT", requires=("stage-1",)),
    )
    graph = stage_graph(view, now=T0 + timedelta(seconds=13 + 125))
    nodes = {n.stage_id: n for n in graph.nodes}
    assert [nodes[f"stage-{i}"].y for i in range(3)] == [nodes["stage-0"].y] * 3
    assert nodes["stage-0"].x < nodes["stage-1"].x < nodes["stage-2"].x
    assert [n.duration for n in graph.nodes] == ["12.3 s", "2 min 05 s", ""]
    assert [(e.x1, e.x2) for e in graph.edges] == [
        (nodes["stage-0"].x + NODE_W, nodes["stage-1"].x),
        (nodes["stage-1"].x + NODE_W, nodes["stage-2"].x),
    ]
    assert not any(e.rollback for e in graph.edges) and graph.branch_label is None
    assert graph.width >= nodes["stage-2"].x + NODE_W
    assert "ANALYSIS RUNNING 2 min 05 s" in graph.summary


def test_a_fan_out_stacks_siblings_in_one_column() -> None:
    view = _pipeline(
        _stage(0, "K8S_SYNC"),
        _stage(1, "WAIT", requires=("stage-0",)),
        _stage(2, "SCRIPT_RUN", requires=("stage-0",)),
        _stage(3, "K8S_PRIMARY_ROLLOUT", requires=("stage-1", "stage-2")),
    )
    nodes = {n.stage_id: n for n in stage_graph(view, now=T0).nodes}
    assert nodes["stage-1"].x == nodes["stage-2"].x
    assert nodes["stage-2"].y >= nodes["stage-1"].y + NODE_H
    assert nodes["stage-3"].x > nodes["stage-1"].x
    assert len(stage_graph(view, now=T0).edges) == 4


def test_the_rollback_lane_branches_from_the_stage_that_failed() -> None:
    view = _pipeline(
        _stage(0, "K8S_CANARY_ROLLOUT", status=StageStatus.SUCCESS),
        _stage(1, "ANALYSIS", requires=("stage-0",), status=StageStatus.FAILURE),
        _stage(2, "K8S_PRIMARY_ROLLOUT", requires=("stage-1",)),
        _stage(3, "ROLLBACK", visible=False, status=StageStatus.RUNNING, started_at=T0),
        _stage(4, "K8S_CANARY_CLEAN", visible=False),
    )
    graph = stage_graph(view, now=T0 + timedelta(seconds=2))
    nodes = {n.stage_id: n for n in graph.nodes}
    failed, first, second = nodes["stage-1"], nodes["stage-3"], nodes["stage-4"]
    assert first.rollback and second.rollback and not failed.rollback
    assert first.y > failed.y + NODE_H and first.x == failed.x and second.x > first.x
    branch, inside = [e for e in graph.edges if e.rollback][::-1]
    assert (branch.x1, branch.y1) == (failed.x + NODE_W // 2, failed.y + NODE_H)
    assert (branch.x2, branch.y2) == (first.x + NODE_W // 2, first.y)
    assert (inside.x1, inside.x2) == (first.x + NODE_W, second.x)
    assert graph.branch_label is not None
    assert graph.height >= first.y + NODE_H
    assert "rollback ROLLBACK RUNNING 2.0 s" in graph.summary


def test_while_nothing_failed_the_rollback_branches_from_the_last_stage() -> None:
    view = _pipeline(
        _stage(0, "K8S_SYNC", status=StageStatus.RUNNING),
        _stage(1, "WAIT", requires=("stage-0",)),
        _stage(2, "ROLLBACK", visible=False),
    )
    nodes = {n.stage_id: n for n in stage_graph(view, now=T0).nodes}
    assert nodes["stage-2"].x == nodes["stage-1"].x


def test_unknown_requires_and_cycles_draw_in_the_first_columns_instead_of_failing() -> None:
    view = _pipeline(
        _stage(0, "A", requires=("stage-1",)),
        _stage(1, "B", requires=("stage-0",)),
        _stage(2, "C", requires=("nowhere", "stage-2")),
        _stage(3, "D" * 40, requires=("stage-2",)),
    )
    graph = stage_graph(view, now=T0)
    nodes = {n.stage_id: n for n in graph.nodes}
    assert len(nodes) == 4
    assert nodes["stage-2"].x == min(n.x for n in graph.nodes)
    assert nodes["stage-3"].x > nodes["stage-2"].x
    assert len(nodes["stage-3"].name) <= 22 and nodes["stage-3"].title == "D" * 40
    assert all(e.x1 < e.x2 for e in graph.edges if not e.rollback)


def test_no_stages_draws_nothing() -> None:
    graph = stage_graph(_pipeline(), now=T0)
    assert graph.nodes == () and graph.edges == ()
    assert graph.summary == "No stages planned yet"
