"""Following `GET /api/v1/events/stream` (Server-Sent Events), resuming with `Last-Event-ID`."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterable
from typing import Final

import aiohttp

from shared.events.outbound import Format
from slipway_subscriber.checkpoint import State
from slipway_subscriber.decode import from_http
from slipway_subscriber.received import Received

__all__ = ["SseSource"]

_PATH: Final = "/api/v1/events/stream"


class SseSource:
    """The API's event stream for one API key, with filters and a format.

    A dropped connection (or a server that restarts) is resumed from the
    last document received, after a back-off that doubles up to `max_backoff_s`.
    A 4xx answer (a bad key, a bad filter) is raised: retrying cannot fix it.
    """

    def __init__(
        self,
        api_url: str,
        api_key: str,
        *,
        categories: Iterable[str] = (),
        types: Iterable[str] = (),
        application: str = "",
        format: Format = "native",  # the API's parameter name
        after: str = "",
        read_timeout_s: float = 35.0,
        max_backoff_s: float = 5.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key
        self.params = {
            k: v
            for k, v in (
                ("category", ",".join(categories)),
                ("type", ",".join(types)),
                ("application", application),
                ("format", format),
            )
            if v
        }
        self.format = format
        self.after = after
        """Where a first start (no checkpoint) begins: "" the log's start, "head" now, or a
        cursor."""
        self.read_timeout_s = read_timeout_s
        self.max_backoff_s = max_backoff_s
        self.connections = 0

    async def follow(self, since: State) -> AsyncIterator[Received]:
        """Events after `since`, from the API's event stream, for ever (resuming after a drop)."""
        last = since.position.cursor if since.position is not None else ""
        backoff = 0.05
        timeout = aiohttp.ClientTimeout(total=None, sock_read=self.read_timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                headers = {"Authorization": f"Bearer {self.api_key}"}
                params = dict(self.params)
                if last:
                    headers["Last-Event-ID"] = last
                elif self.after:
                    params["after"] = self.after
                try:
                    async with http.get(
                        self.api_url + _PATH, params=params, headers=headers
                    ) as reply:
                        if 400 <= reply.status < 500:
                            raise ValueError(
                                f"{_PATH}: {reply.status} {(await reply.text())[:300]}"
                            )
                        reply.raise_for_status()
                        self.connections += 1
                        backoff = 0.05
                        async for cursor, document in _messages(reply.content):
                            received = from_http(cursor, self.format, document)
                            last = cursor
                            yield received
                except (aiohttp.ClientError, TimeoutError, ConnectionError):
                    pass  # resumed below, from `last`
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff_s)


async def _messages(
    content: aiohttp.StreamReader,
) -> AsyncIterator[tuple[str, dict[str, object]]]:
    """(id, JSON data) of each SSE message; comments (heartbeats) and others are skipped."""
    event_id = ""
    data: list[bytes] = []
    async for raw in content:
        line = raw.rstrip(b"\r\n")
        if not line:
            if data and event_id:
                parsed = json.loads(b"\n".join(data))
                if isinstance(parsed, dict):
                    yield event_id, parsed
            event_id, data = "", []
        elif line.startswith(b":"):
            continue
        elif line.startswith(b"id:"):
            event_id = line[3:].strip().decode()
        elif line.startswith(b"data:"):
            data.append(line[5:].lstrip(b" "))
    # The server closed the stream: the caller reconnects.
