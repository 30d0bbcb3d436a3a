"""The chaos run's verdicts: the invariants, counted from what the run observed (pure).

What was observed — the event log, kubesim's and Prometheus's requests
(through the per-replica proxies), the ticks SCRIPT_RUN scripts wrote, the
notification receiver — is read by `slipway_sandbox.chaos`; here each
invariant is judged from it: every deployment reaches the verdict its design
decides (`judge_deployments`), no stage's side effects by two replicas at
once (`overlapping_side_effects`, `overlapping_script_runs`), every
scheduled notification delivered exactly once (`notification_verdicts`).
The workload and the faults these are judged against: `slipway_sandbox.chaos_plan`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from slipway_sandbox.chaos_plan import Expected

OVERLAP_KINDS: Final = ("apply", "analysis", "script")
"""What two replicas can do at once: Kubernetes writes, analysis queries, SCRIPT_RUN scripts."""


@dataclass(frozen=True)
class Outcome:
    """What the log says of one deployment, and what kubesim runs for its app afterwards."""

    deployment_id: str
    app: str
    status: str
    rolled_back: bool


@dataclass
class Invariants:
    """What broke, by invariant: stuck, wrong verdicts, lost, duplicated or overlapping effects."""

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
        """Count `count` breaches of invariant `name` and keep the problem's description."""
        setattr(self, name, getattr(self, name) + count)
        self.problems.append(f"{name}: {problem}")

    def add_overlap(self, kind: str, problem: str) -> None:
        """Count an overlap of side effects of `kind` (two writers at once)."""
        self.add("overlapping_side_effects", problem)
        self.overlapping_by_kind[kind] = self.overlapping_by_kind.get(kind, 0) + 1

    def counts(self) -> dict[str, int]:
        """Each invariant's count of breaches."""
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
        """Whether every invariant held."""
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
