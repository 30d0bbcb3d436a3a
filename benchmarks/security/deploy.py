"""A merger's attacks: what a config merged to main can try when it really deploys.

One application, deployed twice (PipeCD's rule makes the first deployment a quick
sync). The second commit's pipeline carries every payload at once:

- SCRIPT_RUN prints its environment (the services' settings and a canary planted in
  them must not be there), a 1 MiB line and a NUL byte (the stage must still end);
- ANALYSIS runs HTTP checks against a trap server on a loopback address the
  sandbox does not allow, spelled several ways (the trap must see no request);
- a Secret whose value is a canary changes (it must not reach the diff, the log or
  any answer);
- WAIT_APPROVAL names one approver: another read-write key may neither approve nor
  skip it.

Every attack of this family waits for the one scenario, then reads its own part.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from benchmarks.security.harness import Attack, Outcome, Target

__all__ = ["ENV_CANARY_SETTING", "attacks"]

FAMILY_SCRIPT = "script"
FAMILY_SECRET = "secret"
FAMILY_SSRF = "ssrf"
FAMILY_APPROVAL = "approval"

APP = "sec-run"
APP_PATH = "attacks-main/sec-run"
APPROVER = "sec-alice"
INTRUDER = "sec-mallory"
ENV_CANARY_SETTING = "SLIPWAY_BENCH_CANARY"
"""A setting every service process gets: a script that can read it has the services' environment."""

TRAP_HOST = "127.0.0.2"
"""Loopback, but not the address the sandbox allows (127.0.0.1): opt-in means this is refused."""

_SPELLINGS: dict[str, Callable[[int], str]] = {
    "dotted": lambda port: f"http://{TRAP_HOST}:{port}/dotted",
    "short": lambda port: f"http://127.2:{port}/short",
    "decimal": lambda port: f"http://2130706434:{port}/decimal",
    "hex": lambda port: f"http://0x7f000002:{port}/hex",
    "v4-mapped-v6": lambda port: f"http://[::ffff:127.0.0.2]:{port}/v4-mapped-v6",
    "userinfo": lambda port: f"http://127.0.0.1@{TRAP_HOST}:{port}/userinfo",
}

_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: sec-run
  labels: {{app: sec-run}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: sec-run}}}}
  template:
    metadata: {{labels: {{app: sec-run}}}}
    spec:
      containers: [{{name: web, image: "ghcr.io/acme/sec-run:{tag}"}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: sec-run}}
stringData: {{password: "{secret}"}}
"""

_ENV_SCRIPT = "echo SLIPWAY-SCRIPT-RAN; env; cat /proc/$PPID/environ | tr '\\\\0' '\\\\n'"
# Last in the pipeline: where output handling is broken it fails the stage, and the
# attacks judged on earlier stages still have their evidence.
_OUTPUT_SCRIPT = r"""echo SLIPWAY-OUTPUT-RAN
head -c 1048576 /dev/zero | tr '\0' x; echo
printf 'before\0after\n'
printf '\377\376 not utf-8\n'
"""


def _config(pipeline: bool, checks: list[str]) -> str:
    text = f"apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  name: {APP}\n"
    if not pipeline:
        return text
    https = "".join(
        f"            - url: {url}\n              interval: 4s\n              failureLimit: 100\n"
        "              timeout: 2s\n"
        for url in checks
    )
    return text + (
        "  pipeline:\n    stages:\n"
        "      - name: SCRIPT_RUN\n        with:\n"
        f'          run: "{_ENV_SCRIPT}"\n          timeout: 1m\n'
        "      - name: ANALYSIS\n        with:\n          duration: 10s\n          https:\n"
        f"{https}"
        "      - name: WAIT_APPROVAL\n        with:\n"
        f"          approvers: [{APPROVER}]\n          timeout: 5m\n"
        "      - name: SCRIPT_RUN\n        with:\n          run: |\n"
        + "".join(f"            {line}\n" for line in _OUTPUT_SCRIPT.splitlines())
        + "          timeout: 1m\n"
        "      - name: K8S_SYNC\n"
    )


@dataclass
class Scenario:
    """The one deployment every attack of this module reads; played once, on first need."""

    played: bool = False
    deployment: dict[str, Any] = field(default_factory=dict)
    logs: str = ""
    secret: str = ""
    trap_hits: list[str] = field(default_factory=list)
    approval_answers: dict[str, int] = field(default_factory=dict)
    error: str = ""
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def ensure(self, target: Target) -> Scenario:
        async with self._lock:
            if not self.played:
                self.played = True
                try:
                    await self._play(target)
                except Exception as exc:  # noqa: BLE001 - reported in every outcome
                    self.error = f"{type(exc).__name__}: {exc}"
        return self

    async def _play(self, target: Target) -> None:
        trap = web.Application()

        async def record(request: web.Request) -> web.Response:
            self.trap_hits.append(request.path)
            return web.Response(text="ok")

        trap.router.add_route("*", "/{tail:.*}", record)
        runner = web.AppRunner(trap)
        await runner.setup()
        site = web.TCPSite(runner, TRAP_HOST, 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            await self._deploy(target, [spell(port) for spell in _SPELLINGS.values()])
        finally:
            await runner.cleanup()

    async def _deploy(self, target: Target, checks: list[str]) -> None:
        approver = json.loads(
            (
                await target.api("POST", "/api-keys", json={"role": "read-write", "name": APPROVER})
            ).text
        )["secret"]
        intruder = json.loads(
            (
                await target.api("POST", "/api-keys", json={"role": "read-write", "name": INTRUDER})
            ).text
        )["secret"]
        first = f"{APP_PATH}/app.pipecd.yaml"
        await target.commit_main(
            {
                first: _config(False, []),
                f"{APP_PATH}/manifests.yaml": _DEPLOYMENT.format(tag="v1", secret="v1"),
            }
        )
        registered = await target.api(
            "POST",
            "/applications",
            json={
                "name": APP,
                "repository_id": target.repository_id,
                "path": APP_PATH,
                "config_filename": "app.pipecd.yaml",
                "platform_provider": "kubesim",
            },
        )
        if registered.status >= 300:
            raise RuntimeError(f"register {APP}: HTTP {registered.status} {registered.text[:200]}")
        await target.api("POST", f"/applications/{APP}/sync", json={})
        first_deployment = await target.wait_deployment(APP, after=time.time(), within=90)
        self.secret = target.canary("secret-in-manifest")
        await target.commit_main(
            {
                first: _config(True, checks),
                f"{APP_PATH}/manifests.yaml": _DEPLOYMENT.format(tag="v2", secret=self.secret),
            }
        )
        deployment = await self._wait_for_approval(target, first_deployment.get("deployment_id"))
        deployment_id = deployment.get("deployment_id", "")
        stage: dict[str, Any] = next(
            (s for s in deployment.get("stages", []) if s.get("name") == "WAIT_APPROVAL"), {}
        )
        stage_id = stage.get("stage_id", stage.get("id", ""))
        for verb, key in (("approve", intruder), ("skip", intruder)):
            answer = await target.http(
                "POST",
                f"{target.api_url}/api/v1/deployments/{deployment_id}/stages/{stage_id}/{verb}",
                key=key,
                json={},
            )
            self.approval_answers[verb] = answer.status
        await target.http(
            "POST",
            f"{target.api_url}/api/v1/deployments/{deployment_id}/stages/{stage_id}/approve",
            key=approver,
            json={},
        )
        self.deployment = await target.wait_deployment(APP, after=time.time(), within=120)
        logs = await target.api("GET", f"/deployments/{deployment_id}/logs")
        self.logs = logs.text

    async def _wait_for_approval(self, target: Target, first: str | None) -> dict[str, Any]:
        """The pipeline deployment once it waits for approval (or has ended without it)."""
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            listed = await target.api("GET", f"/deployments?application={APP}&limit=1")
            items = json.loads(listed.text).get("items", []) if listed.status == 200 else []
            if items and items[0]["deployment_id"] != first:
                got = await target.api("GET", f"/deployments/{items[0]['deployment_id']}")
                deployment: dict[str, Any] = json.loads(got.text)
                stages = deployment.get("stages", [])
                waiting = any(
                    s.get("name") == "WAIT_APPROVAL" and s.get("status") == "RUNNING"
                    for s in stages
                )
                if waiting or deployment.get("status") in ("SUCCESS", "FAILURE", "CANCELLED"):
                    return deployment
            await asyncio.sleep(0.5)
        raise RuntimeError("the pipeline deployment never reached WAIT_APPROVAL")


_SCENARIO = Scenario()


def _reads(family: str, name: str, judge: Callable[[Scenario, Target], Outcome]) -> Attack:
    async def run(target: Target) -> Outcome:
        scenario = await _SCENARIO.ensure(target)
        if scenario.error:
            return Outcome(False, f"the scenario failed: {scenario.error}")
        return judge(scenario, target)

    return Attack(family, name, run)


_RAN = "SLIPWAY-SCRIPT-RAN"


def _env_hidden(scenario: Scenario, _target: Target) -> Outcome:
    if _RAN not in scenario.logs:
        return Outcome(False, "the script's output is not in the deployment's log: not judged")
    exposed = [
        word
        for word in ("SLIPWAY_", "DATABASE_URL", "postgresql://", "nats://")
        if word in scenario.logs
    ]
    return Outcome(not exposed, f"the script saw {exposed}" if exposed else "clean environment")


def _huge_output_survived(scenario: Scenario, _target: Target) -> Outcome:
    status = scenario.deployment.get("status")
    ran = "SLIPWAY-OUTPUT-RAN" in scenario.logs
    return Outcome(status == "SUCCESS" and ran, f"deployment {status}, script ran: {ran}")


def _secret_masked(scenario: Scenario, target: Target) -> Outcome:
    seen = scenario.secret in scenario.logs or any(scenario.secret in a for a in target.answers)
    return Outcome(not seen, "the Secret's value was shown" if seen else "masked")


def _trap_untouched(spelling: str) -> Callable[[Scenario, Target], Outcome]:
    index = list(_SPELLINGS).index(spelling)

    def judge(scenario: Scenario, _target: Target) -> Outcome:
        if f"https[{index}]" not in scenario.logs:
            return Outcome(False, f"the log never mentions check https[{index}]: not judged")
        hit = f"/{spelling}" in scenario.trap_hits
        return Outcome(not hit, "the trap was reached" if hit else "no request reached the trap")

    return judge


def _approval_refused(verb: str) -> Callable[[Scenario, Target], Outcome]:
    def judge(scenario: Scenario, _target: Target) -> Outcome:
        # 403 (not an approver) or 409 (the request rules refuse it) both leave the stage waiting.
        status = scenario.approval_answers.get(verb, 0)
        return Outcome(status in (403, 409), f"HTTP {status}")

    return judge


def attacks() -> list[Attack]:
    """The deploy-time attacks: script env, huge output, secrets in diffs and logs."""
    found = [
        _reads(FAMILY_SCRIPT, "script-env", _env_hidden),
        _reads(FAMILY_SCRIPT, "script-1MiB-line-NUL-bytes", _huge_output_survived),
        _reads(FAMILY_SECRET, "secret-data-in-diff", _secret_masked),
        _reads(FAMILY_APPROVAL, "approve-not-approver", _approval_refused("approve")),
        _reads(FAMILY_APPROVAL, "skip-not-approver", _approval_refused("skip")),
    ]
    found += [
        _reads(FAMILY_SSRF, f"http-check-{spelling}", _trap_untouched(spelling))
        for spelling in _SPELLINGS
    ]
    return found
