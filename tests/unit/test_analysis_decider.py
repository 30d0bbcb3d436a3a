"""The analysis decider builds the runner's events: the start (or its resume) and the end."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.analysis.decider import Conclusion, Start, concluded, started
from shared.analysis.record import fold
from shared.events import vocabulary
from shared.events.catalog import AnalysisRequested

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
REQUEST = AnalysisRequested(
    analysis_id="a1", deployment_id="d1", application_id="web", stage_id="s1",
    commit_hash="c2", running_commit_hash="c1", options_json="{}", requested_at=T0,
)  # fmt: skip


def test_a_new_analysis_starts_the_clock_and_a_resume_keeps_it() -> None:
    """The first start records the judge and duration; a later one is a `resumed` marker that
    carries the first one's judge and duration, whatever the new holder's configuration says."""
    new = fold([(0, REQUEST)])
    first = started(new, Start(now=T0, analyzer="analysis:x#1", judge="pipecd", duration_s=60))
    assert (first.started_at, first.duration_s, first.resumed) == (T0, 60, False)
    assert first.judge == "pipecd" and first.judge_version
    later = T0 + timedelta(seconds=20)
    resumed = fold([(0, REQUEST), (1, first)])
    again = started(resumed, Start(now=later, analyzer="analysis:y#2", duration_s=999))
    assert again.resumed and again.started_at == later
    assert (again.judge, again.judge_version, again.duration_s) == (
        first.judge,
        first.judge_version,
        60,
    )
    assert resumed.started == first  # the clock stays the first start's


def test_the_conclusion_names_the_stage_and_the_judge() -> None:
    """`AnalysisConcluded` is built from the request and the first start, its reason clipped."""
    first = started(fold([(0, REQUEST)]), Start(now=T0, analyzer="x", judge="pipecd"))
    record = fold([(0, REQUEST), (1, first)])
    end = concluded(record, Conclusion(vocabulary.Verdict("failure"), "x" * 100_000))
    assert (end.deployment_id, end.stage_id, end.judge) == ("d1", "s1", first.judge)
    assert len(end.reason) < 10_000
