"""`ReplayMemory`: what a replay's fold wrote to its shadow tables, kept across windows.

Until the swap, a replay is the only writer of the tables it builds, so a fold
that reads back rows it wrote itself (the `applications` projection's sync
states: with 10,000 applications each window of the log touches thousands)
can remember them instead. What a transaction wrote counts only once it has
committed: the replay calls `commit` after each of its transactions and
`rollback` when one fails (a window's, or a swap attempt whose catch-up was
rolled back on a lock timeout), so the memory never holds a row the table
does not. A key not remembered is read from the table as before; the memory
stops taking new keys at `limit`, which bounds it whatever the log holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

__all__ = ["NOTHING_REMEMBERED", "NOT_REMEMBERED", "Remembering", "ReplayMemory"]

K = TypeVar("K")
V = TypeVar("V")


class _NotRemembered:
    def __repr__(self) -> str:
        return "NOT_REMEMBERED"


NOT_REMEMBERED = _NotRemembered()
"""`ReplayMemory.get` of a key it does not know: read the table."""


class Remembering(Protocol):
    """What `Projection.remember_writes` gives the replay: told each transaction's outcome."""

    def commit(self) -> None:
        """The replay's open transaction committed."""

    def rollback(self) -> None:
        """The replay's open transaction rolled back."""

    def close(self) -> None:
        """The replay is done with the tables (they go live, or are dropped): forget all."""


class _Nothing:
    def commit(self) -> None:
        pass

    def rollback(self) -> None:
        pass

    def close(self) -> None:
        pass


NOTHING_REMEMBERED: Remembering = _Nothing()
"""A projection that reads nothing back remembers nothing."""


class ReplayMemory(Generic[K, V]):
    """Committed values by key, and the open transaction's changes on top of them."""

    def __init__(self, limit: int, on_close: Callable[[], object] = lambda: None) -> None:
        self.limit = limit
        self._on_close = on_close
        self._committed: dict[K, V] = {}
        self._pending: dict[K, V] = {}

    def get(self, key: K) -> V | _NotRemembered:
        """The value of `key` as the open transaction sees it, or `NOT_REMEMBERED`."""
        if key in self._pending:
            return self._pending[key]
        return self._committed.get(key, NOT_REMEMBERED)

    def put(self, key: K, value: V) -> None:
        """`key`'s value as the open transaction wrote (or read) it."""
        self._pending[key] = value

    def forget(self, key: K) -> None:
        """Read `key` from the table again (from the next transaction on, and in this one)."""
        self._pending.pop(key, None)
        self._committed.pop(key, None)

    def commit(self) -> None:
        """The open transaction committed: its values are the table's."""
        for key, value in self._pending.items():
            if key in self._committed or len(self._committed) < self.limit:
                self._committed[key] = value
        self._pending.clear()

    def rollback(self) -> None:
        """The open transaction rolled back: forget what it wrote."""
        self._pending.clear()

    def close(self) -> None:
        """Forget everything; the owner stops using this memory."""
        self._committed.clear()
        self._pending.clear()
        self._on_close()
