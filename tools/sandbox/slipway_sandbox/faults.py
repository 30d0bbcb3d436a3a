"""Fault injection against real servers and processes: the chaos run's and the fault tests' tools.

Nothing here is a mock. A `FaultProxy` is a plain TCP proxy that services are
pointed at instead of PostgreSQL, NATS or kubesim; while it passes traffic it
is invisible, and on cue it

- adds latency to every chunk in both directions (order is kept);
- black-holes traffic: connections stay open and new ones are accepted, but
  nothing passes in either direction until it heals (what arrived meanwhile
  is then delivered, as TCP would after a partition that its retransmissions
  outlived);
- resets every open connection (RST to both ends, as a crashed middlebox or
  a restarted load balancer does).

`signal_process` sends `kill -9`, SIGSTOP and SIGCONT to a service process;
`PostgresServer.restart` and `NatsServer.restart` restart the servers
themselves on the same port and data.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import struct
from collections.abc import Callable
from typing import Final

Observer = Callable[[bytes], None]
"""Called with each chunk a client sends on one connection (before any fault applies)."""

_READ_SIZE: Final = 65536
_LINGER_RST: Final = struct.pack("ii", 1, 0)
"""SO_LINGER on with a 0 s timeout: close() sends RST instead of FIN."""


class _Connection:
    """One proxied connection: the client's and the upstream's stream pairs."""

    def __init__(
        self,
        client: tuple[asyncio.StreamReader, asyncio.StreamWriter],
        upstream: tuple[asyncio.StreamReader, asyncio.StreamWriter],
    ) -> None:
        self.client_r, self.client_w = client
        self.upstream_r, self.upstream_w = upstream

    def reset(self) -> None:
        for writer in (self.client_w, self.upstream_w):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RST)
            writer.transport.abort()


class FaultProxy:
    """Listens on 127.0.0.1:`port` and forwards each connection to 127.0.0.1:`upstream_port`."""

    def __init__(
        self,
        upstream_port: int,
        *,
        name: str = "",
        observer: Callable[[], Observer] | None = None,
    ) -> None:
        """`observer`: makes, for each new connection, the function that sees what its client
        sends (the chaos run reads kubesim's requests from it)."""
        self.upstream_port = upstream_port
        self.name = name or f"proxy→{upstream_port}"
        self.port = 0
        self.latency_s = 0.0
        self.resets = 0
        """Connections reset so far."""
        self.accepted = 0
        """Connections clients opened so far (whether or not the upstream took them)."""
        self._observer = observer
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._connections: set[_Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def black_holed(self) -> bool:
        """Whether traffic is held (a black hole) rather than passed."""
        return not self._flowing.is_set()

    def add_latency(self, seconds: float) -> None:
        """Delay every chunk, both ways, by `seconds` (0: none) until `heal`."""
        if seconds < 0:
            raise ValueError(f"{self.name}: latency must not be negative, not {seconds}")
        self.latency_s = seconds

    def black_hole(self) -> None:
        """Let nothing through, on open and on new connections, until `heal`."""
        self._flowing.clear()

    def heal(self) -> None:
        """Back to passing traffic as it comes."""
        self.latency_s = 0.0
        self._flowing.set()

    def reset_connections(self) -> int:
        """RST every open connection at both ends; how many there were."""
        connections = list(self._connections)
        for connection in connections:
            connection.reset()
        self._connections.difference_update(connections)
        self.resets += len(connections)
        return len(connections)

    async def start(self) -> FaultProxy:
        """Listen on `port` (0: any free one, then recorded) and start forwarding."""
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        """Heal, cut every connection and stop listening."""
        self.heal()
        if self._server is not None:
            self._server.close()
        self.reset_connections()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._server.wait_closed(), 5)

    async def __aenter__(self) -> FaultProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.accepted += 1
        try:
            # A black hole holds new connections open too, without reaching the server.
            await self._flowing.wait()
            try:
                upstream = await asyncio.open_connection("127.0.0.1", self.upstream_port)
            except OSError:
                client_w.transport.abort()  # the server is down: the client sees a refusal
                return
            connection = _Connection((client_r, client_w), upstream)
            self._connections.add(connection)
            observe = self._observer() if self._observer is not None else None
            pumps = [
                asyncio.create_task(self._pump(client_r, connection.upstream_w, observe)),
                asyncio.create_task(self._pump(connection.upstream_r, client_w, None)),
            ]
            try:
                await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for pump in pumps:
                    pump.cancel()
                await asyncio.gather(*pumps, return_exceptions=True)
                self._connections.discard(connection)
                for writer in (client_w, connection.upstream_w):
                    writer.close()
        finally:
            self._tasks.discard(task)

    async def _pump(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, observe: Observer | None
    ) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(_READ_SIZE):
                if observe is not None:
                    observe(data)
                if self.latency_s:
                    await asyncio.sleep(self.latency_s)  # the fault itself, not a wait for it
                await self._flowing.wait()
                writer.write(data)
                await writer.drain()
            # The sender closed its side: pass the FIN on.
            if writer.can_write_eof():
                writer.write_eof()


def signal_process(pid: int, sig: signal.Signals) -> bool:
    """Send `sig` (SIGKILL, SIGSTOP, SIGCONT) to `pid`; False if it had already exited."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        return False
    return True
