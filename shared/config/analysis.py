"""Deployment analysis settings: the ANALYSIS stage's checks and `kind: AnalysisTemplate`.

Field names, types and defaults are PipeCD's (`pkg/config/analysis.go`,
`analysis_template.go`): a metric check queries a provider every `interval`
and compares with `expected` (THRESHOLD) or with another variant or the
previous deployment, failing after `failureLimit` failures.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from shared.config._base import Spec
from shared.config.types import Duration

__all__ = [
    "AnalysisDynamic",
    "AnalysisDynamicHTTP",
    "AnalysisDynamicLog",
    "AnalysisDynamicMetrics",
    "AnalysisExpected",
    "AnalysisHTTP",
    "AnalysisHTTPHeader",
    "AnalysisLog",
    "AnalysisMetrics",
    "AnalysisTemplateRef",
    "AnalysisTemplateSpec",
    "TemplatableAnalysisHTTP",
    "TemplatableAnalysisLog",
    "TemplatableAnalysisMetrics",
]

Strategy = Literal["THRESHOLD", "PREVIOUS", "CANARY_BASELINE", "CANARY_PRIMARY"]
Deviation = Literal["EITHER", "HIGH", "LOW"]
DEFAULT_QUERY_TIMEOUT = Duration.of(seconds=30)


class AnalysisExpected(Spec, frozen=True):
    """The range a metric must stay in; either bound may be open."""

    min: float | None = None
    max: float | None = None

    def in_range(self, value: float) -> bool:
        """Whether `value` is inside the range (bounds included)."""
        if self.min is not None and value < self.min:
            return False
        return not (self.max is not None and value > self.max)


class AnalysisMetrics(Spec, frozen=True):
    """A metric query run every `interval` against an analysis provider."""

    strategy: Strategy = "THRESHOLD"
    provider: str = ""
    query: str = ""
    expected: AnalysisExpected = AnalysisExpected()
    interval: Duration = Duration(0)
    failure_limit: int = 0
    skip_on_no_data: bool = False
    timeout: Duration = DEFAULT_QUERY_TIMEOUT
    deviation: Deviation = "EITHER"
    canary_args: dict[str, str] = msgspec.field(default_factory=dict)
    baseline_args: dict[str, str] = msgspec.field(default_factory=dict)
    primary_args: dict[str, str] = msgspec.field(default_factory=dict)


class AnalysisLog(Spec, frozen=True):
    """A log query; PipeCD defines it but runs none (neither do we yet)."""

    query: str = ""
    interval: Duration = Duration(0)
    failure_limit: int = 0
    skip_on_no_data: bool = False
    timeout: Duration = Duration(0)
    provider: str = ""


class AnalysisHTTPHeader(Spec, frozen=True):
    """One request header of an HTTP analysis: `key` and `value`."""

    key: str = ""
    value: str = ""


class AnalysisHTTP(Spec, frozen=True):
    """An HTTP check: request `url` every `interval`, expect a code and body."""

    url: str = ""
    method: str = ""
    headers: tuple[AnalysisHTTPHeader, ...] = ()
    expected_code: int = 0
    expected_response: str = ""
    interval: Duration = Duration(0)
    failure_limit: int = 0
    skip_on_no_data: bool = False
    timeout: Duration = Duration(0)


class AnalysisTemplateRef(Spec, frozen=True):
    """Use the template `name` from `.pipe/`, filling `{{ .AppCustomArgs.x }}` from `appArgs`."""

    name: str = ""
    app_args: dict[str, str] = msgspec.field(default_factory=dict)


class TemplatableAnalysisMetrics(AnalysisMetrics, frozen=True):
    """A metrics analysis that may start from a template and override its fields."""

    template: AnalysisTemplateRef | None = None


class TemplatableAnalysisLog(AnalysisLog, frozen=True):
    """A log analysis that may start from a template and override its fields."""

    template: AnalysisTemplateRef | None = None


class TemplatableAnalysisHTTP(AnalysisHTTP, frozen=True):
    """An HTTP analysis that may start from a template and override its fields."""

    template: AnalysisTemplateRef | None = None


class AnalysisDynamicMetrics(Spec, frozen=True):
    """A metrics entry of `dynamic` (older PipeCD's; accepted so old configs load)."""

    query: str = ""
    provider: str = ""
    timeout: Duration = Duration(0)


class AnalysisDynamicLog(Spec, frozen=True):
    """A log entry of `dynamic` (older PipeCD's; accepted so old configs load)."""

    query: str = ""
    provider: str = ""
    timeout: Duration = Duration(0)


class AnalysisDynamicHTTP(Spec, frozen=True):
    """An HTTP entry of `dynamic` (older PipeCD's; accepted so old configs load)."""

    url: str = ""
    method: str = ""
    headers: tuple[AnalysisHTTPHeader, ...] = ()
    expected_code: int = 0
    expected_response: str = ""
    interval: Duration = Duration(0)
    timeout: Duration = Duration(0)


class AnalysisDynamic(Spec, frozen=True):
    """Older PipeCD's comparison with dynamic data; accepted so old configs still load."""

    metrics: tuple[AnalysisDynamicMetrics, ...] = ()
    logs: tuple[AnalysisDynamicLog, ...] = ()
    https: tuple[AnalysisDynamicHTTP, ...] = ()


class AnalysisTemplateSpec(Spec, frozen=True):
    """`kind: AnalysisTemplate`: named checks that stages refer to by `template.name`."""

    metrics: dict[str, AnalysisMetrics] = msgspec.field(default_factory=dict)
    logs: dict[str, AnalysisLog] = msgspec.field(default_factory=dict)
    https: dict[str, AnalysisHTTP] = msgspec.field(default_factory=dict)
