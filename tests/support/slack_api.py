"""A local stand-in for Slack's Web API `chat.postMessage`, strict about Slack's shapes.

It answers as Slack does: HTTP 200 with `{"ok": true, "channel", "ts", "message"}`
for a good request, and HTTP 200 with `{"ok": false, "error": …}` for a bad one —
`not_authed` (no bearer token), `invalid_auth` (another token), `channel_not_found`,
`invalid_blocks` (no text/blocks), `thread_not_found` (a `thread_ts` it never
issued), `invalid_json`; its first `rate_limited` requests get HTTP 429 with
`Retry-After: 1` (Slack's rate limit). Posted messages are kept in `posted`.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from shared.http import RunningServer, serve

TOKEN = "xoxb-1234-test-token"
CHANNEL = "C0SLIPWAY"


@dataclass(frozen=True)
class Posted:
    ts: str
    body: dict[str, Any]
    headers: dict[str, str]


@dataclass
class SlackApi:
    rate_limited: int = 0
    posted: list[Posted] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    requests: int = 0
    _server: RunningServer | None = None

    @property
    def url(self) -> str:
        """What `SLIPWAY_NOTIFIER_SLACK_API_URL` is set to (chat.postMessage is below it)."""
        assert self._server is not None
        return f"{self._server.url}/api"

    async def _post_message(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.requests <= self.rate_limited:
            return web.json_response(
                {"ok": False, "error": "ratelimited"}, status=429, headers={"Retry-After": "1"}
            )
        error = self._error_of(request, await request.read())
        if error:
            self.errors.append(error)
            return web.json_response({"ok": False, "error": error})
        body = json.loads(await request.read())
        ts = f"1700000000.{len(self.posted) + 1:06d}"
        self.posted.append(Posted(ts, body, dict(request.headers)))
        return web.json_response(
            {"ok": True, "channel": body["channel"], "ts": ts, "message": {"text": body["text"]}}
        )

    def _error_of(self, request: web.Request, raw: bytes) -> str:
        auth = request.headers.get("Authorization", "")
        if not auth.startswith("Bearer "):
            return "not_authed"
        if auth != f"Bearer {TOKEN}":
            return "invalid_auth"
        if not request.headers.get("Content-Type", "").startswith("application/json"):
            return "invalid_form_data"
        try:
            body = json.loads(raw)
        except ValueError:
            return "invalid_json"
        if body.get("channel") != CHANNEL:
            return "channel_not_found"
        if not isinstance(body.get("text"), str) or not isinstance(body.get("blocks"), list):
            return "invalid_blocks"
        if any(
            not isinstance(b, dict) or not isinstance(b.get("type"), str) for b in body["blocks"]
        ):
            return "invalid_blocks"
        thread = body.get("thread_ts")
        if thread is not None and thread not in {p.ts for p in self.posted}:
            return "thread_not_found"
        return ""


@contextlib.asynccontextmanager
async def slack_api(**kw: Any) -> AsyncIterator[SlackApi]:
    server = SlackApi(**kw)
    app = web.Application()
    app.router.add_post("/api/chat.postMessage", server._post_message)
    server._server = await serve(app, "127.0.0.1", 0)
    try:
        yield server
    finally:
        await server._server.stop()
