"""The receivers of the control config, made ready to send to: URLs and secrets read once.

Secrets in files are read at start-up, so a missing file stops the service
with the file's name instead of failing every delivery later.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from shared.config.control import ControlConfig, SlackReceiver
from shared.errors import ConfigError

__all__ = ["Target", "targets_of"]


@dataclass(frozen=True)
class Target:
    """Where one receiver's notifications are POSTed, and how they are signed."""

    name: str
    kind: Literal["slack", "webhook"]
    url: str
    slack: SlackReceiver | None = None
    signature_key: str = ""
    secret: bytes = b""


def targets_of(control: ControlConfig) -> Mapping[str, Target]:
    """Every receiver of `control`, by name."""
    targets: dict[str, Target] = {}
    base = control.path.parent
    for receiver in control.spec.notifications.receivers:
        where = f"{control.path}: receiver {receiver.name!r}"
        if receiver.slack is not None:
            url = receiver.slack.hook_url or _read(base, receiver.slack.hook_url_file, where)
            targets[receiver.name] = Target(
                name=receiver.name, kind="slack", url=url.strip(), slack=receiver.slack
            )
        elif receiver.webhook is not None:
            hook = receiver.webhook
            secret = hook.signature_value
            if hook.signature_secret_file:
                secret = _read(base, hook.signature_secret_file, where).strip()
            targets[receiver.name] = Target(
                name=receiver.name,
                kind="webhook",
                url=hook.url,
                signature_key=hook.signature_key,
                secret=secret.encode(),
            )
    return targets


def _read(base: Path, name: str, where: str) -> str:
    path = (base / Path(name).expanduser()).resolve()
    try:
        return path.read_text()
    except OSError as exc:
        raise ConfigError(f"{where}: cannot read {path}: {exc.strerror or exc}") from exc
