"""Where a subscriber has got to: a position in the log's commit order and recent event ids.

A `Position` is the same whichever way the events came (NATS headers or an
SSE event id), so a subscriber that fell behind NATS's replay window can
read over HTTP from its checkpoint and switch back. `FileCheckpoint` keeps
it in a small JSON file, replaced atomically (write, fsync, rename), so a
kill at any instant leaves the old state or the new one, never half of each.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Final, Protocol

import msgspec

__all__ = ["LAST_PART", "Checkpoint", "FileCheckpoint", "MemoryCheckpoint", "Position", "State"]

LAST_PART: Final = 2**31 - 1
"""The part number of an event's last (or only) document."""


class Position(msgspec.Struct, frozen=True, order=True):
    """(tx_id, global_position, part): commit order, then the document within the event
    (a Slipway event may map to several CDEvents; SSE ids `<tx>:<pos>/<part>` name them)."""

    tx_id: int
    global_position: int
    part: int = LAST_PART

    @property
    def cursor(self) -> str:
        """The SSE id / HTTP cursor that resumes right after this document."""
        base = f"{self.tx_id}:{self.global_position}"
        return base if self.part == LAST_PART else f"{base}/{self.part}"

    @classmethod
    def parse(cls, cursor: str) -> Position:
        """A cursor `<tx>:<pos>` or `<tx>:<pos>/<part>`; ValueError naming it otherwise."""
        head, _, part = cursor.partition("/")
        tx, sep, position = head.partition(":")
        if not (sep and tx.isdigit() and position.isdigit() and (not part or part.isdigit())):
            raise ValueError(f"not an event cursor: {cursor[:80]!r} (want <tx_id>:<position>)")
        return cls(int(tx), int(position), int(part) if part else LAST_PART)


class State(msgspec.Struct, kw_only=True):
    """What a checkpoint holds."""

    position: Position | None = None
    stream_sequence: int = 0
    """NATS: the events stream's sequence of the last message handled (0: none)."""
    recent_ids: list[str] = msgspec.field(default_factory=list)
    """The ids handled last (bounded), to drop a repeat that comes with a new position."""


class Checkpoint(Protocol):
    """Where a subscriber keeps its position between runs."""

    def load(self) -> State:
        """The saved position (the beginning when nothing is saved)."""

    def save(self, state: State) -> None:
        """Keep `state` so that a restart resumes after it."""


class MemoryCheckpoint:
    """A checkpoint that lives as long as the process (tests, one-off scripts)."""

    def __init__(self) -> None:
        self.state = State()

    def load(self) -> State:
        """The position kept in memory."""
        return _copy(self.state)

    def save(self, state: State) -> None:
        """Keep a copy of `state` in memory."""
        self.state = _copy(state)


class FileCheckpoint:
    """A checkpoint in a JSON file; `fsync=False` trades a crash's last saves for speed."""

    def __init__(self, path: str | os.PathLike[str], *, fsync: bool = True) -> None:
        self.path = Path(path)
        self.fsync = fsync
        self._encoder = msgspec.json.Encoder()

    def load(self) -> State:
        """The position in the file (the beginning when there is no file yet)."""
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return State()
        try:
            return msgspec.json.decode(raw, type=State)
        except msgspec.DecodeError as exc:
            raise ValueError(f"{self.path}: not a subscriber checkpoint: {exc}") from None

    def save(self, state: State) -> None:
        """Write `state` to a temporary file, renamed over the checkpoint (never half-written)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".checkpoint-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(self._encoder.encode(state))
                if self.fsync:
                    out.flush()
                    os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise


def _copy(state: State) -> State:
    return State(
        position=state.position,
        stream_sequence=state.stream_sequence,
        recent_ids=list(state.recent_ids),
    )
