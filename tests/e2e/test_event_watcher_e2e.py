"""Image-update write-back end to end: an event registered as CI would → a commit in the
config repository → the normal GitOps path deploys it to kubesim → SUCCESS.

Every service is its own process (the sandbox). The story runner plays the demo's
optional image-event step (`slipway demo --event-watcher`) after the bootstrap:
it registers the image through the API, waits for the event watcher's commit,
and judges the deployment that commit triggered; the CLI then lists the event
with that commit.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from slipway_sandbox.demo_repo import app_path, image
from slipway_sandbox.sandbox import Sandbox, SandboxOptions
from slipway_sandbox.story import EVENT_TAG


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


async def test_an_image_event_is_committed_and_deployed(tmp_path: Path) -> None:
    said: list[str] = []
    options = SandboxOptions(data_dir=tmp_path / "sandbox", say=said.append, event_watcher=True)
    async with Sandbox(options) as sandbox:
        assert sandbox.story is not None
        steps = {step.key: step for step in sandbox.story.steps}
        # The bootstrap (registration, prd's first deployment) and the image event only.
        sandbox.story = dataclasses.replace(
            sandbox.story, steps=(steps["bootstrap"], steps["image-event"])
        )
        report = await sandbox.play()
        story = "\n".join(said)
        assert [s.ok for s in report.steps] == [True, True], story
        event_step = report.steps[1]
        assert event_step.deployment is not None
        assert event_step.deployment.status == "SUCCESS", story

        head = await asyncio.to_thread(sandbox.repo.head)
        subject = await asyncio.to_thread(sandbox.repo.subject, head)
        assert subject == f'Replace values with "{image(EVENT_TAG)}" set by Event "image-update"'
        manifests = (sandbox.repo.path / app_path("dev") / "manifests.yaml").read_text()
        assert f"image: {image(EVENT_TAG)}" in manifests
        assert "the event watcher committed" in story

        listed = await asyncio.to_thread(_cli, sandbox, "event", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [event] = json.loads(listed.stdout)
        assert event["data"] == image(EVENT_TAG)
        assert [(h["status"], h["commit_hash"]) for h in event["handled"]] == [("SUCCESS", head)]
