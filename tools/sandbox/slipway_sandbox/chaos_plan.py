"""The chaos run as data: its applications, its rounds of deployments, its faults.

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

The verdicts on what the run observed are `slipway_sandbox.chaos_verdicts`.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
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


# --- The workload ---------------------------------------------------------------------


@dataclass(frozen=True)
class App:
    """One application of the workload: a service in an environment."""

    service: str
    env: str

    @property
    def name(self) -> str:
        """The application's name, `<service>-<env>`."""
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
        """The image tag each application of the round is bumped to."""
        return {d.app: d.tag for d in self.deployments}


@dataclass(frozen=True)
class Workload:
    """The whole run's plan: services, applications and rounds."""

    services: tuple[str, ...]
    apps: tuple[App, ...]
    rounds: tuple[Round, ...]

    @property
    def deployments(self) -> int:
        """How many deployments the rounds expect in all."""
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
        """The fault as the run's log and report name it: kind, target, latency, duration."""
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
