"""An ANALYSIS stage's checks, resolved: templates from `.pipe/` applied, defaults filled in.

PipeCD's rules: a metric or HTTP check with `template.name` is that template
from the repository's `.pipe/` AnalysisTemplates, used as written, its
`{{ .AppCustomArgs.x }}` filled from the stage's `template.appArgs`; a check
without a template is used as written in the stage. Log checks are accepted
in configs but run by nobody (PipeCD neither): they are listed as skipped,
with why, rather than silently ignored.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from shared.config.analysis import AnalysisHTTP, AnalysisMetrics, AnalysisTemplateSpec
from shared.config.application import AnalysisOptions
from shared.errors import ConfigError
from shared.events import vocabulary
from shared.events.catalog import AnalysisCheck

__all__ = ["DEFAULT_HTTP_TIMEOUT_S", "CheckPlan", "resolve_checks"]

DEFAULT_HTTP_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class CheckPlan:
    """A check as recorded (`check`) plus what only the measuring needs: the arguments
    its queries are rendered with, and an HTTP check's headers (which may hold secrets,
    so they are not recorded)."""

    check: AnalysisCheck
    app_args: Mapping[str, str] = field(default_factory=dict)
    canary_args: Mapping[str, str] = field(default_factory=dict)
    baseline_args: Mapping[str, str] = field(default_factory=dict)
    primary_args: Mapping[str, str] = field(default_factory=dict)
    headers: tuple[tuple[str, str], ...] = ()

    def variant_args(self, variant: str) -> Mapping[str, str]:
        """The custom args for `variant` (canary, baseline or primary) in queries' templates."""
        return {
            "canary": self.canary_args,
            "baseline": self.baseline_args,
            "primary": self.primary_args,
        }.get(variant, {})


def resolve_checks(
    options: AnalysisOptions, templates: AnalysisTemplateSpec
) -> tuple[list[CheckPlan], list[str]]:
    """(the checks to run, the configured checks not run and why); `ConfigError` naming the
    stage field for a template that does not exist or a check missing what it needs."""
    plans: list[CheckPlan] = []
    skipped: list[str] = []
    for index, metric in enumerate(options.metrics):
        at = f"metrics[{index}]"
        app_args: dict[str, str] = {}
        resolved: AnalysisMetrics = metric
        key = at
        if metric.template is not None and metric.template.name:
            name = metric.template.name
            found = templates.metrics.get(name)
            if found is None:
                raise ConfigError(
                    f"ANALYSIS with.{at}.template.name: no metrics template {name!r} in .pipe/ "
                    f"(known: {', '.join(sorted(templates.metrics)) or 'none'})"
                )
            resolved, app_args, key = found, dict(metric.template.app_args), f"{at} {name}"
        for what, value in (
            ("provider", resolved.provider),
            ("query", resolved.query),
            ("interval", resolved.interval),
        ):
            if not value:
                raise ConfigError(f"ANALYSIS with.{at}: {what} is required")
        plans.append(
            CheckPlan(
                check=AnalysisCheck(
                    key=key,
                    kind=vocabulary.CheckKind.METRICS,
                    strategy=vocabulary.CheckStrategy(resolved.strategy),
                    interval_s=resolved.interval.seconds,
                    provider=resolved.provider,
                    query=resolved.query,
                    failure_limit=resolved.failure_limit,
                    skip_on_no_data=resolved.skip_on_no_data,
                    deviation=vocabulary.Deviation(resolved.deviation),
                    expected_min=resolved.expected.min,
                    expected_max=resolved.expected.max,
                    timeout_s=resolved.timeout.seconds or 30.0,
                ),
                app_args=app_args,
                # The stage's own variant args win over a template's (PipeCD's merge).
                canary_args=dict(resolved.canary_args) | dict(metric.canary_args),
                baseline_args=dict(resolved.baseline_args) | dict(metric.baseline_args),
                primary_args=dict(resolved.primary_args) | dict(metric.primary_args),
            )
        )
    for index, check in enumerate(options.https):
        at = f"https[{index}]"
        http: AnalysisHTTP = check
        app_args = {}
        key = at
        if check.template is not None and check.template.name:
            name = check.template.name
            found_http = templates.https.get(name)
            if found_http is None:
                raise ConfigError(
                    f"ANALYSIS with.{at}.template.name: no https template {name!r} in .pipe/ "
                    f"(known: {', '.join(sorted(templates.https)) or 'none'})"
                )
            http, app_args, key = found_http, dict(check.template.app_args), f"{at} {name}"
        if not http.url or not http.interval:
            raise ConfigError(f"ANALYSIS with.{at}: url and interval are required")
        plans.append(
            CheckPlan(
                check=AnalysisCheck(
                    key=key,
                    kind=vocabulary.CheckKind.HTTP,
                    strategy=vocabulary.CheckStrategy.HTTP,
                    interval_s=http.interval.seconds,
                    query=http.url,
                    failure_limit=http.failure_limit,
                    skip_on_no_data=http.skip_on_no_data,
                    timeout_s=http.timeout.seconds or DEFAULT_HTTP_TIMEOUT_S,
                    method=(http.method or "GET").upper(),
                    expected_code=http.expected_code or 200,
                    expected_response=http.expected_response,
                ),
                app_args=app_args,
                headers=tuple((h.key, h.value) for h in http.headers),
            )
        )
    for index, _log in enumerate(options.logs):
        skipped.append(f"logs[{index}]: log analysis is not supported (PipeCD runs none either)")
    return plans, skipped
