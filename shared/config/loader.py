"""Find and load PipeCD configuration files: applications, analysis templates, event watchers.

A file is read, parsed with positions (`_yaml`), checked for its header
(`apiVersion: pipecd.dev/v1beta1`, a `kind` we know), converted into the
Structs of its kind (`_decode`), and then checked for what types cannot say
(an ANALYSIS stage needs a duration, a route's percentages add up to 100…).
Whatever is wrong raises one `ConfigFileError` naming file, line, column and
field; whatever PipeCD would accept but is suspicious becomes a warning on the
result.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar

import msgspec

from shared.config._decode import Document
from shared.config._decode import Path as FieldPath
from shared.config._yaml import parse_yaml
from shared.config.analysis import (
    AnalysisHTTP,
    AnalysisLog,
    AnalysisMetrics,
    AnalysisTemplateSpec,
)
from shared.config.application import (
    NOTIFICATION_EVENTS,
    AnalysisOptions,
    KubernetesApplicationSpec,
    ScriptRunOptions,
    WaitApprovalOptions,
)
from shared.config.application import K8sTrafficRoutingOptions as _Routing
from shared.config.errors import ConfigFileError, ConfigFileErrors, ConfigWarning
from shared.config.event_watcher import (
    EventWatcherConfig,
    EventWatcherReplacement,
    EventWatcherSpec,
)
from shared.config.filenames import is_application_config_name
from shared.config.references import reference_errors, routing_problems, uses_templates
from shared.config.repo_files import inside_repository
from shared.config.stage_kinds import STAGE_NAMES
from shared.config.tool_options import (
    helm_list_value_problem,
    kustomize_option_problem,
    namespace_problem,
    plain_value_problem,
    release_name_problem,
)
from shared.config.types import _show

if TYPE_CHECKING:  # manifests imports this module
    from shared.config.manifests import Manifest

__all__ = [
    "API_VERSION",
    "AnalysisTemplateConfig",
    "ApplicationConfig",
    "EventWatcherFileConfig",
    "analysis_templates",
    "check_routing",
    "find_application_configs",
    "find_config_files",
    "is_application_config_name",
    "load_analysis_template",
    "load_analysis_templates",
    "load_application_config",
    "load_event_watcher",
    "open_document",
    "read_text",
]

_T = TypeVar("_T")
API_VERSION: Final = "pipecd.dev/v1beta1"
SHARED_DIR: Final = ".pipe"
_SKIP_DIRS: Final = frozenset({".git", SHARED_DIR})
_OTHER_PIPECD_KINDS: Final = frozenset(
    {"TerraformApp", "CloudRunApp", "LambdaApp", "ECSApp", "Application", "CrossplaneApp"}
)
_OTHER_PIPECD_STAGES: Final = frozenset(
    {
        "CUSTOM_SYNC",
        "TERRAFORM_SYNC",
        "TERRAFORM_PLAN",
        "TERRAFORM_APPLY",
        "CLOUDRUN_SYNC",
        "CLOUDRUN_PROMOTE",
        "LAMBDA_SYNC",
        "LAMBDA_CANARY_ROLLOUT",
        "LAMBDA_PROMOTE",
        "ECS_SYNC",
        "ECS_CANARY_ROLLOUT",
        "ECS_PRIMARY_ROLLOUT",
        "ECS_CANARY_CLEAN",
        "ECS_TRAFFIC_ROUTING",
    }
)


class ApplicationConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A loaded `kind: KubernetesApp` file."""

    kind: Literal["KubernetesApp"]
    api_version: str
    spec: KubernetesApplicationSpec
    path: Path
    warnings: tuple[ConfigWarning, ...] = ()

    @property
    def app_dir(self) -> Path:
        """The directory whose manifests this application deploys."""
        return self.path.parent

    @property
    def name(self) -> str:
        """`spec.name`, or the directory's name when the file does not give one."""
        return self.spec.name or self.path.resolve().parent.name


class AnalysisTemplateConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A loaded `kind: AnalysisTemplate` file (from `.pipe/`)."""

    kind: Literal["AnalysisTemplate"]
    api_version: str
    spec: AnalysisTemplateSpec
    path: Path
    warnings: tuple[ConfigWarning, ...] = ()


class EventWatcherFileConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A loaded `kind: EventWatcher` file (from `.pipe/`)."""

    kind: Literal["EventWatcher"]
    api_version: str
    spec: EventWatcherSpec
    path: Path
    warnings: tuple[ConfigWarning, ...] = ()


# --- reading ---------------------------------------------------------------------


def read_text(path: Path, text: str | None = None) -> str:
    """The file's text (UTF-8, a BOM allowed); unreadable is a ConfigFileError."""
    if text is not None:
        return text
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigFileError(path, 0, 0, "", f"cannot read: {exc.strerror or exc}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        column = exc.start - (raw.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigFileError(path, line, column, "", "not UTF-8 text") from None


def open_document(path: Path, text: str | None = None) -> tuple[Document, str]:
    """Parse a file into a Document and check its header; returns it and its `kind`."""
    doc = Document(str(path), *parse_yaml(str(path), read_text(path, text)))
    if not isinstance(doc.data, dict):
        got = "an empty file" if doc.data is None else _show(doc.data)
        raise doc.error((), f"expected a mapping with apiVersion, kind and spec, got {got}")
    return doc, _kind(doc)


def _kind(doc: Document) -> str:
    data: dict[str, Any] = doc.data
    kind = data.get("kind")
    for key in data:
        if key not in ("apiVersion", "kind", "spec"):
            raise doc.error((key,), f'unknown field "{key}"; known fields: apiVersion, kind, spec')
    if "kind" not in data:
        raise doc.error((), 'missing required field "kind"')
    if not isinstance(kind, str) or not kind:
        raise doc.error(("kind",), f"expected a kind such as KubernetesApp, got {_show(kind)}")
    return kind


def _check_version(doc: Document, expected: str = API_VERSION) -> str:
    version = doc.get(("apiVersion",))
    if not doc.has(("apiVersion",)):
        raise doc.error((), f'missing required field "apiVersion" (expected "{expected}")')
    if version != expected:
        raise doc.error(("apiVersion",), f'expected "{expected}", got {_show(version)}')
    return expected


def _expect_kind(doc: Document, kind: str, expected: str) -> None:
    if kind == expected:
        return
    if kind in _OTHER_PIPECD_KINDS:
        problem = f"{kind} is not supported by Slipway (it deploys KubernetesApp)"
    else:
        problem = f'expected kind "{expected}", got {_show(kind)}'
    raise doc.error(("kind",), problem)


def _spec(doc: Document) -> None:
    """Give a file without `spec` an empty one, as PipeCD does."""
    if doc.get(("spec",)) is None:
        doc.data["spec"] = {}


def _header(doc: Document, kind: str, expected: str) -> str:
    """Check `apiVersion` and that `kind` is `expected`, default `spec`; the apiVersion."""
    version = _check_version(doc)
    _expect_kind(doc, kind, expected)
    _spec(doc)
    return version


# --- applications ----------------------------------------------------------------


def load_application_config(
    path: Path,
    text: str | None = None,
    *,
    references: bool = False,
    repo_root: Path | None = None,
) -> ApplicationConfig:
    """Load a `kind: KubernetesApp` file (`app.pipecd.yaml`, `*.pipecd.yaml`, `.pipe.yaml`).

    With `references`, what it refers to in other files is checked as well
    (`shared.config.references`): the ANALYSIS templates in `<repo_root>/.pipe/`
    (not looked for when `repo_root` is None: the repository is unknown) and the
    `appArgs` they use, and the traffic routing of K8S_TRAFFIC_ROUTING stages (where
    PipeCD accepts what Slipway cannot route, a warning here, and an error from
    `check_routing` once the manifests are rendered). Every problem of the file comes at once
    (`ConfigFileErrors`).
    """
    doc, kind = open_document(path, text)
    return _application(doc, kind, path, references=references, repo_root=repo_root)


def _application(
    doc: Document,
    kind: str,
    path: Path,
    *,
    references: bool = False,
    repo_root: Path | None = None,
) -> ApplicationConfig:
    version = _header(doc, kind, "KubernetesApp")
    _tag_stages(doc)
    spec = doc.convert(("spec",), KubernetesApplicationSpec, lenient=_in_stage_options)
    errors: list[ConfigFileError] = []
    with _gathered(errors):
        _check_application(doc, spec)
    if references:
        errors += _reference_errors(doc, spec, repo_root)
        for at, problem, certain in routing_problems(spec):
            if certain:
                errors.append(doc.error(at, problem))
            else:
                doc.warn(at, f"{problem} (Slipway fails the deployment at planning)")
    if errors:
        # In the order of the file; a broken .pipe/ file it uses after its own.
        errors.sort(key=lambda e: (e.file != doc.file, e.file, e.line, e.column))
        raise ConfigFileErrors.of(errors)
    return ApplicationConfig(
        kind="KubernetesApp",
        api_version=version,
        spec=spec,
        path=path,
        warnings=doc.sorted_warnings(),
    )


def _in_stage_options(path: FieldPath) -> bool:
    return (
        len(path) > 5
        and path[:4] == ("spec", "pipeline", "stages", path[3])
        and isinstance(path[3], int)
        and path[4] == "with"
    )


def _tag_stages(doc: Document) -> None:
    """Check each stage's name and tag its `with:` so it decodes as that stage's options."""
    stages = doc.get(("spec", "pipeline", "stages"))
    if not isinstance(stages, list):
        return
    tagged: list[Any] = []
    errors: list[ConfigFileError] = []
    for index, stage in enumerate(stages):
        at: FieldPath = ("spec", "pipeline", "stages", index)
        if not isinstance(stage, dict):
            tagged.append(stage)
            continue
        if "name" not in stage:
            missing = 'missing required field "name" (the stage kind, like WAIT)'
            errors.append(doc.error(at, missing))
            continue
        name = stage["name"]
        if not isinstance(name, str) or name not in STAGE_NAMES:
            errors.append(doc.error((*at, "name"), _bad_stage_name(name)))
            continue
        options = stage.get("with")
        if options is None:
            options = {}
        elif not isinstance(options, dict):
            tagged.append(stage)
            continue
        elif "stage" in options:
            doc.warn((*at, "with", "stage"), 'unknown option "stage" ignored')
        tagged.append({**stage, "with": {**options, "stage": name}})
    if errors:  # every stage's, at once: the stages cannot be decoded with any of them
        raise ConfigFileErrors.of(errors)
    doc.data["spec"]["pipeline"] = {**doc.data["spec"]["pipeline"], "stages": tagged}


def _bad_stage_name(name: object) -> str:
    if isinstance(name, str) and name in _OTHER_PIPECD_STAGES:
        return f"stage {name} is not a Kubernetes stage; Slipway deploys KubernetesApp"
    choices = ", ".join(STAGE_NAMES)
    return f"expected a stage name, one of {choices}; got {_show(name)}"


def _check_application(doc: Document, spec: KubernetesApplicationSpec) -> None:
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
        with _gathered(errors):
            _check_stage(doc, at, stage.with_)
    if spec.input.namespace:
        with _gathered(errors):
            _refuse(doc, ("spec", "input", "namespace"), namespace_problem(spec.input.namespace))
    for check in (_check_helm, _check_kustomize, _check_generic):
        with _gathered(errors):
            check(doc, spec)
    if errors:
        raise ConfigFileErrors.of(errors)


@contextmanager
def _gathered(errors: list[ConfigFileError]) -> Iterator[None]:
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
        with _gathered(errors):
            _check_metric(doc, (*at, "metrics", index), metric)
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
        with _gathered(errors):
            _check_http(doc, (*at, "https", index), check)
    if errors:
        raise ConfigFileErrors.of(errors)


def _check_metric(doc: Document, at: FieldPath, metric: AnalysisMetrics) -> None:
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


def _check_http(doc: Document, at: FieldPath, check: AnalysisHTTP) -> None:
    if not check.url:
        raise doc.error((*at, "url"), "required: the URL to check")
    if not check.interval:
        raise doc.error((*at, "interval"), 'required: how often to check, like "1m"')


def _check_routing(doc: Document, at: FieldPath, options: _Routing) -> None:
    if options.all:
        return
    given = [p for p in (options.primary, options.canary, options.baseline) if p is not None]
    if not given:
        raise doc.error(
            at, "K8S_TRAFFIC_ROUTING needs `all:` or primary/canary/baseline percentages"
        )
    total = sum(p.number for p in given)
    if total != 100:
        raise doc.error(at, f"the traffic percentages add up to {total}, not 100")


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
    ):
        _refuse(doc, (*at, "helmChart", field), plain_value_problem(value))
    options = spec.input.helm_options
    if options is None:
        return
    if options.release_name:
        problem = release_name_problem(options.release_name)
        _refuse(doc, (*at, "helmOptions", "releaseName"), problem)
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
    for check in (_check_chain, _check_maps, _check_mentions, _check_drift):
        with _gathered(errors):
            check(doc, spec)
    for index, watcher in enumerate(spec.event_watcher):
        with _gathered(errors):
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
            if mention.event != "*" and mention.event not in NOTIFICATION_EVENTS:
                raise doc.error(
                    ("spec", "notification", "mentions", index, "event"),
                    f'expected "*" or one of {", ".join(NOTIFICATION_EVENTS)}; '
                    f"got {_show(mention.event)}",
                )


def _check_drift(doc: Document, spec: KubernetesApplicationSpec) -> None:
    if spec.drift_detection is not None:
        for index, entry in enumerate(spec.drift_detection.ignore_fields):
            if entry.count("#") != 1:
                raise doc.error(
                    ("spec", "driftDetection", "ignoreFields", index),
                    f"expected 'apiVersion:kind:namespace:name#fieldPath', got {_show(entry)}",
                )


def _check_watcher(doc: Document, at: FieldPath, watcher: EventWatcherConfig) -> None:
    if not watcher.matcher.name:
        raise doc.error((*at, "matcher", "name"), "required: the event name to watch")
    replacements = watcher.handler.config.replacements
    if not replacements:
        raise doc.error((*at, "handler", "config", "replacements"), "at least one is required")
    for number, replacement in enumerate(replacements):
        _check_replacement(doc, (*at, "handler", "config", "replacements", number), replacement)


def _check_nonempty_map(doc: Document, at: FieldPath, values: dict[str, str]) -> None:
    for key, value in values.items():
        if not key:
            raise doc.error(at, "keys must not be empty")
        if not value:
            raise doc.error((*at, key), "value must not be empty")


def _check_replacement(doc: Document, at: FieldPath, replacement: EventWatcherReplacement) -> None:
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
            groups = re.compile(replacement.regex).groups
        except (re.error, RecursionError, OverflowError) as exc:
            raise doc.error(
                (*at, "regex"),
                f"expected a valid regular expression, got {_show(replacement.regex)} ({exc})",
            ) from None
        if groups < 1:
            raise doc.error(
                (*at, "regex"), "needs a capture group `(...)`: its match is what is replaced"
            )


# --- references to other files -----------------------------------------------------


def _reference_errors(
    doc: Document, spec: KubernetesApplicationSpec, repo_root: Path | None
) -> list[ConfigFileError]:
    templates = None
    errors: list[ConfigFileError] = []
    if repo_root is not None and uses_templates(spec):
        with _gathered(errors):  # a broken template file is a problem of this config too
            templates = load_analysis_templates(repo_root)
    return errors + reference_errors(doc, spec, templates)


def check_routing(config: ApplicationConfig, manifests: Sequence[Manifest]) -> None:
    """Refuse a traffic routing the executor cannot do with these rendered `manifests`
    (`routing_problems`), naming the config's fields; every problem at once."""
    problems = routing_problems(config.spec, manifests)
    if not problems:
        return
    doc, _kind = open_document(config.path)  # only for the positions of the fields
    raise ConfigFileErrors.of([doc.error(at, problem) for at, problem, _ in problems])


# --- .pipe/ files ----------------------------------------------------------------


def load_analysis_template(path: Path, text: str | None = None) -> AnalysisTemplateConfig:
    """Load a `kind: AnalysisTemplate` file."""
    doc, kind = open_document(path, text)
    return _analysis_template(doc, kind, path)


def _analysis_template(doc: Document, kind: str, path: Path) -> AnalysisTemplateConfig:
    version = _header(doc, kind, "AnalysisTemplate")
    spec = doc.convert(("spec",), AnalysisTemplateSpec)
    for name, metric in spec.metrics.items():
        _check_metric(doc, ("spec", "metrics", name), metric)
    for name, check in spec.https.items():
        _check_http(doc, ("spec", "https", name), check)
    return AnalysisTemplateConfig(
        kind="AnalysisTemplate",
        api_version=version,
        spec=spec,
        path=path,
        warnings=doc.sorted_warnings(),
    )


def load_event_watcher(path: Path, text: str | None = None) -> EventWatcherFileConfig:
    """Load a `kind: EventWatcher` file."""
    doc, kind = open_document(path, text)
    return _event_watcher(doc, kind, path)


def _event_watcher(doc: Document, kind: str, path: Path) -> EventWatcherFileConfig:
    version = _header(doc, kind, "EventWatcher")
    spec = doc.convert(("spec",), EventWatcherSpec)
    for index, event in enumerate(spec.events):
        at: FieldPath = ("spec", "events", index)
        if not event.name:
            raise doc.error((*at, "name"), "required: the event name")
        if not event.replacements:
            raise doc.error((*at, "replacements"), "at least one is required")
        for number, replacement in enumerate(event.replacements):
            _check_replacement(doc, (*at, "replacements", number), replacement)
    return EventWatcherFileConfig(
        kind="EventWatcher",
        api_version=version,
        spec=spec,
        path=path,
        warnings=doc.sorted_warnings(),
    )


def load_analysis_templates(repo_root: Path) -> AnalysisTemplateSpec:
    """Every AnalysisTemplate in `<repo_root>/.pipe/`, merged; a name defined twice is an error."""
    metrics: dict[str, AnalysisMetrics] = {}
    logs: dict[str, AnalysisLog] = {}
    https: dict[str, AnalysisHTTP] = {}
    origin: dict[tuple[str, str], str] = {}
    for path in _shared_files(repo_root / SHARED_DIR):
        inside_repository(path, repo_root, f"{SHARED_DIR}/{path.name}")
        doc, kind = open_document(path)
        if kind != "AnalysisTemplate":
            continue
        spec = _analysis_template(doc, kind, path).spec
        _merge(doc, "metrics", metrics, spec.metrics, origin)
        _merge(doc, "logs", logs, spec.logs, origin)
        _merge(doc, "https", https, spec.https, origin)
    return AnalysisTemplateSpec(metrics=metrics, logs=logs, https=https)


def _merge(
    doc: Document,
    section: str,
    into: dict[str, _T],
    source: dict[str, _T],
    origin: dict[tuple[str, str], str],
) -> None:
    for name, value in source.items():
        if name in into:
            raise doc.error(
                ("spec", section, name),
                f'{section} template "{name}" is already defined in {origin[section, name]}',
            )
        into[name] = value
        origin[section, name] = doc.file


def analysis_templates(repo_root: Path) -> dict[str, AnalysisMetrics]:
    """The metric templates of the repository's `.pipe/` AnalysisTemplate files, by name."""
    return dict(load_analysis_templates(repo_root).metrics)


# --- finding files ---------------------------------------------------------------


def _walk(root: Path) -> Iterator[tuple[Path, list[str], list[str]]]:
    for directory, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if d != ".git")
        yield Path(directory), dirs, sorted(files)


def find_application_configs(root: Path) -> list[Path]:
    """Application config files under `root`, sorted; skips `.git` and `.pipe/` directories."""
    found: list[Path] = []
    for directory, dirs, files in _walk(root):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        found.extend(directory / f for f in files if is_application_config_name(f))
    return found


def _shared_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def find_config_files(root: Path) -> list[Path]:
    """Application configs and every `.pipe/*.yaml` under `root` (what `config check` reads)."""
    found: list[Path] = []
    for directory, dirs, files in _walk(root):
        if directory.name == SHARED_DIR:
            found.extend(directory / f for f in files if f.endswith((".yaml", ".yml")))
            dirs[:] = []
            continue
        found.extend(directory / f for f in files if is_application_config_name(f))
    return sorted(found)
