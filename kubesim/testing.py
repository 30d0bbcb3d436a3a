"""Helpers for tests that drive kubesim: run the real kubectl, wait for a condition.

Test-framework free on purpose (like `structlog.testing`): the suite decides
whether a missing kubectl skips or fails.

    kubectl = Kubectl(find_kubectl(), sim.write_kubeconfig(tmp / "kubeconfig"), tmp / "cache")
    await kubectl("apply", "-f", manifest)
    pods = await eventually(lambda: pods_ready(sim), within=10)
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import shutil
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

T = TypeVar("T")


def find_kubectl() -> str | None:
    """The `kubectl` on PATH, or None."""
    return shutil.which("kubectl")


def versioned_kubectls(kubectl: str) -> dict[str, str]:
    """Side-by-side `kubectl.1.NN` binaries (Google Cloud SDK ships 1.27–1.33 this way)."""
    directory = Path(os.path.realpath(kubectl)).parent
    found = {}
    for path in directory.glob("kubectl.1.*"):
        if re.fullmatch(r"kubectl\.1\.\d+", path.name) and os.access(path, os.X_OK):
            found[path.name.removeprefix("kubectl.")] = str(path)
    return dict(sorted(found.items(), key=lambda kv: int(kv[0].split(".")[1])))


@dataclass(frozen=True)
class KubectlResult:
    """One kubectl run: its arguments, exit code and output."""

    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def json(self) -> Any:
        """The standard output parsed as JSON."""
        return json.loads(self.stdout)


class KubectlFailed(AssertionError):
    """kubectl exited non-zero where the caller expected success."""


class Kubectl:
    """Runs a kubectl binary against one kubeconfig, with a private discovery cache."""

    def __init__(self, binary: str, kubeconfig: Path, cache_dir: Path) -> None:
        self.binary = binary
        self.env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "KUBECACHEDIR": str(cache_dir),
            # The discovery cache lives under HOME too in older versions; keep it private.
            "HOME": str(cache_dir),
        }

    async def __call__(
        self, *args: str, check: bool = True, stdin: str | None = None, within: float = 60.0
    ) -> KubectlResult:
        """Run kubectl with `args`; raises KubectlFailed on a non-zero exit when `check`."""
        process = await asyncio.create_subprocess_exec(
            self.binary,
            *args,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env,
        )
        try:
            out, err = await asyncio.wait_for(
                process.communicate(stdin.encode() if stdin is not None else None), within
            )
        except TimeoutError:
            process.kill()
            await process.wait()
            raise
        result = KubectlResult(tuple(args), process.returncode or 0, out.decode(), err.decode())
        if check and result.returncode != 0:
            raise KubectlFailed(
                f"kubectl {' '.join(args)} exited {result.returncode}:\n"
                f"{result.stderr}{result.stdout}"
            )
        return result


# Two overloads, so that mypy infers `T` from an async probe too (from the union alone it
# cannot tell a coroutine's result from the coroutine).
@overload
async def eventually(
    probe: Callable[[], Awaitable[T | None]],
    *,
    within: float = ...,
    interval: float = ...,
    message: str = ...,
) -> T: ...
@overload
async def eventually(
    probe: Callable[[], T | None],
    *,
    within: float = ...,
    interval: float = ...,
    message: str = ...,
) -> T: ...
async def eventually(
    probe: Callable[[], T | None] | Callable[[], Awaitable[T | None]],
    *,
    within: float = 10.0,
    interval: float = 0.05,
    message: str = "condition",
) -> T:
    """Poll `probe` until it returns something truthy; that value, or TimeoutError."""
    deadline = time.monotonic() + within
    while True:
        value = probe()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{message} not reached within {within}s")
        await asyncio.sleep(interval)
