"""Slipway's configuration: PipeCD's application files, unchanged, and the control config.

```python
from shared.config import load_application_config, find_application_configs, render_manifests

for path in find_application_configs(repo_root):
    app = load_application_config(path)          # ApplicationConfig(kind, spec, path, warnings)
    for stage in app.spec.stages:                # PipelineStage(name, id, desc, timeout, with_)
        ...                                      # with_: K8sCanaryRolloutOptions | WaitOptions | …
    manifests = render_manifests(app.app_dir, app, repo_root=repo_root)
```

Every problem is a `ConfigFileError` (a `shared.errors.ConfigError`) with
`.file .line .column .field_path .problem`; suspicious-but-accepted input is a
`ConfigWarning` on the result's `.warnings`. Modules:

- the schemas: `application` (the KubernetesApp spec), `analysis`, `event_watcher`,
  `control` (slipway.yaml), `types` (Duration, Replicas, Percentage, Regex);
- reading files: `documents` (text, YAML with positions, the header), `discovery`
  (finding config files in a repository);
- the loaders: `loader` (application configs), `application_checks` (what their types
  cannot say), `pipe_files` (`.pipe/` AnalysisTemplate and EventWatcher files),
  `control_loader` (slipway.yaml, or PipeCD's `kind: Piped` translated by `piped`);
- what a config refers to and renders: `references` (`.pipe/` templates, `appArgs`,
  traffic routing), `resource_routes` (the providers each manifest goes to),
  `manifests` (rendering), `tool_options` (what a config may pass to
  kustomize and helm), `tool_versions` (the installed helm/kubectl/kustomize a pinned
  version selects), `chart_sources` (a chart cloned from a `gitRemote`), `repo_files`
  (every file read stays inside the repository).
"""

from __future__ import annotations

from pathlib import Path

from shared.config.analysis import AnalysisMetrics, AnalysisTemplateSpec
from shared.config.application import (
    AnalysisOptions,
    K8sBaselineCleanOptions,
    K8sBaselineRolloutOptions,
    K8sCanaryCleanOptions,
    K8sCanaryRolloutOptions,
    K8sPrimaryRolloutOptions,
    K8sSyncOptions,
    K8sTrafficRoutingOptions,
    KubernetesApplicationSpec,
    PipelineStage,
    RollbackOptions,
    ScriptRunOptions,
    WaitApprovalOptions,
    WaitOptions,
)
from shared.config.control import ControlConfig
from shared.config.control_loader import load_control_config
from shared.config.discovery import (
    find_application_configs,
    find_config_files,
    is_application_config_name,
)
from shared.config.documents import API_VERSION, open_document
from shared.config.errors import ConfigFileError, ConfigFileErrors, ConfigWarning
from shared.config.event_watcher import EventWatcherSpec
from shared.config.loader import (
    ApplicationConfig,
    _application,
    check_routing,
    load_application_config,
)
from shared.config.manifests import Manifest, render_manifests, render_manifests_async
from shared.config.pipe_files import (
    AnalysisTemplateConfig,
    EventWatcherFileConfig,
    _analysis_template,
    _event_watcher,
    analysis_templates,
    load_analysis_template,
    load_analysis_templates,
    load_event_watcher,
)
from shared.config.stage_kinds import STAGE_NAMES, StageOptions
from shared.config.types import (
    Duration,
    Percentage,
    Regex,
    Replicas,
    _show,
    dec_hook,
    enc_hook,
)
from shared.errors import ConfigError

__all__ = [
    "API_VERSION",
    "STAGE_NAMES",
    "AnalysisMetrics",
    "AnalysisOptions",
    "AnalysisTemplateConfig",
    "AnalysisTemplateSpec",
    "AnyConfig",
    "ApplicationConfig",
    "ConfigError",
    "ConfigFileError",
    "ConfigFileErrors",
    "ConfigWarning",
    "ControlConfig",
    "Duration",
    "EventWatcherFileConfig",
    "EventWatcherSpec",
    "K8sBaselineCleanOptions",
    "K8sBaselineRolloutOptions",
    "K8sCanaryCleanOptions",
    "K8sCanaryRolloutOptions",
    "K8sPrimaryRolloutOptions",
    "K8sSyncOptions",
    "K8sTrafficRoutingOptions",
    "KubernetesApplicationSpec",
    "Manifest",
    "Percentage",
    "PipelineStage",
    "Regex",
    "Replicas",
    "RollbackOptions",
    "ScriptRunOptions",
    "StageOptions",
    "WaitApprovalOptions",
    "WaitOptions",
    "analysis_templates",
    "check_routing",
    "dec_hook",
    "enc_hook",
    "find_application_configs",
    "find_config_files",
    "is_application_config_name",
    "load_analysis_template",
    "load_analysis_templates",
    "load_any",
    "load_application_config",
    "load_control_config",
    "load_event_watcher",
    "render_manifests",
    "render_manifests_async",
]

# PipeCD's application kinds: all load far enough to say which one is unsupported.
_APPLICATION_KINDS = frozenset(
    {"KubernetesApp", "TerraformApp", "CloudRunApp", "LambdaApp", "ECSApp", "Application"}
)

AnyConfig = ApplicationConfig | AnalysisTemplateConfig | EventWatcherFileConfig | ControlConfig


def load_any(
    path: Path, text: str | None = None, *, references: bool = False, repo_root: Path | None = None
) -> AnyConfig:
    """Load a file of any kind we know, choosing by its `kind:`; `references` and
    `repo_root` as for `load_application_config`."""
    doc, kind = open_document(path, text, first_document=True)
    if kind == "AnalysisTemplate":
        return _analysis_template(doc, kind, path)
    if kind == "EventWatcher":
        return _event_watcher(doc, kind, path)
    if kind in ("Slipway", "Piped"):
        return load_control_config(path, text)
    if kind not in _APPLICATION_KINDS:
        raise doc.error(
            ("kind",),
            f"unknown kind {_show(kind)}; expected KubernetesApp, AnalysisTemplate or "
            "EventWatcher (or Slipway/Piped for a control config)",
        )
    return _application(doc, kind, path, references=references, repo_root=repo_root)
