"""The chaos run as data: its applications, its rounds of deployments, its faults, its verdicts.

Everything here is pure and seeded (`random.Random(seed)`), so a run that
broke an invariant can be played again with the same deployments and the
same faults in the same order; `slipway_sandbox.chaos` does the I/O.

The workload is the seed's story (DESIGN §1) across many applications: each
service of the config repository deploys to `dev` (QuickSync) and `prd`
(canary → analysis → primary → clean), plus one `gate` application whose
pipeline waits for an approval the run gives, and one or two `script<N>-prd`
applications (SCRIPT_RUN → primary) whose script writes timed ticks, so two
replicas running one script at once are seen. A round is one commit bumping
every application's image; a `prd` bump is to a bad image (its pods answer
errors) at random, and the verdict each deployment must reach follows from
that design alone — a good image succeeds, a bad one fails its analysis and
rolls back — whatever faults hit it on the way.

The invariants (`Invariants`) are counted from what the run observed: the
event log, kubesim's requests (through the per-replica proxies) and the
notification receiver.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

FAULT_KINDS: Final = (
    "latency",
    "black_hole",
    "reset",
    "kill_9",
    "sigstop",
    "postgres_restart",
    "nats_restart",
)
"""Every kind of fault the run injects (the first of each run covers all of them once)."""

PROXIED: Final = ("postgres", "nats", "kubesim")
"""The backends whose traffic goes through a fault proxy (one per backend and replica group)."""

GROUPS: Final = (0, 1)
"""Replica groups: replica N of every service reaches the backends through group N's proxies."""

_WEIGHTS: Final = {
    "latency": 3,
    "black_hole": 2,
    "reset": 3,
    "kill_9": 2,
    "sigstop": 2,
    "postgres_restart": 1,
    "nats_restart": 1,
}

GATE: Final = "gate"
"""The service whose prd pipeline is WAIT_APPROVAL → K8S_PRIMARY_ROLLOUT."""
SCRIPTED: Final = "script"
"""The prefix of the services whose prd pipeline is SCRIPT_RUN → K8S_PRIMARY_ROLLOUT (their
script writes ticks the run reads back: two runs of one stage at once are an overlap)."""
BAD_PREFIX: Final = "bad"
"""Tags of images whose pods answer errors (a kubesim image rule matches `*:bad*`)."""

OVERLAP_KINDS: Final = ("apply", "analysis", "script")
"""What two replicas can do at once: Kubernetes writes, analysis queries, SCRIPT_RUN scripts."""


# --- The workload ---------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    service: str
    env: str

    @property
    def name(self) -> str:
        return f"{self.service}-{self.env}"

    @property
    def kind(self) -> str:
        """quick (dev), canary (prd, with analysis), approval (the gate) or script."""
        if self.service == GATE:
            return "approval"
        if self.service.startswith(SCRIPTED):
            return "script"
        return "quick" if self.env == "dev" else "canary"


@dataclass(frozen=True)
class Expected:
    """One deployment the run triggers, and the verdict its design decides."""

    app: App
    tag: str
    status: str  # SUCCESS | FAILURE
    rolled_back: bool
    live_tag: str
    """The image tag the app runs once the deployment is done (the old one after a rollback)."""


@dataclass(frozen=True)
class Round:
    """`sync`: the apps' first deployments through the API; else one commit of image bumps."""

    number: int
    deployments: tuple[Expected, ...]
    sync: bool = False

    def bumps(self) -> dict[App, str]:
        return {d.app: d.tag for d in self.deployments}


@dataclass(frozen=True)
class Workload:
    services: tuple[str, ...]
    apps: tuple[App, ...]
    rounds: tuple[Round, ...]

    @property
    def deployments(self) -> int:
        return sum(len(r.deployments) for r in self.rounds)


def plan_workload(rng: random.Random, deployments: int, *, bad_share: float = 0.35) -> Workload:
    """At least `deployments` deployments: prd and the gate synced first, then rounds of bumps.

    The gate's approval pipeline runs in the first bump round; round 1's canaries
    alternate bad and good images, so every run has a passing analysis and a
    failing one with its rollback and notifications.
    """
    if deployments < 1:
        raise ValueError(f"deployments must be at least 1, not {deployments}")
    count = 2 if deployments <= 12 else 5
    services = tuple(f"svc{i}" for i in range(count))
    scripted = tuple(App(f"{SCRIPTED}{i}", "prd") for i in range(1 if count == 2 else 2))
    apps = (
        *(App(s, env) for s in services for env in ("dev", "prd")),
        App(GATE, "prd"),
        *scripted,
    )
    synced = [a for a in apps if a.env == "prd"]
    live = dict.fromkeys(synced, "v1")
    rounds = [Round(0, tuple(Expected(a, "v1", "SUCCESS", False, "v1") for a in synced), sync=True)]
    total = len(synced)
    number = 1
    while total < deployments or number == 1:
        planned = []
        canaries = 0
        for app in (a for a in apps if a.service != GATE or number == 1):
            if app.kind == "canary":
                canaries += 1
            # Round 1's canaries alternate bad, good, …: every run has both verdicts.
            bad = app.kind == "canary" and (
                canaries % 2 == 1 if number == 1 else rng.random() < bad_share
            )
            if bad:
                tag = f"{BAD_PREFIX}{number}"
                planned.append(Expected(app, tag, "FAILURE", True, live.get(app, "v1")))
            else:
                tag = f"v{number + 1}"
                live[app] = tag
                planned.append(Expected(app, tag, "SUCCESS", False, tag))
        rounds.append(Round(number, tuple(planned)))
        total += len(planned)
        number += 1
    return Workload(services, apps, tuple(rounds))


# --- The faults -----------------------------------------------------------------------


@dataclass(frozen=True)
class Fault:
    """One fault: `gap_s` after the previous one starts, on `target`, for `duration_s`.

    Targets: `<backend>@<group>` for proxy faults, a service instance
    (`executor-1`) for process faults, `` for server restarts.
    """

    gap_s: float
    kind: str
    target: str = ""
    duration_s: float = 0.0
    latency_s: float = 0.0

    def describe(self) -> str:
        parts = [self.kind]
        if self.target:
            parts.append(self.target)
        if self.latency_s:
            parts.append(f"+{self.latency_s * 1000:.0f}ms")
        if self.duration_s:
            parts.append(f"for {self.duration_s:.1f}s")
        return " ".join(parts)


@dataclass(frozen=True)
class OnStage:
    """A fault injected once, as soon as `app`'s deployment in a bump round runs `stage`
    (the fault tests' script: a server restart in the middle of a canary pipeline)."""

    app: str
    stage: str
    kind: str


def fault_schedule(
    rng: random.Random,
    instances: Sequence[str],
    *,
    mean_gap_s: float,
    kinds: Sequence[str] = FAULT_KINDS,
    max_stop_s: float = 8.0,
) -> Iterator[Fault]:
    """An endless seeded stream of faults: each kind once first (in a random order), then
    kinds by weight. `max_stop_s` bounds SIGSTOP and black holes (above a lease's TTL on
    purpose: a replica that wakes up after its lease expired must not act on it)."""
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown or not kinds:
        raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {list(FAULT_KINDS)}")
    first = list(kinds)
    rng.shuffle(first)
    weights = [_WEIGHTS[k] for k in kinds]
    while True:
        kind = first.pop(0) if first else rng.choices(list(kinds), weights)[0]
        gap = rng.expovariate(1 / mean_gap_s)
        yield _fault(rng, kind, gap, instances, max_stop_s)


def _fault(
    rng: random.Random, kind: str, gap: float, instances: Sequence[str], max_stop_s: float
) -> Fault:
    def proxy() -> str:
        return f"{rng.choice(PROXIED)}@{rng.choice(GROUPS)}"

    match kind:
        case "latency":
            return Fault(
                gap, kind, proxy(), rng.uniform(1.0, 5.0), latency_s=rng.uniform(0.02, 0.3)
            )
        case "black_hole":
            return Fault(gap, kind, proxy(), rng.uniform(0.5, max_stop_s / 2))
        case "reset":
            return Fault(gap, kind, proxy())
        case "kill_9":
            return Fault(gap, kind, rng.choice(instances), rng.uniform(0.2, 2.0))
        case "sigstop":
            return Fault(gap, kind, rng.choice(instances), rng.uniform(0.5, max_stop_s))
        case _:
            return Fault(gap, kind)


# --- The verdicts -----------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What the log says of one deployment, and what kubesim runs for its app afterwards."""

    deployment_id: str
    app: str
    status: str
    rolled_back: bool


@dataclass
class Invariants:
    stuck: int = 0
    wrong_verdict: int = 0
    lost: int = 0
    duplicated_effects: int = 0
    overlapping_side_effects: int = 0
    notifications_lost: int = 0
    notifications_duplicated: int = 0
    problems: list[str] = field(default_factory=list)
    """One line per count, naming the deployment, stream or notification."""
    overlapping_by_kind: dict[str, int] = field(
        default_factory=lambda: dict.fromkeys(OVERLAP_KINDS, 0)
    )
    """`overlapping_side_effects` by what overlapped."""

    def add(self, name: str, problem: str, count: int = 1) -> None:
        setattr(self, name, getattr(self, name) + count)
        self.problems.append(f"{name}: {problem}")

    def add_overlap(self, kind: str, problem: str) -> None:
        self.add("overlapping_side_effects", problem)
        self.overlapping_by_kind[kind] = self.overlapping_by_kind.get(kind, 0) + 1

    def counts(self) -> dict[str, int]:
        return {
            name: getattr(self, name)
            for name in (
                "stuck",
                "wrong_verdict",
                "lost",
                "duplicated_effects",
                "overlapping_side_effects",
                "notifications_lost",
                "notifications_duplicated",
            )
        }

    @property
    def held(self) -> bool:
        return not any(self.counts().values())


FINAL: Final = frozenset({"SUCCESS", "FAILURE", "CANCELLED"})


def judge_deployments(
    invariants: Invariants,
    expected: Mapping[str, Expected],
    outcomes: Mapping[str, Outcome],
    missing: Sequence[Expected],
    live_tags: Mapping[str, str | None],
    final_live: Mapping[str, str],
) -> None:
    """`expected`: deployment id → what it should reach; `outcomes`: every deployment the log
    has (triggered by the run or not); `missing`: expected ones never triggered;
    `live_tags`: what kubesim runs per app now; `final_live`: what it should run."""
    for wanted in missing:
        invariants.add("stuck", f"{wanted.app.name} → {wanted.tag}: never triggered")
    for deployment_id, outcome in outcomes.items():
        if outcome.status not in FINAL:
            invariants.add("stuck", f"{outcome.app} {deployment_id}: still {outcome.status}")
            continue
        want = expected.get(deployment_id)
        if want is None:
            continue
        if outcome.status != want.status or outcome.rolled_back != want.rolled_back:
            invariants.add(
                "wrong_verdict",
                f"{outcome.app} {deployment_id} ({want.tag}): {outcome.status}"
                f"{' rolled back' if outcome.rolled_back else ''}, expected {want.status}"
                f"{' rolled back' if want.rolled_back else ''}",
            )
    for app, tag in sorted(final_live.items()):
        if live_tags.get(app) != tag:
            invariants.add(
                "wrong_verdict", f"{app}: kubesim runs {live_tags.get(app) or 'nothing'}, not {tag}"
            )


@dataclass(frozen=True)
class SideEffect:
    """One request a replica group sent for an application's objects, at `at` (unix s)."""

    at: float
    group: int
    app: str
    what: str  # "apply" (a mutating Kubernetes request) or "analysis" (a Prometheus query)


def overlapping_side_effects(
    effects: Sequence[SideEffect], windows: Mapping[str, Sequence[tuple[float, str]]]
) -> list[tuple[str, str]]:
    """Stages during which two replica groups acted on one application at overlapping times.

    `windows[app]`: the start (unix s) and name of each stage of the app's deployments, in
    time order; a stage's window lasts until the next one starts. Within a window, each
    group's effects span [first, last]; two spans that overlap are two replicas doing one
    stage's side effect at once. A takeover after a replica died or lost its lease is not
    one: the old holder's span ends before the new one's begins.
    """
    found = []
    for app, starts in windows.items():
        mine = sorted((e for e in effects if e.app == app), key=lambda e: e.at)
        for index, (start, stage) in enumerate(starts):
            end = starts[index + 1][0] if index + 1 < len(starts) else math.inf
            for what in ("apply", "analysis"):
                spans: dict[int, tuple[float, float]] = {}
                for effect in mine:
                    if start <= effect.at < end and effect.what == what:
                        first, last = spans.get(effect.group, (effect.at, effect.at))
                        spans[effect.group] = (min(first, effect.at), max(last, effect.at))
                if len(spans) > 1:
                    (_, a_last), (b_first, b_last) = sorted(spans.values())[:2]
                    if b_first <= a_last:
                        found.append(
                            (
                                what,
                                f"{app} {stage}: {what} by both replica groups between "
                                f"{b_first:.2f} and {min(a_last, b_last):.2f}",
                            )
                        )
    return found


@dataclass(frozen=True)
class ScriptTick:
    """One line a SCRIPT_RUN wrote: `<stage> <run> <time>` (the stage as
    `<deployment id>/<stage id>`, the run unique to one execution of the script)."""

    stage: str
    run: str
    at: float


def parse_ticks(text: str) -> list[ScriptTick]:
    """The ticks in `text`, skipping a line a killed script left half-written."""
    ticks = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) != 3:
            continue
        try:
            ticks.append(ScriptTick(parts[0], parts[1], float(parts[2])))
        except ValueError:
            continue
    return ticks


def overlapping_script_runs(ticks: Sequence[ScriptTick]) -> list[str]:
    """Stages two of whose script runs overlapped in time.

    Each run of a stage spans [its first tick, its last tick]; a run that starts
    before an earlier run of the same stage ended is two executions at once. A
    takeover (the next run starting after the previous one's last tick) is not one.
    """
    spans: dict[str, dict[str, tuple[float, float]]] = {}
    for tick in ticks:
        runs = spans.setdefault(tick.stage, {})
        first, last = runs.get(tick.run, (tick.at, tick.at))
        runs[tick.run] = (min(first, tick.at), max(last, tick.at))
    found = []
    for stage, runs in sorted(spans.items()):
        ended = -math.inf
        for first, last in sorted(runs.values()):
            if first <= ended:
                found.append(
                    f"{stage}: SCRIPT_RUN on two replicas between {first:.2f}"
                    f" and {min(ended, last):.2f}"
                )
            ended = max(ended, last)
    return found


def notification_verdicts(
    invariants: Invariants,
    scheduled: Mapping[str, str],
    deliveries: Mapping[str, int],
    failed: Mapping[str, str],
    announced: Sequence[str],
) -> None:
    """`scheduled`: notification id → what it is about; `deliveries`: POSTs per delivery id;
    `failed`: deployment id → app of each FAILURE deployment (the route sends failures and
    rollbacks); `announced`: the deployment ids the scheduled notifications are about."""
    for notification_id, about in sorted(scheduled.items()):
        if deliveries.get(notification_id, 0) == 0:
            invariants.add("notifications_lost", f"{notification_id} ({about}) never arrived")
    for deployment_id in sorted(set(failed) - set(announced)):
        invariants.add(
            "notifications_lost",
            f"{failed[deployment_id]} {deployment_id} failed and no notification was scheduled",
        )
    for delivery_id, times in sorted(deliveries.items()):
        if times > 1:
            invariants.add(
                "notifications_duplicated",
                f"{delivery_id or '(no delivery id)'} arrived {times} times",
                times - 1,
            )
