"""A local stand-in for Slack's incoming webhook: it accepts Slack-format messages and shows them.

The seed's team got a Slack message when a deployment failed. The sandbox has
no Slack, so the notifier's Slack receiver points here; each message is kept
(for the story's checks and the tests) and handed to `on_message`, which the
demo uses to print it.
"""

from __future__ import annotations

import asyncio
import html
import json
import socket
from collections import Counter
from collections.abc import Callable
from typing import Any, Final

from aiohttp import web

from services.notifier.notify.webhook import DELIVERY_HEADER

PATH: Final = "/slack"


def message_lines(message: dict[str, Any]) -> list[str]:
    """What a person would read in Slack: the fallback text, then each block's text (pure)."""
    lines: list[str] = []
    text = message.get("text")
    if isinstance(text, str) and text.strip():
        lines.append(html.unescape(text.strip()))
    for block in _blocks(message):
        for part in _block_texts(block):
            if part not in lines:
                lines.append(part)
    return lines or [json.dumps(message, sort_keys=True)[:500]]


def _blocks(message: dict[str, Any]) -> list[dict[str, Any]]:
    blocks = list(message.get("blocks") or [])
    for attachment in message.get("attachments") or []:
        if isinstance(attachment, dict):
            blocks.extend(attachment.get("blocks") or [])
            if isinstance(attachment.get("text"), str):
                blocks.append({"text": {"text": attachment["text"]}})
    return [b for b in blocks if isinstance(b, dict)]


def _block_texts(block: dict[str, Any]) -> list[str]:
    texts: list[str] = []
    for item in [block.get("text"), *(block.get("fields") or []), *(block.get("elements") or [])]:
        if isinstance(item, dict) and isinstance(item.get("text"), str) and item["text"].strip():
            # Slack escapes &, < and > in message text; show what Slack would show.
            texts.append(html.unescape(item["text"].strip()))
    return texts


class SlackReceiver:
    """An aiohttp server on 127.0.0.1 that answers `ok` to every POST, as Slack does."""

    def __init__(self, on_message: Callable[[dict[str, Any]], None] | None = None) -> None:
        self.on_message = on_message
        self.messages: list[dict[str, Any]] = []
        self.deliveries: Counter[str] = Counter()
        """POSTs received per delivery id (the notifier's `Slipway-Delivery` header, the same on
        every attempt): more than one is the same notification sent twice."""
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._arrived = asyncio.Condition()

    @property
    def url(self) -> str:
        """Where the sandbox's Slack hook URL points."""
        return f"http://127.0.0.1:{self.port}{PATH}"

    async def start(self) -> SlackReceiver:
        """Start receiving Slack-shaped posts on a free port."""
        app = web.Application()
        app.router.add_post(PATH, self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()
        return self

    async def stop(self) -> None:
        """Stop receiving."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], *, within: float
    ) -> bool:
        """True once `predicate(messages)` holds, False if it still does not after `within` s."""
        async with self._arrived:
            try:
                async with asyncio.timeout(within):
                    await self._arrived.wait_for(lambda: predicate(self.messages))
            except TimeoutError:
                return False
        return True

    async def _receive(self, request: web.Request) -> web.Response:
        try:
            message = json.loads(await request.read())
        except ValueError:
            return web.Response(status=400, text="invalid_payload")
        if not isinstance(message, dict):
            return web.Response(status=400, text="invalid_payload")
        async with self._arrived:
            self.deliveries[request.headers.get(DELIVERY_HEADER, "")] += 1
            self.messages.append(message)
            self._arrived.notify_all()
        if self.on_message is not None:
            self.on_message(message)
        return web.Response(text="ok")
