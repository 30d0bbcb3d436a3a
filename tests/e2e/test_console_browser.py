"""A person at the web console, in a real headless Chromium, through the seed's story.

One sandbox (every service its own process) and one browser for the module. The
story's steps are played by the sandbox's own story runner while the browser
watches: sign in, find account-prd (its live resources as a tree), watch its canary
and analysis move without reloading, see the bad image fail its analysis and roll
back, open the event log at an instant before the rollback, approve a WAIT_APPROVAL
stage from the page, and read the insights page (once `GET /api/v1/insights` is in
the checkout).
Each page is screenshotted (`.screenshots/console/`, git-ignored) and checked with
axe-core (no serious or critical violation), and none may log a CSP violation.
"""

from __future__ import annotations

import asyncio
import os
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp
import pytest

from shared.testing import wait_until
from slipway_sandbox.demo_repo import app_name, image_bump
from slipway_sandbox.kubesim_client import Kubesim
from slipway_sandbox.sandbox import (
    Sandbox,
    SandboxOptions,
    console_sign_in_link,
    prometheus_available,
)
from slipway_sandbox.seed_layout import DEMO_PRD_CONFIG
from slipway_sandbox.storyrunner import StoryRunner
from tests.support.api import auth_headers
from tests.support.browser import axe_violations, chromium, shoot

PRD = app_name("prd")
LIVE_TIMEOUT_MS = 120_000


def _require_prometheus() -> None:
    if prometheus_available():
        return
    if os.environ.get("CI") == "true":
        pytest.fail("prometheus is required in CI (scripts/ensure-system-packages.sh installs it)")
    pytest.skip("prometheus is not installed (make test installs it)")


async def _checked(page: Any, name: str, problems: list[str]) -> None:
    """Screenshot the page for a reviewer and collect its accessibility violations."""
    await shoot(page, name)
    problems.extend(f"{name}: {v}" for v in await axe_violations(page))


async def _stage_status(page: Any, stage: str, statuses: tuple[str, ...]) -> None:
    wanted = "[" + ",".join(f"'{s}'" for s in statuses) + "]"
    await page.wait_for_function(
        f"() => {wanted}.includes(document.querySelector("
        f"'li.stage[data-stage={stage}]')?.dataset.status)",
        timeout=LIVE_TIMEOUT_MS,
    )


async def _newest_deployment(sandbox: Sandbox, app_id: str, known: set[str]) -> str:
    """The application's newest deployment once it is none of `known`."""
    pool = sandbox.pool
    assert pool is not None

    async def newest() -> str | None:
        found = await pool.fetchval(
            "SELECT deployment_id FROM deployments WHERE application_id = $1 "
            "ORDER BY created_position DESC LIMIT 1",
            app_id,
        )
        return None if found is None or found in known else str(found)

    return await wait_until(newest, within_s=LIVE_TIMEOUT_MS / 1000, what="a new deployment")


async def test_a_person_follows_the_story_in_the_console(tmp_path: Path) -> None:
    _require_prometheus()
    said: list[str] = []
    problems: list[str] = []
    csp_errors: list[str] = []
    options = SandboxOptions(data_dir=tmp_path / "sandbox", say=said.append, require_all=True)
    async with Sandbox(options) as sandbox, chromium() as browser:
        assert sandbox.story is not None and sandbox.pool is not None
        assert sandbox.stack.kubesim is not None
        runner = StoryRunner(
            story=sandbox.story,
            repo=sandbox.repo,
            api=sandbox.api_client(),
            kubesim=Kubesim(sandbox.stack.kubesim.url),
            pool=sandbox.pool,
            receiver=sandbox.receiver,
            present=sandbox.present,
            say=said.append,
        )
        for key in ("bootstrap", "dev"):
            assert (await runner.play_step(sandbox.story.step(key))).ok, "\n".join(said)
        prd_id = runner.app_ids[PRD]
        base = sandbox.stack.api_url

        page = await (await browser.new_context()).new_page()
        page.on(
            "console",
            lambda m: csp_errors.append(m.text) if "Content Security Policy" in m.text else None,
        )
        page.on("pageerror", lambda e: csp_errors.append(f"script error: {e}"))

        # No session: the sign-in page. The link `slipway up` prints fills the key in from
        # the URL's fragment (never sent to a server) and takes it out of the address bar.
        await page.goto(f"{base}/console/applications")
        assert "/console/sign-in" in page.url
        await page.goto(console_sign_in_link(base, sandbox.stack.api_key))
        assert await page.input_value("#api_key") == sandbox.stack.api_key
        assert "#key=" not in page.url
        await _checked(page, "01-sign-in", problems)
        await page.click("button[type=submit]")
        await page.wait_for_url("**/console/applications")
        await _checked(page, "02-applications", problems)

        # Find account-prd by searching, and open it.
        await page.fill("#q", "prd")
        await page.click("form[role=search] button[type=submit]")
        await page.wait_for_url("**q=prd**")
        assert await page.locator("tr[data-app]").count() == 1
        await page.click(f"tr[data-app={PRD}] a")
        await page.wait_for_url(f"**/console/applications/{PRD}")
        # The config file the running commit was planned with (from its DeploymentPlanned).
        assert "kind: KubernetesApp" in (await page.text_content("#running-config") or "")
        # Its live resources as a tree, from the drift service's record (drawn when the
        # page's live stream says it arrived, if drift had not looked yet): a Pod inside
        # its ReplicaSet inside its Deployment, the Service beside the Deployment.
        pod = (
            "ul.resource-tree > li[data-kind=Deployment] > ul > li[data-kind=ReplicaSet]"
            " > ul > li[data-kind=Pod]"
        )
        await page.wait_for_selector(pod, timeout=LIVE_TIMEOUT_MS)
        assert await page.locator("ul.resource-tree > li[data-kind=Service]").count() >= 1
        assert "HEALTHY" in (await page.locator(pod).first.inner_text())
        await _checked(page, "03-application", problems)

        # The prd canary: the page follows the deployment as it runs, never reloaded.
        known = {
            r["deployment_id"]
            for r in await sandbox.pool.fetch("SELECT deployment_id FROM deployments")
        }
        playing = asyncio.create_task(runner.play_step(sandbox.story.step("prd")))
        canary = await _newest_deployment(sandbox, prd_id, known)
        await page.goto(f"{base}/console/deployments/{canary}")
        await page.evaluate("window.__notReloaded = true")
        await _stage_status(page, "K8S_CANARY_ROLLOUT", ("SUCCESS",))
        await _stage_status(page, "ANALYSIS", ("RUNNING", "SUCCESS"))
        await page.wait_for_function(
            "() => document.querySelectorAll('table.ticks tbody tr').length >= 1",
            timeout=LIVE_TIMEOUT_MS,
        )
        await page.wait_for_selector("canvas.chart")
        # The chart draws the canary's samples (Chart.js, from the canvas's data), redrawn
        # as ticks arrive (a first window may hold no sample yet: NaN is a gap).
        await page.wait_for_function(
            "() => { const c = Chart.getChart(document.querySelector('canvas.chart'));"
            " return c && c.data.datasets.some("
            "d => !d.label.endsWith('threshold') && d.data.length > 0); }",
            timeout=LIVE_TIMEOUT_MS,
        )
        await _checked(page, "04-deployment-analysis", problems)
        await _stage_status(page, "K8S_CANARY_CLEAN", ("SUCCESS",))
        assert await page.evaluate("window.__notReloaded") is True
        # The stage graph redrew with the page: every pipeline stage's node is SUCCESS, and
        # the plan shows the manifest diff it was chosen from.
        assert await page.locator("#stage-graph g.node:not(.rollback)").count() >= 4
        assert (
            await page.locator(
                "#stage-graph g.node:not(.rollback):not([data-status=SUCCESS])"
            ).count()
            == 0
        )
        assert "image" in (await page.text_content("#plan-diff") or "")
        assert await page.inner_text("#deployment-status") == "SUCCESS"
        assert (await playing).ok, "\n".join(said)
        known.add(canary)

        # The bad image: its analysis fails, the deployment rolls back.
        playing = asyncio.create_task(runner.play_step(sandbox.story.step("bad")))
        bad = await _newest_deployment(sandbox, prd_id, known)
        await page.goto(f"{base}/console/deployments/{bad}")
        await page.evaluate("window.__notReloaded = true")
        await _stage_status(page, "ANALYSIS", ("FAILURE",))
        await page.wait_for_function(
            "() => document.querySelector('#deployment-status')?.textContent === 'FAILURE'",
            timeout=LIVE_TIMEOUT_MS,
        )
        assert await page.evaluate("window.__notReloaded") is True
        assert await page.locator("td.o-fail").count() >= 1  # the failing tick is shown
        # The graph shows the failure and the rollback branch leaving it, without a reload.
        await page.wait_for_function(
            "() => document.querySelector('#stage-graph g.node[data-status=FAILURE]')"
            " && document.querySelector('#stage-graph g.node.rollback')",
            timeout=LIVE_TIMEOUT_MS,
        )
        await _checked(page, "05-deployment-failed", problems)
        assert (await playing).ok, "\n".join(said)
        known.add(bad)

        # The event log at an instant just before the rollback: the deployment as it was.
        rolled_at = await sandbox.pool.fetchval(
            "SELECT recorded_at FROM events WHERE stream_id = $1 "
            "AND event_type = 'deployment_rolling_back'",
            f"deployment-{bad}",
        )
        before = (rolled_at - timedelta(milliseconds=1)).isoformat()
        await page.goto(f"{base}/console/events?stream=deployment-{bad}&at={quote(before)}")
        assert await page.inner_text("#then-status") == "RUNNING"
        assert "deployment_rolling_back" in await page.inner_text(
            "section[aria-label='What changed since']"
        )
        await _checked(page, "06-event-log-time-travel", problems)

        # A WAIT_APPROVAL stage, approved from the page: the app page shows the new deployment.
        await page.goto(f"{base}/console/applications/{PRD}")
        await page.evaluate("window.__notReloaded = true")
        config = DEMO_PRD_CONFIG.format(
            name=PRD, env="prd", service="account", canary="50%", duration="20s"
        ).replace("    stages:\n", "    stages:\n      - name: WAIT_APPROVAL\n")
        await asyncio.to_thread(
            sandbox.repo.commit,
            {"account/prd/.pipe.yaml": config, **image_bump("prd", "v4", sandbox.story.timing)},
            "account: v4 in prd, with an approval first",
        )
        waiting = await _newest_deployment(sandbox, prd_id, known)
        link = page.locator(f"a[href='/console/deployments/{waiting}']")
        await link.wait_for(timeout=LIVE_TIMEOUT_MS)  # the history row arrived live
        assert await page.evaluate("window.__notReloaded") is True
        await link.click()
        await _stage_status(page, "WAIT_APPROVAL", ("RUNNING",))
        approve = page.locator("li.stage[data-stage=WAIT_APPROVAL] button", has_text="Approve")
        await approve.wait_for(timeout=LIVE_TIMEOUT_MS)
        await _checked(page, "07-deployment-waiting-approval", problems)
        await approve.click()
        await page.wait_for_selector("p.done")
        await _stage_status(page, "WAIT_APPROVAL", ("SUCCESS",))
        assert "Approved by" in await page.inner_text("li.stage[data-stage=WAIT_APPROVAL]")

        # The event log page itself, unfiltered.
        await page.goto(f"{base}/console/events")
        await _checked(page, "08-event-log", problems)

        # Insights: the story's prd deployments (three successes and the bad one by now).
        insights = page.locator("header nav a", has_text="Insights")
        if await insights.count():  # GET /api/v1/insights is in this checkout
            await insights.click()
            await page.wait_for_url("**/console/insights")
            # The figures are the route's (the approval's deployment may end meanwhile).
            async with aiohttp.ClientSession(
                base_url=base, headers=auth_headers(sandbox.stack.api_key)
            ) as http:

                async def as_the_api_says() -> bool:
                    async with http.get("/api/v1/insights") as reply:
                        totals = (await reply.json())["totals"]
                    await page.reload()
                    shown = await page.inner_text("#totals")
                    return totals["failed"] >= 1 and f"({totals['failed']} failed)" in shown

                await wait_until(as_the_api_says, within_s=30, what="the page's figures")
            await page.wait_for_selector("canvas.chart")
            await _checked(page, "09-insights", problems)

    assert problems == [], "\n".join(problems)
    assert csp_errors == [], csp_errors
