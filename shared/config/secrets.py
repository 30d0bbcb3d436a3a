"""The secrets a control config holds or points to: what the redactor must know at start-up.

`control_secrets` lists every credential in `slipway.yaml`: inline values
(webhook secrets, signature values), the contents of the files it names
(passwordFile, usernameFile with its password as a Basic credential,
webhookSecretFile, signatureSecretFile, hookURLFile, the secretManagement
private keys), the URLs that are themselves credentials (Slack incoming
webhooks, generic webhook URLs), the credentials inside other URLs (a remote's
or an address's userinfo and token parameters), and the tokens, passwords and
client keys in the kubeconfigs of the platform providers.

A file that cannot be read is skipped here: the service that uses it says so
when it does, with the field's name.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from shared.config.control import ControlConfig
from shared.redaction import secrets_in_url

__all__ = ["control_secrets", "kubeconfig_secrets"]

_KUBECONFIG_SECRETS = ("token", "password", "client-key-data")


def control_secrets(control: ControlConfig) -> list[str]:
    """Every secret value of `control`, read from its files where it names them."""
    return [value for value in _secrets(control) if value.strip()]


def _secrets(control: ControlConfig) -> Iterator[str]:
    base = control.path.parent
    spec = control.spec
    for repo in spec.repositories:
        yield from secrets_in_url(repo.remote)
        yield repo.webhook_secret
        yield _read(base, repo.webhook_secret_file)
    for chart_repository in spec.chart_repositories:
        yield chart_repository.password
        yield from secrets_in_url(chart_repository.address)
    for analysis in spec.analysis_providers:
        config = analysis.config
        yield from secrets_in_url(config.address)
        password = _read(base, config.password_file).strip()
        yield password
        username = _read(base, config.username_file).strip()
        if username and password:
            yield base64.b64encode(f"{username}:{password}".encode()).decode("ascii")
    for receiver in spec.notifications.receivers:
        if receiver.slack is not None:
            yield receiver.slack.hook_url
            yield _read(base, receiver.slack.hook_url_file)
        if receiver.webhook is not None:
            yield receiver.webhook.url
            yield from secrets_in_url(receiver.webhook.url)
            yield receiver.webhook.signature_value
            yield _read(base, receiver.webhook.signature_secret_file)
    for provider in spec.platform_providers:
        if provider.config.kubeconfig_path:
            yield from kubeconfig_secrets(_read(base, provider.config.kubeconfig_path))
    if spec.secret_management is not None:
        keys = spec.secret_management.config
        yield keys.private_key_data
        for name in (keys.private_key_file, *keys.previous_private_key_files):
            yield _read(base, name).strip()


def kubeconfig_secrets(text: str) -> list[str]:
    """The users' tokens, passwords and client keys in a kubeconfig's text."""
    try:
        document: Any = yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return []
    users = document.get("users") if isinstance(document, dict) else None
    found: list[str] = []
    for entry in users if isinstance(users, list) else []:
        user = entry.get("user") if isinstance(entry, dict) else None
        if not isinstance(user, dict):
            continue
        for key in _KUBECONFIG_SECRETS:
            value = user.get(key)
            if isinstance(value, str) and value:
                found.append(value)
                if key.endswith("-data"):
                    found.append(_b64decode(value))
    return [value for value in found if value]


def _read(base: Path, name: str) -> str:
    if not name:
        return ""
    path = Path(name).expanduser()
    # Relative names: beside the control config (as the notifier reads them), else from
    # the working directory (as the analysis providers do).
    for candidate in (path,) if path.is_absolute() else (base / path, path):
        try:
            return candidate.read_text()
        except (OSError, UnicodeDecodeError):
            continue
    return ""


def _b64decode(value: str) -> str:
    try:
        return base64.b64decode(value, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return ""
