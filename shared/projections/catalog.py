"""The projections Slipway keeps: what runners run and `slipway replay` rebuilds."""

from __future__ import annotations

from shared.projections.applications import ApplicationsProjection
from shared.projections.base import Projection, check_projection, check_unique
from shared.projections.deployments import DeploymentsProjection
from shared.projections.discovered import DiscoveredConfigsProjection
from shared.projections.insights import InsightsProjection
from shared.projections.stream_stats import StreamStatsProjection


def default_projections() -> list[Projection]:
    """A fresh instance of every projection, checked for clashing names and tables."""
    projections: list[Projection] = [
        ApplicationsProjection(),
        StreamStatsProjection(),
        DeploymentsProjection(),
        InsightsProjection(),
        DiscoveredConfigsProjection(),
    ]
    for projection in projections:
        check_projection(projection)
    check_unique(projections)
    return projections
