"""Image-update write-back end to end: an event registered as CI would → a commit in the
config repository → the normal GitOps path deploys dev on kubesim → dev's deployment
chain deploys stg → chain SUCCESS.

Every service is its own process (the sandbox). The story runner plays the demo's
optional image-event step (`slipway demo --event-watcher`) after the bootstrap:
it registers the image through the API, waits for the event watcher's commit
(dev's and stg's manifests), judges the deployment that commit triggered, then
follows the chain dev's success starts until it ends and judges what it deployed
(stg runs the image, applied by the chain's deployment). The CLI then lists the
event with that commit and shows the chain.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

from shared.events.ids import chain_id_of
from slipway_sandbox.demo_repo import app_name, app_path, image
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


def _app_id(sandbox: Sandbox, env: str) -> str:
    return str(sandbox.api_client().get_application(app_name(env))["application_id"])


async def test_an_image_event_is_committed_deployed_and_chained(sandbox_dir: Path) -> None:
    said: list[str] = []
    options = SandboxOptions(data_dir=sandbox_dir, say=said.append, event_watcher=True)
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
        chain = event_step.chain
        assert chain is not None, story
        assert chain.chain_id == chain_id_of(event_step.deployment.deployment_id)
        assert chain.status == "SUCCESS", story
        [stg] = chain.deployments
        assert (stg.app, stg.status, stg.live_image) == ("account-stg", "SUCCESS", image(EVENT_TAG))
        assert stg.live_deployment_id == stg.deployment_id
        assert f"$ slipway chain get {chain.chain_id}" in story
        assert f"chain {chain.chain_id}  SUCCESS" in story  # what the command printed

        head = await asyncio.to_thread(sandbox.repo.head)
        subject = await asyncio.to_thread(sandbox.repo.subject, head)
        assert subject == f'Replace values with "{image(EVENT_TAG)}" set by Event "image-update"'
        for env in ("dev", "stg"):
            manifests = (sandbox.repo.path / app_path(env) / "manifests.yaml").read_text()
            assert f"image: {image(EVENT_TAG)}" in manifests
        assert "the event watcher committed" in story

        shown = await asyncio.to_thread(_cli, sandbox, "chain", "get", chain.chain_id, "--json")
        assert shown.returncode == 0, shown.stderr
        answer = json.loads(shown.stdout)
        assert answer["status"] == "SUCCESS"
        assert [
            [(d["application_id"], d["status"]) for d in block["deployments"]]
            for block in answer["blocks"]
        ] == [[(_app_id(sandbox, "dev"), "SUCCESS")], [(_app_id(sandbox, "stg"), "SUCCESS")]]

        listed = await asyncio.to_thread(_cli, sandbox, "event", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        [event] = json.loads(listed.stdout)
        assert event["data"] == image(EVENT_TAG)
        assert [(h["status"], h["commit_hash"]) for h in event["handled"]] == [("SUCCESS", head)]
