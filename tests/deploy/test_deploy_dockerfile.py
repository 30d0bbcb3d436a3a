"""The Dockerfile refers to things that exist, and its health check really judges /readyz.

Docker cannot run here: the file is checked statically (what it copies is in
the repository and not excluded by .dockerignore, its commands exist), and
the health-check script it installs is run against a real health server.
"""

from __future__ import annotations

import asyncio
import fnmatch
import sys
import tomllib

from shared.health import HealthServer
from slipway_sandbox._process import free_port
from tests.support.deploy import ROOT, module_of_command, parse_dockerfile

HEALTHCHECK_SCRIPT = ROOT / "deploy" / "docker" / "healthcheck.py"


def _ignored(path: str, patterns: list[str]) -> bool:
    """Whether .dockerignore keeps `path` out of the build context (last match wins)."""
    ignored = False
    for pattern in patterns:
        negated = pattern.startswith("!")
        pattern = pattern.removeprefix("!").strip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(
            fnmatch.fnmatch(p, pattern) or fnmatch.fnmatch(p, f"**/{pattern}") for p in prefixes
        ):
            ignored = not negated
    return ignored


def _dockerignore() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_what_the_dockerfile_copies_exists_and_is_in_the_context() -> None:
    """Every COPY source exists in the repository and .dockerignore does not exclude it."""
    patterns = _dockerignore()
    sources = []
    for args in parse_dockerfile().all("COPY"):
        words = [w for w in args.split() if not w.startswith("--")]
        if "--from=" in args:
            continue
        sources += words[:-1]
    assert {
        "pyproject.toml",
        "shared",
        "services",
        "kubesim",
        "slipway_client",
        "slipway_cli",
    } <= set(sources)
    # The image carries the runtime only: the sandbox (tools/) is a development tool.
    assert not [s for s in sources if s.startswith("tools")], sources
    assert _ignored("tools", patterns)
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile copies {source}, which does not exist"
        assert not _ignored(source, patterns), f".dockerignore excludes {source}"
    # The context stays small: local state and tests are not sent to the daemon.
    for heavy in (".venv", ".git", "tests", ".sandbox"):
        assert _ignored(heavy, patterns)


def test_entrypoint_command_and_health_check_exist() -> None:
    """tini is installed, CMD runs an existing service, HEALTHCHECK runs the installed script."""
    dockerfile = parse_dockerfile()
    entrypoint = dockerfile.exec_form("ENTRYPOINT")
    assert entrypoint[0] == "/usr/bin/tini"
    installs = " ".join(dockerfile.all("RUN"))
    assert "apt-get install" in installs and " tini" in installs and " git" in installs
    module = module_of_command(dockerfile.exec_form("CMD"))
    assert module is not None
    assert (ROOT / module.replace(".", "/") / "__main__.py").is_file()
    (check,) = dockerfile.exec_form("HEALTHCHECK")[:1]
    copies = [args.split() for args in dockerfile.all("COPY")]
    installed = {words[-1]: words[-2] for words in copies}
    assert installed[f"/usr/local/bin/{check}"] == str(HEALTHCHECK_SCRIPT.relative_to(ROOT))
    # `slipway migrate` and `slipway kubesim` (compose, the Job) need the console script.
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["slipway"] == "slipway_cli:main"
    env = dockerfile.final_env()
    assert env["SLIPWAY_HEALTH_HOST"] == "0.0.0.0"
    assert int(env["SLIPWAY_HEALTH_PORT"]) > 0
    assert dockerfile.all("USER") and dockerfile.all("USER")[-1].split(":")[0] not in ("0", "root")


def test_python_version_satisfies_the_package() -> None:
    """The base image's Python is one pyproject.toml's requires-python accepts."""
    dockerfile = parse_dockerfile()
    (version,) = [
        a.split("=", 1)[1] for a in dockerfile.all("ARG") if a.startswith("PYTHON_VERSION=")
    ]
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    minimum = tuple(int(p) for p in requires.removeprefix(">=").split("."))
    assert tuple(int(p) for p in version.split(".")) >= minimum


async def _healthcheck(env: dict[str, str], *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(HEALTHCHECK_SCRIPT),
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        _, stderr = await process.communicate()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


async def test_health_check_script_follows_readiness() -> None:
    """The script exits 1 while /readyz answers 503 or nothing listens, 0 once it answers 200."""
    port = free_port()
    env = {"SLIPWAY_HEALTH_PORT": str(port)}
    code, said = await _healthcheck(env)
    assert code == 1 and str(port) in said
    async with HealthServer(port=port) as health:
        code, said = await _healthcheck(env)
        assert code == 1 and "503" in said and "lifecycle" in said
        health.mark_running()
        code, said = await _healthcheck(env)
        assert (code, said) == (0, "")
        code, _ = await _healthcheck({}, f"http://127.0.0.1:{port}/healthz")
        assert code == 0


async def test_health_check_script_names_a_bad_port() -> None:
    """A random, disabled or malformed health port is a clear error, not a hang."""
    for value in ("0", "-1", "nine"):
        code, said = await _healthcheck({"SLIPWAY_HEALTH_PORT": value})
        assert code == 1
        assert f"SLIPWAY_HEALTH_PORT={value}" in said or f"SLIPWAY_HEALTH_PORT={value!r}" in said
