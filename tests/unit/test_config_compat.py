"""PipeCD's own example corpus (../shared/compat/pipecd-examples) loads unchanged."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import (
    AnalysisOptions,
    AnalysisTemplateConfig,
    ApplicationConfig,
    ConfigError,
    Duration,
    EventWatcherFileConfig,
    K8sCanaryRolloutOptions,
    K8sTrafficRoutingOptions,
    Replicas,
    ScriptRunOptions,
    WaitApprovalOptions,
    analysis_templates,
    find_application_configs,
    find_config_files,
    load_any,
    load_application_config,
    render_manifests,
)
from tests.support.paths import COMPAT

pytestmark = pytest.mark.skipif(
    not COMPAT.is_dir(), reason=f"the PipeCD example corpus is not at {COMPAT}"
)
KUBERNETES = COMPAT / "v0" / "kubernetes"


def _corpus() -> list[Path]:
    if not COMPAT.is_dir():
        return []
    return find_config_files(COMPAT)


@pytest.mark.parametrize("path", _corpus(), ids=lambda p: str(p.relative_to(COMPAT)))
def test_every_corpus_file_loads(path: Path) -> None:
    """Each app.pipecd.yaml and .pipe/*.yaml of the corpus loads as its kind."""
    config = load_any(path)
    if path.parent.name == ".pipe":
        assert isinstance(config, AnalysisTemplateConfig | EventWatcherFileConfig)
    else:
        assert isinstance(config, ApplicationConfig)
        assert config.spec.name == path.parent.name


def test_corpus_has_every_file_we_expect() -> None:
    """The search finds all 22 applications and the 4 shared files, and nothing else."""
    apps = find_application_configs(COMPAT)
    assert len(apps) == 22
    assert all(p.name == "app.pipecd.yaml" for p in apps)
    assert len(find_config_files(COMPAT)) == 26


def test_only_the_stale_analysis_option_warns() -> None:
    """The corpus's single leniency (a stale `threshold` option) is the single warning."""
    warnings = [str(w) for path in _corpus() for w in load_any(path).warnings]
    path = KUBERNETES / "analysis-with-baseline" / "app.pipecd.yaml"
    assert warnings == [
        f"{path}:19:11: spec.pipeline.stages[2].with.threshold: unknown option "
        '"threshold" of the ANALYSIS stage ignored, as PipeCD does; '
        'did you mean "restartThreshold"?'
    ]


def test_canary_stages_are_typed() -> None:
    """The canary example's stages decode into their options Structs with PipeCD's defaults."""
    app = load_application_config(KUBERNETES / "canary" / "app.pipecd.yaml")
    names = [stage.name for stage in app.spec.stages]
    assert names == ["K8S_CANARY_ROLLOUT", "WAIT", "K8S_PRIMARY_ROLLOUT", "K8S_CANARY_CLEAN"]
    canary = app.spec.stages[0].with_
    assert isinstance(canary, K8sCanaryRolloutOptions)
    assert canary.replicas == Replicas(10, is_percentage=True)
    assert canary.replicas.calculate(total=5) == 1
    assert canary.suffix == "canary"
    wait = app.spec.stages[1].with_
    assert wait.duration.seconds == 10  # type: ignore[attr-defined]
    assert app.spec.input.auto_rollback is True
    assert app.spec.timeout == Duration.of(hours=6)


def test_rich_examples_decode_their_options() -> None:
    """Patches, HTTP analysis, traffic routing, approvals and scripts come out typed."""
    patch = load_application_config(KUBERNETES / "canary-patch" / "app.pipecd.yaml")
    options = patch.spec.stages[0].with_
    assert isinstance(options, K8sCanaryRolloutOptions)
    assert options.patches[0].target.document_root == "$.data.'envoy-config.yaml'"
    assert [op.value for op in options.patches[0].ops] == ["90", "10"]

    http = load_application_config(KUBERNETES / "analysis-by-http" / "app.pipecd.yaml")
    analysis = http.spec.stages[1].with_
    assert isinstance(analysis, AnalysisOptions)
    assert analysis.https[0].expected_code == 200
    assert analysis.https[0].interval == Duration.of(minutes=1)

    istio = load_application_config(KUBERNETES / "mesh-istio-canary" / "app.pipecd.yaml")
    routing = istio.spec.stages[1].with_
    assert isinstance(routing, K8sTrafficRoutingOptions)
    assert routing.percentages() == (90, 10, 0)
    assert istio.spec.traffic_routing is not None
    assert istio.spec.traffic_routing.method == "istio"

    approval = load_application_config(KUBERNETES / "wait-approval" / "app.pipecd.yaml")
    wait = approval.spec.stages[1].with_
    assert isinstance(wait, WaitApprovalOptions)
    assert (wait.approvers, wait.min_approver_num, wait.timeout) == (
        ("nghialv",),
        1,
        Duration.of(hours=6),
    )

    script = load_application_config(KUBERNETES / "script-run" / "app.pipecd.yaml")
    run = script.spec.stages[2].with_
    assert isinstance(run, ScriptRunOptions)
    assert run.env == {"MSG": "execute script1", "R_MSG": "rollback script1"}
    assert run.on_rollback.startswith("echo $R_MSG")


def test_corpus_analysis_templates_merge() -> None:
    """The corpus's .pipe/ analysis template gives three metric templates by name."""
    templates = analysis_templates(COMPAT)
    assert sorted(templates) == [
        "container_cpu_usage_seconds_total",
        "http_error_rate",
        "http_request_duration_99th_quantile",
    ]
    assert templates["container_cpu_usage_seconds_total"].deviation == "HIGH"
    assert templates["http_error_rate"].expected.max == 0


PLAIN = [
    "analysis-by-http",
    "analysis-by-log",
    "analysis-by-metrics",
    "analysis-with-baseline",
    "bluegreen",
    "canary",
    "canary-by-config-change",
    "canary-patch",
    "multi-steps-canary",
    "script-run",
    "secret-management",
    "simple",
    "wait-approval",
]


@pytest.mark.parametrize("name", PLAIN)
def test_plain_manifest_examples_render(name: str) -> None:
    """Every plain-YAML Kubernetes example renders to objects with a Deployment among them."""
    app = load_application_config(KUBERNETES / name / "app.pipecd.yaml")
    manifests = render_manifests(app.app_dir, app, repo_root=COMPAT)
    assert any(m.kind == "Deployment" for m in manifests)
    assert all(m.name for m in manifests)


@pytest.mark.parametrize("name", ["helm-local-chart", "helm-remote-chart", "helm-remote-git-chart"])
def test_helm_examples_load_but_need_helm_to_render(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Helm example is a valid config; rendering it without helm says helm is required."""
    monkeypatch.setenv("PATH", "/nonexistent")
    app = load_application_config(KUBERNETES / name / "app.pipecd.yaml")
    assert app.spec.input.helm_chart is not None
    with pytest.raises(ConfigError, match=r"helm is required to render the Helm chart of " + name):
        render_manifests(app.app_dir, app, repo_root=COMPAT)
