"""A TCP proxy between a PostgreSQL client and server that can cut the connection on cue.

Fault injection for tests: the proxy splits what the client sends into
frontend protocol messages, and once armed it cuts the connection — closing
both sides — at the first message a trigger picks, either just *before*
forwarding it (the server never sees it) or just *after* (the server acts on
it, the client never hears back). What the server sends is copied through
unparsed until the cut, and dropped from then on.

It can also black-hole every connection (`black_hole`): they stay open, and
nothing passes either way — a network partition or a hung server as the
client sees it, where only its own timeouts help. `heal` ends it: the
connections it left are reset (their protocol streams lost bytes), new ones
pass again.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
from collections.abc import Callable
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

Trigger = Callable[[bytes, bytes], bool]
"""Called with (message type, message body) for each client message; True cuts there."""

# Untyped messages a client may send before its StartupMessage (protocol 3.0).
_SSL_REQUEST = 80877103
_GSSENC_REQUEST = 80877104
_PROTOCOL_3 = 196608


def query_contains(text: bytes) -> Trigger:
    """A simple-protocol Query whose SQL contains `text` (asyncpg sends COMMIT this way)."""
    return lambda kind, body: kind == b"Q" and text in body.upper()


def sync_after_executing(sql: bytes) -> Trigger:
    """The Sync after an Execute of a statement whose SQL contains `sql`.

    That Sync is where an autocommit statement commits. Arm before the statement
    is first prepared on the connection: its Parse names it, its Binds refer to it.
    """
    names: set[bytes] = set()
    bound = executed = False

    def trigger(kind: bytes, body: bytes) -> bool:
        nonlocal bound, executed
        if kind == b"P":
            name, query = body.split(b"\0", 2)[:2]
            if sql in query:
                names.add(name)
        elif kind == b"B":
            bound = body.split(b"\0", 2)[1] in names
        elif kind == b"E":
            executed = executed or bound
        return kind == b"S" and executed

    return trigger


class ExecutionCounter:
    """A trigger that cuts nothing and counts executions of the prepared statements whose SQL
    contains every one of `fragments` (arm it before they are first prepared)."""

    def __init__(self, *fragments: bytes) -> None:
        self.fragments = fragments
        self.names: set[bytes] = set()
        self.executions = 0
        self._bound = False

    def __call__(self, kind: bytes, body: bytes) -> bool:
        if kind == b"P":
            name, query = body.split(b"\0", 2)[:2]
            if all(fragment in query for fragment in self.fragments):
                self.names.add(name)
        elif kind == b"B":
            self._bound = body.split(b"\0", 2)[1] in self.names
        elif kind == b"E" and self._bound:
            self.executions += 1
            self._bound = False
        return False


class _FrontendMessages:
    """Splits the client's byte stream into whole frontend messages."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._started = False

    def feed(self, data: bytes) -> list[tuple[bytes, bytes, bytes]]:
        """Whole messages now available, as (type, body, raw bytes); type is b"" before startup."""
        self._buffer += data
        messages = []
        while True:
            header = 4 if not self._started else 5
            if len(self._buffer) < header:
                break
            if self._started:
                kind = bytes(self._buffer[:1])
                (length,) = struct.unpack("!I", self._buffer[1:5])
                size = 1 + length
            else:
                kind = b""
                (length,) = struct.unpack("!I", self._buffer[:4])
                size = length
            if len(self._buffer) < size:
                break
            raw = bytes(self._buffer[:size])
            del self._buffer[:size]
            if not self._started:
                (code,) = struct.unpack("!I", raw[4:8])
                self._started = code == _PROTOCOL_3
                body = raw[8:]
            else:
                body = raw[5:]
            messages.append((kind, body, raw))
        return messages


class PostgresCutProxy:
    """Listens on 127.0.0.1:`port` and forwards each connection to the upstream server."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.port = 0
        self.cut = asyncio.Event()
        """Set once the proxy has cut a connection."""
        self.server_hung_up = asyncio.Event()
        """Set once the server has closed its end of the cut connection: the session is over,
        so whatever the cut interrupted has been committed or rolled back for good."""
        self.refusing = False
        """While set, each new connection is closed at once (the server looks down)."""
        self.swallowing = False
        """While set, nothing passes in either direction (see `black_hole`)."""
        self.swallowed = asyncio.Event()
        """Set once a client message was swallowed: a client is waiting on the black hole."""
        self._server: asyncio.Server | None = None
        self._trigger: Trigger | None = None
        self._when: Literal["before", "after"] = "after"
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    def url(self, url: str) -> str:
        """`url` (postgresql://user@host:port/db) with host and port pointing at this proxy."""
        parts = urlsplit(url)
        user = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
        return urlunsplit(parts._replace(netloc=f"{user}127.0.0.1:{self.port}"))

    def arm(self, trigger: Trigger, *, when: Literal["before", "after"]) -> None:
        """Cut the next connection that sends a message `trigger` picks, before or after it."""
        self.cut.clear()
        self.server_hung_up.clear()
        self._trigger = trigger
        self._when = when

    def black_hole(self) -> None:
        """From now on, every connection (open or new) stays open and nothing passes."""
        self.swallowing = True

    def heal(self) -> None:
        """End the black hole: reset the connections it swallowed bytes of; new ones pass."""
        self.swallowing = False
        for writer in list(self._writers):
            writer.close()

    async def start(self) -> PostgresCutProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> PostgresCutProxy:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.refusing:
            client_w.close()
            return
        server_r, server_w = await asyncio.open_connection(*self.upstream)
        self._writers |= {client_w, server_w}
        cut = False

        async def to_server() -> None:
            nonlocal cut
            messages = _FrontendMessages()
            while data := await client_r.read(65536):
                if self.swallowing:
                    self.swallowed.set()
                    continue
                for kind, body, raw in messages.feed(data):
                    if self._trigger is not None and kind and self._trigger(kind, body):
                        cut, self._trigger = True, None
                        if self._when == "after":
                            server_w.write(raw)
                            await server_w.drain()
                        client_w.close()
                        # FIN after the bytes forwarded above: the server reads and acts on
                        # all of them before it sees the connection end.
                        server_w.write_eof()
                        self.cut.set()
                        return
                    server_w.write(raw)
                await server_w.drain()

        async def to_client() -> None:
            # After a cut, keep reading (and dropping) until the server hangs up.
            while data := await server_r.read(65536):
                if not cut and not self.swallowing:
                    client_w.write(data)
                    await client_w.drain()
            if cut:
                self.server_hung_up.set()

        pumps = [asyncio.create_task(to_server()), asyncio.create_task(to_client())]
        self._tasks.update(pumps)
        try:
            # Either side closing ends both directions, except that after a cut the
            # server gets to finish what it was sent.
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            if cut:
                await asyncio.wait([pumps[1]])
        finally:
            for pump in pumps:
                pump.cancel()
            for pump in pumps:
                with contextlib.suppress(asyncio.CancelledError, ConnectionError):
                    await pump
            self._tasks.difference_update(pumps)
            for writer in (client_w, server_w):
                writer.close()
                self._writers.discard(writer)
