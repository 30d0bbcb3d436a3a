"""Plays `slipway_sandbox.story` against a running sandbox: the I/O edge of the story.

It changes the world the way the seed's people and CI do — the config
repository (commits, `git revert`), the API (register, sync), kubesim's
image rules — and watches it through the event log (PostgreSQL), kubesim's
Kubernetes API and the local Slack receiver. Each step's observations go to
`story.judge`; progress goes to `say`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import asyncpg

from shared.errors import SlipwayError
from shared.eventlog import EventStore
from shared.events.base import Event
from shared.events.catalog import (
    ChainBlockStarted,
    ChainCompleted,
    ChainDeploymentFinished,
    ChainStarted,
    CommitObserved,
    DeploymentTriggered,
    default_registry,
)
from shared.events.ids import chain_id_of
from shared.events.streams import chain_stream, deployment_stream, repository_stream
from slipway_client import API_KEY_ENV, API_URL_ENV, ApiClient, ApiError
from slipway_sandbox.control import PLATFORM_PROVIDER, REPOSITORY_ID
from slipway_sandbox.demo_repo import (
    SERVICE,
    DemoRepo,
    app_path,
    image,
    image_bump,
)
from slipway_sandbox.kubesim_client import Kubesim
from slipway_sandbox.receiver import SlackReceiver, message_lines
from slipway_sandbox.story import (
    Action,
    Bump,
    ChainExpectation,
    ChainOutcome,
    DeploymentOutcome,
    ImageRule,
    Observed,
    Register,
    RegisterEvent,
    Revert,
    Step,
    Story,
    Sync,
    Verdict,
    judge,
    mentions,
    playable,
)
from slipway_sandbox.story_outcomes import FINAL_STATUSES, fold_chain, fold_deployment

POLL_S: Final = 0.25
NOTIFY_WAIT_S: Final = 30.0
"""How long a failed deployment's Slack message may trail its completion."""

Say = Callable[[str], None]


@dataclass
class StepReport:
    """How one step went: its time, its verdict, or why it was skipped."""

    key: str
    title: str
    seconds: float = 0.0
    configured_wait_s: float = 0.0
    verdict: Verdict | None = None
    skipped: str | None = None
    deployment: DeploymentOutcome | None = None
    chain: ChainOutcome | None = None

    @property
    def ok(self) -> bool:
        """Whether the step ran and its verdict is ok."""
        return self.skipped is None and self.verdict is not None and self.verdict.ok


@dataclass
class StoryReport:
    """How the story went: each step's report and the total time."""

    steps: list[StepReport] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """Every step played, and each behaved as expected."""
        return bool(self.steps) and all(s.ok for s in self.steps)

    @property
    def played_ok(self) -> bool:
        """Each step that was played behaved as expected (skipped ones aside)."""
        played = [s for s in self.steps if s.skipped is None]
        return bool(played) and all(s.ok for s in played)

    @property
    def configured_wait_s(self) -> float:
        """The waits the steps' configs impose (WAIT stages, analysis), of steps that ran."""
        return sum(s.configured_wait_s for s in self.steps if s.skipped is None)


class StoryRunner:
    """One sandbox's story: its repository, API, kubesim, event log and Slack receiver."""

    def __init__(
        self,
        *,
        story: Story,
        repo: DemoRepo,
        api: ApiClient,
        kubesim: Kubesim,
        pool: asyncpg.Pool,
        receiver: SlackReceiver | None,
        present: frozenset[str],
        say: Say,
    ) -> None:
        self.story = story
        self.repo = repo
        self.api = api
        self.kubesim = kubesim
        self.store = EventStore(pool, default_registry())
        self.pool = pool
        self.receiver = receiver
        self.present = present
        self.say = say
        self.app_ids: dict[str, str] = {}
        self.commits: dict[str, str] = {}

    async def _slipway(self, *args: str) -> str:
        """What `slipway ARGS` prints against the sandbox's API: the command itself, run as a
        person would (the sandbox sits below the CLI and does not import it)."""
        env = os.environ | {API_URL_ENV: self.api.base_url, API_KEY_ENV: self.api.key or ""}
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "slipway_cli",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
        )
        async with asyncio.timeout(60):
            out, _ = await process.communicate()
        return out.decode(errors="replace")

    async def play(self) -> StoryReport:
        """Play every step in order, skipping those the checkout or an earlier failure rules out."""
        report = StoryReport()
        started = time.monotonic()
        skipped: set[str] = set()
        for number, step in enumerate(self.story.steps):
            self.say(f"[{number}/{len(self.story.steps) - 1}] {step.title}")
            why_not = (
                "an earlier step could not be played"
                if step.key in skipped
                else playable(step, self.present, frozenset(skipped))
            )
            if why_not is not None:
                skipped.add(step.key)
                self.say(f"    skipped: {why_not}")
                report.steps.append(StepReport(step.key, step.title, skipped=why_not))
                continue
            try:
                played = await self.play_step(step)
            except (
                SlipwayError,
                OSError,
                urllib.error.URLError,
                RuntimeError,
            ) as exc:
                # The world refused an action or an observation (the API, git, kubesim):
                # this step failed, and the later ones build on it, so they are not played.
                self.say(f"    ✗ could not play this step: {exc}")
                played = StepReport(
                    step.key,
                    step.title,
                    verdict=Verdict(step.key, (f"could not be played: {exc}",)),
                )
                skipped.update(s.key for s in self.story.steps)
            report.steps.append(played)
        report.seconds = time.monotonic() - started
        return report

    async def play_step(self, step: Step) -> StepReport:
        """Do one step's actions and wait for, then judge, what should follow."""
        started = time.monotonic()
        mark = await self._log_position()
        seen_messages = len(self.receiver.messages) if self.receiver else 0
        for action in step.actions:
            await self._act(step, action)
        outcome = await self._follow(step, mark)
        chain = None
        if step.expect.chain is not None and outcome is not None and outcome.status == "SUCCESS":
            chain = await self._follow_chain(step, step.expect.chain, outcome.deployment_id)
        messages = await self._messages(step, outcome, seen_messages)
        live = await asyncio.to_thread(self.kubesim.deployment, step.expect.env, SERVICE)
        canary = await asyncio.to_thread(
            self.kubesim.deployment, step.expect.env, f"{SERVICE}-canary"
        )
        observed = Observed(
            deployment=outcome,
            live_image=_image_of(live),
            live_deployment_id=_annotation(live, "slipway.dev/deployment"),
            canary_left=canary is not None,
            messages=messages,
            notifier_present="notifier" in self.present,
            chain=chain,
        )
        verdict = judge(step, observed)
        seconds = time.monotonic() - started
        for note in verdict.notes:
            self.say(f"    note: {note}")
        if verdict.ok:
            self.say(f"    ✓ as expected ({seconds:.1f} s)")
        else:
            for problem in verdict.problems:
                self.say(f"    ✗ {problem}")
        return StepReport(
            step.key,
            step.title,
            seconds=seconds,
            configured_wait_s=step.configured_wait_s,
            verdict=verdict,
            deployment=outcome,
            chain=chain,
        )

    # --- actions ------------------------------------------------------------------------

    async def _act(self, step: Step, action: Action) -> None:
        match action:
            case Register(apps=apps):
                await self.register(apps)
            case Sync(app=app):
                answer = await asyncio.to_thread(self.api.sync_application, app)
                self.say(f"    slipway app sync {app}  (request {answer.get('request_id', '?')})")
            case Bump(env=env, tag=tag, message=message):
                commit = await asyncio.to_thread(
                    self.repo.commit, image_bump(env, tag, self.story.timing), message
                )
                self.commits[step.key] = commit
                self.say(f"    committed {commit[:10]} “{message}” (the merged pull request)")
            case Revert(step=reverted):
                target = self.commits[reverted]
                commit = await asyncio.to_thread(self.repo.revert, target)
                self.commits[step.key] = commit
                self.say(f"    git revert {target[:10]} → {commit[:10]}")
            case RegisterEvent(tag=tag):
                before = await asyncio.to_thread(self.repo.head)
                event_id = await asyncio.to_thread(
                    self.api.register_event,
                    name="image-update",
                    data=image(tag),
                    labels={"app": SERVICE},
                )
                self.say(
                    f"    slipway event register --name image-update --data {image(tag)} "
                    f"--labels app={SERVICE}  (event {event_id[:13]})"
                )
                commit = await self._written_back(before)
                self.commits[step.key] = commit
                subject = await asyncio.to_thread(self.repo.subject, commit)
                self.say(f"    the event watcher committed {commit[:10]} “{subject}”")
            case ImageRule(tag=tag, error_rate=rate):
                await asyncio.to_thread(self.kubesim.add_image_rule, f"*:{tag}", rate)
                self.say(f"    kubesim: pods of {image(tag)} now fail {rate:.0%} of requests")
            case _:
                raise TypeError(f"unknown story action {action!r}")

    async def register(self, apps: Sequence[str]) -> None:
        """Register the demo's `apps` through the API, then wait until the gitwatcher has
        recorded the head (a cut-over test registers them itself, before `slipway app import`)."""
        for name in apps:
            self.app_ids[name] = await asyncio.to_thread(self._register, name)
            self.say(f"    registered {name} ({self.app_ids[name]}) through the API")
        await self._wait_observed_head()

    def _register(self, name: str) -> str:
        env = name.rsplit("-", 1)[-1]
        try:
            answer = self.api.register_application(
                name=name,
                repository_id=REPOSITORY_ID,
                path=app_path(env),
                config_filename=".pipe.yaml",
                platform_provider=PLATFORM_PROVIDER,
                labels={"env": env},
            )
        except ApiError as exc:
            if exc.status != 409:
                raise
            answer = self.api.get_application(name)
        return str(answer["application_id"])

    async def _wait_observed_head(self, within: float = 60.0) -> None:
        """Until the gitwatcher has recorded the head: only commits after it trigger."""
        head = await asyncio.to_thread(self.repo.head)
        deadline = time.monotonic() + within
        read = 0  # stream versions already looked at: each poll reads only what is new
        while time.monotonic() < deadline:
            events = await self.store.read_stream(
                repository_stream(REPOSITORY_ID), from_version=read
            )
            read += len(events)
            if any(
                isinstance(e.event, CommitObserved) and e.event.commit_hash == head for e in events
            ):
                return
            await asyncio.sleep(POLL_S)
        raise RuntimeError(f"the gitwatcher did not record {head[:10]} within {within:.0f} s")

    # --- observing ----------------------------------------------------------------------

    async def _log_position(self) -> int:
        value = await self.pool.fetchval("SELECT coalesce(max(global_position), 0) FROM events")
        return int(value)

    async def _written_back(self, before: str, within: float = 60.0) -> str:
        """The event watcher's commit: the repository's head once it moves past `before`."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            head = await asyncio.to_thread(self.repo.head)
            if head != before:
                return head
            await asyncio.sleep(POLL_S)
        raise RuntimeError(f"the event watcher wrote nothing back within {within:.0f} s")

    async def _follow(self, step: Step, mark: int) -> DeploymentOutcome | None:
        """The step's deployment, followed to its end (or the step's timeout), with progress."""
        app_id = self.app_ids.get(step.expect.app, "")
        deadline = time.monotonic() + step.timeout_s
        deployment_id = None
        while deployment_id is None:
            deployment_id = await self._triggered_after(mark, app_id)
            if deployment_id is None:
                if time.monotonic() > deadline:
                    self.say(
                        f"    no deployment of {step.expect.app} within {step.timeout_s:.0f} s"
                    )
                    return None
                await asyncio.sleep(POLL_S)
        self.say(f"    deployment {deployment_id[:12]} triggered")
        shown: dict[int, tuple[str, str]] = {}
        strategy_shown = False
        events: list[Event] = []  # the stream so far: each poll reads only what is new
        while True:
            recorded = await self.store.read_stream(
                deployment_stream(deployment_id), from_version=len(events)
            )
            events += [e.event for e in recorded]
            outcome = fold_deployment(deployment_id, events)
            if outcome.strategy and not strategy_shown:
                strategy_shown = True
                self.say(f"    planned: {outcome.strategy}")
            for index, stage in enumerate(outcome.stages):
                if shown.get(index) != (stage.status, stage.reason):
                    shown[index] = (stage.status, stage.reason)
                    why = f" — {stage.reason}" if stage.reason and stage.status != "SUCCESS" else ""
                    self.say(f"      {stage.name:<20} {stage.status}{why}")
            if outcome.status in FINAL_STATUSES:
                self.say(f"    deployment {outcome.status}")
                return outcome
            if time.monotonic() > deadline:
                self.say(f"    still {outcome.status} after {step.timeout_s:.0f} s")
                return outcome
            await asyncio.sleep(POLL_S)

    async def _follow_chain(
        self, step: Step, expect: ChainExpectation, origin: str
    ) -> ChainOutcome | None:
        """The chain `origin` starts, followed to its end (or the step's timeout), with
        progress; then what `slipway chain get` shows of it. None if none starts in time."""
        chain_id = chain_id_of(origin)
        names = {app_id: name for name, app_id in self.app_ids.items()}
        deadline = time.monotonic() + step.timeout_s
        events: list[Event] = []  # the stream so far: each poll reads only what is new
        chain: ChainOutcome | None = None
        while True:
            recorded = await self.store.read_stream(
                chain_stream(chain_id), from_version=len(events)
            )
            for new in recorded:
                events.append(new.event)
                self._say_chain(new.event, fold_chain(events, names))
            chain = fold_chain(events, names)
            if chain is not None and chain.status in FINAL_STATUSES:
                break
            if time.monotonic() > deadline:
                state = "no chain started" if chain is None else f"the chain is {chain.status}"
                self.say(f"    {state} after {step.timeout_s:.0f} s")
                break
            await asyncio.sleep(POLL_S)
        if chain is None:
            return None
        self.say(f"    $ slipway chain get {chain_id}")
        for line in (await self._slipway("chain", "get", chain_id)).splitlines():
            self.say(f"      {line}" if line else "")
        where = dict(expect.deploys)
        live = []
        for done in chain.deployments:
            workload = await asyncio.to_thread(
                self.kubesim.deployment, where.get(done.app, ""), SERVICE
            )
            live.append(
                dataclasses.replace(
                    done,
                    live_image=_image_of(workload),
                    live_deployment_id=_annotation(workload, "slipway.dev/deployment"),
                )
            )
        return dataclasses.replace(chain, deployments=tuple(live))

    def _say_chain(self, event: Event, chain: ChainOutcome | None) -> None:
        """One line for each step of the chain, as it is recorded."""
        if chain is None:
            return
        match event:
            case ChainStarted():
                self.say(
                    f"    chain {chain.chain_id[:12]} started: the deployment succeeded and its "
                    "config has postSync.chain"
                )
            case ChainBlockStarted(index=index):
                for done in chain.deployments:
                    if done.block == index:
                        self.say(
                            f"    chain block {index}: deployment {done.deployment_id[:12]} "
                            f"of {done.app} triggered (on_chain)"
                        )
            case ChainDeploymentFinished(deployment_id=deployment_id, status=status):
                app = next(
                    (d.app for d in chain.deployments if d.deployment_id == deployment_id), ""
                )
                if app:
                    self.say(f"    chain: {app}'s deployment {status}")
            case ChainCompleted(status=status):
                self.say(f"    chain {status}")
            case _:
                pass

    async def _triggered_after(self, mark: int, app_id: str) -> str | None:
        rows = await self.pool.fetch(
            "SELECT * FROM events WHERE event_type = 'deployment_triggered'"
            " AND global_position > $1 ORDER BY global_position",
            mark,
        )
        for row in rows:
            event = self.store.decode_row(row).event
            if isinstance(event, DeploymentTriggered) and event.application_id == app_id:
                return event.deployment_id
        return None

    async def _messages(
        self, step: Step, outcome: DeploymentOutcome | None, seen: int
    ) -> tuple[tuple[str, ...], ...]:
        if self.receiver is None:
            return ()
        if step.expect.notified and outcome is not None and "notifier" in self.present:
            app = step.expect.app
            await self.receiver.wait_for(
                lambda messages: any(mentions(message_lines(m), app) for m in messages[seen:]),
                within=NOTIFY_WAIT_S,
            )
        return tuple(tuple(message_lines(m)) for m in self.receiver.messages[seen:])


def _image_of(deployment: dict[str, Any] | None) -> str | None:
    if deployment is None:
        return None
    containers: Sequence[dict[str, Any]] = (
        deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers", [])
    )
    return str(containers[0].get("image")) if containers else None


def _annotation(deployment: dict[str, Any] | None, key: str) -> str | None:
    if deployment is None:
        return None
    value = (deployment.get("metadata", {}).get("annotations") or {}).get(key)
    return str(value) if value is not None else None
