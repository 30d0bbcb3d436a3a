"""What an application config refers to elsewhere, checked before anything is rolled out.

An ANALYSIS stage names templates of the repository's `.pipe/` AnalysisTemplates
and fills their `{{ .AppCustomArgs.x }}` from `appArgs`; a K8S_TRAFFIC_ROUTING
stage edits what `spec.trafficRouting` names. Left unchecked, a missing template
or argument is found by the analysis service once the canary is out, and a
routing the executor cannot do fails that stage mid-pipeline. These checks
run wherever a config is loaded whole — `slipway config check`, the planner
and plan preview (`shared.deploysource`) — and each problem names the stage
field that makes it, like every other config error.

Pure: the caller loads the document, the templates and (when it has them)
the rendered manifests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from shared.analysis.templating import app_args_used
from shared.config._decode import Document
from shared.config._decode import Path as FieldPath
from shared.config.analysis import AnalysisTemplateRef, AnalysisTemplateSpec
from shared.config.application import (
    ROUTING_METHODS,
    AnalysisOptions,
    K8sTrafficRoutingOptions,
    KubernetesApplicationSpec,
    KubernetesTrafficRouting,
)
from shared.config.errors import ConfigFileError

if TYPE_CHECKING:  # annotations only
    from shared.config.manifests import Manifest

__all__ = ["reference_errors", "routing_problems", "uses_templates"]

_SHARED_DIR = ".pipe"


def uses_templates(spec: KubernetesApplicationSpec) -> bool:
    """Whether an ANALYSIS stage names a `.pipe/` template (so `.pipe/` must be read)."""
    refs: list[AnalysisTemplateRef | None] = []
    for stage in spec.stages:
        if isinstance(stage.with_, AnalysisOptions):
            refs += [check.template for check in stage.with_.metrics]
            refs += [check.template for check in stage.with_.https]
            refs += [check.template for check in stage.with_.logs]
    return any(ref is not None and ref.name for ref in refs)


def reference_errors(
    doc: Document, spec: KubernetesApplicationSpec, templates: AnalysisTemplateSpec | None
) -> list[ConfigFileError]:
    """Every broken reference of the ANALYSIS stages; `templates` None: `.pipe/` is unknown
    (a file checked outside its repository), so only what needs no template is checked."""
    errors: list[ConfigFileError] = []
    for index, stage in enumerate(spec.stages):
        options = stage.with_
        if not isinstance(options, AnalysisOptions):
            continue
        at: FieldPath = ("spec", "pipeline", "stages", index, "with")
        for number, metric in enumerate(options.metrics):
            errors += _check(
                doc,
                (*at, "metrics", number),
                "metrics",
                metric.template,
                metric.query,
                None if templates is None else {k: v.query for k, v in templates.metrics.items()},
            )
        for number, http in enumerate(options.https):
            errors += _check(
                doc,
                (*at, "https", number),
                "https",
                http.template,
                http.url,
                None if templates is None else {k: v.url for k, v in templates.https.items()},
            )
        for number, log in enumerate(options.logs):
            errors += _check(
                doc,
                (*at, "logs", number),
                "logs",
                log.template,
                "",  # log checks run nowhere (see shared.analysis.checks): nothing to render
                None if templates is None else dict.fromkeys(templates.logs, ""),
            )
    return errors


def _check(
    doc: Document,
    at: FieldPath,
    section: str,
    ref: AnalysisTemplateRef | None,
    inline_text: str,
    templates: dict[str, str] | None,
) -> list[ConfigFileError]:
    """One check of a stage: its template exists and gets the `appArgs` it uses."""
    if ref is None or not ref.name:
        # Written in the stage: nothing fills {{ .AppCustomArgs.x }} there.
        used = app_args_used(inline_text)
        if not used:
            return []
        return [
            doc.error(
                (*at, "query" if section == "metrics" else "url"),
                f"uses {{{{ .AppCustomArgs.{used[0]} }}}}, which only a template's appArgs fill; "
                "move the check into a .pipe/ AnalysisTemplate or write the value in",
            )
        ]
    if templates is None:
        return []
    if ref.name not in templates:
        known = ", ".join(sorted(templates)) or "none"
        return [
            doc.error(
                (*at, "template", "name"),
                f'no {section} template "{ref.name}" in {_SHARED_DIR}/ (known: {known})',
            )
        ]
    used = app_args_used(templates[ref.name])
    missing = [name for name in used if name not in ref.app_args]
    for name in ref.app_args:
        if name not in used:
            doc.warn(
                (*at, "template", "appArgs", name),
                f'template "{ref.name}" does not use {{{{ .AppCustomArgs.{name} }}}}; ignored',
            )
    if not missing:
        return []
    field: FieldPath = (*at, "template", "appArgs") if ref.app_args else (*at, "template")
    uses = ", ".join(f"{{{{ .AppCustomArgs.{name} }}}}" for name in missing)
    return [
        doc.error(
            field,
            f'template "{ref.name}" uses {uses}; appArgs must give {", ".join(missing)}',
        )
    ]


def routing_problems(
    spec: KubernetesApplicationSpec, manifests: Sequence[Manifest] | None = None
) -> list[tuple[FieldPath, str, bool]]:
    """What the executor's K8S_TRAFFIC_ROUTING would fail on (`services.executor.stages`),
    as (field, problem, PipeCD fails it too). Slipway fails them all when it plans; where
    PipeCD would not (an istio routing without a VirtualService name, smi), `config check`
    only warns, as PipeCD's own examples have such files.

    Without `manifests` (`config check`) only the config is looked at; with them (planning)
    the VirtualService an istio routing edits must be among them.
    """
    stages = [
        (index, stage.with_)
        for index, stage in enumerate(spec.stages)
        if isinstance(stage.with_, K8sTrafficRoutingOptions)
    ]
    if not stages:
        return []
    routing = spec.traffic_routing or KubernetesTrafficRouting()
    config: FieldPath = ("spec", "trafficRouting")
    sums: list[tuple[FieldPath, str, bool]] = [
        (
            ("spec", "pipeline", "stages", index, "with"),
            f"the traffic percentages add up to {sum(options.percentages())}, not 100",
            False,
        )
        for index, options in stages
        if not options.all and sum(options.percentages()) != 100
    ]
    if routing.method not in ROUTING_METHODS:
        choices = ", ".join(ROUTING_METHODS)
        return [
            *sums,
            ((*config, "method"), f"unknown traffic routing method {routing.method!r}; "
             f"expected one of {choices}", False),
        ]  # fmt: skip
    if sums:
        return sums
    if routing.method == "smi":
        return [
            (
                (*config, "method"),
                "K8S_TRAFFIC_ROUTING with method smi is not supported by Slipway; "
                "use podselector or istio",
                False,
            )
        ]
    if routing.method == "istio":
        name = routing.istio.virtual_service.name if routing.istio is not None else ""
        vs: FieldPath = (*config, "istio", "virtualService", "name")
        if not name:
            return [
                (vs, "K8S_TRAFFIC_ROUTING with method istio needs the VirtualService's name", False)
            ]
        if manifests is not None and not any(
            m.kind == "VirtualService" and m.name == name for m in manifests
        ):
            return [(vs, f"VirtualService {name} is not in the application's manifests", True)]
        return []
    return [
        (
            ("spec", "pipeline", "stages", index, "with"),
            "the podselector method (spec.trafficRouting.method, the default) sends all traffic "
            "to one variant: give one of primary/canary/baseline 100, or route with istio",
            True,
        )
        for index, options in stages
        if sum(options.percentages()) == 100 and 100 not in options.percentages()
    ]
