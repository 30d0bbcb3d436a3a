"""`slipway kubesim`: run the Kubernetes API server emulator in the foreground (DESIGN §7)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
from pathlib import Path

from kubesim import CustomKind, ForbiddenRule, ImageRule, KubeSim, load_rules_file
from shared.errors import ConfigError


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway kubesim` (run the Kubernetes emulator) to the parser."""
    parser = subparsers.add_parser(
        "kubesim",
        help="run kubesim, a Kubernetes API server emulator, and write a kubeconfig for it",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: any free port)")
    parser.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path("kubesim.kubeconfig"),
        help="where to write a kubeconfig for kubectl and kubernetes clients",
    )
    parser.add_argument("--rules", type=Path, help="YAML image rules (see README, kubesim)")
    parser.add_argument(
        "--image-rule",
        action="append",
        default=[],
        metavar="'PATTERN key=value,…'",
        help="an image rule, e.g. '*:bad error_rate=0.3,latency_ms=250' (repeatable; "
        "checked before --rules)",
    )
    parser.add_argument(
        "--ready-delay", type=float, help="seconds before a pod turns Ready (default 1)"
    )
    parser.add_argument(
        "--kind",
        action="append",
        default=[],
        metavar="GROUP/VERSION/KIND[/PLURAL][/cluster]",
        help="serve another kind, as a CRD would (repeatable)",
    )
    parser.add_argument(
        "--forbid-namespace",
        action="append",
        default=[],
        metavar="NAMESPACE",
        help="answer 403 Forbidden to every request in this namespace (repeatable)",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated traffic")
    parser.add_argument(
        "--server-version", default="1.32", help="Kubernetes version /version reports"
    )
    parser.set_defaults(handler=run)


def build(args: argparse.Namespace) -> KubeSim:
    """The emulator the arguments describe; bad rules or kinds are configuration errors."""
    rules: list[ImageRule] = []
    delay: float | None = None
    try:
        rules += [ImageRule.parse(text) for text in args.image_rule]
        if args.rules is not None:
            file_delay, file_rules = load_rules_file(args.rules)
            rules += file_rules
            delay = file_delay
        kinds = [CustomKind.parse(spec) for spec in args.kind]
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    if args.ready_delay is not None:
        delay = args.ready_delay
    return KubeSim(
        host=args.host,
        port=args.port,
        rules=rules,
        ready_delay_s=1.0 if delay is None else delay,
        seed=args.seed,
        custom_kinds=kinds,
        forbidden=[ForbiddenRule(namespace=ns) for ns in args.forbid_namespace],
        server_version=args.server_version,
    )


def run(args: argparse.Namespace) -> int:
    """Run kubesim until interrupted, with a kubeconfig written for it."""
    sim = build(args)
    return asyncio.run(_serve(sim, args.kubeconfig))


async def _serve(sim: KubeSim, kubeconfig: Path) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await sim.start()
    except OSError as exc:
        print(f"slipway kubesim: cannot listen on {sim.host}:{sim.port}: {exc}", file=sys.stderr)
        return 1
    try:
        path = sim.write_kubeconfig(kubeconfig)
        _say(f"kubesim listening on {sim.url}")
        _say(f"  kubeconfig       {path.resolve()}   (export KUBECONFIG={path.resolve()})")
        _say(f"  metrics targets  {sim.url}/kubesim/targets   (Prometheus http_sd_configs)")
        _say(f"  image rules      {sim.url}/kubesim/images    (GET / PUT)")
        _say("Ctrl-C stops it")
        await stop.wait()
        return 0
    finally:
        _say("stopping kubesim")
        with contextlib.suppress(Exception):
            await sim.stop()


def _say(message: str) -> None:
    print(message, file=sys.stdout, flush=True)
