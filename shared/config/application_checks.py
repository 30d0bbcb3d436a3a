"""What the types of an application config cannot say, checked after decoding.

An ANALYSIS stage needs a duration, a route's percentages add up to 100, helm
and kustomize options must be safe on a command line, an event watcher's
regex needs a capture group… `check_application` gathers every problem of a
file and raises them at once (`ConfigFileErrors`). The checks of an analysis
metric, an HTTP check and a replacement also serve the `.pipe/` files
(`pipe_files`).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import regex

from shared.config._decode import Document
from shared.config._decode import Path as FieldPath
from shared.config.analysis import AnalysisHTTP, AnalysisMetrics
from shared.config.application import (
    MENTION_EVENTS,
    NOTIFICATION_EVENTS,
    AnalysisOptions,
    KubernetesApplicationSpec,
    ScriptRunOptions,
    WaitApprovalOptions,
)
from shared.config.application import K8sTrafficRoutingOptions as _Routing
from shared.config.chart_sources import git_remote_problem
from shared.config.errors import ConfigFileError, ConfigFileErrors
from shared.config.event_watcher import EventWatcherConfig, EventWatcherReplacement
from shared.config.stage_options import (
    CustomSyncOptions,
    K8sBaselineRolloutOptions,
    K8sCanaryRolloutOptions,
)
from shared.config.tool_options import (
    helm_list_value_problem,
    kustomize_option_problem,
    namespace_problem,
    plain_value_problem,
    release_name_problem,
    repository_problem,
    set_value_problem,
)
from shared.config.types import _show


def check_application(doc: Document, spec: KubernetesApplicationSpec) -> None:
    """What PipeCD's Validate() checks, and a few mistakes it lets through: every problem
    of the file at once (each stage and each section is checked even when another is wrong)."""
    errors: list[ConfigFileError] = []
    seen_ids: dict[str, int] = {}
    for index, stage in enumerate(spec.stages):
        at: FieldPath = ("spec", "pipeline", "stages", index)
        if stage.id:
            if stage.id in seen_ids:
                errors.append(
                    doc.error(
                        (*at, "id"),
                        f'stage id "{stage.id}" is already used by stage {seen_ids[stage.id]}',
                    )
                )
            seen_ids[stage.id] = index
        with gathered(errors):
            _check_stage(doc, at, stage.with_)
    if spec.input.namespace:
        with gathered(errors):
            _refuse(doc, ("spec", "input", "namespace"), namespace_problem(spec.input.namespace))
    for check in (_check_helm, _check_kustomize, _check_generic):
        with gathered(errors):
            check(doc, spec)
    if errors:
        raise ConfigFileErrors.of(errors)


@contextmanager
def gathered(errors: list[ConfigFileError]) -> Iterator[None]:
    """Keep the problem a check raises and go on to the next check."""
    try:
        yield
    except ConfigFileError as exc:
        errors.extend(exc.errors)


def _check_stage(doc: Document, at: FieldPath, options: object) -> None:
    if isinstance(options, WaitApprovalOptions) and options.min_approver_num < 1:
        raise doc.error(
            (*at, "with", "minApproverNum"),
            f"expected at least 1, got {options.min_approver_num}",
        )
    if isinstance(options, AnalysisOptions):
        _check_analysis_stage(doc, (*at, "with"), options)
    if isinstance(options, ScriptRunOptions) and not options.run.strip():
        raise doc.error((*at, "with", "run"), "SCRIPT_RUN needs `run:` (the script to run)")
    if isinstance(options, CustomSyncOptions) and not options.run.strip():
        raise doc.error((*at, "with", "run"), "CUSTOM_SYNC needs `run:` (the script to run)")
    if isinstance(options, _Routing):
        _check_routing(doc, (*at, "with"), options)


def _check_analysis_stage(doc: Document, at: FieldPath, options: AnalysisOptions) -> None:
    errors: list[ConfigFileError] = []
    if not options.duration:
        errors.append(
            doc.error((*at, "duration"), 'the ANALYSIS stage needs a duration, like "10m"')
        )
    for index, metric in enumerate(options.metrics):
        if metric.template is not None and metric.template.name:
            continue
        if metric.template is not None:
            errors.append(
                doc.error((*at, "metrics", index, "template", "name"), "template name is empty")
            )
            continue
        with gathered(errors):
            check_metric(doc, (*at, "metrics", index), metric)
    for index, log in enumerate(options.logs):
        if log.template is not None and not log.template.name:
            errors.append(
                doc.error((*at, "logs", index, "template", "name"), "template name is empty")
            )
    for index, check in enumerate(options.https):
        if check.template is not None and check.template.name:
            continue
        if check.template is not None:
            errors.append(
                doc.error((*at, "https", index, "template", "name"), "template name is empty")
            )
            continue
        with gathered(errors):
            check_http(doc, (*at, "https", index), check)
    if errors:
        raise ConfigFileErrors.of(errors)


def check_metric(doc: Document, at: FieldPath, metric: AnalysisMetrics) -> None:
    """Refuse a metrics analysis without provider, query or interval; warn if it can't fail."""
    for field, value, what in (
        ("provider", metric.provider, "the name of an analysis provider"),
        ("query", metric.query, "the query to run"),
        ("interval", metric.interval, 'how often to run it, like "1m"'),
    ):
        if not value:
            raise doc.error((*at, field), f"required: {what}")
    if (
        metric.strategy == "THRESHOLD"
        and metric.expected.min is None
        and metric.expected.max is None
    ):
        doc.warn((*at, "expected"), "a THRESHOLD check without expected.min or .max never fails")


def check_http(doc: Document, at: FieldPath, check: AnalysisHTTP) -> None:
    """Refuse an HTTP analysis that lacks its URL or interval."""
    if not check.url:
        raise doc.error((*at, "url"), "required: the URL to check")
    if not check.interval:
        raise doc.error((*at, "interval"), 'required: how often to check, like "1m"')


def _check_routing(doc: Document, at: FieldPath, options: _Routing) -> None:
    # Percentages that do not add up to 100 are `references.routing_problems`': PipeCD
    # loads them (its own test data has `canary: 30%` alone), Slipway refuses to plan them.
    if options.all:
        return
    given = [p for p in (options.primary, options.canary, options.baseline) if p is not None]
    if not given:
        raise doc.error(
            at, "K8S_TRAFFIC_ROUTING needs `all:` or primary/canary/baseline percentages"
        )


def _check_helm(doc: Document, spec: KubernetesApplicationSpec) -> None:
    """The chart and its options, as `tool_options` allows them on helm's command line."""
    at: FieldPath = ("spec", "input")
    chart = spec.input.helm_chart
    if chart is None:
        return
    if not chart.path and not (chart.repository and chart.name):
        raise doc.error(
            (*at, "helmChart"),
            "a chart needs `path` (in this or the `gitRemote` repository) "
            "or `repository` and `name` (from a chart repository)",
        )
    if chart.git_remote and not chart.path:
        raise doc.error((*at, "helmChart", "path"), "required with gitRemote")
    for field, value in (
        ("path", chart.path),
        ("repository", chart.repository),
        ("name", chart.name),
        ("version", chart.version),
        ("ref", chart.ref),
    ):
        _refuse(doc, (*at, "helmChart", field), plain_value_problem(value))
    if chart.repository:
        _refuse(doc, (*at, "helmChart", "repository"), repository_problem(chart.repository))
    if chart.git_remote:
        _refuse(doc, (*at, "helmChart", "gitRemote"), git_remote_problem(chart.git_remote))
    options = spec.input.helm_options
    if options is None:
        return
    if options.release_name:
        problem = release_name_problem(options.release_name)
        _refuse(doc, (*at, "helmOptions", "releaseName"), problem)
    for key, value in options.set_values.items():
        _refuse(doc, (*at, "helmOptions", "setValues", key), set_value_problem(key, value))
    for index, file in enumerate(options.value_files):
        _refuse(doc, (*at, "helmOptions", "valueFiles", index), helm_list_value_problem(file))
    for key, file in options.set_files.items():
        _refuse(doc, (*at, "helmOptions", "setFiles", key), _set_file_problem(key, file))
    for index, version in enumerate(options.api_versions):
        _refuse(doc, (*at, "helmOptions", "apiVersions", index), plain_value_problem(version))
    _refuse(doc, (*at, "helmOptions", "kubeVersion"), plain_value_problem(options.kube_version))


def _set_file_problem(key: str, file: str) -> str | None:
    # `--set-file key=path,key2=path2`: a `,` or `=` in either would add a value of its own.
    if not _SET_KEY.fullmatch(key):
        return f"a setFiles key is a value path like a.b[0].c; got {_show(key)}"
    return helm_list_value_problem(file)


_SET_KEY: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\\\[\]/-]*")


def _check_kustomize(doc: Document, spec: KubernetesApplicationSpec) -> None:
    for key, value in spec.input.kustomize_options.items():
        problem = kustomize_option_problem(key, value)
        _refuse(doc, ("spec", "input", "kustomizeOptions", key), problem)


def _refuse(doc: Document, at: FieldPath, problem: str | None) -> None:
    if problem is not None:
        raise doc.error(at, problem)


def _check_generic(doc: Document, spec: KubernetesApplicationSpec) -> None:
    errors: list[ConfigFileError] = []
    for check in (_check_chain, _check_maps, _check_mentions, _check_drift, _check_route_copies):
        with gathered(errors):
            check(doc, spec)
    for index, watcher in enumerate(spec.event_watcher):
        with gathered(errors):
            _check_watcher(doc, ("spec", "eventWatcher", index), watcher)
    if errors:
        raise ConfigFileErrors.of(errors)


def _check_chain(doc: Document, spec: KubernetesApplicationSpec) -> None:
    if spec.post_sync is not None and spec.post_sync.chain is not None:
        at: FieldPath = ("spec", "postSync", "chain")
        if not spec.post_sync.chain.applications:
            raise doc.error((*at, "applications"), "a chain needs at least one application")
        for index, app in enumerate(spec.post_sync.chain.applications):
            if not (app.name or app.kind or app.labels):
                raise doc.error(
                    (*at, "applications", index), 'set at least one of "name", "kind" or "labels"'
                )


def _check_maps(doc: Document, spec: KubernetesApplicationSpec) -> None:
    if spec.encryption is not None:
        _check_nonempty_map(
            doc, ("spec", "encryption", "encryptedSecrets"), spec.encryption.encrypted_secrets
        )
    if spec.attachment is not None:
        _check_nonempty_map(doc, ("spec", "attachment", "sources"), spec.attachment.sources)


def _check_mentions(doc: Document, spec: KubernetesApplicationSpec) -> None:
    if spec.notification is not None:
        for index, mention in enumerate(spec.notification.mentions):
            at: FieldPath = ("spec", "notification", "mentions", index, "event")
            if mention.event != "*" and mention.event not in MENTION_EVENTS:
                raise doc.error(
                    at,
                    f'expected "*" or one of {", ".join(MENTION_EVENTS)}; '
                    f"got {_show(mention.event)}",
                )
            if mention.event != "*" and mention.event not in NOTIFICATION_EVENTS:
                doc.warn(at, f"Slipway sends no {mention.event} notification yet: never used")


def _check_drift(doc: Document, spec: KubernetesApplicationSpec) -> None:
    if spec.drift_detection is not None:
        for index, entry in enumerate(spec.drift_detection.ignore_fields):
            if entry.count("#") != 1:
                raise doc.error(
                    ("spec", "driftDetection", "ignoreFields", index),
                    f"expected 'apiVersion:kind:namespace:name#fieldPath', got {_show(entry)}",
                )


def _check_route_copies(doc: Document, spec: KubernetesApplicationSpec) -> None:
    """Warn when a route by name leaves a canary's or baseline's copies elsewhere.

    The copies are named `<name>-<suffix>` and routed by that name, as PipeCD's piped
    routes them, so `match: {name: web}` does not take `web-canary`: it goes wherever
    the first route that fits its own name sends it (the application's provider when
    none does). Said here, where a person reads it, rather than found on the wrong cluster.
    """
    suffixes = [
        stage.with_.suffix
        for stage in spec.stages
        if isinstance(stage.with_, K8sCanaryRolloutOptions | K8sBaselineRolloutOptions)
    ]
    routes = spec.resource_routes

    def first_fitting(kind: str, name: str) -> int | None:
        for index, route in enumerate(routes):
            match = route.match
            if match is None or (match.kind in ("", kind) and match.name in ("", name)):
                return index
        return None

    for index, route in enumerate(routes):
        if route.match is None or not route.match.name:
            continue
        if route.match.name.endswith(tuple(f"-{suffix}" for suffix in suffixes)):
            continue  # a route for a copy itself
        for suffix in dict.fromkeys(suffixes):
            copy = f"{route.match.name}-{suffix}"
            taken_by = first_fitting(route.match.kind, copy)
            if taken_by is not None and routes[taken_by].provider == route.provider:
                continue
            where = (
                "the application's own platform provider"
                if taken_by is None
                else f"the provider of spec.resourceRoutes[{taken_by}]"
            )
            doc.warn(
                ("spec", "resourceRoutes", index, "match", "name"),
                f"the {suffix} copy {copy!r} is routed by its own name, as PipeCD routes it, "
                f"so this route does not take it: it goes to {where}; "
                f"add a route matching name {copy!r} to keep it beside {route.match.name!r}",
            )


def _check_watcher(doc: Document, at: FieldPath, watcher: EventWatcherConfig) -> None:
    if not watcher.matcher.name:
        raise doc.error((*at, "matcher", "name"), "required: the event name to watch")
    replacements = watcher.handler.config.replacements
    if not replacements:
        raise doc.error((*at, "handler", "config", "replacements"), "at least one is required")
    for number, replacement in enumerate(replacements):
        check_replacement(doc, (*at, "handler", "config", "replacements", number), replacement)


def _check_nonempty_map(doc: Document, at: FieldPath, values: dict[str, str]) -> None:
    for key, value in values.items():
        if not key:
            raise doc.error(at, "keys must not be empty")
        if not value:
            raise doc.error((*at, key), "value must not be empty")


def check_replacement(doc: Document, at: FieldPath, replacement: EventWatcherReplacement) -> None:
    """Refuse a replacement without a file or with other than exactly one way to replace."""
    if not replacement.file:
        raise doc.error((*at, "file"), "required: the file to update")
    fields = [
        name
        for name, value in (
            ("yamlField", replacement.yaml_field),
            ("jsonField", replacement.json_field),
            ("HCLField", replacement.hcl_field),
            ("regex", replacement.regex),
        )
        if value
    ]
    if not fields:
        raise doc.error(at, "set one of yamlField, jsonField, HCLField or regex")
    if len(fields) > 2:
        raise doc.error(at, f"set only one of {', '.join(fields)}")
    if len(fields) == 2:
        doc.warn(at, f"both {fields[0]} and {fields[1]} are set; only {fields[0]} is used")
    if replacement.regex:
        try:
            # The dialect the event watcher runs it in (services/gitwatcher/replacements.py).
            groups = regex.compile(replacement.regex).groups
        except (regex.error, RecursionError, OverflowError) as exc:
            raise doc.error(
                (*at, "regex"),
                f"expected a valid regular expression, got {_show(replacement.regex)} ({exc})",
            ) from None
        if groups < 1:
            raise doc.error(
                (*at, "regex"), "needs a capture group `(...)`: its match is what is replaced"
            )
