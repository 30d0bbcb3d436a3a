"""The seed's story (DESIGN §1) as data: steps, what each should do, and how to judge it.

Everything here is pure: a `Step` says what to change (a commit, a sync, a
`git revert`, an image rule) and what the world should look like afterwards;
`judge` compares an `Observed` with the step's `Expectation` and names every
difference. `slipway_sandbox.storyrunner` does the I/O (git, the API, kubesim,
the event log, the Slack receiver; `story_outcomes` folds the events it reads)
and feeds the observations back here, so the story is the same for `make demo`,
`slipway demo --once`, the end-to-end test and the benchmark.

The steps, as the seed's team lived them:

0. bootstrap — register `account-dev` and `account-prd` through the API and
   deploy what prd runs today (its first deployment: a quick sync of v1);
1. dev — CI merges an image bump to dev: QuickSync → SUCCESS;
2. prd — the same bump to prd: canary → analysis on `grpc_error_rate` →
   primary → canary clean → SUCCESS;
3. bad — a bump to an image that answers errors: the analysis fails, the
   deployment rolls back by itself and Slack is told;
4. revert — `git revert` of that bump: a new deployment of the old version.

`slipway demo --event-watcher` adds a step after dev's bump: CI registers an
image event; the event watcher writes the image into dev's and stg's
manifests in one commit; that commit deploys dev (stg ignores commits), and
dev's success starts its chain (`postSync.chain`), which deploys stg.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final

from slipway_sandbox.demo_repo import CHAINED_ENV, DemoTiming, app_name, image

BAD_TAG: Final = "v3"
BAD_ERROR_RATE: Final = 0.5
"""Half the bad image's requests fail: far above the template's 1 % threshold."""

PIPELINE_STAGES: Final = (
    "K8S_CANARY_ROLLOUT",
    "ANALYSIS",
    "K8S_PRIMARY_ROLLOUT",
    "K8S_CANARY_CLEAN",
)
PIPELINE_STAGES_WITHOUT_ANALYSIS: Final = (
    "K8S_CANARY_ROLLOUT",
    "WAIT",
    "K8S_PRIMARY_ROLLOUT",
    "K8S_CANARY_CLEAN",
)

EVENT_TAG: Final = "v2.1"
"""The image tag the event-watcher step registers for dev."""

CORE_SERVICES: Final = frozenset({"relay", "projector", "api", "gitwatcher", "planner", "executor"})


# --- Actions: what a step changes ---------------------------------------------------


@dataclass(frozen=True)
class Register:
    """Register the demo's applications through the API (the seed's pipectl script)."""

    apps: tuple[str, ...]


@dataclass(frozen=True)
class Sync:
    """`slipway app sync APP`: deploy the branch head now."""

    app: str


@dataclass(frozen=True)
class Bump:
    """A merged pull request: the image tag of `env` becomes `tag`."""

    env: str
    tag: str
    message: str


@dataclass(frozen=True)
class Revert:
    """`git revert` of the commit step `step` made (the seed's manual rollback)."""

    step: str


@dataclass(frozen=True)
class ImageRule:
    """Make pods of `tag` answer `error_rate` of their requests with errors (kubesim)."""

    tag: str
    error_rate: float


@dataclass(frozen=True)
class RegisterEvent:
    """CI's `slipway event register` of the service's image `tag` (labels: `app`); the event
    watcher writes it where the configs' watchers say."""

    tag: str


Action = Register | Sync | Bump | Revert | ImageRule | RegisterEvent


# --- Expectations and observations --------------------------------------------------


@dataclass(frozen=True)
class ChainExpectation:
    """The chain the step's deployment starts when it succeeds (`postSync.chain`)."""

    status: str
    deploys: tuple[tuple[str, str], ...]
    """(application, environment) of each deployment the chain opens, block by block; each
    is expected to end SUCCESS with `live_tag` running, applied by it."""
    live_tag: str


@dataclass(frozen=True)
class Expectation:
    """What the world looks like once the step's deployment is done."""

    app: str
    env: str
    status: str
    live_tag: str
    strategy: str | None = None
    stages: tuple[str, ...] = ()
    """Visible stages, in order, each expected to end SUCCESS (empty: not checked)."""
    rolled_back: bool = False
    notified: bool = False
    """A Slack-format message naming the application reaches the local receiver."""
    deployed_by_this_step: bool = True
    """The live workload carries this step's deployment id (it was applied by it)."""
    chain: ChainExpectation | None = None


@dataclass(frozen=True)
class Step:
    """One step of the story: what is done, what must follow, how long it may wait."""

    key: str
    title: str
    actions: tuple[Action, ...]
    expect: Expectation
    configured_wait_s: float = 0.0
    """Seconds the configuration itself makes this step wait (analysis, WAIT stages)."""
    timeout_s: float = 90.0
    needs: frozenset[str] = CORE_SERVICES


@dataclass(frozen=True)
class StageOutcome:
    """One stage's end as the story saw it."""

    name: str
    status: str
    reason: str = ""


@dataclass(frozen=True)
class DeploymentOutcome:
    """One deployment's end as the story saw it: status, strategy, commit and stages."""

    deployment_id: str
    status: str
    """SUCCESS | FAILURE | CANCELLED, or PENDING/PLANNED/RUNNING if not done in time."""
    strategy: str = ""
    commit_hash: str = ""
    stages: tuple[StageOutcome, ...] = ()
    rolled_back: bool = False
    reason: str = ""


@dataclass(frozen=True)
class ChainedDeployment:
    """A deployment a chain opened (block 1 and later), and what then runs where it deployed."""

    block: int
    app: str
    deployment_id: str
    status: str
    """SUCCESS | FAILURE | CANCELLED as the chain recorded it; "" while it runs."""
    live_image: str | None = None
    live_deployment_id: str | None = None


@dataclass(frozen=True)
class ChainOutcome:
    """One deployment chain's end as the story saw it."""

    chain_id: str
    status: str
    """SUCCESS | FAILURE | CANCELLED, or RUNNING if not done in time."""
    reason: str = ""
    deployments: tuple[ChainedDeployment, ...] = ()


@dataclass(frozen=True)
class Observed:
    """Everything a step's verdict looks at: the deployment, the live state, the messages."""

    deployment: DeploymentOutcome | None
    live_image: str | None
    live_deployment_id: str | None
    canary_left: bool
    messages: tuple[tuple[str, ...], ...] = ()
    """The receiver's new messages during the step, each as the lines a person reads."""
    notifier_present: bool = True
    chain: ChainOutcome | None = None
    """The chain the deployment started, followed to its end (looked for only when expected)."""


@dataclass(frozen=True)
class Verdict:
    """A step's verdict: what went wrong (nothing when ok) and notes."""

    step: str
    problems: tuple[str, ...]
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """Whether the step did what it expects."""
        return not self.problems


def judge(step: Step, observed: Observed) -> Verdict:
    """Every way `observed` differs from what `step` expects (pure)."""
    expect = step.expect
    problems: list[str] = []
    notes: list[str] = []
    deployment = observed.deployment
    if deployment is None:
        return Verdict(step.key, (f"no deployment of {expect.app} was triggered",))
    if deployment.status != expect.status:
        why = f" ({deployment.reason})" if deployment.reason else ""
        problems.append(f"status {deployment.status}, expected {expect.status}{why}")
    if expect.strategy is not None and deployment.strategy != expect.strategy:
        problems.append(f"strategy {deployment.strategy or '-'}, expected {expect.strategy}")
    if expect.stages:
        visible = tuple(s for s in deployment.stages if s.name != "ROLLBACK")
        names = tuple(s.name for s in visible)
        if names != expect.stages:
            problems.append(f"stages {list(names)}, expected {list(expect.stages)}")
        elif expect.status == "SUCCESS":
            problems += [
                f"stage {s.name} ended {s.status}" for s in visible if s.status != "SUCCESS"
            ]
    if expect.rolled_back != deployment.rolled_back:
        problems.append(
            "it rolled back, which it should not have"
            if deployment.rolled_back
            else "it did not roll back"
        )
    if expect.rolled_back:
        rollback = [s for s in deployment.stages if s.name == "ROLLBACK"]
        if not rollback or rollback[-1].status != "SUCCESS":
            state = rollback[-1].status if rollback else "absent"
            problems.append(f"the ROLLBACK stage is {state}, expected SUCCESS")
    wanted = image(expect.live_tag)
    if observed.live_image != wanted:
        problems.append(f"kubesim runs {observed.live_image or 'nothing'}, expected {wanted}")
    if expect.deployed_by_this_step and observed.live_deployment_id != deployment.deployment_id:
        problems.append(
            f"the live workload was applied by deployment {observed.live_deployment_id or '-'},"
            f" not by this step's {deployment.deployment_id}"
        )
    if observed.canary_left:
        problems.append("a canary is still running")
    if expect.notified:
        if not observed.notifier_present:
            notes.append("not checked: the notifier service is not in this checkout")
        elif not any(mentions(lines, expect.app) for lines in observed.messages):
            problems.append(f"the Slack receiver got no message about {expect.app}")
    if expect.chain is not None:
        problems += judge_chain(expect.app, expect.chain, observed.chain)
    return Verdict(step.key, tuple(problems), tuple(notes))


def judge_chain(app: str, expect: ChainExpectation, chain: ChainOutcome | None) -> list[str]:
    """Every way the chain `app`'s deployment started differs from `expect` (pure)."""
    if chain is None:
        return [f"{app}'s deployment started no chain (postSync.chain)"]
    problems: list[str] = []
    if chain.status != expect.status:
        why = f" ({chain.reason})" if chain.reason else ""
        problems.append(f"the chain is {chain.status}, expected {expect.status}{why}")
    deployed = [d.app for d in chain.deployments]
    wanted = [name for name, _ in expect.deploys]
    if deployed != wanted:
        problems.append(f"the chain deployed {deployed}, expected {wanted}")
    for done in chain.deployments:
        if done.status != "SUCCESS":
            problems.append(f"the chain's deployment of {done.app} is {done.status or 'running'}")
        if done.live_image != image(expect.live_tag):
            problems.append(
                f"kubesim runs {done.live_image or 'nothing'} for {done.app}, "
                f"expected {image(expect.live_tag)}"
            )
        elif done.live_deployment_id != done.deployment_id:
            problems.append(
                f"{done.app}'s live workload was applied by deployment "
                f"{done.live_deployment_id or '-'}, not by the chain's {done.deployment_id}"
            )
    return problems


def mentions(lines: Sequence[str], app: str) -> bool:
    """Whether any of `lines` names `app`."""
    return any(app in line for line in lines)


# --- The story ----------------------------------------------------------------------


@dataclass(frozen=True)
class Story:
    """The seed's story: its steps in order, its timings, whether analysis is on."""

    steps: tuple[Step, ...]
    timing: DemoTiming = field(default_factory=DemoTiming)
    with_analysis: bool = True

    def step(self, key: str) -> Step:
        """The step with `key`."""
        return next(s for s in self.steps if s.key == key)


def seed_story(
    timing: DemoTiming, *, with_analysis: bool = True, with_event_watcher: bool = False
) -> Story:
    """The seed's story with these waits; without analysis, prd's pipeline WAITs instead.

    With the event watcher, a step after dev's bump registers an image event the
    way CI would; the event watcher commits it, dev deploys it, and dev's chain
    then deploys stg (registered with the others).
    """
    dev, prd, chained = app_name("dev"), app_name("prd"), app_name(CHAINED_ENV)
    registered = (dev, chained, prd) if with_event_watcher else (dev, prd)
    analysis_s = float(timing.analysis_s)
    # A rollout takes a few readiness delays; an analysis its duration; the rest is slack
    # for a busy machine (2 cores shared with a test suite).
    pipeline_timeout = 90.0 + 2 * analysis_s
    steps = [
        Step(
            key="bootstrap",
            title=f"register {', '.join(registered)}; prd's first deployment (v1)",
            actions=(Register(registered), Sync(prd)),
            expect=Expectation(
                app=prd, env="prd", status="SUCCESS", live_tag="v1", strategy="quick_sync"
            ),
        ),
        Step(
            key="dev",
            title="merge the v2 image bump for dev: QuickSync",
            actions=(Bump("dev", "v2", "account: bump image to v2 in dev"),),
            expect=Expectation(
                app=dev,
                env="dev",
                status="SUCCESS",
                live_tag="v2",
                strategy="quick_sync",
                stages=("K8S_SYNC",),
            ),
        ),
        *(
            [
                Step(
                    key="image-event",
                    title=f"CI registers an image event ({EVENT_TAG}): written back to git, "
                    f"deployed to dev, then to {CHAINED_ENV} by dev's chain",
                    actions=(RegisterEvent(EVENT_TAG),),
                    expect=Expectation(
                        app=dev,
                        env="dev",
                        status="SUCCESS",
                        live_tag=EVENT_TAG,
                        strategy="quick_sync",
                        stages=("K8S_SYNC",),
                        chain=ChainExpectation(
                            status="SUCCESS",
                            deploys=((chained, CHAINED_ENV),),
                            live_tag=EVENT_TAG,
                        ),
                    ),
                    # Two deployments one after the other: dev's, then the chain's.
                    timeout_s=150.0,
                )
            ]
            if with_event_watcher
            else []
        ),
        Step(
            key="prd",
            title=(
                "merge the v2 image bump for prd: canary → analysis → primary → clean"
                if with_analysis
                else "merge the v2 image bump for prd: canary → wait → primary → clean"
            ),
            actions=(Bump("prd", "v2", "account: bump image to v2 in prd"),),
            expect=Expectation(
                app=prd,
                env="prd",
                status="SUCCESS",
                live_tag="v2",
                strategy="pipeline",
                stages=PIPELINE_STAGES if with_analysis else PIPELINE_STAGES_WITHOUT_ANALYSIS,
            ),
            configured_wait_s=analysis_s,
            timeout_s=pipeline_timeout,
            needs=CORE_SERVICES | ({"analysis"} if with_analysis else set()),
        ),
        Step(
            key="bad",
            title=f"merge a bump to {BAD_TAG}, an image whose requests fail: "
            "analysis fails, automatic rollback, Slack",
            actions=(
                ImageRule(BAD_TAG, BAD_ERROR_RATE),
                Bump("prd", BAD_TAG, f"account: bump image to {BAD_TAG} in prd"),
            ),
            expect=Expectation(
                app=prd,
                env="prd",
                status="FAILURE",
                live_tag="v2",
                strategy="pipeline",
                rolled_back=True,
                notified=True,
                # What runs is what ran before, re-applied by the rollback.
                deployed_by_this_step=False,
            ),
            # The verdict comes at the first failing look, one interval in.
            configured_wait_s=float(timing.analysis_interval_s),
            timeout_s=pipeline_timeout,
            needs=CORE_SERVICES | {"analysis"},
        ),
        Step(
            key="revert",
            title=f"`git revert` the {BAD_TAG} bump: prd deploys v2 again",
            actions=(Revert("bad"),),
            expect=Expectation(app=prd, env="prd", status="SUCCESS", live_tag="v2"),
            timeout_s=pipeline_timeout,
            needs=CORE_SERVICES | {"analysis"},
        ),
    ]
    return Story(tuple(steps), timing, with_analysis)


def playable(step: Step, present: frozenset[str], skipped: frozenset[str]) -> str | None:
    """Why `step` cannot be played here (None when it can): a missing service or step."""
    missing = sorted(step.needs - present)
    if missing:
        return f"needs {', '.join(missing)}, not in this checkout"
    for action in step.actions:
        if isinstance(action, Revert) and action.step in skipped:
            return f"reverts step {action.step!r}, which was not played"
    return None
