"""Helpers shared by the sandbox launchers: free ports, waiting, stopping."""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final

# Ports are handed out below the kernel's ephemeral range (32768 and up by default): a
# port taken there with bind(0) and released for a server to bind a moment later can be
# given meanwhile to any outgoing connection of any process, which then makes the server
# fail with "address in use". Below it, only explicit binds compete. Each pytest-xdist
# worker (PYTEST_XDIST_WORKER, inherited by the services a test starts) has its own
# block, so parallel workers never pick the same port; within a block a process starts
# at a random place and goes round, so it does not hand out one port twice in a row.
_PORTS_FROM: Final = 20000
_BLOCK: Final = 1500
_BLOCKS: Final = 8
_next_port = itertools.count(random.randrange(_BLOCK))  # noqa: S311 - spreading, not secrecy


def _block_start() -> int:
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    return _PORTS_FROM + (index % _BLOCKS) * _BLOCK


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (see above for where from)."""
    start = _block_start()
    for _ in range(_BLOCK):
        port = start + next(_next_port) % _BLOCK
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:  # the block is full
        sock.bind(("127.0.0.1", 0))
        fallback: int = sock.getsockname()[1]
        return fallback


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.2):
        return True
    return False


def wait_until(
    ready: Callable[[], bool],
    *,
    process: subprocess.Popen[bytes],
    what: str,
    log: Path,
    timeout: float = 30.0,
) -> None:
    """Poll `ready` until true; fail with the server's log if it dies or times out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"{what} exited with code {process.returncode} while starting; "
                f"its log ({log}):\n{log_tail(log)}"
            )
        if ready():
            return
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(
        f"{what} did not become ready in {timeout}s; its log ({log}):\n{log_tail(log)}"
    )


def stop(process: subprocess.Popen[bytes], *, grace: float = 10.0) -> None:
    """SIGTERM, then SIGKILL after `grace` seconds."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def log_tail(log: Path, lines: int = 40) -> str:
    """The last `lines` lines of a log, for an error message."""
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def write_private(path: Path, text: str) -> None:
    """Write `text` to `path`, readable by this user only from the first byte (it holds
    passwords or keys): a new file made 0600 at creation, never a readable one chmod-ed after."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(text)
