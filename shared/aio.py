"""Small asyncio helpers the services' loops share."""

from __future__ import annotations

import asyncio
import contextlib

__all__ = ["sleep_or_stop"]


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, or less when `stop` is set: a loop's pause that never delays shutdown."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
