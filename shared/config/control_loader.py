"""Loading the control config: `slipway.yaml` (`kind: Slipway`) or PipeCD's `kind: Piped`.

The header says which; a Piped spec is translated first (`piped`). Either way
the spec is then checked for what its types cannot say — names unique and
present, branches git accepts, routes naming receivers that exist, known
event and group names — each error naming the field of the file it came from.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from shared.config._decode import Document
from shared.config._decode import Path as FieldPath
from shared.config.application import NOTIFICATION_EVENTS
from shared.config.control import (
    CONTROL_API_VERSION,
    NOTIFICATION_GROUPS,
    ControlConfig,
    ControlSpec,
    EventHook,
    NotificationReceiver,
    SlackReceiver,
    SpecPaths,
    indexed,
)
from shared.config.documents import API_VERSION, open_document
from shared.config.piped import from_piped
from shared.config.types import _show
from shared.egress import parse_allow_entry
from shared.events.feed import SelectionError, selection_of
from shared.git import branch_name_problem

__all__ = ["load_control_config"]


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
        spec, where = from_piped(doc)
    _check(doc, spec, where)
    return ControlConfig(
        source_kind=kind,  # type: ignore[arg-type]
        api_version=expected,
        spec=spec,
        path=path,
        warnings=doc.sorted_warnings(),
    )


def _slipway_paths(spec: ControlSpec) -> SpecPaths:
    notifications = ("spec", "notifications")
    return SpecPaths(
        repositories=indexed(("spec", "repositories"), spec.repositories),
        platform_providers=indexed(("spec", "platformProviders"), spec.platform_providers),
        analysis_providers=indexed(("spec", "analysisProviders"), spec.analysis_providers),
        routes=indexed((*notifications, "routes"), spec.notifications.routes),
        receivers=indexed((*notifications, "receivers"), spec.notifications.receivers),
        git_repos=indexed(("spec", "eventWatcher", "gitRepos"), spec.event_watcher.git_repos),
    )


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


def _check(doc: Document, spec: ControlSpec, where: SpecPaths) -> None:
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
    _check_event_hooks(doc, spec.event_hooks)
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


def _check_slack(doc: Document, slack: SlackReceiver, at: FieldPath) -> None:
    """A hook URL (inline or a file), or the Web API: a channel and one source of the token."""
    hooks = [v for v in (slack.hook_url, slack.hook_url_file) if v]
    tokens = [v for v in (slack.oauth_token, slack.oauth_token_file, slack.oauth_token_data) if v]
    if slack.channel_id or tokens:
        if hooks:
            raise doc.error(at, "set hookURL (a webhook) or oauthToken and channelID, not both")
        if not slack.channel_id:
            raise doc.error((*at, "channelID"), "required with oauthToken: the channel to post to")
        if len(tokens) != 1:
            raise doc.error(
                (*at, "oauthToken"),
                "set one of oauthToken, oauthTokenFile and oauthTokenData with channelID",
            )
        if slack.oauth_token_data:
            try:
                base64.b64decode(slack.oauth_token_data, validate=True)
            except ValueError:
                raise doc.error((*at, "oauthTokenData"), "not base64") from None
        return
    if len(hooks) != 1:
        raise doc.error(at, "set hookURL or hookURLFile (one of them), or oauthToken and channelID")


def _check_receiver(doc: Document, receiver: NotificationReceiver, at: FieldPath) -> None:
    if (receiver.slack is None) == (receiver.webhook is None):
        raise doc.error(at, f'receiver "{receiver.name}" needs exactly one of slack or webhook')
    if receiver.slack is not None:
        _check_slack(doc, receiver.slack, (*at, "slack"))
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
