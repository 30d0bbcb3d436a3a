"""The control config: `kind: Slipway`, and PipeCD's `kind: Piped` mapped onto it."""

from __future__ import annotations

from pathlib import Path

import pytest

from shared.config import ConfigFileError, ControlConfig, Duration, load_any, load_control_config
from shared.config.control import configured
from shared.errors import ConfigError
from tests.support.paths import CONFIG_FIXTURES

CONTROL = CONFIG_FIXTURES / "control"
PIPED_ID = "3b4f2f4e-0000-0000-0000-000000000000"  # spec.pipedID of control/piped.yaml
MINIMAL = """\
apiVersion: slipway.dev/v1
kind: Slipway
spec:
  project: demo
  repositories:
    - repoId: config
      remote: https://example.com/config.git
"""


def test_slipway_control_config_loads_with_defaults() -> None:
    """slipway.yaml gives typed repositories, providers, routes and receivers."""
    config = load_control_config(CONTROL / "slipway.yaml")
    assert config.source_kind == "Slipway"
    assert config.warnings == ()
    spec = config.spec
    assert spec.project == "bucketeer"
    config_repo = config.repository("config")
    assert config_repo is not None
    assert (config_repo.branch, config_repo.poll_interval) == ("main", Duration.of(minutes=1))
    assert config_repo.webhook_secret_file == "/run/secrets/github-webhook"
    charts = config.repository("charts")
    assert charts is not None and charts.poll_interval.seconds == 30
    provider = config.platform_provider("prd")
    assert provider is not None
    assert (provider.config.kubeconfig_path, provider.config.context) == (
        "/etc/slipway/kubeconfig",
        "gke-prd",
    )
    prometheus = config.analysis_provider("prometheus")
    assert prometheus is not None and prometheus.config.address.startswith("http://prometheus")
    routes = {r.name: r for r in spec.notifications.routes}
    assert routes["prd-failures"].events == ("DEPLOYMENT_FAILED", "DEPLOYMENT_ROLLING_BACK")
    assert routes["audit"].ignore_apps == ("sandbox",)
    receivers = {r.name: r for r in spec.notifications.receivers}
    assert receivers["slack"].slack is not None
    webhook = receivers["audit"].webhook
    assert webhook is not None
    assert (webhook.signature_key, webhook.signature_secret_file) == (
        "Slipway-Signature",
        "/run/secrets/audit-hmac",
    )
    assert spec.event_watcher.check_interval == Duration.of(minutes=2)
    assert spec.event_watcher.git_repos[0].includes == ("account/**",)


def test_piped_config_maps_onto_the_control_config() -> None:
    """A PipeCD Piped file's mappable fields become the same spec."""
    config = load_control_config(CONTROL / "piped.yaml")
    assert config.source_kind == "Piped"
    spec = config.spec
    assert spec.project == "bucketeer"
    (repo,) = spec.repositories
    assert (repo.repo_id, repo.branch, repo.poll_interval) == (
        "config",
        "master",
        Duration.of(minutes=2),
    )
    assert [p.name for p in spec.platform_providers] == ["kubernetes-default", "prd"]
    prd = config.platform_provider("prd")
    assert prd is not None
    assert (prd.config.kubeconfig_path, prd.config.master_url) == (
        "/etc/kube/prd",
        "https://10.0.0.1",
    )
    assert prd.config.app_state_informer.namespace == "account"  # live state's namespace
    # The piped's id is written as `pipecd.dev/piped` by every provider it had.
    assert {p.config.piped_id for p in spec.platform_providers} == {PIPED_ID}
    assert [p.name for p in spec.analysis_providers] == ["prometheus-dev"]
    assert [r.name for r in spec.notifications.receivers] == ["prd-slack", "api-slack", "webhook"]
    slack = spec.notifications.receivers[0].slack
    assert slack is not None and slack.mentioned_accounts == ("alice",)
    api = spec.notifications.receivers[1].slack  # Slack's Web API: kept, as PipeCD posts to it
    assert api is not None and api.uses_api
    assert (api.oauth_token_file, api.channel_id) == ("/etc/piped-secret/slack-token", "C0123")
    webhook = spec.notifications.receivers[2].webhook
    assert webhook is not None
    assert (webhook.signature_key, webhook.signature_secret_file) == (
        "PipeCD-Signature",
        "/etc/piped-secret/sig",
    )
    assert [r.name for r in spec.notifications.routes] == ["prd-slack", "api-slack"]
    assert spec.event_watcher.check_interval == Duration.of(minutes=5)
    assert spec.secret_management is not None
    keys = spec.secret_management.config
    assert (keys.private_key_file, keys.public_key_file) == (
        "/etc/piped-secret/private-key",
        "/etc/piped-secret/public-key",
    )


def test_piped_only_settings_are_listed_as_warnings() -> None:
    """Every Piped setting without meaning here is named, with its line, not dropped silently."""
    config = load_control_config(CONTROL / "piped.yaml")
    where = [(w.line, w.field_path) for w in config.warnings]
    assert where == [
        (7, "spec.pipedKeyFile"),
        (8, "spec.apiAddress"),
        (10, "spec.git"),
        (28, "spec.platformProviders[1].type"),
        (37, "spec.analysisProviders[1].type"),
    ]
    assert "LAMBDA platform provider ignored" in config.warnings[3].message


def test_load_any_dispatches_control_configs() -> None:
    """load_any recognises both control kinds."""
    assert isinstance(load_any(CONTROL / "slipway.yaml"), ControlConfig)
    assert isinstance(load_any(CONTROL / "piped.yaml"), ControlConfig)


BAD = [
    (
        "unknown field",
        MINIMAL.replace("  project: demo", "  project: demo\n  projects: []"),
        'slipway.yaml:5:3: spec.projects: unknown field "projects"; did you mean "project"?',
    ),
    (
        "missing project",
        MINIMAL.replace("  project: demo\n", ""),
        'slipway.yaml:3:1: spec: missing required field "project"',
    ),
    (
        "bad poll interval",
        MINIMAL + "      pollInterval: often\n",
        'slipway.yaml:8:7: spec.repositories[0].pollInterval: expected a duration like "10s", '
        '"5m" or "1h30m", got "often"',
    ),
    (
        "duplicate repository",
        MINIMAL + "    - repoId: config\n      remote: https://example.com/other.git\n",
        'slipway.yaml:8:7: spec.repositories[1].repoId: repository "config" is defined twice',
    ),
    (
        "route to an unknown receiver",
        MINIMAL + "  notifications:\n    routes:\n      - name: all\n        receiver: nobody\n",
        'slipway.yaml:11:9: spec.notifications.routes[0].receiver: no receiver named "nobody" '
        "(none is defined)",
    ),
    (
        "unknown event in a route",
        MINIMAL
        + "  notifications:\n    routes:\n      - name: r\n        receiver: w\n"
        + "        events: [DEPLOYED]\n    receivers:\n      - name: w\n"
        + "        webhook: {url: https://example.com}\n",
        "slipway.yaml:12:18: spec.notifications.routes[0].events[0]: expected one of "
        "DEPLOYMENT_TRIGGERED, DEPLOYMENT_PLANNED, DEPLOYMENT_APPROVED, DEPLOYMENT_ROLLING_BACK, "
        "DEPLOYMENT_SUCCEEDED, DEPLOYMENT_FAILED, DEPLOYMENT_CANCELLED, DEPLOYMENT_WAIT_APPROVAL, "
        "DEPLOYMENT_TRIGGER_FAILED, DEPLOYMENT_STARTED, DEPLOYMENT_CHAIN_SUCCEEDED, "
        "DEPLOYMENT_CHAIN_FAILED, DEPLOYMENT_CHAIN_CANCELLED, APPLICATION_SYNCED, "
        "APPLICATION_OUT_OF_SYNC, APPLICATION_HEALTHY, PIPED_STARTED, PIPED_STOPPED, "
        "STAGE_STARTED, STAGE_SKIPPED, STAGE_SUCCEEDED, STAGE_FAILED, STAGE_CANCELLED; "
        'got "DEPLOYED"',
    ),
    (
        "receiver with both kinds",
        MINIMAL
        + "  notifications:\n    receivers:\n      - name: both\n"
        + "        slack: {hookURL: https://hooks.slack.com/x}\n"
        + "        webhook: {url: https://example.com}\n",
        'slipway.yaml:10:9: spec.notifications.receivers[0]: receiver "both" needs exactly one '
        "of slack or webhook",
    ),
    (
        "analysis provider type",
        MINIMAL + "  analysisProviders:\n    - name: dd\n      type: DATADOG\n",
        'slipway.yaml:10:7: spec.analysisProviders[0].type: expected one of "PROMETHEUS", '
        '"HTTP", got "DATADOG"',
    ),
    (
        "prometheus without address",
        MINIMAL + "  analysisProviders:\n    - name: prom\n      type: PROMETHEUS\n",
        "slipway.yaml:9:7: spec.analysisProviders[0].config.address: required: the Prometheus "
        "server's URL",
    ),
    (
        "event watcher for an unknown repository",
        MINIMAL + "  eventWatcher:\n    gitRepos:\n      - repoId: charts\n",
        "slipway.yaml:10:9: spec.eventWatcher.gitRepos[0].repoId: "
        'no repository with repoId "charts"',
    ),
    (
        "wrong apiVersion for the kind",
        MINIMAL.replace("slipway.dev/v1", "pipecd.dev/v1beta1"),
        'slipway.yaml:1:1: apiVersion: expected "slipway.dev/v1" for kind Slipway, '
        'got "pipecd.dev/v1beta1"',
    ),
    (
        "an application is not a control config",
        "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec: {}\n",
        'slipway.yaml:2:1: kind: expected kind "Slipway" (or PipeCD\'s "Piped"), '
        'got "KubernetesApp"',
    ),
    (
        "a Piped field PipeCD does not know either",
        "apiVersion: pipecd.dev/v1beta1\nkind: Piped\nspec:\n  projectID: p\n  repos: []\n",
        'slipway.yaml:5:3: spec.repos: unknown field "repos"; did you mean "repositories"?',
    ),
    (
        "a Piped file without projectID",
        "apiVersion: pipecd.dev/v1beta1\nkind: Piped\nspec:\n  pipedID: x\n",
        "slipway.yaml:3:1: spec: required: projectID",
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD], ids=[c[0] for c in BAD])
def test_bad_control_config_errors_are_located(text: str, expected: str) -> None:
    """Each wrong control config fails with exactly this file:line:col field: problem."""
    with pytest.raises(ConfigFileError) as caught:
        load_control_config(Path("slipway.yaml"), text)
    assert str(caught.value) == expected


def test_an_unknown_name_is_a_config_error_naming_the_known_ones() -> None:
    """`configured` answers the entry, or says which names the control config does have."""
    remotes = {"config": "git@example:config.git", "apps": "git@example:apps.git"}
    assert configured(remotes, "apps", "repository") == "git@example:apps.git"
    with pytest.raises(ConfigError, match=r"repository 'nope' .* \(known: apps, config\)"):
        configured(remotes, "nope", "repository")
    with pytest.raises(ConfigError, match=r"\(known: none\)"):
        configured({}, "x", "platform provider")
