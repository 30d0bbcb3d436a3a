"""Projections: read models folded from the log, checkpointed in the same transaction.

`ProjectionRunner` keeps a projection live (`group.ProjectionGroup`, several
together: the projector's); `replay` rebuilds it from
position 0 into shadow tables and swaps them in; `default_projections` lists
the ones Slipway keeps. Readers query the views named after each table.
"""

from shared.projections.base import Projection
from shared.projections.catalog import default_projections
from shared.projections.errors import ProjectionOutdated, ReplayInProgress
from shared.projections.replay import ReplayResult, replay
from shared.projections.runner import ProjectionRunner
from shared.projections.state import ProjectionState, load_state

__all__ = [
    "Projection",
    "ProjectionOutdated",
    "ProjectionRunner",
    "ProjectionState",
    "ReplayInProgress",
    "ReplayResult",
    "default_projections",
    "load_state",
    "replay",
]
