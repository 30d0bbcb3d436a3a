"""The summary `slipway demo` ends with: one line per step, the times in one column."""

from __future__ import annotations

from slipway_cli.supervisor import summary_lines
from slipway_sandbox.story import Verdict
from slipway_sandbox.storyrunner import StepReport, StoryReport


def _played(key: str, seconds: float, *problems: str) -> StepReport:
    return StepReport(key=key, title=key, seconds=seconds, verdict=Verdict(key, problems))


def test_the_times_stay_in_one_column_when_an_optional_step_has_a_long_key() -> None:
    """`--event-watcher` adds `image-event`, longer than the core steps' keys."""
    report = StoryReport(
        steps=[
            _played("bootstrap", 1.7),
            _played("image-event", 3.4),
            _played("prd", 22.4),
            _played("bad", 6.8, "no Slack message"),
            StepReport(key="revert", title="revert", skipped="no git"),
        ],
        seconds=36.7,
    )
    verdict, *steps = summary_lines(report, startup_s=16.6)
    assert verdict == "story FAILED in 36.7 s (start-up 16.6 s)"
    assert steps[0] == "  ✓  bootstrap      1.7 s"
    assert steps[1] == "  ✓  image-event    3.4 s"
    assert steps[3] == "  ✗  bad            6.8 s  no Slack message"
    assert steps[4] == "  -  revert      skipped: no git"
    assert len({line.index(" s") for line in steps[:4]}) == 1
