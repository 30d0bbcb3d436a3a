"""The control config (`slipway.yaml`): what Slipway watches, where it deploys, whom it tells.

```yaml
apiVersion: slipway.dev/v1
kind: Slipway
spec:
  project: bucketeer
  repositories:
    - repoId: config
      remote: git@github.com:acme/config.git
      branch: main                   # default main
      pollInterval: 1m               # default 1m
      webhookSecretFile: /secrets/github-webhook   # or webhookSecret
  platformProviders:
    - name: prd
      type: KUBERNETES
      config: {kubeconfigPath: ~/.kube/config, context: prd, masterURL: ""}
  analysisProviders:
    - name: prometheus
      type: PROMETHEUS               # or HTTP
      config: {address: http://prometheus:9090, usernameFile: "", passwordFile: ""}
  analysisEgress:                    # where analysis may connect beyond public addresses
    allow: [10.96.0.0/12, prometheus] # CIDRs, addresses, host names; loopback, link-local,
                                     # private and cloud metadata addresses need an entry
  notifications:
    routes: [{name: prd-failures, events: [DEPLOYMENT_FAILED], labels: {env: prd}, receiver: slack}]
    receivers:
      - name: slack
        slack: {hookURL: https://hooks.slack.com/…, mentionedAccounts: [U123],
                mentions: [{event: DEPLOYMENT_FAILED, slackUsers: [U456], slackGroups: [S789]}]}
      - name: audit
        webhook: {url: https://audit.example/hook, signatureKey: Slipway-Signature,
                  signatureSecretFile: /secrets/audit}   # or signatureValue
  eventWatcher:
    checkInterval: 1m
    gitRepos: [{repoId: config, commitMessage: "", includes: [], excludes: []}]
  webAddress: https://slipway.example      # notifications link here (PipeCD's webAddress)
  eventHooks:                        # raw events to a URL (docs/events.md), Slipway's own
    - name: dora
      url: https://dora.example/cdevents
      format: cdevents                # native (default) | cloudevents | cdevents
      types: [deployment_completed]   # event types; also categories, application
      signatureSecretFile: /secrets/dora   # or signatureValue; header signatureKey
```

A PipeCD `kind: Piped` file (`apiVersion: pipecd.dev/v1beta1`) loads too: its
projectID, repositories, platformProviders (and the older cloudProviders),
analysisProviders, notifications and eventWatcher map onto the same spec;
Slipway's `analysisEgress` may be added to it (PipeCD has no egress rule).
Its other settings (piped id and key, API address, git credentials, chart
repositories, secret management…) mean nothing here; each one present is
named in `ControlConfig.warnings` rather than dropped silently, as are
providers and receivers of kinds Slipway does not run. A field PipeCD does not
know either is an error, as everywhere.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

import msgspec

from shared.config._base import Spec
from shared.config._decode import Document
from shared.config._decode import Path as FieldPath
from shared.config.application import NOTIFICATION_EVENTS
from shared.config.errors import ConfigWarning
from shared.config.loader import API_VERSION, open_document
from shared.config.types import Duration, _show
from shared.egress import parse_allow_entry
from shared.errors import ConfigError
from shared.events.feed import SelectionError, selection_of
from shared.git import branch_name_problem

__all__ = [
    "CONTROL_API_VERSION",
    "NOTIFICATION_GROUPS",
    "AnalysisEgress",
    "AnalysisProvider",
    "AnalysisProviderConfig",
    "ControlConfig",
    "ControlSpec",
    "EventWatcherGitRepo",
    "EventWatcherSettings",
    "KubernetesProviderConfig",
    "NotificationReceiver",
    "NotificationRoute",
    "Notifications",
    "PlatformProvider",
    "Repository",
    "SlackMention",
    "SlackReceiver",
    "WebhookReceiver",
    "configured",
    "load_control_config",
    "platform_provider_of",
]

CONTROL_API_VERSION: Final = "slipway.dev/v1"
NOTIFICATION_GROUPS: Final = ("DEPLOYMENT", "APPLICATION_SYNC", "APPLICATION_HEALTH", "PIPED")
ONE_MINUTE: Final = Duration.of(minutes=1)


class Repository(Spec, frozen=True):
    """A git repository of application configs, polled (and pushed to by its webhook)."""

    repo_id: str
    remote: str
    branch: str = "main"
    poll_interval: Duration = ONE_MINUTE
    webhook_secret: str = ""
    webhook_secret_file: str = ""


class KubernetesProviderConfig(Spec, frozen=True):
    """Which cluster: a kubeconfig and context (both empty: in-cluster)."""

    kubeconfig_path: str = ""
    context: str = ""
    master_url: str = msgspec.field(default="", name="masterURL")


class PlatformProvider(Spec, frozen=True):
    name: str
    type: Literal["KUBERNETES"] = "KUBERNETES"
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    config: KubernetesProviderConfig = KubernetesProviderConfig()


class AnalysisProviderConfig(Spec, frozen=True):
    address: str = ""
    username_file: str = ""
    password_file: str = ""


class AnalysisProvider(Spec, frozen=True):
    name: str
    type: Literal["PROMETHEUS", "HTTP"]
    config: AnalysisProviderConfig = AnalysisProviderConfig()


class AnalysisEgress(Spec, frozen=True):
    """Where analysis (HTTP checks, Prometheus) may connect beyond public addresses.

    `allow`: CIDRs, addresses or host names (`shared.egress`). Loopback,
    link-local, private and metadata addresses are refused unless listed.
    """

    allow: tuple[str, ...] = ()


class NotificationRoute(Spec, frozen=True):
    """Which events go to `receiver`; empty lists match anything, an ignore list wins."""

    name: str
    receiver: str
    events: tuple[str, ...] = ()
    ignore_events: tuple[str, ...] = ()
    groups: tuple[str, ...] = ()
    ignore_groups: tuple[str, ...] = ()
    apps: tuple[str, ...] = ()
    ignore_apps: tuple[str, ...] = ()
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    ignore_labels: dict[str, str] = msgspec.field(default_factory=dict)


class SlackMention(Spec, frozen=True):
    """Whom a Slack receiver mentions for one event type (member ids, user-group ids)."""

    event: str
    slack_users: tuple[str, ...] = ()
    slack_groups: tuple[str, ...] = ()


class SlackReceiver(Spec, frozen=True):
    """A Slack incoming webhook (the URL inline or in a file).

    `mentionedAccounts`/`mentionedGroups` are mentioned on every message,
    `mentions` only on messages of its event type.
    """

    hook_url: str = msgspec.field(default="", name="hookURL")
    hook_url_file: str = msgspec.field(default="", name="hookURLFile")
    mentioned_accounts: tuple[str, ...] = ()
    mentioned_groups: tuple[str, ...] = ()
    mentions: tuple[SlackMention, ...] = ()


class WebhookReceiver(Spec, frozen=True):
    """A JSON POST signed with the secret (inline or in a file) in header `signatureKey`."""

    url: str
    signature_key: str = "Slipway-Signature"
    signature_value: str = ""
    signature_secret_file: str = ""


class NotificationReceiver(Spec, frozen=True):
    name: str
    slack: SlackReceiver | None = None
    webhook: WebhookReceiver | None = None


class Notifications(Spec, frozen=True):
    routes: tuple[NotificationRoute, ...] = ()
    receivers: tuple[NotificationReceiver, ...] = ()


class EventHook(Spec, frozen=True):
    """A raw-event webhook: each selected event POSTed in commit order, signed, retried until
    the receiver takes it (docs/events.md). Empty `types`/`categories` select everything."""

    name: str
    url: str
    types: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    application: str = ""
    format: str = "native"  # native | cloudevents | cdevents
    signature_key: str = "Slipway-Signature"
    signature_value: str = ""
    signature_secret_file: str = ""


class EventWatcherGitRepo(Spec, frozen=True):
    repo_id: str
    commit_message: str = ""
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()


class EventWatcherSettings(Spec, frozen=True):
    check_interval: Duration = ONE_MINUTE
    git_repos: tuple[EventWatcherGitRepo, ...] = ()


class ControlSpec(Spec, frozen=True):
    """`spec` of `kind: Slipway`."""

    project: str
    repositories: tuple[Repository, ...] = ()
    platform_providers: tuple[PlatformProvider, ...] = ()
    analysis_providers: tuple[AnalysisProvider, ...] = ()
    analysis_egress: AnalysisEgress = AnalysisEgress()
    notifications: Notifications = Notifications()
    event_watcher: EventWatcherSettings = EventWatcherSettings()
    web_address: str = ""
    """Where people open Slipway (the UI or API); notifications link there when set."""
    event_hooks: tuple[EventHook, ...] = ()
    """Raw-event webhooks (Slipway's own; a Piped file has none)."""


class ControlConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A loaded control config; `source_kind` says whether it was ours or PipeCD's Piped."""

    source_kind: Literal["Slipway", "Piped"]
    api_version: str
    spec: ControlSpec
    path: Path
    warnings: tuple[ConfigWarning, ...] = ()

    @property
    def kind(self) -> str:
        return self.source_kind

    def repository(self, repo_id: str) -> Repository | None:
        return next((r for r in self.spec.repositories if r.repo_id == repo_id), None)

    def platform_provider(self, name: str) -> PlatformProvider | None:
        return next((p for p in self.spec.platform_providers if p.name == name), None)

    def analysis_provider(self, name: str) -> AnalysisProvider | None:
        return next((p for p in self.spec.analysis_providers if p.name == name), None)


_Entry = TypeVar("_Entry")


def configured(entries: Mapping[str, _Entry], name: str, what: str) -> _Entry:
    """The control config's `what` named `name`, or a ConfigError naming the ones it has."""
    entry = entries.get(name)
    if entry is None:
        known = ", ".join(sorted(entries)) or "none"
        raise ConfigError(f"{what} {name!r} is not in the control config (known: {known})")
    return entry


def platform_provider_of(
    application_provider: str, providers: Mapping[str, _Entry]
) -> tuple[str, _Entry]:
    """The platform provider an application deploys to, by name, and its entry.

    The one rule, used wherever an application meets a cluster (executor,
    drift, cascade delete, registration): the provider it was registered with,
    else the control config's first one (`providers` in the config's order).
    A `ConfigError` names the providers there are when neither exists.
    """
    name = application_provider or next(iter(providers), "")
    if not name:
        raise ConfigError(
            "no platform provider: the application names none and the control config has none"
        )
    return name, configured(providers, name, "platform provider")


# --- PipeCD's kind: Piped, as written (pkg/config/piped.go) ----------------------


class _PipedRepository(Spec, frozen=True):
    repo_id: str = ""
    remote: str = ""
    branch: str = ""


class _PipedKubernetesConfig(Spec, frozen=True):
    master_url: str = msgspec.field(default="", name="masterURL")
    kube_config_path: str = msgspec.field(default="", name="kubeConfigPath")
    app_state_informer: Any = msgspec.UNSET
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
    chart_repositories: Any = msgspec.UNSET
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
    "pipedID": "the piped's identity",
    "pipedKeyFile": "the piped's key",
    "pipedKeyData": "the piped's key",
    "name": "the piped's name",
    "apiAddress": "the control plane's address",
    "appConfigSyncInterval": "Slipway reads app configs on every poll",
    "git": "git credentials come from the environment of the gitwatcher",
    "chartRepositories": "Helm chart repositories are configured in helm itself",
    "chartRegistries": "Helm registries are configured in helm itself",
    "secretManagement": "secret decryption is not supported yet",
    "appSelector": "every application of the repositories is handled",
    "plugins": "PipeCD v1 plugins do not apply",
}


# --- loading ---------------------------------------------------------------------


@dataclass
class _Where:
    """Where each mapped element came from, for errors that span fields."""

    project: FieldPath = ("spec", "project")
    repositories: list[FieldPath] = field(default_factory=list)
    platform_providers: list[FieldPath] = field(default_factory=list)
    analysis_providers: list[FieldPath] = field(default_factory=list)
    routes: list[FieldPath] = field(default_factory=list)
    receivers: list[FieldPath] = field(default_factory=list)
    git_repos: list[FieldPath] = field(default_factory=list)


def load_control_config(path: Path, text: str | None = None) -> ControlConfig:
    """Load `slipway.yaml` (`kind: Slipway`) or a PipeCD `kind: Piped` file."""
    doc, kind = open_document(path, text)
    version = doc.get(("apiVersion",))
    if kind == "Slipway":
        expected = CONTROL_API_VERSION
    elif kind == "Piped":
        expected = API_VERSION
    else:
        raise doc.error(
            ("kind",), f'expected kind "Slipway" (or PipeCD\'s "Piped"), got {_show(kind)}'
        )
    if not doc.has(("apiVersion",)):
        raise doc.error((), f'missing required field "apiVersion" (expected "{expected}")')
    if version != expected:
        raise doc.error(
            ("apiVersion",), f'expected "{expected}" for kind {kind}, got {_show(version)}'
        )
    if doc.get(("spec",)) is None:
        doc.data["spec"] = {}
    if kind == "Slipway":
        spec = doc.convert(("spec",), ControlSpec)
        where = _slipway_paths(spec)
    else:
        spec, where = _from_piped(doc)
    _check(doc, spec, where)
    return ControlConfig(
        source_kind=kind,  # type: ignore[arg-type]
        api_version=expected,
        spec=spec,
        path=path,
        warnings=doc.sorted_warnings(),
    )


def _indexed(prefix: FieldPath, items: Sequence[object]) -> list[FieldPath]:
    return [(*prefix, index) for index in range(len(items))]


def _slipway_paths(spec: ControlSpec) -> _Where:
    notifications = ("spec", "notifications")
    return _Where(
        repositories=_indexed(("spec", "repositories"), spec.repositories),
        platform_providers=_indexed(("spec", "platformProviders"), spec.platform_providers),
        analysis_providers=_indexed(("spec", "analysisProviders"), spec.analysis_providers),
        routes=_indexed((*notifications, "routes"), spec.notifications.routes),
        receivers=_indexed((*notifications, "receivers"), spec.notifications.receivers),
        git_repos=_indexed(("spec", "eventWatcher", "gitRepos"), spec.event_watcher.git_repos),
    )


def _from_piped(doc: Document) -> tuple[ControlSpec, _Where]:
    piped = doc.convert(("spec",), _PipedSpec)
    raw_spec: dict[str, Any] = doc.data["spec"]
    for key, why in _PIPED_ONLY.items():
        if key in raw_spec:
            doc.warn(("spec", key), f"PipeCD piped setting ignored by Slipway ({why})")
    where = _Where(project=("spec", "projectID"))
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
            mapped = _piped_platform_provider(doc, at, provider)
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
    where.git_repos = _indexed(("spec", "eventWatcher", "gitRepos"), git_repos)
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
    )
    return spec, where


def _require(doc: Document, at: FieldPath, name: str, value: str) -> None:
    if not value:
        raise doc.error((*at, name) if doc.has((*at, name)) else at, f'required: "{name}"')


def _piped_platform_provider(
    doc: Document, at: FieldPath, provider: _PipedPlatformProvider
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
    for key, value in (
        ("appStateInformer", config.app_state_informer),
        ("kubectlVersion", config.kubectl_version or msgspec.UNSET),
    ):
        if value is not msgspec.UNSET:
            doc.warn((*at, "config", key), "PipeCD provider setting ignored by Slipway")
    return PlatformProvider(
        name=provider.name,
        labels=provider.labels,
        config=KubernetesProviderConfig(
            kubeconfig_path=config.kube_config_path, master_url=config.master_url
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
    doc: Document, notifications: _PipedNotifications, where: _Where
) -> tuple[list[NotificationReceiver], list[NotificationRoute]]:
    receivers: list[NotificationReceiver] = []
    dropped: set[str] = set()
    for index, receiver in enumerate(notifications.receivers):
        at: FieldPath = ("spec", "notifications", "receivers", index)
        slack = webhook = None
        if receiver.slack is not None:
            if not receiver.slack.hook_url:
                doc.warn(
                    (*at, "slack"),
                    "Slack via the API (oauthToken, channelID) is not supported; use hookURL. "
                    f'Receiver "{receiver.name}" ignored',
                )
                dropped.add(receiver.name)
                continue
            for key, value in (
                ("oauthToken", receiver.slack.oauth_token),
                ("oauthTokenData", receiver.slack.oauth_token_data),
                ("oauthTokenFile", receiver.slack.oauth_token_file),
                ("channelID", receiver.slack.channel_id),
            ):
                if value:
                    doc.warn((*at, "slack", key), "ignored: Slipway posts to the hookURL")
            slack = SlackReceiver(
                hook_url=receiver.slack.hook_url,
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


# --- checks ----------------------------------------------------------------------


def _unique(
    doc: Document, kind: str, names: Sequence[tuple[str, FieldPath]], field_name: str
) -> None:
    seen: dict[str, FieldPath] = {}
    for name, at in names:
        if not name:
            raise doc.error((*at, field_name), f'required: "{field_name}"')
        if name in seen:
            raise doc.error((*at, field_name), f'{kind} "{name}" is defined twice')
        seen[name] = at


def _check(doc: Document, spec: ControlSpec, where: _Where) -> None:
    if not spec.project:
        raise doc.error(where.project, "required: the project id")
    repos = list(zip(spec.repositories, where.repositories, strict=True))
    _unique(doc, "repository", [(r.repo_id, at) for r, at in repos], "repoId")
    for repo, at in repos:
        if not repo.remote:
            raise doc.error((*at, "remote"), "required: the git remote to clone")
        if problem := branch_name_problem(repo.branch):
            raise doc.error((*at, "branch"), problem)
        if repo.remote.startswith("-"):
            raise doc.error((*at, "remote"), "must not start with '-' (git would read an option)")
        if repo.webhook_secret and repo.webhook_secret_file:
            raise doc.error(at, "set webhookSecret or webhookSecretFile, not both")
    providers = list(zip(spec.platform_providers, where.platform_providers, strict=True))
    _unique(doc, "platform provider", [(p.name, at) for p, at in providers], "name")
    analysis = list(zip(spec.analysis_providers, where.analysis_providers, strict=True))
    _unique(doc, "analysis provider", [(p.name, at) for p, at in analysis], "name")
    for provider, at in analysis:
        if provider.type == "PROMETHEUS" and not provider.config.address:
            raise doc.error((*at, "config", "address"), "required: the Prometheus server's URL")
    for index, entry in enumerate(spec.analysis_egress.allow):
        try:
            parse_allow_entry(entry)
        except ValueError as exc:
            raise doc.error(("spec", "analysisEgress", "allow", index), str(exc)) from None
    _check_event_hooks(doc, spec.event_hooks)
    receivers = list(zip(spec.notifications.receivers, where.receivers, strict=True))
    _unique(doc, "receiver", [(r.name, at) for r, at in receivers], "name")
    for receiver, at in receivers:
        _check_receiver(doc, receiver, at)
    names = {r.name for r in spec.notifications.receivers}
    for route, at in zip(spec.notifications.routes, where.routes, strict=True):
        if route.receiver not in names:
            known = ", ".join(sorted(names)) or "none is defined"
            raise doc.error((*at, "receiver"), f'no receiver named "{route.receiver}" ({known})')
        for key, values, allowed in (
            ("events", route.events, NOTIFICATION_EVENTS),
            ("ignoreEvents", route.ignore_events, NOTIFICATION_EVENTS),
            ("groups", route.groups, NOTIFICATION_GROUPS),
            ("ignoreGroups", route.ignore_groups, NOTIFICATION_GROUPS),
        ):
            for index, value in enumerate(values):
                if value not in allowed:
                    raise doc.error(
                        (*at, key, index),
                        f"expected one of {', '.join(allowed)}; got {_show(value)}",
                    )
    repo_ids = {r.repo_id for r in spec.repositories}
    git_repos = list(zip(spec.event_watcher.git_repos, where.git_repos, strict=True))
    _unique(doc, "event watcher repository", [(g.repo_id, at) for g, at in git_repos], "repoId")
    for git_repo, at in git_repos:
        if git_repo.repo_id not in repo_ids:
            raise doc.error((*at, "repoId"), f'no repository with repoId "{git_repo.repo_id}"')


def _check_event_hooks(doc: Document, hooks: Sequence[EventHook]) -> None:
    paths: list[FieldPath] = [("spec", "eventHooks", i) for i in range(len(hooks))]
    _unique(doc, "event hook", [(h.name, at) for h, at in zip(hooks, paths, strict=True)], "name")
    for hook, at in zip(hooks, paths, strict=True):
        if not _HOOK_NAME.match(hook.name):
            raise doc.error((*at, "name"), "lowercase letters, digits and '-' (at most 63)")
        if not hook.url.startswith(("http://", "https://")):
            raise doc.error((*at, "url"), f"an http(s) URL to POST to; got {_show(hook.url)}")
        if hook.signature_value and hook.signature_secret_file:
            raise doc.error(at, "set signatureValue or signatureSecretFile, not both")
        try:
            selection_of(
                categories=hook.categories,
                types=hook.types,
                application=hook.application,
                fmt=hook.format,
            )
        except SelectionError as exc:
            raise doc.error((*at, _HOOK_FIELDS[exc.field]), str(exc)) from None


_HOOK_NAME: Final = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_HOOK_FIELDS: Final = {
    "category": "categories",
    "type": "types",
    "application": "application",
    "format": "format",
}


def _check_receiver(doc: Document, receiver: NotificationReceiver, at: FieldPath) -> None:
    if (receiver.slack is None) == (receiver.webhook is None):
        raise doc.error(at, f'receiver "{receiver.name}" needs exactly one of slack or webhook')
    if receiver.slack is not None and bool(receiver.slack.hook_url) == bool(
        receiver.slack.hook_url_file
    ):
        raise doc.error((*at, "slack"), "set hookURL or hookURLFile (one of them)")
    if receiver.slack is not None:
        for index, mention in enumerate(receiver.slack.mentions):
            if mention.event.removeprefix("EVENT_") not in NOTIFICATION_EVENTS:
                raise doc.error(
                    (*at, "slack", "mentions", index, "event"),
                    f"expected one of {', '.join(NOTIFICATION_EVENTS)}; got {_show(mention.event)}",
                )
    if receiver.webhook is not None:
        if not receiver.webhook.url:
            raise doc.error((*at, "webhook", "url"), "required: the URL to POST to")
        if receiver.webhook.signature_value and receiver.webhook.signature_secret_file:
            raise doc.error(
                (*at, "webhook"), "set the signature secret inline or from a file, not both"
            )
