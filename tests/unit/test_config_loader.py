"""Finding and loading a config repository: app files, .pipe/ templates, defaults."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import (
    AnalysisOptions,
    ConfigFileError,
    Duration,
    K8sCanaryCleanOptions,
    K8sCanaryRolloutOptions,
    analysis_templates,
    find_application_configs,
    load_analysis_template,
    load_application_config,
    load_event_watcher,
)
from shared.config.discovery import is_application_config_name
from tests.support.paths import CONFIG_FIXTURES

REPO = CONFIG_FIXTURES / "repo"
TEMPLATE = """\
apiVersion: pipecd.dev/v1beta1
kind: AnalysisTemplate
spec:
  metrics:
    {name}:
      provider: prometheus
      query: up
      interval: 1m
      expected: {{min: 1}}
"""


def test_finds_app_configs_by_name_and_skips_git_and_pipe_dirs(tmp_path: Path) -> None:
    """app.pipecd.yaml, *.pipecd.yaml and .pipe.yaml are found; .git and .pipe are not searched."""
    for name in [
        "a/app.pipecd.yaml",
        "b/web.pipecd.yaml",
        "c/.pipe.yaml",
        "d/deployment.yaml",
        ".git/x/app.pipecd.yaml",
        ".pipe/app.pipecd.yaml",
        "e/.pipe/app.pipecd.yaml",
    ]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("")
    found = [p.relative_to(tmp_path).as_posix() for p in find_application_configs(tmp_path)]
    assert found == ["a/app.pipecd.yaml", "b/web.pipecd.yaml", "c/.pipe.yaml"]


def test_fixture_repository_apps() -> None:
    """The fixture repo's four applications are found in path order."""
    names = [load_application_config(p).name for p in find_application_configs(REPO)]
    assert names == ["account-dev", "account-prd", "helm-app", "web-prd"]


def test_defaults_and_typed_stages_of_a_pipeline_app() -> None:
    """PipeCD's defaults apply and each stage's `with:` is its own Struct."""
    app = load_application_config(REPO / "account" / "prd" / "app.pipecd.yaml")
    spec = app.spec
    assert app.kind == "KubernetesApp" and app.app_dir == REPO / "account" / "prd"
    assert spec.auto_rollback is True
    assert spec.trigger.on_out_of_sync.disabled is False
    assert spec.trigger.on_out_of_sync.min_window == Duration.of(minutes=10)
    assert spec.trigger.on_chain.disabled is True
    assert spec.commit_matcher.quick_sync.search("[quick] bump") is not None
    assert not spec.commit_matcher.pipeline
    assert spec.variant_label.key == "pipecd.dev/variant"
    assert spec.stages[1].timeout == Duration.of(hours=1, minutes=30)
    analysis = spec.stages[1].with_
    assert isinstance(analysis, AnalysisOptions)
    assert analysis.metrics[0].template is not None
    assert analysis.metrics[0].template.name == "grpc_error_rate"
    assert isinstance(spec.stages[0].with_, K8sCanaryRolloutOptions)
    assert isinstance(spec.stages[3].with_, K8sCanaryCleanOptions)


def test_quick_sync_app_has_no_stages_and_a_name_fallback(tmp_path: Path) -> None:
    """No pipeline means no stages; a file without spec.name is named after its directory."""
    dev = load_application_config(REPO / "account" / "dev" / ".pipe.yaml")
    assert dev.spec.stages == ()
    app_dir = tmp_path / "payments"
    app_dir.mkdir()
    (app_dir / "app.pipecd.yaml").write_text(
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\n"
    )
    assert load_application_config(app_dir / "app.pipecd.yaml").name == "payments"


def test_planner_auto_rollback_overrides_input() -> None:
    """planner.autoRollback (a Slipway addition) wins over input.autoRollback."""
    text = (
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n"
        "  planner: {autoRollback: false}\n  input: {autoRollback: true}\n"
    )
    assert load_application_config(Path("app.pipecd.yaml"), text).spec.auto_rollback is False


def test_analysis_templates_merge_across_files(tmp_path: Path) -> None:
    """Metric templates from several .pipe/ files merge; other kinds there are skipped."""
    shared = tmp_path / ".pipe"
    shared.mkdir()
    (shared / "a.yaml").write_text(TEMPLATE.format(name="error_rate"))
    (shared / "b.yml").write_text(TEMPLATE.format(name="latency"))
    (shared / "watch.yaml").write_text((REPO / ".pipe" / "event-watcher.yaml").read_text())
    assert sorted(analysis_templates(tmp_path)) == ["error_rate", "latency"]
    assert analysis_templates(tmp_path / "elsewhere") == {}


def test_analysis_template_defined_twice_is_an_error(tmp_path: Path) -> None:
    """The same metric template name in two files is a located error naming the first."""
    shared = tmp_path / ".pipe"
    shared.mkdir()
    (shared / "a.yaml").write_text(TEMPLATE.format(name="error_rate"))
    (shared / "b.yaml").write_text(TEMPLATE.format(name="error_rate"))
    with pytest.raises(ConfigFileError) as caught:
        analysis_templates(tmp_path)
    assert str(caught.value) == (
        f"{shared / 'b.yaml'}:5:5: spec.metrics.error_rate: metrics template "
        f'"error_rate" is already defined in {shared / "a.yaml"}'
    )


def test_pipe_files_load_by_kind() -> None:
    """The fixture's AnalysisTemplate and EventWatcher files load with their own loaders."""
    template = load_analysis_template(REPO / ".pipe" / "analysis-template.yaml")
    metric = template.spec.metrics["grpc_error_rate"]
    assert (metric.interval, metric.timeout, metric.failure_limit) == (
        Duration.of(minutes=1),
        Duration.of(seconds=30),
        1,
    )
    watcher = load_event_watcher(REPO / ".pipe" / "event-watcher.yaml")
    assert watcher.spec.events[0].replacements[0].yaml_field.startswith("$.spec.template")


def test_event_watcher_regex_needs_a_group() -> None:
    """A replacement regex without a capture group has nothing to replace: an error."""
    text = (
        "apiVersion: pipecd.dev/v1beta1\nkind: EventWatcher\nspec:\n  events:\n"
        "    - name: image\n      replacements:\n        - file: a.yaml\n"
        "          regex: 'image: v[0-9]+'\n"
    )
    with pytest.raises(ConfigFileError) as caught:
        load_event_watcher(Path(".pipe/watch.yaml"), text)
    assert caught.value.field_path == "spec.events[0].replacements[0].regex"
    assert caught.value.line == 8


def test_keys_without_values_mean_defaults() -> None:
    """`key:` with nothing after it is unset, as PipeCD reads it, not a type error."""
    text = (
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  name: x\n"
        "  trigger:\n    # onCommit: {disabled: true}\n  timeout:\n  pipeline:\n    stages:\n"
        "      - name: WAIT_APPROVAL\n        with:\n          timeout:\n"
    )
    spec = load_application_config(Path("app.pipecd.yaml"), text).spec
    assert spec.trigger.on_commit.disabled is False
    assert spec.timeout == Duration.of(hours=6)
    assert spec.stages[0].with_.timeout == Duration.of(hours=6)  # type: ignore[attr-defined]


def test_application_config_file_names_follow_pipecd() -> None:
    """PipeCD's rule: `app.pipecd.yaml`, anything ending in `.pipecd.yaml` (a bare
    `.pipecd.yaml` too) and the legacy `.pipe.yaml` are app configs; templates are not."""
    assert is_application_config_name("app.pipecd.yaml")
    assert is_application_config_name("canary.pipecd.yaml")
    assert is_application_config_name(".pipecd.yaml")
    assert is_application_config_name(".pipe.yaml")
    assert not is_application_config_name("pipecd.yaml")
    assert not is_application_config_name("app.pipecd.yml")
    assert not is_application_config_name("analysis-template.yaml")
    assert not is_application_config_name("deployment.yaml")
