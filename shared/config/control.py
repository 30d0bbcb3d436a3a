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
      config:
        kubeconfigPath: ~/.kube/config
        context: prd
        masterURL: ""
        appStateInformer:            # which kinds live state (prune, drift) lists: every
          namespace: ""              # kind discovery serves, less these (PipeCD's names)
          excludeResources: [{apiVersion: v1, kind: Secret}]
          includeResources: [{apiVersion: v1, kind: Endpoints}]
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
    gitRepos: [{repoId: config, commitMessage: "", includes: [], excludes: [],
                pullRequest: {apiURL: https://api.github.com, tokenFile: /secrets/gh}}]
  webAddress: https://slipway.example      # notifications link here (PipeCD's webAddress)
  eventHooks:                        # raw events to a URL (docs/events.md), Slipway's own
    - name: dora
      url: https://dora.example/cdevents
      format: cdevents                # native (default) | cloudevents | cdevents
      types: [deployment_completed]   # event types; also categories, application
      signatureSecretFile: /secrets/dora   # or signatureValue; header signatureKey
  secretManagement:                  # secrets encrypted in git (PipeCD's KEY_PAIR)
    type: KEY_PAIR
    config:
      privateKeyFile: /secrets/key-2026.pem     # or privateKeyData (base64 of the PEM)
      publicKeyFile: /secrets/key-2026.pub.pem  # or publicKeyData; default: from the private key
      previousPrivateKeyFiles: [/secrets/key-2025.pem]  # still decrypt, tried after the newest
  console:                           # the web console's OIDC sign-in (docs/console.md)
    oidc:
      issuer: https://login.example.com
      clientId: slipway
      clientSecretFile: /secrets/oidc-client
      scopes: [openid, email, profile]   # the default
      groupsClaim: groups                # the default
      groupRoles: {platform: admin, developers: read-write, everyone: read-only}
      redirectURL: https://slipway.example/console/oidc/callback  # default: from the request
```

It is loaded by `shared.config.control_loader.load_control_config`, which also
reads a PipeCD `kind: Piped` file onto the same spec (`shared.config.piped`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeVar

import msgspec

from shared.config._base import Spec
from shared.config._decode import Path as FieldPath
from shared.config.errors import ConfigWarning
from shared.config.types import Duration
from shared.errors import ConfigError

__all__ = [
    "CONTROL_API_VERSION",
    "NOTIFICATION_GROUPS",
    "AnalysisEgress",
    "AnalysisProvider",
    "AnalysisProviderConfig",
    "AppStateInformer",
    "ChartRepository",
    "ControlConfig",
    "ControlSpec",
    "EventHook",
    "EventWatcherGitRepo",
    "EventWatcherSettings",
    "KubernetesProviderConfig",
    "KubernetesResourceMatcher",
    "NotificationReceiver",
    "NotificationRoute",
    "Notifications",
    "PlatformProvider",
    "PullRequestSettings",
    "Repository",
    "SecretKeyPair",
    "SecretManagement",
    "SlackMention",
    "SlackReceiver",
    "WebhookReceiver",
    "configured",
    "platform_provider_of",
]

CONTROL_API_VERSION: Final = "slipway.dev/v1"
NOTIFICATION_GROUPS: Final = (
    "DEPLOYMENT",
    "APPLICATION_SYNC",
    "APPLICATION_HEALTH",
    "PIPED",
    "STAGE",
)
ONE_MINUTE: Final = Duration.of(minutes=1)


class Repository(Spec, frozen=True):
    """A git repository of application configs, polled (and pushed to by its webhook)."""

    repo_id: str
    remote: str
    branch: str = "main"
    poll_interval: Duration = ONE_MINUTE
    webhook_secret: str = ""
    webhook_secret_file: str = ""


class KubernetesResourceMatcher(Spec, frozen=True):
    """Kinds by apiVersion and kind (no kind: every kind of the apiVersion), as PipeCD's."""

    api_version: str
    kind: str = ""


class AppStateInformer(Spec, frozen=True):
    """Which kinds live state lists (`shared.platform.livekinds`), PipeCD's setting."""

    namespace: str = ""
    include_resources: tuple[KubernetesResourceMatcher, ...] = ()
    exclude_resources: tuple[KubernetesResourceMatcher, ...] = ()


class KubernetesProviderConfig(Spec, frozen=True):
    """Which cluster: a kubeconfig and context (both empty: in-cluster)."""

    kubeconfig_path: str = ""
    context: str = ""
    master_url: str = msgspec.field(default="", name="masterURL")
    app_state_informer: AppStateInformer = AppStateInformer()
    piped_id: str = msgspec.field(default="", name="pipedID")
    """Written as `pipecd.dev/piped` on what Slipway applies, as PipeCD's piped did: a
    team's queries and dashboards over that annotation keep working after the cut-over.
    A Piped file's `spec.pipedID` fills it for each of its providers."""


class PlatformProvider(Spec, frozen=True):
    """`platformProviders` entry: a Kubernetes cluster Slipway deploys to."""

    name: str
    type: Literal["KUBERNETES"] = "KUBERNETES"
    labels: dict[str, str] = msgspec.field(default_factory=dict)
    config: KubernetesProviderConfig = KubernetesProviderConfig()


class AnalysisProviderConfig(Spec, frozen=True):
    """Where an analysis provider is and the files holding its credentials."""

    address: str = ""
    username_file: str = ""
    password_file: str = ""


class AnalysisProvider(Spec, frozen=True):
    """`analysisProviders` entry: a Prometheus or HTTP source analysis queries."""

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
    """Slack: an incoming webhook (`hookURL`, inline or in a file), or Slack's Web API
    (`chat.postMessage` to `channelID` with a bot's `oauthToken`, inline, in a file, or
    base64 in `oauthTokenData` as PipeCD takes it), where one deployment's messages
    form one thread.

    `mentionedAccounts`/`mentionedGroups` are mentioned on every message,
    `mentions` only on messages of its event type.
    """

    hook_url: str = msgspec.field(default="", name="hookURL")
    hook_url_file: str = msgspec.field(default="", name="hookURLFile")
    oauth_token: str = msgspec.field(default="", name="oauthToken")
    oauth_token_file: str = msgspec.field(default="", name="oauthTokenFile")
    oauth_token_data: str = msgspec.field(default="", name="oauthTokenData")
    channel_id: str = msgspec.field(default="", name="channelID")
    mentioned_accounts: tuple[str, ...] = ()
    mentioned_groups: tuple[str, ...] = ()
    mentions: tuple[SlackMention, ...] = ()

    @property
    def uses_api(self) -> bool:
        """Posts with the Web API (a token and a channel) rather than to a hook URL."""
        return bool(self.channel_id)


class WebhookReceiver(Spec, frozen=True):
    """A JSON POST signed with the secret (inline or in a file) in header `signatureKey`."""

    url: str
    signature_key: str = "Slipway-Signature"
    signature_value: str = ""
    signature_secret_file: str = ""


class NotificationReceiver(Spec, frozen=True):
    """`notifications.receivers` entry: a Slack or webhook destination."""

    name: str
    slack: SlackReceiver | None = None
    webhook: WebhookReceiver | None = None


class Notifications(Spec, frozen=True):
    """`notifications`: which events go to which receivers."""

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


class PullRequestSettings(Spec, frozen=True):
    """Where `makePullRequest` opens pull requests: GitHub's REST API (Slipway's addition;
    PipeCD only pushes the branch). `repository` defaults to the remote's `owner/name`."""

    api_url: str = msgspec.field(default="https://api.github.com", name="apiURL")
    repository: str = ""
    token_file: str = ""


class EventWatcherGitRepo(Spec, frozen=True):
    """A repository the event watcher writes back to, with its commit message and file filters."""

    repo_id: str
    commit_message: str = ""
    includes: tuple[str, ...] = ()
    excludes: tuple[str, ...] = ()
    pull_request: PullRequestSettings | None = None


class EventWatcherSettings(Spec, frozen=True):
    """`eventWatcher`: how often to check for events and which repositories it handles."""

    check_interval: Duration = ONE_MINUTE
    git_repos: tuple[EventWatcherGitRepo, ...] = ()


class SecretKeyPair(Spec, frozen=True):
    """The key pair secrets are encrypted for (newest), and older private keys still accepted.

    Files are relative to the control config; `…Data` is the base64 of the PEM
    (PipeCD's convention). `previousPrivateKeyFiles` is Slipway's: key rotation.
    """

    private_key_file: str = ""
    private_key_data: str = ""
    public_key_file: str = ""
    public_key_data: str = ""
    previous_private_key_files: tuple[str, ...] = ()


class SecretManagement(Spec, frozen=True):
    """`secretManagement`: the key pair that decrypts secrets encrypted in git."""

    type: Literal["KEY_PAIR"] = "KEY_PAIR"
    config: SecretKeyPair = SecretKeyPair()


class ChartRepository(Spec, frozen=True):
    """A Helm chart repository an application's `helmChart.repository` may name (PipeCD's
    piped `chartRepositories`, HTTP type): helm knows it by `name`
    (`shared.config.chart_repositories`)."""

    name: str
    address: str
    username: str = ""
    password: str = ""
    insecure: bool = False


class ConsoleOidc(Spec, frozen=True):
    """An OpenID Connect provider people sign in to the web console with
    (`services.api.console.oidc`): the authorization code flow with PKCE."""

    issuer: str
    """The provider's issuer URL; its `/.well-known/openid-configuration` is read."""
    client_id: str
    client_secret_file: str = ""
    """A file holding the client's secret ("" for a public client)."""
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    groups_claim: str = "groups"
    """The ID token's claim listing the user's groups."""
    group_roles: dict[str, Literal["read-only", "read-write", "admin"]] = msgspec.field(
        default_factory=dict
    )
    """Group → role; a user gets the highest role of their groups, and none in no mapped group
    is refused."""
    redirect_url: str = msgspec.field(default="", name="redirectURL")
    """The console's callback as the provider knows it (default: this request's origin +
    `/console/oidc/callback`)."""
    role_check_interval: Duration = Duration.of(minutes=15)
    """How long a signed-in person's role holds before the provider is asked again (with
    its refresh token); without one, the session ends then."""


class ConsoleSettings(Spec, frozen=True):
    oidc: ConsoleOidc | None = None


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
    secret_management: SecretManagement | None = None
    chart_repositories: tuple[ChartRepository, ...] = ()
    """Helm chart repositories by name, given to helm when the service starts."""
    console: ConsoleSettings = ConsoleSettings()
    """The web console's sign-in by OpenID Connect (optional; API keys always work)."""


class ControlConfig(msgspec.Struct, frozen=True, kw_only=True):
    """A loaded control config; `source_kind` says whether it was ours or PipeCD's Piped."""

    source_kind: Literal["Slipway", "Piped"]
    api_version: str
    spec: ControlSpec
    path: Path
    warnings: tuple[ConfigWarning, ...] = ()

    @property
    def kind(self) -> str:
        """The kind the file declared: `Slipway` or PipeCD's `Piped`."""
        return self.source_kind

    def repository(self, repo_id: str) -> Repository | None:
        """The repository with id `repo_id`, or None."""
        return next((r for r in self.spec.repositories if r.repo_id == repo_id), None)

    def platform_provider(self, name: str) -> PlatformProvider | None:
        """The platform provider named `name`, or None."""
        return next((p for p in self.spec.platform_providers if p.name == name), None)

    def analysis_provider(self, name: str) -> AnalysisProvider | None:
        """The analysis provider named `name`, or None."""
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


@dataclass
class SpecPaths:
    """Where each element of a `ControlSpec` came from in its file, for errors that span
    fields (a `kind: Slipway` file and a Piped file put them in different places)."""

    project: FieldPath = ("spec", "project")
    repositories: list[FieldPath] = field(default_factory=list)
    platform_providers: list[FieldPath] = field(default_factory=list)
    analysis_providers: list[FieldPath] = field(default_factory=list)
    routes: list[FieldPath] = field(default_factory=list)
    receivers: list[FieldPath] = field(default_factory=list)
    git_repos: list[FieldPath] = field(default_factory=list)


def indexed(prefix: FieldPath, items: Sequence[object]) -> list[FieldPath]:
    """The path of each of `items` under `prefix`: `(*prefix, 0)`, `(*prefix, 1)`…"""
    return [(*prefix, index) for index in range(len(items))]
