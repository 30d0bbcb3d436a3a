"""Which deployment a request names, and the deployment now: shared by its reads, logs and
commands (`routes/deployments.py`, `deployment_reads.py`, `deployment_logs.py`).
"""

from __future__ import annotations

from typing import Final

from services.api import deployments as model
from services.api.decider import TargetNotFound
from services.api.deps import Deps
from services.api.errors import ErrorReply
from services.api.reads import view_query
from shared.errors import Unavailable
from shared.events.streams import deployment_stream
from shared.snapshots import read_state
from shared.stream_folds import DEPLOYMENT

# Ids are alphanumeric (checked before), so the prefix holds no LIKE wildcard.
_BY_PREFIX: Final = """
SELECT deployment_id FROM deployments WHERE deployment_id LIKE $1 || '%'
ORDER BY deployment_id LIMIT $2
"""
_MIN_PREFIX: Final = 4
"""Shorter prefixes are not looked up (as git): they name too many deployments to be meant."""
_SHOWN_CANDIDATES: Final = 5


def deployment_stream_of(deployment_id: str) -> str:
    """The stream of the deployment `deployment_id` names; 404 for what cannot be an id."""
    # Ids are lowercase ULIDs or hex; anything else cannot name a stream (and is no deployment).
    if (
        not deployment_id
        or len(deployment_id) > 64
        or not (deployment_id.isascii() and deployment_id.isalnum())
    ):
        raise TargetNotFound(f"no deployment {deployment_id!r}")
    return deployment_stream(deployment_id.lower())


async def resolve_deployment(api: Deps, ref: str) -> str:
    """The id of the deployment `ref` names: its id, or (as git) a unique prefix of one.

    Its own stream is looked at first, so a deployment just triggered, not yet
    in the read model, is found by its whole id; prefixes go through the
    `deployments` read model. An ambiguous prefix is a 400 naming some of the
    candidates; no match is left to the caller's 404.
    """
    stream = deployment_stream_of(ref)
    if len(ref) < _MIN_PREFIX or await api.store.read_stream(stream, limit=1):
        return ref.lower()
    try:
        async with view_query("find a deployment by prefix", "deployments read model"):
            rows = await api.pool.fetch(_BY_PREFIX, ref.lower(), _SHOWN_CANDIDATES + 1)
    except Unavailable:
        # No read model yet: whole ids still work (the stream was read above), and an
        # id that is not there yet stays a 404, which `wait-status` waits through.
        return ref.lower()
    if len(rows) == 1:
        return str(rows[0]["deployment_id"])
    if len(rows) > 1:
        shown = ", ".join(r["deployment_id"] for r in rows[:_SHOWN_CANDIDATES])
        more = ", …" if len(rows) > _SHOWN_CANDIDATES else ""
        raise ErrorReply(
            400,
            "ambiguous_id",
            f"deployment id prefix {ref!r} is ambiguous: {shown}{more}",
            field="deployment",
        )
    return ref.lower()


async def load_deployment(api: Deps, deployment_id: str) -> model.DeploymentView | None:
    """The deployment now: its newest snapshot and the events after it (`shared.snapshots`)."""
    return (await read_state(api.store, deployment_stream_of(deployment_id), DEPLOYMENT)).state
