"""Reading what a remote HTTP server answers, never more than a cap.

A body comes from a server Slipway does not control (Prometheus, a target an
HTTP check names, a notification receiver): it may be any size, or never end.
It is read in pieces as it arrives, and at most `limit` bytes are ever held;
the rest is never read (the connection is closed with the response).
"""

from __future__ import annotations

import aiohttp

__all__ = ["read_up_to"]


async def read_up_to(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """At most `limit` bytes of the body, read as they come (ask for `limit + 1` to learn
    whether there was more)."""
    body = bytearray()
    while len(body) < limit:
        chunk = await response.content.read(limit - len(body))
        if not chunk:
            break
        body += chunk
    return bytes(body)
