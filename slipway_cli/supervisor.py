"""The sandbox's supervisor behind `slipway demo` and `slipway up` (DESIGN §1, §12).

Start the sandbox, play the seed's story if asked, stay up if asked (until Ctrl-C),
stop. This is the one CLI module that imports the sandbox (`slipway_sandbox`, a
development tool the service image leaves out); the commands import it only when
they run (`slipway_cli.sandboxed`), so the rest of the CLI works without it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Final

from shared.aio import sleep_or_stop
from slipway_sandbox.demo_repo import DemoTiming
from slipway_sandbox.sandbox import Sandbox, SandboxError, SandboxOptions, say_stdout
from slipway_sandbox.storyrunner import StoryReport

# What `slipway demo` and `slipway up` exit with (README: "exit codes").
EXIT_OK: Final = 0
EXIT_STORY_FAILED: Final = 1
EXIT_NOT_STARTED: Final = 2


def options_from(args: argparse.Namespace) -> SandboxOptions:
    """The sandbox's options from the command's arguments."""
    return SandboxOptions(
        data_dir=args.data_dir,
        say=say_stdout,
        replicas=args.replicas,
        timing=DemoTiming()
        if args.analysis_seconds is None
        else DemoTiming(analysis_s=args.analysis_seconds),
        ready_timeout_s=args.ready_timeout,
        require_all=not args.allow_missing,
        event_watcher=args.event_watcher,
    )


def run(args: argparse.Namespace) -> int:
    """Start the sandbox and play the story; an exit code from EXIT_*."""
    return asyncio.run(
        supervise(options_from(args), play=True, stay_up=not args.once, report_path=args.report)
    )


async def supervise(
    options: SandboxOptions, *, play: bool, stay_up: bool, report_path: Path | None = None
) -> int:
    """Start the sandbox, play the story if asked, stay up if asked (until Ctrl-C), stop."""
    say = options.say
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        sandbox = Sandbox(options)
        try:
            await sandbox.__aenter__()
        except (SandboxError, RuntimeError, OSError) as exc:
            say(f"slipway: the sandbox did not start: {exc}")
            return EXIT_NOT_STARTED
        try:
            env_file = sandbox.stack.env_file()
            say("all services ready")
            code = EXIT_OK
            report: StoryReport | None = None
            if play and not stop.is_set():
                say("")
                say("playing the seed's story (DESIGN §1)")
                report = await _until_stopped(sandbox.play(), stop)
                if report is None:
                    say("stopped before the story ended")
                    return EXIT_STORY_FAILED
                _summarise(report, sandbox, say)
                if report_path is not None:
                    text = json.dumps(report_json(report, sandbox), indent=2)
                    await asyncio.to_thread(report_path.write_text, text)
                # With --allow-missing, skipped steps are not failures (they were announced).
                passed = report.ok if options.require_all else report.played_ok
                code = EXIT_OK if passed else EXIT_STORY_FAILED
            if stay_up and not stop.is_set():
                _explain(sandbox, env_file, report, say)
                while not stop.is_set():
                    sandbox.restart_exited()
                    await sleep_or_stop(stop, 0.5)
            return code
        finally:
            say("stopping")
            await sandbox.stop()
            say("stopped")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


async def _until_stopped(
    play: Coroutine[Any, Any, StoryReport], stop: asyncio.Event
) -> StoryReport | None:
    story = asyncio.ensure_future(play)
    stopper = asyncio.ensure_future(stop.wait())
    done, _ = await asyncio.wait({story, stopper}, return_when=asyncio.FIRST_COMPLETED)
    stopper.cancel()
    if story in done:
        result: StoryReport = story.result()
        return result
    story.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await story
    return None


def _summarise(report: StoryReport, sandbox: Sandbox, say: Any) -> None:
    say("")
    for line in summary_lines(report, sandbox.startup_s):
        say(line)


def summary_lines(report: StoryReport, startup_s: float) -> list[str]:
    """The verdict, then one line per step, the times in one column whatever the steps."""
    verdict = "PASSED" if report.ok else "PASSED (partly)" if report.played_ok else "FAILED"
    lines = [f"story {verdict} in {report.seconds:.1f} s (start-up {startup_s:.1f} s)"]
    # As wide as the longest key: optional steps (`image-event`) are longer than the core's.
    width = max((len(step.key) for step in report.steps), default=0)
    for step in report.steps:
        key = step.key.ljust(width)
        if step.skipped is not None:
            lines.append(f"  -  {key} skipped: {step.skipped}")
        elif step.ok:
            lines.append(f"  ✓  {key} {step.seconds:6.1f} s")
        else:
            problems = "; ".join(step.verdict.problems) if step.verdict else "not judged"
            lines.append(f"  ✗  {key} {step.seconds:6.1f} s  {problems}")
    return lines


def report_json(report: StoryReport, sandbox: Sandbox) -> dict[str, Any]:
    """The story report as JSON (`--report`): outcome, timings, each step."""
    return {
        "ok": report.ok,
        "startup_s": round(sandbox.startup_s, 3),
        "story_s": round(report.seconds, 3),
        "configured_wait_s": report.configured_wait_s,
        "steps": [
            {
                "key": step.key,
                "ok": step.ok,
                "seconds": round(step.seconds, 3),
                "configured_wait_s": step.configured_wait_s,
                "skipped": step.skipped,
                "problems": list(step.verdict.problems) if step.verdict else [],
                "deployment_id": step.deployment.deployment_id if step.deployment else None,
                "status": step.deployment.status if step.deployment else None,
            }
            for step in report.steps
        ],
    }


def _explain(sandbox: Sandbox, env_file: Path, report: StoryReport | None, say: Any) -> None:
    say("")
    say("the sandbox stays up; explore it with the CLI in another terminal:")
    say(f"  source {env_file}")
    say("  slipway app list")
    say("  slipway app get account-prd")
    say("  slipway deployment list --app account-prd")
    bad = next((s for s in report.steps if s.key == "bad"), None) if report else None
    if bad is not None and bad.deployment is not None:
        deployment = bad.deployment.deployment_id
        say(f"  slipway deployment get {deployment}     # the bad image, rolled back")
        say(f"  slipway deployment logs {deployment}")
    say("  slipway app sync account-dev --wait-status SUCCESS --timeout 120")
    # Without a position `tail` waits for new events, and the story is over: it would sit silent.
    say("  slipway events tail --from-position 0     # the whole log, then new events as they come")
    say("  kubectl get deployments,pods -n prd     # kubesim, through KUBECONFIG")
    say(f"  logs: {sandbox.stack.data_dir / 'logs'}   config repo: {sandbox.repo.path}")
    say("Ctrl-C stops everything")
