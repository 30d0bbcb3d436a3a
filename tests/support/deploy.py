"""What the deploy tests share: the services that exist, what their code requires, the Dockerfile.

"Which services" and "which settings" come from the code, never from a copy:
a service is a `services/<name>/__main__.py`; its settings class is the one
its `run_service(NAME, <Settings>, setup)` call names; and its needs follow
from that class's fields (see `deployment_problems`).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec

from shared.errors import ConfigError
from shared.eventlog import role_of_service
from shared.natsconnect import credentials
from shared.settings import ServiceSettings, SettingsError, env_key, load_settings
from tests.support.paths import REPO_ROOT

ROOT = REPO_ROOT
SERVICES_DIR = ROOT / "services"
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE_FILE = ROOT / "docker-compose.yml"
KUBERNETES_DIR = ROOT / "deploy" / "kubernetes"

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def service_names() -> list[str]:
    """Every runnable service in this checkout (services added later are required too)."""
    return sorted(path.parent.name for path in SERVICES_DIR.glob("*/__main__.py"))


def settings_class(service: str) -> type[ServiceSettings]:
    """The settings class `services/<service>/__main__.py` passes to `run_service`."""
    module = importlib.import_module(f"services.{service}.__main__")
    tree = ast.parse(inspect.getsource(module))
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "run_service"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Name)
        ):
            cls = getattr(module, node.args[1].id)
            assert isinstance(cls, type) and issubclass(cls, ServiceSettings), cls
            return cls
    raise AssertionError(f"services/{service}/__main__.py: no run_service(NAME, Settings, …) call")


@dataclass(frozen=True)
class Need:
    """One setting a deployed service must be given, and why."""

    key: str
    why: str


def needs(cls: type[ServiceSettings]) -> list[Need]:
    """What a container deployment of a service with settings `cls` must set.

    - every field without a default (the service refuses to start without it);
    - every field whose default points at loopback (`nats_url`, `*_host`):
      right on a laptop, unreachable between containers;
    - every `*_port` whose default is 0 (a random port cannot be probed,
      scraped or published).
    """
    found: list[Need] = []
    for f in msgspec.structs.fields(cls):
        key = env_key(f.name)
        if f.required:
            found.append(Need(key, "required: no default"))
        elif isinstance(f.default, str) and any(host in f.default for host in LOOPBACK):
            found.append(Need(key, f"its default {f.default!r} is loopback"))
        elif f.name.endswith("_port") and f.default == 0:
            found.append(Need(key, "its default 0 picks a random port"))
    return found


def served_ports(settings: ServiceSettings) -> dict[str, int]:
    """The TCP ports a service listens on besides its health port (`*_port` > 0)."""
    return {
        f.name: value
        for f in msgspec.structs.fields(settings)
        if f.name.endswith("_port")
        and f.name != "health_port"
        and isinstance(value := getattr(settings, f.name), int)
        and value > 0
    }


def deployment_problems(
    service: str, env: Mapping[str, str]
) -> tuple[list[str], ServiceSettings | None]:
    """What is wrong with running `service` with `env`; its settings too, if they load."""
    cls = settings_class(service)
    problems: list[str] = []
    for need in needs(cls):
        value = env.get(need.key)
        if value is None:
            problems.append(f"{service}: {need.key} is not set ({need.why})")
        elif any(host in value for host in LOOPBACK):
            problems.append(f"{service}: {need.key}={value!r} is loopback inside a container")
        elif need.key.endswith("_PORT") and value.strip() == "0":
            problems.append(f"{service}: {need.key}=0 picks a random port")
    try:
        settings = load_settings(cls, env)
    except SettingsError as exc:
        problems.extend(f"{service}: {problem}" for problem in exc.problems)
        return problems, None
    user = settings.database_url.split("://", 1)[-1].split("@", 1)[0].split(":", 1)[0]
    if user != (role := role_of_service(service)):
        problems.append(
            f"{service}: SLIPWAY_DATABASE_URL logs in as {user!r}, not {role!r} "
            "(the role the migrations grant exactly what this service needs)"
        )
    problems += nats_login_problems(service, settings)
    return problems, settings


def nats_login_problems(service: str, settings: ServiceSettings) -> list[str]:
    """A service must log in to NATS as its own user (its role's permissions), with a password."""
    try:
        user, password = credentials(settings)
    except ConfigError as exc:
        return [f"{service}: {exc}"]
    if user != service:
        return [
            f"{service}: logs in to NATS as {user or 'nobody'!r}, not as its own user "
            f"{service!r} (SLIPWAY_NATS_USER; roles in shared/natsauth.py)"
        ]
    if not password:
        return [f"{service}: no NATS password (SLIPWAY_NATS_PASSWORD or _PASSWORD_FILE)"]
    return []


@dataclass
class Dockerfile:
    """Instructions of each stage (and those before the first FROM), enough for checks."""

    preamble: list[tuple[str, str]] = field(default_factory=list)
    stages: list[list[tuple[str, str]]] = field(default_factory=list)

    @property
    def final(self) -> list[tuple[str, str]]:
        return self.stages[-1]

    def all(self, instruction: str) -> list[str]:
        every = [self.preamble, *self.stages]
        return [args for stage in every for name, args in stage if name == instruction]

    def final_env(self) -> dict[str, str]:
        """The ENV of the runtime stage (what every container starts with)."""
        env: dict[str, str] = {}
        for name, args in self.final:
            if name == "ENV":
                for item in shlex.split(args):
                    key, _, value = item.partition("=")
                    env[key] = value
        return env

    def exec_form(self, instruction: str) -> list[str]:
        """The last `instruction` of the runtime stage in exec (JSON) form."""
        found = [args for name, args in self.final if name == instruction]
        assert found, f"Dockerfile: no {instruction} in the runtime stage"
        args = found[-1]
        if instruction == "HEALTHCHECK":
            args = args.split("CMD", 1)[1]
        value = msgspec.json.decode(args.strip())
        assert isinstance(value, list), f"Dockerfile: {instruction} is not in exec form"
        return [str(v) for v in value]


def parse_dockerfile(path: Path = DOCKERFILE) -> Dockerfile:
    """Instructions with continuation lines joined and comments dropped, split by FROM."""
    parsed = Dockerfile()
    logical = ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        logical += line.removesuffix("\\").strip() + " "
        if line.endswith("\\"):
            continue
        name, _, args = logical.strip().partition(" ")
        logical = ""
        if name.upper() == "FROM":
            parsed.stages.append([])
        (parsed.stages[-1] if parsed.stages else parsed.preamble).append(
            (name.upper(), args.strip())
        )
    return parsed


def module_of_command(command: list[str]) -> str | None:
    """`services.<name>` for a `python -m services.<name>` command, else None."""
    if len(command) >= 3 and command[0] in ("python", "python3") and command[1] == "-m":
        return command[2]
    return None


def load_yaml_documents(path: Path) -> list[dict[str, Any]]:
    import yaml

    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]
