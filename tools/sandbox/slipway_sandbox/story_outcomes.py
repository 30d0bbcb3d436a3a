"""A deployment's and a chain's events as the outcomes the story judges (pure): what
`storyrunner` reads from the log, folded for `story.judge`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Final

from shared import deployments
from shared.chains import CHAIN
from shared.decider import fold
from shared.deployments import StageStatus
from shared.events.base import Event
from slipway_sandbox.story import ChainedDeployment, ChainOutcome, DeploymentOutcome, StageOutcome


def fold_deployment(deployment_id: str, events: Sequence[Event]) -> DeploymentOutcome:
    """A deployment's stream (`deployment-<id>`) as the outcome the story judges (pure).

    The stages are those that ran (or were skipped), in plan order; the reason is
    why it completed, once it has (before, `shared.deployments` gives why it was
    planned so, which would only mislead a verdict on a deployment not done in time).
    """
    state = deployments.fold(enumerate(events))
    return DeploymentOutcome(
        deployment_id=deployment_id,
        status=str(state.status),
        strategy=state.strategy,
        commit_hash=state.commit_hash,
        stages=tuple(
            StageOutcome(s.name, str(s.status), s.reason)
            for s in state.stages
            if s.status is not StageStatus.NOT_STARTED_YET
        ),
        rolled_back=state.rolled_back,
        reason=state.reason if state.completed else "",
    )


def fold_chain(events: Sequence[Event], names: Mapping[str, str]) -> ChainOutcome | None:
    """A chain's stream (`chain-<id>`) as the outcome the story judges, its applications
    named by `names` (application id → name); None before it started (pure). The live
    fields are the runner's to fill."""
    state = fold(CHAIN, events)
    if not state.chain_id:
        return None
    return ChainOutcome(
        chain_id=state.chain_id,
        status=state.status,
        reason=state.reason,
        deployments=tuple(
            ChainedDeployment(
                block=index,
                app=names.get(node.application_id, node.application_id),
                deployment_id=node.deployment_id,
                status=state.outcomes.get(node.deployment_id, ""),
            )
            for index, node in state.triggered_nodes()
        ),
    )


FINAL_STATUSES: Final = frozenset({"SUCCESS", "FAILURE", "CANCELLED"})
