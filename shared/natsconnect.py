"""How a service logs in to NATS: its user, password and TLS, from its settings.

The credentials come from `SLIPWAY_NATS_USER` / `SLIPWAY_NATS_PASSWORD` (or
`SLIPWAY_NATS_PASSWORD_FILE`, a mounted Secret), or from the userinfo of
`SLIPWAY_NATS_URL`; separate settings win, so a URL in a ConfigMap and a
password in a Secret combine. TLS is on when `SLIPWAY_NATS_TLS_CA_FILE` is set
(or the URL's scheme is `tls://`, with the system's CAs). Replies come back
on the service's own inbox prefix, the only one its NATS user may read.

Nothing here logs: a password never leaves this module except into nats-py.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from shared.errors import ConfigError
from shared.natsauth import inbox_prefix
from shared.settings import ServiceSettings, env_key

__all__ = ["connect_options", "credentials"]


def connect_options(settings: ServiceSettings, service: str) -> dict[str, Any]:
    """Keyword arguments for `nats.connect` beyond the URL; `ConfigError` naming the setting."""
    options: dict[str, Any] = {"inbox_prefix": inbox_prefix(service)}
    user, password = credentials(settings)
    if user:
        options["user"] = user
        options["password"] = password
    tls = _tls_context(settings)
    if tls is not None:
        options["tls"] = tls
    return options


def credentials(settings: ServiceSettings) -> tuple[str, str]:
    """The NATS user and password `settings` give (empty when none: an open server)."""
    parts = urlsplit(settings.nats_url)
    user = settings.nats_user or unquote(parts.username or "")
    if settings.nats_password and settings.nats_password_file:
        raise ConfigError(
            f"{env_key('nats_password')} and {env_key('nats_password_file')} are both set: "
            "choose one"
        )
    password = settings.nats_password
    if settings.nats_password_file:
        try:
            password = Path(settings.nats_password_file).read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"{env_key('nats_password_file')}: cannot read {settings.nats_password_file}: "
                f"{exc.strerror}"
            ) from exc
    password = password or unquote(parts.password or "")
    if password and not user:
        raise ConfigError(f"{env_key('nats_user')}: a NATS password is set but no user")
    return user, password


def _tls_context(settings: ServiceSettings) -> ssl.SSLContext | None:
    if not settings.nats_tls_ca_file:
        # nats-py makes a default (system CAs) context itself for a tls:// URL.
        if settings.nats_tls_cert_file or settings.nats_tls_key_file:
            raise ConfigError(f"{env_key('nats_tls_ca_file')}: required with a client certificate")
        return None
    try:
        context = ssl.create_default_context(cafile=settings.nats_tls_ca_file)
        if settings.nats_tls_cert_file or settings.nats_tls_key_file:
            if not (settings.nats_tls_cert_file and settings.nats_tls_key_file):
                raise ConfigError(
                    f"{env_key('nats_tls_cert_file')} and {env_key('nats_tls_key_file')} "
                    "go together"
                )
            context.load_cert_chain(settings.nats_tls_cert_file, settings.nats_tls_key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"NATS TLS files: {exc}") from exc
    return context
