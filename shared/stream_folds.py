"""The folds whose states are kept as snapshots of long streams (`shared/snapshots.py`).

A `StreamFold` says how one category of stream folds from its recorded events,
starting from a state folded before (a snapshot) or from nothing, and what type
that state decodes as. Its `code_version` names the fold's shape: the state
type's JSON Schema (every field, type and default, nested types included) and
an explicit `revision`, which a change to what the fold *does* with the same
fields must bump. A snapshot written by another `code_version` is not read.

Pure: no I/O, clock or logging.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Final, Generic, TypeVar

import msgspec

from shared.applications import RecordedApplication, fold_recorded
from shared.deployments import Deployment, fold_history
from shared.events.base import RecordedEvent

__all__ = ["APPLICATION", "BY_CATEGORY", "DEPLOYMENT", "StreamFold"]

S = TypeVar("S")


@dataclass(frozen=True)
class StreamFold(Generic[S]):
    """How a category of stream folds, for snapshots of its long streams."""

    kind: str
    """The fold's name, stored with its snapshots (the stream's category)."""
    state_type: type[S]
    fold: Callable[[str, S | None, Sequence[RecordedEvent]], S | None]
    """(stream id, the state so far or None, the events after it) → the state after them;
    None when nothing was folded at all. It must not change the state it is given."""
    revision: int = 1
    """Bump when the fold treats events differently but its state type stays the same."""
    _decoder: msgspec.json.Decoder[S] = field(init=False, repr=False, compare=False)
    _code_version: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        schema = json.dumps(msgspec.json.schema(self.state_type), sort_keys=True)
        digest = hashlib.sha256(f"{self.kind}:{self.revision}:{schema}".encode()).hexdigest()
        object.__setattr__(self, "_decoder", msgspec.json.Decoder(self.state_type))
        object.__setattr__(self, "_code_version", f"{self.revision}-{digest[:16]}")

    @property
    def code_version(self) -> str:
        """The revision and a digest of the state type's shape: what a snapshot must match."""
        return self._code_version

    def encode(self, state: S) -> bytes:
        """The state as stored in a snapshot."""
        return msgspec.json.encode(state)

    def decode(self, stored: bytes) -> S:
        """A snapshot's state; `msgspec.DecodeError` (or `ValidationError`) when corrupt."""
        return self._decoder.decode(stored)


def _deployment(
    stream_id: str, state: Deployment | None, history: Sequence[RecordedEvent]
) -> Deployment | None:
    return fold_history(stream_id.removeprefix("deployment-"), history, state)


def _application(
    _stream_id: str, state: RecordedApplication | None, history: Sequence[RecordedEvent]
) -> RecordedApplication | None:
    return fold_recorded(history, state)


DEPLOYMENT: Final = StreamFold[Deployment]("deployment", Deployment, _deployment)
"""`shared.deployments.fold_history`: `GET /deployments/{id}` and a deployment's state."""
APPLICATION: Final = StreamFold[RecordedApplication](
    "application", RecordedApplication, _application
)
"""`shared.applications.fold_recorded`: an application stream's state (its syncs make it long)."""

BY_CATEGORY: Final[dict[str, StreamFold[Deployment] | StreamFold[RecordedApplication]]] = {
    DEPLOYMENT.kind: DEPLOYMENT,
    APPLICATION.kind: APPLICATION,
}
"""The snapshotted folds by stream category (`shared.streams.category_of`)."""
