"""Image-update write-back end to end: `slipway event register` → a commit in the config
repository → the normal GitOps path deploys it to kubesim → SUCCESS.

Every service is its own process (the sandbox); the event goes in through the CLI
and the API, and comes out as a commit the gitwatcher sees like anyone else's.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from shared.eventlog import EventStore
from shared.events.catalog import CommitObserved, default_registry
from shared.events.streams import repository_stream
from shared.testing import wait_until
from slipway_sandbox.control import PLATFORM_PROVIDER
from slipway_sandbox.demo_repo import app_name, app_path, image
from slipway_sandbox.sandbox import Sandbox, SandboxOptions
from slipway_sandbox.seed_layout import DEMO_DEV_CONFIG

WATCHER = """\
  eventWatcher:
    - matcher:
        name: image-update
        labels: {app: account, env: dev}
      handler:
        type: GIT_UPDATE
        config:
          replacements:
            - file: manifests.yaml
              yamlField: $.spec.template.spec.containers[0].image
"""


def _cli(sandbox: Sandbox, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "SLIPWAY_API_URL": sandbox.stack.api_url,
        "SLIPWAY_API_KEY": sandbox.stack.api_key,
    }
    return subprocess.run(
        [sys.executable, "-m", "slipway_cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_registered_image_is_committed_and_deployed(tmp_path: Path) -> None:
    options = SandboxOptions(data_dir=tmp_path / "sandbox", say=lambda *_: None)
    async with Sandbox(options) as sandbox:
        assert sandbox.pool is not None
        store = EventStore(sandbox.pool, default_registry())
        client = sandbox.api_client()
        dev = app_name("dev")
        await asyncio.to_thread(
            client.register_application,
            name=dev,
            repository_id="config",
            path=app_path("dev"),
            config_filename=".pipe.yaml",
            platform_provider=PLATFORM_PROVIDER,
            labels={"env": "dev"},
        )
        first = await asyncio.to_thread(sandbox.repo.head)

        async def observed(commit: str) -> bool:
            history = await store.read_stream(repository_stream("config"))
            return any(
                isinstance(r.event, CommitObserved) and r.event.commit_hash == commit
                for r in history
            )

        await wait_until(lambda: observed(first), 60, "the gitwatcher's first observation")
        config = DEMO_DEV_CONFIG.format(name=dev, env="dev") + WATCHER
        watching = await asyncio.to_thread(
            sandbox.repo.commit, {f"{app_path('dev')}/.pipe.yaml": config}, "watch image-update"
        )
        await wait_until(lambda: observed(watching), 60, "the watcher config observed")

        registered = await asyncio.to_thread(
            _cli,
            sandbox,
            "event",
            "register",
            "--name",
            "image-update",
            "--data",
            image("v7"),
            "--labels",
            "env=dev,app=account",
        )
        assert registered.returncode == 0, registered.stderr
        event_id = registered.stdout.strip().splitlines()[-1]

        async def written_back() -> str | None:
            head = await asyncio.to_thread(sandbox.repo.head)
            message = await asyncio.to_thread(sandbox.repo.subject, head)
            return head if message.startswith("Replace values with") else None

        commit = await wait_until(written_back, 60, "the event watcher's commit")
        manifests = (sandbox.repo.path / app_path("dev") / "manifests.yaml").read_text()
        assert f"image: {image('v7')}" in manifests

        async def deployed() -> dict[str, Any] | None:
            items = await asyncio.to_thread(client.list_deployments, application=dev)
            return next(
                (d for d in items if d["commit_hash"] == commit and d["status"] == "SUCCESS"),
                None,
            )

        await wait_until(deployed, 120, "the write-back deployed to SUCCESS")
        listed = await asyncio.to_thread(_cli, sandbox, "event", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert event_id in listed.stdout and commit in listed.stdout
