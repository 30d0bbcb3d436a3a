"""An exclusive `flock` beside a cached clone, for processes that share the cache directory."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Final

from shared.git.errors import GitError

_LOCK_POLL_S: Final = 0.05


@contextlib.asynccontextmanager
async def file_lock(path: Path, timeout_s: float) -> AsyncIterator[None]:
    """An exclusive `flock` on `path`, for processes sharing a cache directory.

    Two git processes fetching into one repository race for its ref locks and
    one fails; this queues them instead. Polled without blocking, so waiting
    never ties up a thread and a cancelled wait leaves nothing behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = asyncio.get_running_loop().time() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if asyncio.get_running_loop().time() > deadline:
                    raise GitError(
                        f"{path}: another process held the fetch lock for {timeout_s:g} s",
                        kind="other",
                        stderr_tail="fetch lock held by another process",
                    ) from None
                await asyncio.sleep(_LOCK_POLL_S)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
