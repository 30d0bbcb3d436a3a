"""Analysis: requested, started, measured, judged and concluded (stream
`analysis-<analysis_id>`, DESIGN §2, §8).
"""

from __future__ import annotations

from datetime import datetime

import msgspec

from shared.events.base import Event
from shared.events.vocabulary import (
    CheckKind,
    CheckStrategy,
    Deviation,
    SampleRole,
    TickOutcome,
    Verdict,
)


class AnalysisRequested(Event, tag="analysis_requested", frozen=True):
    """The executor asks for the verdict of an ANALYSIS stage (the first event of the stream).

    `analysis_id` is derived from the deployment and stage (`analysis_id_of`), and the
    request is appended once (a new stream, a derived event id), so a restarted executor
    waits on the same analysis. The analysis service answers with `AnalysisConcluded`
    on the same stream.
    """

    analysis_id: str
    deployment_id: str
    application_id: str
    stage_id: str
    commit_hash: str
    running_commit_hash: str  # "" on an application's first deployment
    options_json: str  # the stage's `with:` block, as JSON
    requested_at: datetime


class AnalysisConcluded(Event, tag="analysis_concluded", frozen=True):
    """The analysis service's verdict on an `AnalysisRequested` (stream `analysis-<id>`)."""

    analysis_id: str
    deployment_id: str
    stage_id: str
    verdict: Verdict
    reason: str = ""
    judge: str = ""
    judge_version: str = ""


class AnalysisCheck(msgspec.Struct, frozen=True, kw_only=True):
    """One check of an analysis as resolved at its start (templates and `appArgs` applied):
    everything its verdicts depend on, so they can be recomputed from the log alone."""

    key: str  # `metrics[0] error-rate` (the template's name, if any) / `https[0]`
    kind: CheckKind
    strategy: CheckStrategy
    interval_s: float
    provider: str = ""
    query: str = ""  # the query template (rendered per variant in each AnalysisMeasured)
    failure_limit: int = 0
    skip_on_no_data: bool = False
    deviation: Deviation = Deviation.EITHER
    expected_min: float | None = None
    expected_max: float | None = None
    timeout_s: float = 0.0
    method: str = ""  # HTTP checks
    expected_code: int = 0
    expected_response: str = ""


class AnalysisStarted(Event, tag="analysis_started", frozen=True):
    """The analysis service began measuring (or, after a restart or takeover, resumed).

    The first one's `started_at` is the analysis' clock: ticks fall at
    `started_at + k·interval` and it ends at `started_at + duration`, so a
    resumed analysis runs only the time it has left.
    """

    analysis_id: str
    deployment_id: str
    stage_id: str
    started_at: datetime
    application_id: str = ""
    analyzer: str = ""  # the replica and its lease token, `analysis:<instance>#<token>`
    judge: str = ""  # the comparison judge configured (`with.judge`), and its version
    judge_version: str = ""
    duration_s: float = 0.0  # the stage's `duration`
    checks: tuple[AnalysisCheck, ...] = ()
    skipped_checks: tuple[str, ...] = ()  # configured but not run, each with why (`logs[0]: …`)
    # PREVIOUS: the application's last successful analysis, whose windows are the control.
    previous_analysis_id: str = ""
    previous_started_at: datetime | None = None
    resumed: bool = False


class AnalysisMeasured(Event, tag="analysis_measured", frozen=True):
    """One raw measurement of one check at one tick: what was asked, and what came back.

    `values` are exactly as the provider gave them (Prometheus sends text, and
    `NaN` stays `NaN`), so a verdict can be recomputed from the log alone.
    """

    analysis_id: str
    check: str
    tick: int  # 1-based
    role: SampleRole = SampleRole.NONE  # NONE: THRESHOLD, HTTP
    variant: str = ""  # the variant the query was rendered for (or `previous`)
    provider: str = ""
    query: str = ""  # as rendered and sent (PromQL; `GET <url>` for an HTTP check)
    window_start: float = 0.0  # unix seconds
    window_end: float = 0.0
    step_s: float = 0.0
    timestamps: tuple[float, ...] = ()
    values: tuple[str, ...] = ()  # HTTP checks: the response body (its first 4 KiB)
    status_code: int = 0  # HTTP checks: the response's code (0: no response)
    error: str = ""  # the provider's error or a timeout; "" when it answered
    measured_at: datetime | None = None


class AnalysisTickJudged(Event, tag="analysis_tick_judged", frozen=True):
    """The verdict on one check after one tick, from the recorded measurements up to it.

    `statistics` are the judge's numbers as `repr` text (exact, and NaN-safe in JSON).
    """

    analysis_id: str
    check: str
    tick: int
    at_s: float  # seconds since the analysis started
    strategy: CheckStrategy
    outcome: TickOutcome
    reason: str
    judge: str  # `threshold` / `http` for the service's own checks, else the judge's name
    judge_version: str
    final: bool = False
    failures: int = 0  # failed ticks so far (provider errors and no data, for comparisons)
    statistics: tuple[tuple[str, str], ...] = ()
