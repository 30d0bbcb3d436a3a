"""Loading an application config (`kind: KubernetesApp`): PipeCD's file, unchanged.

A file is opened and its header checked (`documents`), each pipeline stage's
`with:` is tagged with the stage's name so it decodes as that stage's options
(`_decode`), and the spec is then checked for what types cannot say
(`application_checks`) and, on request, for what it refers to in other files
(`references`: `.pipe/` templates, traffic routing). Whatever is wrong raises
one `ConfigFileError` (or `ConfigFileErrors`) naming file, line, column and
field; whatever PipeCD would accept but is suspicious becomes a warning on the
result. The other kinds load elsewhere: `.pipe/` files in `pipe_files`, the
control config in `control_loader`; finding the files is `discovery`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from shared.config._decode import Document
from shared.config._decode import Path as FieldPath
from shared.config.app_config import ApplicationConfig
from shared.config.application import KubernetesApplicationSpec
from shared.config.application_checks import check_application, gathered
from shared.config.documents import check_header, open_document
from shared.config.errors import ConfigFileError, ConfigFileErrors
from shared.config.pipe_files import load_analysis_templates
from shared.config.references import reference_errors, routing_problems, uses_templates
from shared.config.stage_kinds import STAGE_NAMES
from shared.config.types import _show

if TYPE_CHECKING:  # annotations only
    from shared.config.manifests import Manifest

__all__ = [
    "ApplicationConfig",
    "check_routing",
    "load_application_config",
]

_OTHER_PIPECD_STAGES: Final = frozenset(
    {
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
    doc, kind = open_document(path, text, first_document=True)
    return _application(doc, kind, path, references=references, repo_root=repo_root)


def _application(
    doc: Document,
    kind: str,
    path: Path,
    *,
    references: bool = False,
    repo_root: Path | None = None,
) -> ApplicationConfig:
    if kind == "Application":
        kind = _merge_plugins(doc)
    version = check_header(doc, kind, "KubernetesApp")
    _ignore_plugins(doc)
    doc.fold_keys(("spec",), KubernetesApplicationSpec)
    _tag_stages(doc)
    doc.fold_keys(("spec",), KubernetesApplicationSpec)  # the stages' options, now tagged
    spec = doc.convert(("spec",), KubernetesApplicationSpec, lenient=_in_stage)
    errors: list[ConfigFileError] = []
    with gathered(errors):
        check_application(doc, spec)
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


def _in_stage(path: FieldPath) -> bool:
    """A field of a pipeline stage or of its `with:`: PipeCD decodes a stage without
    rejecting unknown fields (its own `UnmarshalJSON`), so they are warnings here."""
    return len(path) > 4 and path[:3] == ("spec", "pipeline", "stages") and isinstance(path[3], int)


#: PipeCD's v1 plugins whose configuration is a Kubernetes application's.
_KUBERNETES_PLUGIN: Final = "kubernetes"
_OTHER_PLATFORM_PLUGINS: Final = ("terraform", "lambda", "cloudrun", "ecs")


def _merge_plugins(doc: Document) -> str:
    """`kind: Application` (PipeCD v1): read as PipeCD's v0 loader reads it.

    Each entry of `spec.plugins` is merged over the spec (its keys win), and
    the `kubernetes` plugin makes it a KubernetesApp; the positions follow the
    merged keys, so an error names the line inside `plugins`. Returns the kind.
    """
    spec = doc.get(("spec",))
    plugins = spec.get("plugins") if isinstance(spec, dict) else None
    if not isinstance(plugins, dict):
        raise doc.error(
            ("kind",),
            "kind Application needs spec.plugins.kubernetes (Slipway deploys Kubernetes "
            "applications)",
        )
    platforms = [name for name in plugins if name in _OTHER_PLATFORM_PLUGINS]
    if _KUBERNETES_PLUGIN not in plugins or platforms:
        other = f" (this one uses {', '.join(platforms)})" if platforms else ""
        raise doc.error(
            ("spec", "plugins"),
            f"Slipway deploys Kubernetes applications: spec.plugins needs the "
            f"{_KUBERNETES_PLUGIN} plugin and no other platform's{other}",
        )
    spec_node = doc.located.child("spec")
    plugins_node = spec_node.child("plugins") if spec_node is not None else None
    merged = dict(spec)
    for name, config in plugins.items():
        if config is None:
            continue
        if not isinstance(config, dict):
            raise doc.error(("spec", "plugins", name), f"expected a mapping, got {_show(config)}")
        node = plugins_node.child(name) if plugins_node is not None else None
        for key, value in config.items():
            merged[key] = value
            if spec_node is not None and node is not None:
                spec_node.keys[key] = node.keys.get(key, node.position)
                child = node.child(key)
                if isinstance(spec_node.items, dict) and child is not None:
                    spec_node.items[key] = child
    merged.pop("plugins")
    doc.data["spec"] = merged
    return "KubernetesApp"


def _ignore_plugins(doc: Document) -> None:
    """`spec.plugins` of a KubernetesApp: PipeCD's v0 loader accepts and ignores it."""
    spec = doc.get(("spec",))
    if isinstance(spec, dict) and "plugins" in spec:
        doc.warn(
            ("spec", "plugins"),
            "ignored, as PipeCD's v0 piped ignores it (with kind: Application, the "
            "kubernetes plugin's settings are read as the spec's)",
        )
        doc.data["spec"] = {k: v for k, v in spec.items() if k != "plugins"}


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


# --- references to other files -----------------------------------------------------


def _reference_errors(
    doc: Document, spec: KubernetesApplicationSpec, repo_root: Path | None
) -> list[ConfigFileError]:
    templates = None
    errors: list[ConfigFileError] = []
    if repo_root is not None and uses_templates(spec):
        with gathered(errors):  # a broken template file is a problem of this config too
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
