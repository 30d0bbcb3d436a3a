"""docker-compose.yml runs every service that exists, with the settings its code requires.

Docker cannot run here, so the file is checked statically against the code:
the services come from `services/*/__main__.py`, each one's needs from its
settings class (tests/support/deploy.py), the commands from the real CLI parser.
"""

from __future__ import annotations

import asyncio
import os
import posixpath
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
import yaml

from shared.config import load_control_config
from shared.eventlog import (
    DEFAULT_API_ROLE,
    DEFAULT_APP_ROLE,
    DEFAULT_PROJECTOR_ROLE,
    role_of_service,
)
from shared.natsauth import ROLES, deploy_authorization, password_env
from slipway_cli import build_parser
from slipway_cli.kubesim import build as build_kubesim
from slipway_sandbox.postgres import postgres_bin_dir
from tests.support.deploy import (
    COMPOSE_FILE,
    ROOT,
    deployment_problems,
    module_of_command,
    parse_dockerfile,
    served_ports,
    service_names,
)

PROMETHEUS_CONFIG = ROOT / "deploy" / "prometheus" / "prometheus.yml"


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE_FILE.read_text())
    assert isinstance(loaded, dict)
    return loaded


def _slipway_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Compose services running `python -m services.<name>`, by that name."""
    found: dict[str, dict[str, Any]] = {}
    for name, spec in compose["services"].items():
        module = module_of_command(spec.get("command") or [])
        if module is not None:
            assert module == f"services.{name}", f"compose service {name} runs {module}"
            found[name] = spec
    return found


def _environment(spec: dict[str, Any]) -> dict[str, str]:
    """The container's environment: the image's ENV, then the service's `environment`."""
    env = parse_dockerfile().final_env()
    declared = spec.get("environment") or {}
    if isinstance(declared, list):
        declared = dict(item.split("=", 1) for item in declared)
    env.update({key: _interpolate(str(value)) for key, value in declared.items()})
    return env


def _interpolate(value: str) -> str:
    """Compose's `${VAR:-default}` with nothing set: the default."""
    while "${" in value:
        start = value.index("${")
        end = value.index("}", start)
        _, _, default = value[start + 2 : end].partition(":-")
        value = value[:start] + default + value[end + 1 :]
    return value


def _mounts(spec: dict[str, Any]) -> dict[str, str]:
    """Container path → host path (relative to the repository) of each bind mount."""
    mounts: dict[str, str] = {}
    for volume in spec.get("volumes") or []:
        source, target, *_ = _interpolate(volume).split(":")
        mounts[target] = source
    return mounts


def compose_problems(compose: dict[str, Any]) -> list[str]:
    """Everything wrong with `compose` as a way to run every service; empty when fine."""
    problems: list[str] = []
    running = _slipway_services(compose)
    for name in sorted(set(running) - set(service_names())):
        problems.append(f"{name}: runs services.{name}, which has no __main__.py")
    for service in service_names():
        spec = running.get(service)
        if spec is None:
            problems.append(f"{service}: no compose service runs python -m services.{service}")
            continue
        env = _environment(spec)
        found, settings = deployment_problems(service, env)
        problems += found
        if settings is None:
            continue
        if "healthcheck" not in spec or spec["healthcheck"].get("disable"):
            problems.append(f"{service}: no health check")
        depends = spec.get("depends_on") or {}
        for needed, condition in (
            ("migrate", "service_completed_successfully"),
            ("nats", "service_healthy"),
        ):
            if (depends.get(needed) or {}).get("condition") != condition:
                problems.append(f"{service}: does not wait for {needed} ({condition})")
        published = {str(port).split(":")[-1] for port in spec.get("ports") or []}
        for field_name, port in served_ports(settings).items():
            if str(port) not in published:
                problems.append(f"{service}: {field_name}={port} is not published")
        control = getattr(settings, "control_config", None)
        if control is not None:
            source = _mounts(spec).get(control)
            if source is None:
                problems.append(f"{service}: SLIPWAY_CONTROL_CONFIG={control} is not mounted")
            elif not (ROOT / source).is_file():
                problems.append(f"{service}: the control config {source} does not exist")
    return problems


def test_compose_runs_every_service_with_what_its_code_requires() -> None:
    """Every services/*/__main__.py has a compose service with the settings its code needs."""
    assert compose_problems(_compose()) == []


def test_removing_a_service_or_a_setting_is_caught() -> None:
    """The check fails for a missing service, setting or control config, or a ghost service."""
    services = service_names()
    assert services, "no services found under services/"
    for victim in services:
        compose = _compose()
        del compose["services"][victim]
        assert f"{victim}: no compose service runs python -m services.{victim}" in (
            compose_problems(compose)
        )
    compose = _compose()
    del compose["services"]["planner"]["environment"]["SLIPWAY_CONTROL_CONFIG"]
    assert any("SLIPWAY_CONTROL_CONFIG is not set" in p for p in compose_problems(compose))
    compose = _compose()
    compose["services"]["api"]["environment"] = {
        k: v
        for k, v in compose["services"]["api"]["environment"].items()
        if k != "SLIPWAY_API_HOST"
    }
    assert any("SLIPWAY_API_HOST is not set" in p for p in compose_problems(compose))
    compose = _compose()
    compose["services"]["executor"]["volumes"] = []
    assert any("is not mounted" in p for p in compose_problems(compose))
    compose = _compose()
    services_url = compose["services"]["relay"]["environment"]["SLIPWAY_DATABASE_URL"]
    compose["services"]["projector"]["environment"]["SLIPWAY_DATABASE_URL"] = services_url
    assert any(
        "projector: SLIPWAY_DATABASE_URL logs in as 'slipway_app', not 'slipway_projector'" in p
        for p in compose_problems(compose)
    )
    compose = _compose()
    compose["services"]["api"]["environment"]["SLIPWAY_DATABASE_URL"] = services_url
    assert any(
        "api: SLIPWAY_DATABASE_URL logs in as 'slipway_app', not 'slipway_api'" in p
        for p in compose_problems(compose)
    )
    compose = _compose()
    del compose["services"]["notifier"]["environment"]["SLIPWAY_NATS_PASSWORD"]
    assert "notifier: no NATS password (SLIPWAY_NATS_PASSWORD or _PASSWORD_FILE)" in (
        compose_problems(compose)
    )
    compose = _compose()
    compose["services"]["notifier"]["environment"]["SLIPWAY_NATS_USER"] = "relay"
    assert any(
        p.startswith("notifier: logs in to NATS as 'relay'") for p in compose_problems(compose)
    )
    compose = _compose()
    compose["services"]["ghost"] = {"command": ["python", "-m", "services.ghost"]}
    assert "ghost: runs services.ghost, which has no __main__.py" in compose_problems(compose)


def test_infrastructure_services() -> None:
    """NATS runs JetStream on a volume; migrate, Prometheus, Jaeger and Postgres are wired."""
    services = _compose()["services"]
    nats = services["nats"]
    assert "--jetstream" in nats["command"] or "-js" in nats["command"]
    store = nats["command"][nats["command"].index("--store_dir") + 1]
    assert any(v.endswith(f":{store}") for v in nats["volumes"])
    assert services["migrate"]["command"][:2] == ["slipway", "migrate"]
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert "SLIPWAY_MIGRATE_DATABASE_URL" in services["migrate"]["environment"]
    postgres = services["postgres"]
    init = _mounts(postgres)["/docker-entrypoint-initdb.d"]
    assert (ROOT / init / "10-slipway-app-role.sh").is_file()
    assert "SLIPWAY_APP_PASSWORD" in postgres["environment"]
    assert "SLIPWAY_PROJECTOR_PASSWORD" in postgres["environment"]
    assert "SLIPWAY_API_PASSWORD" in postgres["environment"]
    assert services["jaeger"]["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert "4318:4318" in services["jaeger"]["ports"]
    for name in _slipway_services(_compose()):
        assert _environment(services[name])["OTEL_EXPORTER_OTLP_ENDPOINT"] == "http://jaeger:4318"
    assert _mounts(services["prometheus"])["/etc/prometheus/prometheus.yml"] == (
        "./deploy/prometheus/prometheus.yml"
    )


def test_nats_requires_each_service_to_log_in_as_itself() -> None:
    """NATS runs with the generated users (deploy/kubernetes/nats/auth.conf), gets every role's
    password, and each service logs in as its own user with that password."""
    services = _compose()["services"]
    nats = services["nats"]
    config = nats["command"][nats["command"].index("--config") + 1]
    mounts = _mounts(nats)
    nats_conf = (ROOT / mounts[config]).read_text()
    assert "include ./auth.conf" in nats_conf
    auth = posixpath.join(posixpath.dirname(config), "auth.conf")
    assert (ROOT / mounts[auth]).read_text() == deploy_authorization()
    server_env = _environment(nats)
    for role in ROLES:
        env = _environment(services[role.name])
        expected = (role.name, server_env[password_env(role.name)])
        assert (env["SLIPWAY_NATS_USER"], env["SLIPWAY_NATS_PASSWORD"]) == expected


def test_app_role_password_matches() -> None:
    """Each service logs in as its role, with the password the Postgres init script gives it."""
    services = _compose()["services"]
    postgres = services["postgres"]["environment"]
    passwords = {
        DEFAULT_APP_ROLE: _interpolate(postgres["SLIPWAY_APP_PASSWORD"]),
        DEFAULT_PROJECTOR_ROLE: _interpolate(postgres["SLIPWAY_PROJECTOR_PASSWORD"]),
        DEFAULT_API_ROLE: _interpolate(postgres["SLIPWAY_API_PASSWORD"]),
    }
    assert len(set(passwords.values())) == 3, "two roles share a password"
    for name in _slipway_services(_compose()):
        url = _environment(services[name])["SLIPWAY_DATABASE_URL"]
        role = role_of_service(name)
        assert url.split("://", 1)[1].split("@", 1)[0] == f"{role}:{passwords[role]}", name
    assert role_of_service("projector") == DEFAULT_PROJECTOR_ROLE
    assert role_of_service("api") == DEFAULT_API_ROLE


def test_prometheus_scrapes_every_service() -> None:
    """deploy/prometheus/prometheus.yml discovers every service on its health port."""
    config = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "slipway"]
    (dns,) = job["dns_sd_configs"]
    health_port = int(parse_dockerfile().final_env()["SLIPWAY_HEALTH_PORT"])
    assert dns["port"] == health_port
    assert set(service_names()) <= set(dns["names"])
    assert set(dns["names"]) <= set(_compose()["services"])


def test_prometheus_config_is_valid() -> None:
    """promtool accepts the compose stack's Prometheus configuration."""
    promtool = shutil.which("promtool")
    if promtool is None:
        if os.environ.get("CI") == "true":
            pytest.fail("promtool is required on CI (Debian: apt-get install prometheus)")
        pytest.skip("promtool is not installed")
    done = subprocess.run(
        [promtool, "check", "config", str(PROMETHEUS_CONFIG)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_slipway_commands_parse() -> None:
    """Every `slipway …` command in compose is one the real CLI accepts (kubesim's rules too)."""
    parser = build_parser()
    commands = [
        spec["command"]
        for spec in _compose()["services"].values()
        if (spec.get("command") or [None])[0] == "slipway"
    ]
    assert len(commands) >= 2
    for command in commands:
        args = parser.parse_args(command[1:])
        if command[1] == "kubesim":
            sim = build_kubesim(args)
            assert (sim.host, sim.port) == ("0.0.0.0", 6443)


def test_control_config_and_kubeconfig() -> None:
    """The mounted control config loads, and its kubeconfig is mounted and points at kubesim."""
    services = _compose()["services"]
    spec = services["executor"]
    env = _environment(spec)
    mounts = _mounts(spec)
    control = load_control_config(ROOT / mounts[env["SLIPWAY_CONTROL_CONFIG"]])
    for provider in control.spec.platform_providers:
        source = mounts[provider.config.kubeconfig_path]
        kubeconfig = yaml.safe_load((ROOT / source).read_text())
        (cluster,) = kubeconfig["clusters"]
        host, port = cluster["cluster"]["server"].removeprefix("http://").split(":")
        assert host in services
        assert f"--port={port}" in services[host]["command"]
        contexts = {c["name"] for c in kubeconfig["contexts"]}
        assert provider.config.context in contexts
    for repository in control.spec.repositories:
        if repository.remote.startswith("/"):
            assert any(repository.remote.startswith(target) for target in mounts)


async def _sh(script: Path, env: dict[str, str]) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        "sh", str(script), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_postgres_init_script_creates_the_app_role(database_url: str, test_id: str) -> None:
    """The init script creates the login roles with their passwords; running it again is fine."""
    script = ROOT / "deploy" / "kubernetes" / "postgres-initdb" / "10-slipway-app-role.sh"
    url = urlsplit(database_url)
    role = f"deploy_{test_id}"
    projector = f"deploy_p_{test_id}"
    reader = f"deploy_r_{test_id}"
    api = f"deploy_a_{test_id}"
    env = {
        "PATH": f"{postgres_bin_dir()}:{os.environ['PATH']}",
        "PGHOST": url.hostname or "127.0.0.1",
        "PGPORT": str(url.port or 5432),
        "PGPASSWORD": url.password or "",
        "POSTGRES_USER": url.username or "postgres",
        "POSTGRES_DB": url.path.lstrip("/") or "postgres",
        "SLIPWAY_APP_ROLE": role,
        # Quotes and spaces: the script must quote the password, not splice it into SQL.
        "SLIPWAY_APP_PASSWORD": "s3cret 'quoted' pass",
        "SLIPWAY_PROJECTOR_ROLE": projector,
        "SLIPWAY_PROJECTOR_PASSWORD": 'other "s3cret"; pass',
        "SLIPWAY_API_ROLE": api,
        "SLIPWAY_API_PASSWORD": "api\\ s3cret",
        # Optional: created only when it has a password.
        "SLIPWAY_READER_ROLE": reader,
        "SLIPWAY_READER_PASSWORD": "$(reader) pass",
    }
    conn = await asyncpg.connect(database_url)
    try:
        for _ in range(2):
            code, said = await _sh(script, env)
            assert code == 0, said
        for name in (role, projector, api, reader):
            row = await conn.fetchrow(
                "SELECT rolcanlogin, rolpassword IS NOT NULL AS has_password, rolsuper"
                " FROM pg_authid WHERE rolname = $1",
                name,
            )
            assert row is not None, name
            assert (row["rolcanlogin"], row["has_password"], row["rolsuper"]) == (True, True, False)
        for missing in (
            "SLIPWAY_APP_PASSWORD",
            "SLIPWAY_PROJECTOR_PASSWORD",
            "SLIPWAY_API_PASSWORD",
        ):
            code, said = await _sh(script, {k: v for k, v in env.items() if k != missing})
            assert code != 0
            assert f"{missing} is not set" in said
    finally:
        await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        await conn.execute(f'DROP ROLE IF EXISTS "{projector}"')
        await conn.execute(f'DROP ROLE IF EXISTS "{reader}"')
        await conn.execute(f'DROP ROLE IF EXISTS "{api}"')
        await conn.close()
