"""Deployment chains (stream `chain-<chain_id>`; `shared/chains.py` folds them)."""

from __future__ import annotations

import msgspec

from shared.events.base import Event
from shared.events.vocabulary import (
    DeploymentStatus,
)


class ChainNode(msgspec.Struct, frozen=True, kw_only=True):
    """One application of a chain's block, and the deployment the chain opens for it."""

    application_id: str
    deployment_id: str


class ChainBlock(msgspec.Struct, frozen=True, kw_only=True):
    """The applications of one block of a chain: they deploy at once, after the block before."""

    index: int  # 0: the deployment that started the chain
    nodes: tuple[ChainNode, ...]


class ChainStarted(Event, tag="chain_started", frozen=True):
    """A deployment with `postSync.chain` succeeded: its chain, with the applications each
    matcher found (block 0 is that deployment, block k the k-th matcher's applications)."""

    chain_id: str
    origin_deployment_id: str
    origin_application_id: str
    blocks: tuple[ChainBlock, ...]


class ChainBlockStarted(Event, tag="chain_block_started", frozen=True):
    """Every deployment of the blocks before succeeded: this block's deployments are opened."""

    chain_id: str
    index: int


class ChainDeploymentFinished(Event, tag="chain_deployment_finished", frozen=True):
    """A deployment of the chain reached a final status."""

    chain_id: str
    deployment_id: str
    status: DeploymentStatus  # SUCCESS | FAILURE | CANCELLED


class ChainCancelRequested(Event, tag="chain_cancel_requested", frozen=True):
    """Someone cancelled the chain; the deployments it still runs are cancelled too."""

    chain_id: str
    commander: str = ""


class ChainCompleted(Event, tag="chain_completed", frozen=True):
    """The chain ended: SUCCESS (every block), FAILURE (a deployment failed: later blocks
    never start), or CANCELLED (cancelled, or one of its deployments was)."""

    chain_id: str
    status: DeploymentStatus  # SUCCESS | FAILURE | CANCELLED
    reason: str = ""
    # The chain's origin, under the names the notifier routes and describes an event by.
    application_id: str = ""
    deployment_id: str = ""
