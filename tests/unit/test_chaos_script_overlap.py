"""The chaos run's SCRIPT_RUN check: two runs of one stage at overlapping times are found
from the ticks the scripts wrote; one run after another (a takeover) is not an overlap."""

from __future__ import annotations

from slipway_sandbox.chaos_verdicts import (
    Invariants,
    ScriptTick,
    overlapping_script_runs,
    parse_ticks,
)


def _run(stage: str, run: str, start: float, ticks: int = 20) -> list[ScriptTick]:
    return [ScriptTick(stage, run, start + 0.1 * i) for i in range(ticks)]


def test_two_runs_of_one_stage_at_once_are_an_overlap() -> None:
    ticks = [*_run("d1/effect", "11-1", 100.0), *_run("d1/effect", "22-2", 101.0)]
    found = overlapping_script_runs(ticks)
    assert len(found) == 1
    assert found[0].startswith("d1/effect: SCRIPT_RUN on two replicas between 101.00 and 101.9")


def test_a_takeover_after_the_first_run_stopped_is_not_an_overlap() -> None:
    # The first run was killed after 5 ticks; the new holder ran it again afterwards.
    ticks = [*_run("d1/effect", "11-1", 100.0, ticks=5), *_run("d1/effect", "22-2", 100.5)]
    assert overlapping_script_runs(ticks) == []
    # Different stages (deployments) at the same time are not one stage twice.
    ticks = [*_run("d1/effect", "11-1", 100.0), *_run("d2/effect", "22-2", 100.0)]
    assert overlapping_script_runs(ticks) == []


def test_a_run_inside_a_longer_one_is_found_even_after_a_third() -> None:
    ticks = [
        *_run("d1/effect", "a", 100.0, ticks=50),  # 100.0 .. 104.9
        *_run("d1/effect", "b", 101.0, ticks=5),  # within a
        *_run("d1/effect", "c", 103.0, ticks=5),  # within a, after b
    ]
    assert len(overlapping_script_runs(ticks)) == 2


def test_ticks_are_parsed_and_counted_by_kind() -> None:
    text = "d1/effect 11-1 100.00\nd1/effect 22-2 100.05\nd1/effect 11-1 100.10\nd1/eff"
    ticks = parse_ticks(text)
    assert [t.run for t in ticks] == ["11-1", "22-2", "11-1"]  # the cut last line skipped
    invariants = Invariants()
    for problem in overlapping_script_runs(ticks):
        invariants.add_overlap("script", problem)
    assert invariants.overlapping_side_effects == 1
    assert invariants.overlapping_by_kind == {"apply": 0, "analysis": 0, "script": 1}
