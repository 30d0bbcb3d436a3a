"""`slipway up`: run the whole stack locally on embedded servers (what `make demo` runs)."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from shared.sandbox.stack import Stack


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("up", help="run the local sandbox: servers and every service")
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=Path(".sandbox"),
        help="where the servers keep their data and services their logs",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="start, check every service is ready, stop; exit 0 only if all were",
    )
    parser.add_argument("--ready-timeout", type=float, default=60.0)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    stack = Stack(args.data_dir.resolve())
    stopping = False

    def request_stop(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        _say("starting PostgreSQL and NATS (JetStream)")
        stack.start_servers()
        assert stack.postgres is not None and stack.nats is not None
        _say(f"  postgres  {stack.postgres.url}  (services log in as {stack.app_database_url})")
        _say(f"  nats      {stack.nats.url}")
        _say("starting services: " + ", ".join(stack.services))
        stack.start_services()
        not_ready = stack.wait_ready(args.ready_timeout)
        for service in stack.processes:
            state = "ready" if service.name not in not_ready else "NOT READY"
            pid = service.process.pid if service.process else "-"
            _say(
                f"  {service.name:<10} {state:<9} pid {pid}"
                f"  health {service.health_url}/readyz  log {service.log_path}"
            )
        if not_ready:
            _say(f"not ready: {', '.join(not_ready)} — see the logs above")
            return 1
        env_file = stack.env_file()
        if "api" in stack.services:
            _say(f"  api       {stack.api_url}  (SLIPWAY_API_URL in {env_file})")
        _say("all services ready")
        if args.once:
            return 0
        _say(f"explore with:  source {env_file}   (Ctrl-C stops everything)")
        while not stopping:
            for service in stack.restart_exited():
                _say(f"  {service.name} exited; restarted (restart #{service.restarts})")
            time.sleep(0.5)
        return 0
    finally:
        _say("stopping")
        stack.stop()


def _say(message: str) -> None:
    print(message, file=sys.stdout, flush=True)
