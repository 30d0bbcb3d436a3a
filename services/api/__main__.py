"""`python -m services.api`: wiring only — settings, connections, serve HTTP until SIGTERM."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

from msgspec import Meta

from services.api.app import DEFAULT_READ_WAIT_S, ApiServer, create_app
from services.api.auth import DEFAULT_CACHE_TTL_S
from services.api.console.oidc import OidcSettings
from services.api.console.session_keys import DEFAULT_ROTATION_S
from services.api.console.sessions import SESSION_TTL_S
from services.api.deps import PlanPreviewSource
from services.api.limits import DEFAULT_MAX_BODY_BYTES, DEFAULT_STREAMS_PER_KEY
from shared.config.secret_keys import public_key
from shared.eventlog import EventStore
from shared.events.catalog import default_registry
from shared.git import GitCache
from shared.planning.preview import remote_url
from shared.redaction import REDACTOR
from shared.runtime import Component, ServiceRuntime, run_service
from shared.settings import ServiceSettings, SettingsError
from shared.wiring import control_config, git_cache_dir

NAME = "api"


class ApiSettings(ServiceSettings, frozen=True, kw_only=True):
    """The API service's settings (`SLIPWAY_*` environment variables)."""

    api_host: str = "127.0.0.1"
    api_port: Annotated[int, Meta(ge=0, le=65535)] = 8080
    """0 picks a free port (the bound one is logged as `api_server_started`)."""
    api_read_wait_s: Annotated[float, Meta(ge=0, le=60)] = DEFAULT_READ_WAIT_S
    """How long a read with `min_position` waits for the read model before answering 503."""
    api_key_cache_ttl_s: Annotated[float, Meta(ge=0, le=30)] = DEFAULT_CACHE_TTL_S
    """How long a checked API key is trusted: a revocation takes effect within this."""
    api_max_body_bytes: Annotated[int, Meta(ge=1024, le=64 * 1024 * 1024)] = DEFAULT_MAX_BODY_BYTES
    """The largest request body the API reads; a larger one is refused with 413."""
    api_max_log_streams_per_key: Annotated[int, Meta(ge=1, le=1000)] = DEFAULT_STREAMS_PER_KEY
    """How many log follows (`logs?follow=true`) one API key may hold at once; 429 beyond."""
    control_config: str = ""
    """The control config (slipway.yaml): its repositories can be plan-previewed, and
    registrations are checked against its repositories and platform providers. Optional."""
    api_git_cache_dir: str = ""
    """Where plan previews clone (default: a directory under the system's temp dir)."""
    console_session_key: str = ""
    """Signs the web console's session cookies in place of the keys kept in PostgreSQL
    (which every replica shares and rotates); every replica must then be given the same."""
    console_session_key_rotation_days: Annotated[float, Meta(ge=0, le=3650)] = (
        DEFAULT_ROTATION_S / 86400
    )
    """A new stored session key after this many days (0: never); sessions signed with the
    old one last until they expire. Ignored with `console_session_key`."""
    console_assets_dir: str = ""
    """Where the console's npm files are (`node_modules/`); "" uses the checkout's."""
    console_trace_url: str = ""
    """The tracing UI's page of a trace, `{trace_id}` replaced (Jaeger: `…/trace/{trace_id}`)."""


def oidc_settings(settings: ApiSettings) -> OidcSettings | None:
    """The console's OIDC sign-in, from the control config's `spec.console.oidc`."""
    if not settings.control_config:
        return None
    oidc = control_config(settings.control_config).spec.console.oidc
    if oidc is None:
        return None
    where = f"{settings.control_config}: spec.console.oidc"
    problems = [
        f"{where}.{field} {problem}"
        for field, problem, bad in (
            (
                "issuer",
                "must be an http(s) URL",
                not oidc.issuer.startswith(("https://", "http://")),
            ),
            ("clientId", "must not be empty", not oidc.client_id),
            ("scopes", "must include openid", "openid" not in oidc.scopes),
            ("groupRoles", "maps no group to a role: nobody could sign in", not oidc.group_roles),
            (
                "roleCheckInterval",
                "must be between 1s and 12h",
                not 1 <= oidc.role_check_interval.nanoseconds / 1e9 <= SESSION_TTL_S,
            ),
        )
        if bad
    ]
    if problems:
        raise SettingsError(NAME, tuple(problems))
    secret = ""
    if oidc.client_secret_file:
        path = Path(oidc.client_secret_file).expanduser()
        try:
            secret = path.read_text().strip()
        except OSError as exc:
            raise SettingsError(
                NAME,
                (f"{settings.control_config}: spec.console.oidc.clientSecretFile {path}: {exc}",),
            ) from exc
        REDACTOR.add(secret, pinned=True)  # masked in every log line and record
    return OidcSettings(
        issuer=oidc.issuer,
        client_id=oidc.client_id,
        client_secret=secret,
        scopes=oidc.scopes,
        groups_claim=oidc.groups_claim,
        group_roles=dict(oidc.group_roles),
        redirect_url=oidc.redirect_url,
        role_check_s=oidc.role_check_interval.nanoseconds / 1e9,
    )


def plan_preview_source(settings: ApiSettings) -> PlanPreviewSource | None:
    """The repositories plan previews may fetch, from the control config when one is set."""
    if not settings.control_config:
        return None
    control = control_config(settings.control_config)
    cache_dir = git_cache_dir(settings.api_git_cache_dir, "slipway-api-git-cache")
    return PlanPreviewSource(
        # A local directory becomes a file:// URL, as for `slipway plan-preview --repo`.
        repositories={
            r.repo_id: (remote_url(r.remote), r.branch) for r in control.spec.repositories
        },
        cache=GitCache(cache_dir),
        platform_providers=tuple(p.name for p in control.spec.platform_providers),
    )


async def setup(runtime: ServiceRuntime[ApiSettings]) -> Sequence[Component]:
    """Wire the API: its store, read model, commands and the HTTP server."""
    settings = runtime.settings
    app = create_app(
        store=EventStore(
            runtime.pool, default_registry(), max_event_bytes=runtime.settings.event_max_bytes
        ),
        pool=runtime.pool,
        read_wait_s=settings.api_read_wait_s,
        nc=runtime.nc,
        subjects=runtime.subjects,
        key_cache_ttl_s=settings.api_key_cache_ttl_s,
        plan_preview=plan_preview_source(settings),
        secret_public_key=(
            public_key(control_config(settings.control_config)) if settings.control_config else None
        ),
        max_body_bytes=settings.api_max_body_bytes,
        max_log_streams_per_key=settings.api_max_log_streams_per_key,
        console_session_key=settings.console_session_key.encode() or None,
        console_key_rotation_s=settings.console_session_key_rotation_days * 86400,
        console_assets_dir=Path(settings.console_assets_dir)
        if settings.console_assets_dir
        else None,
        trace_url_template=settings.console_trace_url,
        oidc=oidc_settings(settings),
    )
    # Requests in flight get most of the grace; the rest is for the runtime's own steps.
    server = ApiServer(
        app,
        host=settings.api_host,
        port=settings.api_port,
        grace_s=max(settings.shutdown_grace_s - 1.0, 0.0),
    )
    await server.start()

    async def serve(stop: asyncio.Event) -> None:
        try:
            await stop.wait()
        finally:
            await server.stop()

    return [serve]


if __name__ == "__main__":
    raise SystemExit(run_service(NAME, ApiSettings, setup))
