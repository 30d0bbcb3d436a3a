"""Deployment chains (docs/chains.md): chains, their blocks and deployments, and the
listing's query.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta


class ChainDeploymentResource(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment of a chain block, with its status."""

    application_id: str
    deployment_id: str
    status: str
    """SUCCESS | FAILURE | CANCELLED once recorded; RUNNING while its block runs; PENDING before
    its block starts; SKIPPED when the chain ended before its block."""


class ChainBlockResource(msgspec.Struct, frozen=True, kw_only=True):
    """One block of a chain: its deployments run together."""

    index: int
    """0: the deployment that started the chain."""
    status: str
    """PENDING | RUNNING | SUCCESS | FAILURE | CANCELLED | SKIPPED."""
    deployments: list[ChainDeploymentResource]


class ChainResource(msgspec.Struct, frozen=True, kw_only=True):
    """A deployment chain, folded from its stream `chain-<id>`."""

    chain_id: str
    status: str
    """RUNNING | SUCCESS | FAILURE | CANCELLED."""
    reason: str
    origin_application_id: str
    origin_deployment_id: str
    cancelled_by: str | None
    blocks: list[ChainBlockResource]
    started_at: datetime | None = None


class ChainList(msgspec.Struct, frozen=True, kw_only=True):
    """`GET /chains`: a page of chains, newest first."""

    items: list[ChainResource]


class ListChainsQuery(msgspec.Struct, frozen=True, kw_only=True):
    """The query of `GET /chains`."""

    limit: Annotated[int, Meta(ge=1, le=100, description="At most this many, newest first.")] = 20


class ChainCancelled(msgspec.Struct, frozen=True, kw_only=True):
    """The chain was cancelled (or had been: `appended` false) and its running deployments."""

    chain_id: str
    appended: bool
    cancelled_deployments: list[str]
    """The deployments a cancel was asked for now."""
