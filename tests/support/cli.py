"""Running the `slipway` CLI as a user does, in a subprocess: against a served API (`slipway`,
`Cli`) or locally (`plan_preview`), and the deployment events its commands wait on."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

import aiohttp

from services.api.routes import API_PREFIX
from shared.eventlog import EventStore
from shared.events import vocabulary
from shared.events.catalog import DeploymentStarted, StageStarted
from tests.support.api import api_key_for, auth_headers
from tests.support.deployment_events import pipeline, planned, triggered, write
from tests.support.paths import REPO_ROOT

REPO = REPO_ROOT


@dataclass(frozen=True)
class Done:
    code: int
    out: str
    err: str


async def slipway(*args: str, api_url: str) -> Done:
    """Run `python -m slipway_cli ARGS` with SLIPWAY_API_URL set, without blocking the loop."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "slipway_cli",
        *args,
        cwd=REPO,
        env=os.environ | {"SLIPWAY_API_URL": api_url, "SLIPWAY_API_KEY": _key(api_url)},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return Done(process.returncode, out.decode(), err.decode())


def _key(api_url: str) -> str:
    # Only a test's own served API has a key; a made-up URL (unreachable) needs none.
    try:
        return api_key_for(api_url)
    except KeyError:
        return ""


async def wait_projected(api_url: str, position: int) -> None:
    """Return once the API's read model has caught up with `position`."""
    async with (
        aiohttp.ClientSession(base_url=api_url, headers=auth_headers(_key(api_url))) as http,
        http.get(f"{API_PREFIX}/applications", params={"min_position": position}) as reply,
    ):
        assert reply.status == 200, await reply.text()


T0 = datetime(2026, 1, 1, tzinfo=UTC)


class Cli:
    """Runs `slipway` as a subprocess against one API, without blocking the loop."""

    def __init__(self, url: str, key: str) -> None:
        self.env = os.environ | {"SLIPWAY_API_URL": url, "SLIPWAY_API_KEY": key}
        # Lines `read_until` took from a running process's pipes, for `finish` to return.
        self._read: dict[tuple[int, str], list[bytes]] = {}

    async def start(self, *args: str) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "slipway_cli",
            *args,
            cwd=REPO,
            env=self.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async def read_until(
        self,
        process: asyncio.subprocess.Process,
        text: str,
        *,
        stream: Literal["stdout", "stderr"] = "stderr",
        within_s: float = 30.0,
    ) -> None:
        """Read the running `process`'s `stream` until a line contains `text`: how a test
        knows the CLI has reached a state (polling, following) before it acts. The lines
        read stay part of what `finish` returns."""
        pipe = process.stdout if stream == "stdout" else process.stderr
        assert pipe is not None
        kept = self._read.setdefault((id(process), stream), [])
        async with asyncio.timeout(within_s):
            while text.encode() not in (kept[-1] if kept else b""):
                line = await pipe.readline()
                assert line, f"{stream} ended without {text!r}: {b''.join(kept).decode()}"
                kept.append(line)

    async def finish(self, process: asyncio.subprocess.Process) -> Done:
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        assert process.returncode is not None
        out = b"".join(self._read.pop((id(process), "stdout"), [])) + out
        err = b"".join(self._read.pop((id(process), "stderr"), [])) + err
        return Done(process.returncode, out.decode(), err.decode())

    async def __call__(self, *args: str) -> Done:
        return await self.finish(await self.start(*args))


async def started(
    store: EventStore, deployment_id: str, app: str = "app1", *, version: str = ""
) -> None:
    """Triggered, planned (WAIT then a rollout, deploying `version`) and running its WAIT
    stage."""
    await write(
        store,
        deployment_id,
        triggered(deployment_id, app, commit="abc1234", trigger=vocabulary.Trigger.ON_COMMAND),
        planned(
            deployment_id,
            pipeline("WAIT", "K8S_PRIMARY_ROLLOUT"),
            app,
            commit="abc1234",
            summary="image web: v1 → v2",
            reason="the pod template changed",
            version=version,
        ),
        DeploymentStarted(deployment_id=deployment_id, application_id=app, started_at=T0),
        StageStarted(deployment_id=deployment_id, stage_id="stage-0", started_at=T0),
    )


def plan_preview(
    *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`slipway plan-preview ARGS` as a subprocess; `env` is added to this process's environment."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "SLIPWAY_API_"))}
    return subprocess.run(
        [sys.executable, "-m", "slipway_cli", "plan-preview", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**environ, **(env or {})},
        check=False,
    )
