"""A deployment's stages laid out as a graph to draw (pure: the template draws the SVG).

The pipeline's stages go left to right in columns by their `requires` depth (a stage
sits one column right of the deepest stage it requires), so a pipeline is a row and a
fan-out a column of siblings. The hidden rollback stages are a second lane below: a
dashed branch leaves the stage where the deployment failed (or the last one, while
nothing has failed) and runs through them in order.

The stages come from the deployment's events, which the planner wrote from a repository:
a `requires` naming no stage, or a cycle, draws the stage in the first column rather
than failing the page.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from shared.deployments import Deployment, Stage
from shared.events.vocabulary import StageStatus

__all__ = [
    "NODE_H",
    "NODE_W",
    "GraphEdge",
    "GraphNode",
    "StageGraph",
    "duration_text",
    "stage_graph",
]

NODE_W: Final = 196
NODE_H: Final = 58
_GAP_X: Final = 44
_GAP_Y: Final = 26
_LANE_GAP: Final = 44
"""Room between the pipeline and the rollback lane, for the branch's label."""
_MARGIN: Final = 8
_NAME_CHARS: Final = 22
_FAILED: Final = frozenset({StageStatus.FAILURE, StageStatus.CANCELLED})


@dataclass(frozen=True)
class GraphNode:
    """One stage's box in the graph: its name, status, duration and position."""

    stage_id: str
    name: str
    """The stage's name, shortened to fit its box (`title` has it whole)."""
    title: str
    status: str
    duration: str
    """"12.3 s", "2 min 05 s", or "" before it starts."""
    rollback: bool
    x: int
    y: int


@dataclass(frozen=True)
class GraphEdge:
    """A line between two stages' boxes; `rollback` draws the branch taken on failure."""

    x1: int
    y1: int
    x2: int
    y2: int
    rollback: bool
    """The branch into the rollback lane, or an edge inside it (drawn dashed)."""


@dataclass(frozen=True)
class StageGraph:
    """The laid-out pipeline: boxes, lines and the drawing's size."""

    nodes: tuple[GraphNode, ...]
    edges: tuple[GraphEdge, ...]
    width: int
    height: int
    branch_label: tuple[int, int] | None
    """Where to write "on failure" beside the rollback branch (none without rollback)."""

    @property
    def summary(self) -> str:
        """The graph in words, for a screen reader: each stage in drawing order."""
        parts = [
            f"{'rollback ' if n.rollback else ''}{n.title} {n.status}"
            + (f" {n.duration}" if n.duration else "")
            for n in self.nodes
        ]
        return "Stage graph: " + "; ".join(parts) if parts else "No stages planned yet"


def duration_text(stage: Stage, now: datetime) -> str:
    """How long the stage ran, or has been running ("" before it starts)."""
    if stage.started_at is None:
        return ""
    seconds = max(0.0, ((stage.completed_at or now) - stage.started_at).total_seconds())
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def _depths(stages: tuple[Stage, ...]) -> dict[str, int]:
    """Each stage's column: one right of the deepest stage it requires (cycles cut at 0)."""
    by_id: Mapping[str, Stage] = {s.id: s for s in stages}
    depth: dict[str, int] = {}
    visiting: set[str] = set()

    def of(stage_id: str) -> int:
        if stage_id in depth:
            return depth[stage_id]
        if stage_id in visiting:
            return -1  # a cycle: the stage it closes on counts as before the first column
        visiting.add(stage_id)
        required = [r for r in by_id[stage_id].requires if r in by_id and r != stage_id]
        depth[stage_id] = 1 + max((of(r) for r in required), default=-1)
        visiting.discard(stage_id)
        return depth[stage_id]

    for stage in stages:
        of(stage.id)
    return depth


def _node(stage: Stage, now: datetime, x: int, y: int) -> GraphNode:
    name = stage.name
    short = name if len(name) <= _NAME_CHARS else name[: _NAME_CHARS - 1] + "…"
    return GraphNode(
        stage_id=stage.id,
        name=short,
        title=name,
        status=str(stage.status),
        duration=duration_text(stage, now),
        rollback=stage.rollback,
        x=x,
        y=y,
    )


def _x(column: int) -> int:
    return _MARGIN + column * (NODE_W + _GAP_X)


def stage_graph(view: Deployment, now: datetime) -> StageGraph:
    """Lay out `view`'s stages: the pipeline in columns, the rollback lane below it."""
    ordered = tuple(sorted(view.stages, key=lambda s: s.index))
    pipeline = tuple(s for s in ordered if not s.rollback)
    rollback = tuple(s for s in ordered if s.rollback)
    depth = _depths(pipeline)
    rows_in: dict[int, int] = {}
    nodes: dict[str, GraphNode] = {}
    for stage in pipeline:
        column = depth[stage.id]
        row = rows_in.get(column, 0)
        rows_in[column] = row + 1
        nodes[stage.id] = _node(stage, now, _x(column), _MARGIN + row * (NODE_H + _GAP_Y))
    edges = [
        GraphEdge(
            nodes[r].x + NODE_W,
            nodes[r].y + NODE_H // 2,
            node.x,
            node.y + NODE_H // 2,
            rollback=False,
        )
        for stage in pipeline
        for node in (nodes[stage.id],)
        for r in dict.fromkeys(stage.requires)
        if r in nodes and r != stage.id and nodes[r].x < node.x
    ]
    pipeline_bottom = _MARGIN + max(rows_in.values(), default=0) * (NODE_H + _GAP_Y) - _GAP_Y
    branch_label: tuple[int, int] | None = None
    if rollback:
        failed = [s for s in pipeline if s.status in _FAILED]
        branch_from = (
            nodes[failed[0].id] if failed else (nodes[pipeline[-1].id] if pipeline else None)
        )
        lane_y = max(pipeline_bottom, _MARGIN) + _LANE_GAP
        start_column = (branch_from.x - _MARGIN) // (NODE_W + _GAP_X) if branch_from else 0
        previous: GraphNode | None = None
        for offset, stage in enumerate(rollback):
            node = _node(stage, now, _x(start_column + offset), lane_y)
            nodes[stage.id] = node
            if previous is not None:
                edges.append(
                    GraphEdge(
                        previous.x + NODE_W,
                        previous.y + NODE_H // 2,
                        node.x,
                        node.y + NODE_H // 2,
                        rollback=True,
                    )
                )
            previous = node
        first = nodes[rollback[0].id]
        if branch_from is not None:
            edges.append(
                GraphEdge(
                    branch_from.x + NODE_W // 2,
                    branch_from.y + NODE_H,
                    first.x + NODE_W // 2,
                    first.y,
                    rollback=True,
                )
            )
            branch_label = (first.x + NODE_W // 2 + 6, first.y - _LANE_GAP // 2 + 4)
    drawn = tuple(nodes.values())
    width = max((n.x + NODE_W for n in drawn), default=0) + _MARGIN
    height = max((n.y + NODE_H for n in drawn), default=0) + _MARGIN
    return StageGraph(drawn, tuple(edges), width, height, branch_label)
