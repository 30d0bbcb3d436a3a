"""Every field PipeCD's v0 loader (pkg/config) accepts for a Kubernetes application loads here.

The corpus is every `kind: KubernetesApp` / `kind: Application` file of PipeCD's
own repository (its examples, its testdata, the v1 plugins' testdata), read from
the mirror. PipeCD's loader is Go's encoding/json over the first YAML document:
keys match case-insensitively, a stage's fields and `with:` are decoded without
rejecting unknown ones, `spec.plugins` is accepted, and `kind: Application`
takes its `kubernetes` plugin's settings as the spec's. The few corpus files
PipeCD itself rejects are listed with the reason Go gives, and must fail here too.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from shared.config import (
    AnalysisOptions,
    ConfigFileError,
    ScriptRunOptions,
    WaitApprovalOptions,
    WaitOptions,
    check_routing,
    load_analysis_template,
    load_application_config,
)
from shared.config.manifests import Manifest
from shared.config.stage_options import CustomSyncOptions
from tests.support.paths import PIPECD_MIRROR

_MULTI = "pkg/app/pipedv1/plugin/kubernetes_multicluster/"
#: Files of the corpus PipeCD's v0 loader rejects, with the words of our error that say why.
PIPECD_REJECTS = {
    # Unknown fields (encoding/json's DisallowUnknownFields).
    "pkg/config/testdata/application/k8s-app-helm.yaml": 'unknown field "helmValueFiles"',
    "pkg/config/testdata/application/k8s-app-istio-bluegreen.yaml": "canaryVariant",
    "pkg/config/testdata/application/k8s-app-use-pipeline-template.yaml": "useTemplate",
    "pkg/config/testdata/application/k8s-plain-yaml.yaml": "sealedSecrets",
    # kind: Application without a platform plugin stays "Application": unsupported kind.
    "pkg/configv1/testdata/application/plugins-config.yaml": "needs the kubernetes plugin",
    # A stage name v0 does not know (PipelineStage.UnmarshalJSON: unsupported stage name).
    f"{_MULTI}deployment/testdata/istio_crds/app.pipecd.yaml": "K8S_MULTI_SYNC",
}
#: kind: Application files whose only plugin is kubernetes_multicluster (v0: unsupported kind).
MULTICLUSTER_ONLY = "needs the kubernetes plugin"
#: kind: Application files of another platform (not a Kubernetes application).
OTHER_PLATFORM = "pkg/app/pipedv1/plugin/ecs/"


def _corpus() -> list[tuple[str, str]]:
    """(path, text) of every KubernetesApp/Application YAML file in PipeCD's repository."""
    if PIPECD_MIRROR is None:
        return []
    git = ["git", "-C", str(PIPECD_MIRROR)]
    names = subprocess.run(
        [*git, "ls-tree", "-r", "--name-only", "HEAD", "--", "pkg", "examples", "quickstart"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    names = [n for n in names if n.endswith((".yaml", ".yml"))]
    batch = subprocess.run(
        [*git, "cat-file", "--batch"],
        input="".join(f"HEAD:{n}\n" for n in names).encode(),
        capture_output=True,
        check=True,
    ).stdout
    out: list[tuple[str, str]] = []
    offset = 0
    for name in names:
        header_end = batch.index(b"\n", offset)
        size = int(batch[offset:header_end].split()[2])
        body = batch[header_end + 1 : header_end + 1 + size].decode("utf-8", "replace")
        offset = header_end + 1 + size + 1
        kinds = [
            line.split(":", 1)[1].strip() for line in body.splitlines() if line.startswith("kind:")
        ]
        if kinds and kinds[0] in ("KubernetesApp", "Application"):
            out.append((name, body))
    return out


CORPUS = _corpus()
needs_mirror = pytest.mark.skipif(
    PIPECD_MIRROR is None, reason="PipeCD's repository is not mirrored on this machine"
)


def _expected_rejection(name: str, text: str) -> str | None:
    if name in PIPECD_REJECTS:
        return PIPECD_REJECTS[name]
    plugins_line = "kubernetes:" in text
    if (
        name.startswith(_MULTI)
        and text.lstrip().find("kind: Application") >= 0
        and not plugins_line
    ):
        return MULTICLUSTER_ONLY
    if name.startswith(OTHER_PLATFORM):
        return "this one uses ecs"
    return None


@needs_mirror
def test_every_kubernetes_config_pipecd_accepts_loads(tmp_path: Path) -> None:
    """100 % of the corpus PipeCD accepts loads; what PipeCD rejects fails with its reason."""
    assert len(CORPUS) > 100  # the corpus is really there
    loaded, problems = 0, []
    for name, text in CORPUS:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        reason = _expected_rejection(name, text)
        try:
            load_application_config(path)
        except ConfigFileError as exc:
            if reason is None or reason not in str(exc):
                problems.append(f"{name}: {exc}")
            continue
        if reason is not None:
            problems.append(f"{name}: loads, but PipeCD rejects it ({reason})")
        loaded += 1
    assert problems == []
    assert loaded >= 110


FILE = "app.pipecd.yaml"


def _load(tmp_path: Path, text: str, **kwargs: object) -> object:
    path = tmp_path / FILE
    path.write_text(text)
    return load_application_config(path, **kwargs)  # type: ignore[arg-type]


def test_keys_match_case_insensitively_like_go(tmp_path: Path) -> None:
    """`slackgroups`, `slackusers`, `Kind:` and `commitmatcher` are what Go reads them as."""
    config = _load(
        tmp_path,
        "apiVersion: pipecd.dev/v1beta1\nKind: KubernetesApp\nspec:\n"
        "  commitmatcher:\n    quickSync: '^hotfix'\n"
        "  notification:\n    mentions:\n"
        "      - event: DEPLOYMENT_STARTED\n        slackgroups: [G1]\n"
        "        slackusers: [U1]\n        slack: [U0, U1]\n"
        "  labels:\n    Team: Payments\n",
    )
    spec = config.spec  # type: ignore[attr-defined]
    mention = spec.notification.mentions[0]
    assert mention.slack_groups == ("G1",)
    assert mention.all_slack_users == ("U0", "U1")
    assert spec.commit_matcher.quick_sync.pattern == "^hotfix"
    assert spec.labels == {"Team": "Payments"}  # a map's keys are data: never respelt


def test_an_unknown_field_is_still_an_error_with_a_suggestion(tmp_path: Path) -> None:
    """Case folding does not make a misspelt field acceptable."""
    with pytest.raises(ConfigFileError) as caught:
        _load(
            tmp_path, "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  plannner: {}\n"
        )
    assert (caught.value.line, caught.value.column) == (4, 3)
    assert 'did you mean "planner"' in str(caught.value)


def test_helm_set_values_and_skip_on_are_read(tmp_path: Path) -> None:
    """`helmOptions.setValues` and `skipOn` of WAIT, WAIT_APPROVAL, ANALYSIS and SCRIPT_RUN."""
    skip = (
        "          skipOn:\n"
        "            commitMessagePrefixes: ['[skip]']\n            paths: [docs/**]\n"
    )
    config = _load(
        tmp_path,
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n"
        "  input:\n    helmChart: {path: chart}\n"
        "    helmOptions:\n      setValues: {image.tag: v2, replicas: '3'}\n"
        "  pipeline:\n    stages:\n"
        f"      - name: WAIT\n        with:\n          duration: 1m\n{skip}"
        f"      - name: WAIT_APPROVAL\n        with:\n{skip}"
        f"      - name: ANALYSIS\n        with:\n          duration: 1m\n{skip}"
        f"      - name: SCRIPT_RUN\n        with:\n          run: 'true'\n{skip}",
    )
    spec = config.spec  # type: ignore[attr-defined]
    assert spec.input.helm_options.set_values == {"image.tag": "v2", "replicas": "3"}
    kinds = (WaitOptions, WaitApprovalOptions, AnalysisOptions, ScriptRunOptions)
    for stage, kind in zip(spec.stages, kinds, strict=True):
        assert isinstance(stage.with_, kind)
        assert stage.with_.skip_on.commit_message_prefixes == ("[skip]",)
        assert stage.with_.skip_on.paths == ("docs/**",)


def test_unknown_stage_fields_are_warnings_as_pipecd_ignores_them(tmp_path: Path) -> None:
    """A v1-style `skipOn` beside the stage is ignored by PipeCD's v0 loader: a warning."""
    config = _load(
        tmp_path,
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  pipeline:\n    stages:\n"
        "      - name: WAIT\n        skipOn: {paths: [a]}\n        with: {duration: 1m}\n",
    )
    (warning,) = config.warnings  # type: ignore[attr-defined]
    assert (warning.line, warning.field_path) == (7, "spec.pipeline.stages[0].skipOn")
    assert "ignored, as PipeCD does" in warning.message


def test_kind_application_reads_the_kubernetes_plugin_as_the_spec(tmp_path: Path) -> None:
    """PipeCD v1's `kind: Application` with `plugins.kubernetes`; errors point inside it."""
    head = "apiVersion: pipecd.dev/v1beta1\nkind: Application\nspec:\n  name: web\n  plugins:\n"
    config = _load(
        tmp_path,
        head + "    kubernetes:\n      input:\n        namespace: prod\n"
        "      variantLabel: {key: app.example.com/variant}\n",
    )
    spec = config.spec  # type: ignore[attr-defined]
    assert (spec.name, spec.input.namespace) == ("web", "prod")
    assert spec.variant_label.key == "app.example.com/variant"
    with pytest.raises(ConfigFileError) as caught:
        _load(tmp_path, head + "    kubernetes:\n      inptu: {}\n")
    assert (caught.value.line, caught.value.column) == (7, 7)
    assert 'did you mean "input"' in str(caught.value)
    with pytest.raises(ConfigFileError, match="this one uses terraform"):
        _load(tmp_path, head + "    kubernetes: {}\n    terraform: {}\n")


def test_plugins_of_a_kubernetes_app_are_ignored_with_a_warning(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  plugins:\n    x: {}\n",
    )
    (warning,) = config.warnings  # type: ignore[attr-defined]
    assert warning.field_path == "spec.plugins" and "ignored" in warning.message


def test_only_the_first_document_is_read_as_pipecd_does(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  name: one\n"
        "---\napiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  name: two\n",
    )
    assert config.spec.name == "one"  # type: ignore[attr-defined]
    (warning,) = config.warnings  # type: ignore[attr-defined]
    assert warning.line == 5 and "only the first YAML document" in warning.message


def test_traffic_percentages_not_adding_up_load_but_are_refused_at_planning(
    tmp_path: Path,
) -> None:
    """PipeCD loads `canary: 30%` alone (its own testdata); Slipway warns, then will not plan."""
    config = _load(
        tmp_path,
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n"
        "  trafficRouting:\n    method: pod\n"
        "  pipeline:\n    stages:\n"
        "      - name: K8S_TRAFFIC_ROUTING\n        with:\n          canary: 30%\n",
        references=True,
    )
    problems = [w.message for w in config.warnings]  # type: ignore[attr-defined]
    assert any("add up to 30, not 100" in p for p in problems)
    assert any("unknown traffic routing method 'pod'" in p for p in problems)
    service = Manifest(api_version="v1", kind="Service", name="web", namespace="", body={})
    with pytest.raises(ConfigFileError, match="add up to 30"):
        check_routing(config, [service])  # type: ignore[arg-type]


def test_custom_sync_is_a_stage_and_needs_its_script(tmp_path: Path) -> None:
    """PipeCD's CUSTOM_SYNC (`run`, `envs`, `timeout` 6h by default); no `run` is an error."""
    head = "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  pipeline:\n    stages:\n"
    config = _load(
        tmp_path,
        head + "      - name: CUSTOM_SYNC\n        with:\n          envs: {A: b}\n"
        "          run: ./deploy.sh\n",
    )
    options = config.spec.stages[0].with_  # type: ignore[attr-defined]
    assert isinstance(options, CustomSyncOptions)
    assert (options.run, options.envs, options.timeout.seconds) == (
        "./deploy.sh",
        {"A": "b"},
        21600,
    )
    with pytest.raises(ConfigFileError, match="CUSTOM_SYNC needs `run:`"):
        _load(tmp_path, head + "      - name: CUSTOM_SYNC\n")


def test_pipe_files_match_keys_case_insensitively_too(tmp_path: Path) -> None:
    """A `.pipe/` AnalysisTemplate's fields as Go reads them (`failurelimit`); the template
    names (a map's keys) stay as written."""
    path = tmp_path / "analysis-template.yaml"
    path.write_text(
        "apiVersion: pipecd.dev/v1beta1\nkind: AnalysisTemplate\nspec:\n  metrics:\n"
        "    Error_Rate:\n      provider: prom\n      query: up\n      interval: 1m\n"
        "      failurelimit: 2\n      expected: {max: 1}\n"
    )
    template = load_analysis_template(path)
    assert template.spec.metrics["Error_Rate"].failure_limit == 2
