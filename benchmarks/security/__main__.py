"""`python -m benchmarks.security [--json] [--keep DIR] [--only FAMILY …]`: the attack catalogue.

Starts the whole sandbox (every service a process, real PostgreSQL, NATS,
kubesim, Prometheus when installed, git), runs every attack of the catalogue
against it (`benchmarks/security/*.py`), then judges them from evidence gathered
outside the attacks (`harness.collect_evidence`): markers that only an executed
payload could create, and canary strings searched for in every table of the
database, every service log and every answer. Prints

    {"attacks": N, "blocked": N, "leaked": 0, "executed": 0, ...}

`leaked` and `executed` count attacks; `not_blocked` lists every attack that
was let through, with what it saw. Takes a few minutes on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.security import api, branch, deploy, egress, network
from benchmarks.security.harness import Attack, Outcome, Target, collect_evidence
from slipway_sandbox._process import free_port
from slipway_sandbox.control import REPOSITORY_ID, SLACK_RECEIVER
from slipway_sandbox.sandbox import Sandbox, SandboxOptions

# The deployment scenario first: the forged-event attacks copy the messages it leaves.
_FAMILIES = {
    "deploy": deploy.attacks,
    "branch": branch.attacks,
    "api": api.attacks,
    "network": network.attacks,
    "egress": egress.attacks,
}
_EVERY_EVENT = (
    "DEPLOYMENT_TRIGGERED",
    "DEPLOYMENT_PLANNED",
    "DEPLOYMENT_SUCCEEDED",
    "DEPLOYMENT_FAILED",
    "DEPLOYMENT_CANCELLED",
    "DEPLOYMENT_WAIT_APPROVAL",
    "DEPLOYMENT_APPROVED",
)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run(root: Path, families: Sequence[str]) -> dict[str, Any]:
    """Run the attack families against one sandbox; what each attack got through."""
    markers, outside = root / "markers", root / "outside"
    markers.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    env_canary = f"slipway-canary-{secrets.token_hex(8)}"
    webhook_secret = secrets.token_hex(16)
    webhook_port = free_port()

    def customize(document: dict[str, Any]) -> None:
        spec = document["spec"]
        spec["repositories"][0]["webhookSecret"] = webhook_secret
        # Only what the sandbox's Prometheus and receivers use: the trap on 127.0.0.2 is refused.
        spec["analysisEgress"] = {"allow": ["127.0.0.1/32"]}
        routes = spec.setdefault("notifications", {}).setdefault("routes", [])
        routes.append(
            {"name": "everything", "events": list(_EVERY_EVENT), "receiver": SLACK_RECEIVER}
        )

    options = SandboxOptions(
        data_dir=root / "sandbox",
        say=_say,
        service_settings={
            deploy.ENV_CANARY_SETTING: env_canary,
            "SLIPWAY_GITWATCHER_WEBHOOK_PORT": str(webhook_port),
        },
        customize_control=customize,
    )
    started = time.monotonic()
    async with Sandbox(options) as sandbox:
        stack = sandbox.stack
        assert stack.postgres is not None and stack.nats is not None
        target = Target(
            api_url=stack.api_url,
            keys={"admin": stack.api_key},
            repo=sandbox.repo.path,
            repository_id=REPOSITORY_ID,
            database_url=stack.app_database_url,
            superuser_url=stack.postgres.url,
            schema=stack.schema,
            nats_url=stack.nats.url,
            nats_urls={name: stack.nats.url_for(name) for name in stack.nats.passwords},
            data_dir=stack.data_dir,
            webhook_url=f"http://127.0.0.1:{webhook_port}",
            webhook_secret=webhook_secret,
            markers=markers,
            outside=outside,
            receiver_messages=lambda: list(sandbox.receiver.messages),
        )
        target.canaries[env_canary] = "script-env"
        for role in ("read-write", "read-only"):
            answer = await target.api(
                "POST", "/api-keys", json={"role": role, "name": f"bench-{role}"}
            )
            target.keys[role] = json.loads(answer.text)["secret"]
        outcomes: list[tuple[Attack, Outcome]] = []
        for family in families:
            for attack in _FAMILIES[family]():
                try:
                    outcome = await attack.run(target)
                except Exception as exc:  # noqa: BLE001 - an attack that crashes is reported
                    outcome = Outcome(
                        False, f"the attack crashed: {type(exc).__name__}: {exc}"[:300]
                    )
                outcomes.append((attack, outcome))
                mark = "blocked" if outcome.blocked else "NOT BLOCKED"
                _say(f"  {attack.family:<9} {attack.name:<48} {mark}  {outcome.detail[:90]}")
        leaked, executed = await collect_evidence(target)
    return _report(outcomes, leaked, executed, time.monotonic() - started)


def _report(
    outcomes: list[tuple[Attack, Outcome]],
    leaked: dict[str, set[str]],
    executed: set[str],
    duration_s: float,
) -> dict[str, Any]:
    names = {attack.name for attack, _ in outcomes}
    by_family: dict[str, dict[str, int]] = {}
    for attack, outcome in outcomes:
        counts = by_family.setdefault(attack.family, {"attacks": 0, "blocked": 0})
        counts["attacks"] += 1
        counts["blocked"] += outcome.blocked
    return {
        "attacks": len(outcomes),
        "blocked": sum(outcome.blocked for _, outcome in outcomes),
        "leaked": len(leaked),
        "executed": len(executed),
        "by_family": by_family,
        "not_blocked": {a.name: o.detail for a, o in outcomes if not o.blocked},
        "leaks": {name: sorted(where) for name, where in sorted(leaked.items())},
        "executed_attacks": sorted(name for name in executed if name in names) or sorted(executed),
        "duration_s": round(duration_s, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: run the attacks and print the JSON report."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.security", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print only the JSON report")
    parser.add_argument("--keep", type=Path, help="run in this directory and keep it")
    parser.add_argument("--only", nargs="*", choices=sorted(_FAMILIES), help="these families")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="slipway-bench-security-"))
    families = [f for f in _FAMILIES if not args.only or f in args.only]
    try:
        report = asyncio.run(run(root.resolve(), families))
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
    else:
        print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
