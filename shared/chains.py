"""Deployment chains as a fold of their stream `chain-<id>`, and the decider that writes it (pure).

A deployment whose config has `postSync.chain` starts a chain when it
succeeds: block 0 is that deployment, block k holds the applications the
k-th matcher of `postSync.chain.applications` found (by name, kind and
labels; only applications with `trigger.onChain.disabled: false`). Blocks run
one after another, every deployment of a block at once; a block succeeds when
all its deployments did. The first FAILURE (or CANCELLED) ends the chain with
that status and later blocks never start. Cancelling a chain ends it
CANCELLED; its shell then cancels the deployments still running.

The gitwatcher runs the decider (`services/gitwatcher/chains.py`): it starts
chains, records each chained deployment's outcome and opens the deployments
of a block once it starts. The API folds the stream for `GET /chains/{id}` and
cancels through the same decider. docs/chains.md compares this with PipeCD.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Final

from shared.decider import Functions, fold
from shared.errors import Rejected
from shared.events.base import Event
from shared.events.catalog import (
    ChainBlock,
    ChainBlockStarted,
    ChainCancelRequested,
    ChainCompleted,
    ChainDeploymentFinished,
    ChainNode,
    ChainStarted,
)
from shared.events.ids import on_chain_deployment_id
from shared.events.vocabulary import DeploymentStatus

__all__ = [
    "CHAIN",
    "CancelChain",
    "ChainState",
    "RecordOutcome",
    "StartChain",
    "kind_matches",
    "matches",
]

RUNNING: Final = "RUNNING"
PENDING: Final = "PENDING"
SKIPPED: Final = "SKIPPED"
"""A block the chain ended before reaching."""
_FINAL: Final = frozenset({"SUCCESS", "FAILURE", "CANCELLED"})


@dataclass(frozen=True)
class ChainState:
    """What `chain-<id>` says; `status` "" means no chain was started on it."""

    chain_id: str = ""
    origin_deployment_id: str = ""
    origin_application_id: str = ""
    blocks: tuple[ChainBlock, ...] = ()
    started: int = 0
    """How many blocks have started (block 0 with the chain)."""
    outcomes: Mapping[str, str] = field(default_factory=dict)
    """deployment id → SUCCESS | FAILURE | CANCELLED, as recorded."""
    status: str = ""
    reason: str = ""
    cancelled_by: str | None = None

    def block_status(self, index: int) -> str:
        """PENDING | RUNNING | SUCCESS | FAILURE | CANCELLED, or SKIPPED once the chain ended."""
        if index >= self.started:
            return SKIPPED if self.status in _FINAL else PENDING
        seen = [self.outcomes.get(node.deployment_id) for node in self.blocks[index].nodes]
        for bad in ("FAILURE", "CANCELLED"):
            if bad in seen:
                return bad
        if all(status == "SUCCESS" for status in seen):
            return "SUCCESS"
        return RUNNING

    def running_deployments(self) -> list[ChainNode]:
        """The deployments of started blocks without an outcome yet."""
        return [
            node
            for block in self.blocks[: self.started]
            for node in block.nodes
            if node.deployment_id not in self.outcomes
        ]

    def triggered_nodes(self) -> list[tuple[int, ChainNode]]:
        """The deployments the chain opened itself (blocks 1 and later that started)."""
        return [
            (block.index, node) for block in self.blocks[1 : self.started] for node in block.nodes
        ]

    def block_of(self, deployment_id: str) -> int | None:
        """The index of the block holding `deployment_id`; None if it is not in the chain."""
        for block in self.blocks:
            if any(node.deployment_id == deployment_id for node in block.nodes):
                return block.index
        return None


@dataclass(frozen=True)
class StartChain:
    """Start the chain of a deployment that succeeded; `matched[k]` are the application ids the
    k-th matcher found, in order (empty matchers and repeats are dropped)."""

    chain_id: str
    origin_deployment_id: str
    origin_application_id: str
    matched: Sequence[Sequence[str]]


@dataclass(frozen=True)
class RecordOutcome:
    """A deployment of the chain finished."""

    deployment_id: str
    status: str


@dataclass(frozen=True)
class CancelChain:
    """Cancel the chain (and, through the shell, the deployments it still runs)."""

    commander: str = ""


ChainCommand = StartChain | RecordOutcome | CancelChain


def evolve(state: ChainState, event: Event) -> ChainState:
    match event:
        case ChainStarted():
            return ChainState(
                chain_id=event.chain_id,
                origin_deployment_id=event.origin_deployment_id,
                origin_application_id=event.origin_application_id,
                blocks=event.blocks,
                started=1,
                status=RUNNING,
            )
        case ChainBlockStarted():
            return replace(state, started=max(state.started, event.index + 1))
        case ChainDeploymentFinished():
            return replace(state, outcomes={**state.outcomes, event.deployment_id: event.status})
        case ChainCancelRequested():
            return replace(state, cancelled_by=event.commander)
        case ChainCompleted():
            return replace(state, status=str(event.status), reason=event.reason)
        case _:
            return state


def decide(state: ChainState, command: ChainCommand) -> list[Event]:
    match command:
        case StartChain():
            return _start(state, command)
        case RecordOutcome():
            return _record(state, command)
        case CancelChain():
            return _cancel(state, command)


def _start(state: ChainState, command: StartChain) -> list[Event]:
    if state.status:
        return []  # started already: a completion delivered twice
    chain_id = command.chain_id
    seen = {command.origin_application_id}
    blocks = [
        ChainBlock(
            index=0,
            nodes=(
                ChainNode(
                    application_id=command.origin_application_id,
                    deployment_id=command.origin_deployment_id,
                ),
            ),
        )
    ]
    for applications in command.matched:
        fresh = [app for app in dict.fromkeys(applications) if app not in seen]
        seen.update(fresh)
        if fresh:
            nodes = tuple(
                ChainNode(application_id=app, deployment_id=on_chain_deployment_id(chain_id, app))
                for app in fresh
            )
            blocks.append(ChainBlock(index=len(blocks), nodes=nodes))
    events: list[Event] = [
        ChainStarted(
            chain_id=chain_id,
            origin_deployment_id=command.origin_deployment_id,
            origin_application_id=command.origin_application_id,
            blocks=tuple(blocks),
        ),
        ChainDeploymentFinished(
            chain_id=chain_id,
            deployment_id=command.origin_deployment_id,
            status=DeploymentStatus.SUCCESS,
        ),
    ]
    return events + _advance(fold(CHAIN, events, state))


def _record(state: ChainState, command: RecordOutcome) -> list[Event]:
    index = state.block_of(command.deployment_id)
    if (
        not state.status
        or index is None
        or index >= state.started
        or command.deployment_id in state.outcomes
        or command.status not in _FINAL
    ):
        return []
    finished = ChainDeploymentFinished(
        chain_id=state.chain_id,
        deployment_id=command.deployment_id,
        status=DeploymentStatus(command.status),
    )
    if state.status != RUNNING:
        return [finished]  # a deployment still running when the chain ended: kept for the record
    return [finished, *_advance(evolve(state, finished))]


def _advance(state: ChainState) -> list[Event]:
    """What the chain does next once its current block has changed."""
    current = state.started - 1
    status = state.block_status(current)
    if status == RUNNING:
        return []
    if status != "SUCCESS":
        failed = next(
            node
            for node in state.blocks[current].nodes
            if state.outcomes.get(node.deployment_id) == status
        )
        reason = (
            f"block {current}: deployment {failed.deployment_id} of application "
            f"{failed.application_id} ended {status}; later blocks were not started"
        )
        return [
            ChainCompleted(
                chain_id=state.chain_id,
                status=DeploymentStatus(status),
                reason=reason,
                application_id=state.origin_application_id,
                deployment_id=state.origin_deployment_id,
            )
        ]
    if state.started < len(state.blocks):
        return [ChainBlockStarted(chain_id=state.chain_id, index=state.started)]
    return [
        ChainCompleted(
            chain_id=state.chain_id,
            status=DeploymentStatus.SUCCESS,
            reason=f"all {len(state.blocks)} blocks succeeded",
            application_id=state.origin_application_id,
            deployment_id=state.origin_deployment_id,
        )
    ]


def _cancel(state: ChainState, command: CancelChain) -> list[Event]:
    if not state.status:
        raise Rejected("no such chain")
    if state.status == "CANCELLED":
        return []
    if state.status != RUNNING:
        raise Rejected(f"the chain has ended ({state.status}): nothing to cancel")
    who = command.commander or "someone"
    return [
        ChainCancelRequested(chain_id=state.chain_id, commander=command.commander),
        ChainCompleted(
            chain_id=state.chain_id,
            status=DeploymentStatus.CANCELLED,
            reason=f"cancelled by {who}; its running deployments are cancelled",
            application_id=state.origin_application_id,
            deployment_id=state.origin_deployment_id,
        ),
    ]


CHAIN: Final = Functions[ChainState, ChainCommand](ChainState(), evolve, decide)


# Which applications a matcher finds ------------------------------------------------------


def kind_matches(wanted: str, kind: str) -> bool:
    """PipeCD's kinds (`KUBERNETES`) and config kinds (`KubernetesApp`) name the same thing."""

    def norm(text: str) -> str:
        text = text.strip().upper()
        return text.removesuffix("APP") if text != "APP" else text

    return norm(wanted) == norm(kind)


def matches(
    *,
    name: str,
    kind: str,
    labels: Mapping[str, str],
    app_name: str,
    app_kind: str,
    app_labels: Mapping[str, str],
) -> bool:
    """Whether an application fits a matcher: every field the matcher sets must agree."""
    if name and name != app_name:
        return False
    if kind and not kind_matches(kind, app_kind):
        return False
    return all(app_labels.get(key) == value for key, value in labels.items())
