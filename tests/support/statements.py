"""Counting the statements a pool's connections send PostgreSQL (asyncpg's query loggers)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg


@dataclass
class StatementLog:
    """Every statement of a pool's connections, in order: pass `setup` to `create_pool`."""

    queries: list[str] = field(default_factory=list)
    _logging: set[int] = field(default_factory=set)

    async def setup(self, conn: asyncpg.Connection) -> None:
        """Called at every acquire: one logger per server connection."""
        if (pid := conn.get_server_pid()) not in self._logging:
            self._logging.add(pid)
            conn.add_query_logger(lambda logged: self.queries.append(logged.query))
