"""PipeCD's `kind: Piped` file, as written (pkg/config/piped.go), read as a control config.

A PipeCD `kind: Piped` file (`apiVersion: pipecd.dev/v1beta1`) loads too: its
projectID, repositories, platformProviders (and the older cloudProviders),
analysisProviders, notifications and eventWatcher map onto the same spec
(`shared.config.control.ControlSpec`); Slipway's `analysisEgress` may be added
to it (PipeCD has no egress rule). Its other settings (piped id and key, API
address, git credentials, chart repositories, secret management…) mean nothing
here; each one present is named in `ControlConfig.warnings` rather than
dropped silently, as are providers and receivers of kinds Slipway does not
run. A field PipeCD does not know either is an error, as everywhere.
`control_loader.load_control_config` calls `from_piped` and then checks the
result as it checks a `kind: Slipway` file.
"""

from __future__ import annotations

from typing import Any, Final, Literal

import msgspec

from shared.config._base import Spec
from shared.config._decode import Document
from shared.config._decode import Path as FieldPath
from shared.config.control import (
    ONE_MINUTE,
    AnalysisEgress,
    AnalysisProvider,
    AnalysisProviderConfig,
    AppStateInformer,
    ChartRepository,
    ControlSpec,
    EventWatcherGitRepo,
    EventWatcherSettings,
    KubernetesProviderConfig,
    NotificationReceiver,
    NotificationRoute,
    Notifications,
    PlatformProvider,
    Repository,
    SecretManagement,
    SlackReceiver,
    SpecPaths,
    WebhookReceiver,
    indexed,
)
from shared.config.tool_options import plain_value_problem, repository_problem
from shared.config.types import Duration

__all__ = ["from_piped"]


class _PipedRepository(Spec, frozen=True):
    repo_id: str = ""
    remote: str = ""
    branch: str = ""


class _PipedKubernetesConfig(Spec, frozen=True):
    master_url: str = msgspec.field(default="", name="masterURL")
    kube_config_path: str = msgspec.field(default="", name="kubeConfigPath")
    app_state_informer: AppStateInformer = AppStateInformer()
    kubectl_version: str = ""


class _PipedPlatformProvider(Spec, frozen=True):
    name: str = ""
    type: str = ""
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    config: Any = None


class _PipedPrometheusConfig(Spec, frozen=True):
    address: str = ""
    username_file: str = ""
    password_file: str = ""


class _PipedAnalysisProvider(Spec, frozen=True):
    name: str = ""
    type: str = ""
    config: Any = None


class _PipedSlack(Spec, frozen=True):
    hook_url: str = msgspec.field(default="", name="hookURL")
    oauth_token: str = msgspec.field(default="", name="oauthToken")
    oauth_token_data: str = msgspec.field(default="", name="oauthTokenData")
    oauth_token_file: str = msgspec.field(default="", name="oauthTokenFile")
    channel_id: str = msgspec.field(default="", name="channelID")
    mentioned_accounts: tuple[str, ...] = ()
    mentioned_groups: tuple[str, ...] = ()


class _PipedWebhook(Spec, frozen=True):
    url: str = ""
    signature_key: str = "PipeCD-Signature"
    signature_value: str = ""
    signature_value_file: str = ""


class _PipedReceiver(Spec, frozen=True):
    name: str = ""
    slack: _PipedSlack | None = None
    webhook: _PipedWebhook | None = None


class _PipedRoute(Spec, frozen=True):
    name: str = ""
    receiver: str = ""
    events: tuple[str, ...] = ()
    ignore_events: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    ignore_groups: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()
    ignore_apps: tuple[str, ...] = ()
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    ignore_labels: dict[str, str] = msgspec.field(default_factory=dict)


class _PipedNotifications(Spec, frozen=True):
    routes: tuple[_PipedRoute, ...] = ()
    receivers: tuple[_PipedReceiver, ...] = ()


class _PipedEventWatcherGitRepo(Spec, frozen=True):
    repo_id: str = ""
    commit_message: str = ""
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()


class _PipedEventWatcher(Spec, frozen=True):
    check_interval: Duration = ONE_MINUTE
    git_repos: tuple[_PipedEventWatcherGitRepo, ...] = ()


class _PipedSpec(Spec, frozen=True):
    project_id: str = msgspec.field(default="", name="projectID")
    piped_id: Any = msgspec.field(default=msgspec.UNSET, name="pipedID")
    piped_key_file: Any = msgspec.UNSET
    piped_key_data: Any = msgspec.UNSET
    name: Any = msgspec.UNSET
    api_address: Any = msgspec.UNSET
    web_address: str = ""
    sync_interval: Duration = ONE_MINUTE
    app_config_sync_interval: Any = msgspec.UNSET
    git: Any = msgspec.UNSET
    repositories: tuple[_PipedRepository, ...] = ()
    chart_repositories: tuple[_PipedChartRepository, ...] = ()
    chart_registries: Any = msgspec.UNSET
    cloud_providers: tuple[_PipedPlatformProvider, ...] = ()
    platform_providers: tuple[_PipedPlatformProvider, ...] = ()
    analysis_providers: tuple[_PipedAnalysisProvider, ...] = ()
    # Slipway's own: PipeCD has no egress rule, and without one analysis reaches
    # public addresses only (an in-cluster Prometheus needs an entry here).
    analysis_egress: AnalysisEgress = AnalysisEgress()
    notifications: _PipedNotifications = _PipedNotifications()
    secret_management: Any = msgspec.UNSET
    event_watcher: _PipedEventWatcher = _PipedEventWatcher()
    app_selector: Any = msgspec.UNSET
    plugins: Any = msgspec.UNSET


_PIPED_ONLY: Final = {
    "pipedKeyFile": "the piped's key",
    "pipedKeyData": "the piped's key",
    "name": "the piped's name",
    "apiAddress": "the control plane's address",
    "appConfigSyncInterval": "Slipway reads app configs on every poll",
    "git": "git credentials come from the environment of the gitwatcher",
    "chartRegistries": "Helm registries are configured in helm itself",
    "appSelector": "every application of the repositories is handled",
    "plugins": "PipeCD v1 plugins do not apply",
}


def from_piped(doc: Document) -> tuple[ControlSpec, SpecPaths]:
    """Translate PipeCD's `kind: Piped` into Slipway's control spec, warning of dropped fields."""
    piped = doc.convert(("spec",), _PipedSpec)
    raw_spec: dict[str, Any] = doc.data["spec"]
    for key, why in _PIPED_ONLY.items():
        if key in raw_spec:
            doc.warn(("spec", key), f"PipeCD piped setting ignored by Slipway ({why})")
    where = SpecPaths(project=("spec", "projectID"))
    repositories: list[Repository] = []
    for index, repo in enumerate(piped.repositories):
        at: FieldPath = ("spec", "repositories", index)
        _require(doc, at, "repoId", repo.repo_id)
        _require(doc, at, "remote", repo.remote)
        repositories.append(
            Repository(
                repo_id=repo.repo_id,
                remote=repo.remote,
                branch=repo.branch or "main",
                poll_interval=piped.sync_interval,
            )
        )
        where.repositories.append(at)
    providers: list[PlatformProvider] = []
    for section, items in (
        ("cloudProviders", piped.cloud_providers),
        ("platformProviders", piped.platform_providers),
    ):
        for index, provider in enumerate(items):
            at = ("spec", section, index)
            mapped = _piped_platform_provider(doc, at, provider, _piped_id(piped.piped_id))
            if mapped is not None:
                providers.append(mapped)
                where.platform_providers.append(at)
    analysis: list[AnalysisProvider] = []
    for index, analysis_provider in enumerate(piped.analysis_providers):
        at = ("spec", "analysisProviders", index)
        mapped_analysis = _piped_analysis_provider(doc, at, analysis_provider)
        if mapped_analysis is not None:
            analysis.append(mapped_analysis)
            where.analysis_providers.append(at)
    receivers, routes = _piped_notifications(doc, piped.notifications, where)
    git_repos = tuple(
        EventWatcherGitRepo(
            repo_id=repo.repo_id,
            commit_message=repo.commit_message,
            includes=repo.includes,
            excludes=repo.excludes,
        )
        for repo in piped.event_watcher.git_repos
    )
    where.git_repos = indexed(("spec", "eventWatcher", "gitRepos"), git_repos)
    if not piped.project_id:
        raise doc.error(
            ("spec", "projectID") if "projectID" in raw_spec else ("spec",), "required: projectID"
        )
    spec = ControlSpec(
        project=piped.project_id,
        repositories=tuple(repositories),
        platform_providers=tuple(providers),
        analysis_providers=tuple(analysis),
        analysis_egress=piped.analysis_egress,
        notifications=Notifications(routes=tuple(routes), receivers=tuple(receivers)),
        event_watcher=EventWatcherSettings(
            check_interval=piped.event_watcher.check_interval, git_repos=git_repos
        ),
        web_address=piped.web_address,
        secret_management=_piped_secret_management(doc, raw_spec.get("secretManagement")),
        chart_repositories=_piped_chart_repositories(doc, piped.chart_repositories),
    )
    return spec, where


class _PipedChartRepository(Spec, frozen=True):
    type: Literal["HTTP", "GIT"] = "HTTP"
    name: str = ""
    address: str = ""
    username: str = ""
    password: str = ""
    insecure: bool = False
    git_remote: str = ""
    ssh_key_file: str = ""


def _piped_chart_repositories(
    doc: Document, repositories: tuple[_PipedChartRepository, ...]
) -> tuple[ChartRepository, ...]:
    """PipeCD's HTTP chart repositories, by name; a GIT one is a warning (not supported:
    a chart from git is the application's `helmChart.gitRemote`)."""
    out: list[ChartRepository] = []
    for index, repository in enumerate(repositories):
        at: FieldPath = ("spec", "chartRepositories", index)
        if repository.type == "GIT":
            doc.warn(at, "GIT chart repositories are not supported: ignored (use the "
                     "application's helmChart.gitRemote)")  # fmt: skip
            continue
        if problem := repository_problem(repository.name):
            raise doc.error((*at, "name"), problem)
        if not repository.address.startswith(("https://", "http://")):
            raise doc.error((*at, "address"), "expected the repository's http(s):// address")
        if problem := plain_value_problem(repository.address):
            raise doc.error((*at, "address"), problem)
        out.append(
            ChartRepository(
                name=repository.name,
                address=repository.address,
                username=repository.username,
                password=repository.password,
                insecure=repository.insecure,
            )
        )
    return tuple(out)


def _piped_secret_management(doc: Document, raw: Any) -> SecretManagement | None:
    """PipeCD's KEY_PAIR has Slipway's shape; its KMS types are not supported (a warning)."""
    if raw is None:
        return None
    at: FieldPath = ("spec", "secretManagement")
    kind = raw.get("type", "KEY_PAIR") if isinstance(raw, dict) else "KEY_PAIR"
    if kind != "KEY_PAIR":
        doc.warn((*at, "type"), f"{kind} secret management ignored (Slipway decrypts KEY_PAIR)")
        return None
    return doc.convert(at, SecretManagement)


def _piped_id(value: Any) -> str:
    """`spec.pipedID` when it is a string (written as `pipecd.dev/piped`), else ""."""
    return value if isinstance(value, str) else ""


def _require(doc: Document, at: FieldPath, name: str, value: str) -> None:
    if not value:
        raise doc.error((*at, name) if doc.has((*at, name)) else at, f'required: "{name}"')


def _piped_platform_provider(
    doc: Document, at: FieldPath, provider: _PipedPlatformProvider, piped_id: str
) -> PlatformProvider | None:
    _require(doc, at, "name", provider.name)
    if provider.type != "KUBERNETES":
        doc.warn(
            (*at, "type"),
            f"{provider.type or 'untyped'} platform provider ignored "
            "(Slipway deploys to Kubernetes)",
        )
        return None
    config = doc.convert((*at, "config"), _PipedKubernetesConfig, data=provider.config or {})
    if config.kubectl_version:
        doc.warn((*at, "config", "kubectlVersion"), "PipeCD provider setting ignored by Slipway")
    return PlatformProvider(
        name=provider.name,
        labels=provider.labels,
        config=KubernetesProviderConfig(
            kubeconfig_path=config.kube_config_path,
            master_url=config.master_url,
            app_state_informer=config.app_state_informer,
            piped_id=piped_id,
        ),
    )


def _piped_analysis_provider(
    doc: Document, at: FieldPath, provider: _PipedAnalysisProvider
) -> AnalysisProvider | None:
    _require(doc, at, "name", provider.name)
    if provider.type != "PROMETHEUS":
        doc.warn(
            (*at, "type"),
            f"{provider.type or 'untyped'} analysis provider ignored (Slipway queries Prometheus)",
        )
        return None
    config = doc.convert((*at, "config"), _PipedPrometheusConfig, data=provider.config or {})
    return AnalysisProvider(
        name=provider.name,
        type="PROMETHEUS",
        config=AnalysisProviderConfig(
            address=config.address,
            username_file=config.username_file,
            password_file=config.password_file,
        ),
    )


def _piped_notifications(
    doc: Document, notifications: _PipedNotifications, where: SpecPaths
) -> tuple[list[NotificationReceiver], list[NotificationRoute]]:
    receivers: list[NotificationReceiver] = []
    dropped: set[str] = set()
    for index, receiver in enumerate(notifications.receivers):
        at: FieldPath = ("spec", "notifications", "receivers", index)
        slack = webhook = None
        if receiver.slack is not None:
            # Checked as slipway.yaml's are (PipeCD's rule: a hook URL or the API).
            slack = SlackReceiver(
                hook_url=receiver.slack.hook_url,
                oauth_token=receiver.slack.oauth_token,
                oauth_token_file=receiver.slack.oauth_token_file,
                oauth_token_data=receiver.slack.oauth_token_data,
                channel_id=receiver.slack.channel_id,
                mentioned_accounts=tuple(
                    a.removeprefix("@") for a in receiver.slack.mentioned_accounts
                ),
                mentioned_groups=receiver.slack.mentioned_groups,
            )
        if receiver.webhook is not None:
            webhook = WebhookReceiver(
                url=receiver.webhook.url,
                signature_key=receiver.webhook.signature_key,
                signature_value=receiver.webhook.signature_value,
                signature_secret_file=receiver.webhook.signature_value_file,
            )
        receivers.append(NotificationReceiver(name=receiver.name, slack=slack, webhook=webhook))
        where.receivers.append(at)
    routes: list[NotificationRoute] = []
    for index, route in enumerate(notifications.routes):
        at = ("spec", "notifications", "routes", index)
        if route.receiver in dropped:
            doc.warn(
                (*at, "receiver"), f'route ignored: its receiver "{route.receiver}" was ignored'
            )
            continue
        routes.append(
            NotificationRoute(
                name=route.name,
                receiver=route.receiver,
                events=route.events,
                ignore_events=route.ignore_events,
                groups=route.groups,
                ignore_groups=route.ignore_groups,
                apps=route.apps,
                ignore_apps=route.ignore_apps,
                labels=route.labels,
                ignore_labels=route.ignore_labels,
            )
        )
        where.routes.append(at)
    return receivers, routes
