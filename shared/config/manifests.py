"""Render an application's Kubernetes manifests, the way PipeCD's piped loads them.

Three inputs, chosen like PipeCD: a Helm chart (`input.helmChart`) renders with
`helm template`; a Kustomize directory (a `kustomization.yaml`, or
`input.kustomizeVersion` set) with `kustomize build`, or `kubectl kustomize`
when kustomize is not installed; otherwise plain YAML files — the ones
`input.manifests` lists, else every `*.yaml`/`*.yml`/`*.json` of the app
directory (not its subdirectories) except application config files.

Tools run without a shell, with a timeout and an environment holding nothing
of ours; a tool that fails or is missing is a `ConfigError` naming the
application, quoting one short line of what the tool said. A config never
chooses a tool's options: they are the allow-listed (option, value) pairs of
`tool_options`, joined to their flags, with the positional arguments after
`--`. Every file read, and every symlink in a directory a tool reads (a chart,
a kustomization and its bases), must stay inside `repo_root` (default: the app
directory): `repo_files`' rule, so a config repository cannot make Slipway read
the host's files.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import msgspec

from shared.config._yaml import parse_yaml, parse_yaml_documents
from shared.config.chart_sources import checkout_chart_remote
from shared.config.discovery import is_application_config_name
from shared.config.documents import read_text
from shared.config.errors import ConfigFileError, excerpt
from shared.config.repo_files import check_tree, inside_repository
from shared.config.tool_options import (
    kustomize_flags,
    release_name_problem,
    repository_problem,
    set_value_problem,
)
from shared.config.tool_versions import (
    kubectl_with_kustomize,
    reported_version,
    select_tool,
)
from shared.config.types import _show
from shared.errors import ConfigError

if TYPE_CHECKING:  # annotations only
    from shared.config.app_config import ApplicationConfig

__all__ = ["Manifest", "render_manifests", "render_manifests_async"]

TOOL_TIMEOUT_SECONDS: Final = 120
TOOL_EXCERPT_CHARS: Final = 200
_KUSTOMIZATION_NAMES: Final = ("kustomization.yaml", "kustomization.yml", "Kustomization")
_MANIFEST_SUFFIXES: Final = (".yaml", ".yml", ".json")
# Without API discovery we cannot ask the cluster; these never take a namespace.
_CLUSTER_SCOPED: Final = frozenset(
    {
        "APIService",
        "CSIDriver",
        "CSINode",
        "ClusterIssuer",
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "IngressClass",
        "MutatingWebhookConfiguration",
        "Namespace",
        "Node",
        "PersistentVolume",
        "PriorityClass",
        "RuntimeClass",
        "StorageClass",
        "ValidatingWebhookConfiguration",
        "VolumeSnapshotClass",
    }
)


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """One Kubernetes object as rendered from git; `body` is the whole object as plain data."""

    api_version: str
    kind: str
    name: str
    namespace: str
    body: dict[str, Any]
    source: str = ""
    cluster: str = ""
    """The platform provider a live object was read from ("" for a rendered manifest, or
    a cluster not named); an application's `resourceRoutes` may spread it over several."""

    @property
    def group(self) -> str:
        """The API group ("apps" for apps/v1, "" for the core v1)."""
        return self.api_version.rpartition("/")[0]

    @property
    def key(self) -> str:
        """`group/kind/namespace/name`, the identity of the object in a cluster."""
        return f"{self.group}/{self.kind}/{self.namespace}/{self.name}"


def render_manifests(
    app_dir: Path, config: ApplicationConfig, *, repo_root: Path | None = None
) -> list[Manifest]:
    """Render the application's manifests from its directory in a checked-out repository."""
    renderer = _Renderer(app_dir, config, repo_root)
    return renderer.render()


async def render_manifests_async(
    app_dir: Path, config: ApplicationConfig, *, repo_root: Path | None = None
) -> list[Manifest]:
    """`render_manifests`, off the event loop when it runs kustomize or helm (a tool's
    process may take seconds). Plain manifest files are read and parsed on the loop: a
    thread's hand-off (and the GIL passed back and forth while it parses) cost the planner
    more CPU than parsing a few files, and nothing else waits on that thread anyway."""
    renderer = _Renderer(app_dir, config, repo_root)
    if renderer.runs_a_tool():
        return await asyncio.to_thread(renderer.render)
    return renderer.render()


class _Renderer:
    def __init__(self, app_dir: Path, config: ApplicationConfig, repo_root: Path | None) -> None:
        self.app_dir = app_dir
        self.config = config
        self.root = (repo_root or app_dir).resolve()
        self.input = config.spec.input

    def runs_a_tool(self) -> bool:
        """Whether rendering runs helm or kustomize (else it reads plain files)."""
        return self.input.helm_chart is not None or self._kustomized()

    def _kustomized(self) -> bool:
        return bool(self.input.kustomize_version) or any(
            (self.app_dir / name).is_file() for name in _KUSTOMIZATION_NAMES
        )

    def render(self) -> list[Manifest]:
        if self.input.helm_chart is not None:
            with tempfile.TemporaryDirectory(prefix="slipway-chart-") as scratch:
                command = self._helm_command(Path(scratch))
                return self._parse(self._helm_template(command), "helm template")
        if self._kustomized():
            label = "kustomize build"
            return self._parse(self._run(self._kustomize_command(), label), label)
        manifests: list[Manifest] = []
        for path in self._plain_files():
            manifests.extend(self._parse(read_text(path), str(path)))
        return manifests

    def _inside(self, path: Path, what: str) -> Path:
        return inside_repository(path, self.root, f"{self.config.path}: {what}")

    # plain YAML

    def _plain_files(self) -> list[Path]:
        """The manifest files, as the config names them (a symlink inside the repo is fine)."""
        if self.input.manifests:
            listed = [
                (self.app_dir / name, f"input.manifests: {name}") for name in self.input.manifests
            ]
        else:
            config = self.config.path.resolve()
            listed = [
                (p, f"manifest {p.name}")
                for p in sorted(self.app_dir.iterdir())
                if p.is_file()
                and p.suffix in _MANIFEST_SUFFIXES
                and not is_application_config_name(p.name)
                and p.resolve() != config
            ]
        for path, what in listed:
            self._inside(path, what)
        return [path for path, _ in listed]

    # kustomize

    def _kustomize_command(self) -> list[str]:
        for directory in self._kustomize_directories():
            check_tree(directory, self.root, f"{self.config.path}: kustomize input")
        try:
            options = kustomize_flags(self.input.kustomize_options)
        except ValueError as exc:
            raise ConfigError(f"{self.config.path}: input.kustomizeOptions: {exc}") from None
        app_dir = str(self.app_dir.resolve())
        pinned = self.input.kustomize_version
        if kustomize := self._tool("kustomize", pinned, "input.kustomizeVersion"):
            return [kustomize, "build", *options, "--", app_dir]
        if kubectl := self._tool("kubectl", self.input.kubectl_version, "input.kubectlVersion"):
            if pinned and not self.input.kubectl_version:
                # No kustomize installed: a kubectl with that kustomize built in.
                kubectl = kubectl_with_kustomize(pinned, path=_tool_path()) or ""
            if pinned and (not kubectl or reported_version(kubectl, "kustomize") != _mm(pinned)):
                raise ConfigError(
                    f"{self.config.path}: input.kustomizeVersion: kustomize {pinned} is not "
                    "installed, nor built into the kubectl selected; install it as "
                    f"kustomize.{'.'.join(map(str, _mm(pinned) or ()))} on PATH"
                )
            return [kubectl, "kustomize", *options, "--", app_dir]
        raise ConfigError(
            f"kustomize or kubectl is required to render the Kustomize input of "
            f"{self.config.name} ({self.app_dir}); install either and put it on PATH"
        )

    def _kustomize_directories(self) -> list[Path]:
        """The app directory and every local base it builds on, each inside the repository.

        Kustomize loads files only from below a kustomization's own directory
        (LoadRestrictionsRootOnly), but a base directory may be anywhere on
        disk, a symlinked directory is followed, and a remote base is cloned:
        so bases must be local directories inside the repository too.
        """
        found: list[Path] = []
        pending = [self._inside(self.app_dir, "kustomize input")]
        while pending:
            directory = pending.pop()
            if directory in found:
                continue
            found.append(directory)
            for field, entry in _kustomize_references(directory):
                what = f"kustomize input: {field} {entry}"
                local = directory / entry
                if not os.path.lexists(local):
                    # Kustomize would take it for a remote base and clone it.
                    raise ConfigError(
                        f"{self.config.path}: {what}: no such file or directory in the "
                        "repository (remote bases are not fetched: vendor them into it)"
                    )
                target = self._inside(local, what)
                if target.is_dir():
                    pending.append(target)
        return found

    # helm

    def _tool(self, name: str, version: str, field: str) -> str | None:
        return select_tool(
            name, version, path=_tool_path(), field=field, config=str(self.config.path)
        )

    def _helm_command(self, scratch: Path) -> list[str]:
        chart = self.input.helm_chart
        assert chart is not None
        helm = self._tool("helm", self.input.helm_version, "input.helmVersion")
        if not helm:
            raise ConfigError(
                f"helm is required to render the Helm chart of {self.config.name} "
                f"(input.helmChart in {self.config.path}); install helm 3 and put it on PATH"
            )
        options = self.input.helm_options
        release = (options.release_name if options else "") or self.config.name
        if problem := release_name_problem(release):
            raise ConfigError(
                f"{self.config.path}: the Helm release name (helmOptions.releaseName, else "
                f"the application's name): {problem}"
            )
        # PipeCD's flags: CRDs are the application's too, hooks are not applied.
        flags: list[str] = ["--include-crds", "--no-hooks"]
        if chart.git_remote:
            what = f"{self.config.path}: input.helmChart"
            clone = checkout_chart_remote(chart.git_remote, chart.ref, scratch, what=what)
            path = inside_repository(clone / chart.path, clone, f"{what}.path")
            check_tree(path, clone, f"{what}.path")
            chart_ref = str(path)
        elif chart.repository:
            if problem := repository_problem(chart.repository):
                raise ConfigError(f"{self.config.path}: input.helmChart.repository: {problem}")
            if chart.repository.startswith(("https://", "http://")):
                flags.append(f"--repo={chart.repository}")
                chart_ref = chart.name
            else:  # a repository helm knows by name (helm repo add), or oci://registry/path
                chart_ref = f"{chart.repository.rstrip('/')}/{chart.name}"
            if chart.version:
                flags.append(f"--version={chart.version}")
            if chart.insecure:
                flags.append("--insecure-skip-tls-verify")
        else:
            path = self._inside(self.app_dir / chart.path, "input.helmChart.path")
            check_tree(path, self.root, f"{self.config.path}: input.helmChart.path")
            chart_ref = str(path)
        if self.input.namespace:
            flags.append(f"--namespace={self.input.namespace}")
        if options is not None:
            for key, value in options.set_values.items():
                if problem := set_value_problem(key, value):
                    raise ConfigError(f"{self.config.path}: helmOptions.setValues.{key}: {problem}")
                flags.append(f"--set={key}={value}")
            for values in options.value_files:
                path = self._file(values, f"helmOptions.valueFiles: {values}")
                flags.append(f"--values={path}")
            for key, file in options.set_files.items():
                path = self._file(file, f"helmOptions.setFiles: {key}")
                flags.append(f"--set-file={key}={path}")
            for version in options.api_versions:
                flags.append(f"--api-versions={version}")
            if options.kube_version:
                flags.append(f"--kube-version={options.kube_version}")
        return [helm, "template", *flags, "--", release, chart_ref]

    def _helm_template(self, command: list[str]) -> str:
        """Run `helm template`; a named chart repository whose index helm has not fetched
        yet is updated once and the template retried, as PipeCD's piped does."""
        try:
            return self._run(command, "helm template")
        except ConfigError as exc:
            chart = self.input.helm_chart
            named = chart is not None and chart.repository and "://" not in chart.repository
            if not named or "helm repo update" not in str(exc):
                raise
            assert chart is not None
            self._run([command[0], "repo", "update", "--", chart.repository], "helm repo update")
            return self._run(command, "helm template")

    def _file(self, name: str, what: str) -> Path:
        """A file helm reads by name: inside the repository, existing, no `,` (helm splits)."""
        path = self._inside(self.app_dir / name, what)
        if not path.is_file():
            raise ConfigError(f"{self.config.path}: {what}: no such file in the repository")
        if "," in str(path):
            raise ConfigError(f"{self.config.path}: {what}: a path with ',' cannot go to helm")
        return path

    # running and parsing

    def _run(self, command: list[str], label: str) -> str:
        try:
            done = subprocess.run(
                command,
                capture_output=True,
                text=True,
                timeout=TOOL_TIMEOUT_SECONDS,
                check=False,
                cwd=self.app_dir,
                env=tool_environment(),
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"{label} for {self.config.name} took longer than {TOOL_TIMEOUT_SECONDS}s"
            ) from None
        except OSError as exc:
            raise ConfigError(
                f"{label} for {self.config.name} could not run: {exc.strerror or exc}"
            ) from None
        if done.returncode != 0:
            detail = tool_excerpt(done.stderr or done.stdout)
            raise ConfigError(f"{label} failed for {self.config.name} ({self.app_dir}): {detail}")
        return done.stdout

    def _parse(self, text: str, source: str) -> list[Manifest]:
        manifests: list[Manifest] = []
        for body, located in parse_yaml_documents(source, text):
            line, column = located.position.line, located.position.column
            if not isinstance(body, dict):
                raise ConfigFileError(
                    source, line, column, "", f"expected a Kubernetes object, got {_show(body)}"
                )
            metadata = body.get("metadata")
            fields = (
                body.get("apiVersion"),
                body.get("kind"),
                metadata.get("name") if isinstance(metadata, dict) else None,
            )
            if not all(isinstance(f, str) and f for f in fields):
                raise ConfigFileError(
                    source,
                    line,
                    column,
                    "",
                    "not a Kubernetes object: it needs apiVersion, kind and metadata.name",
                )
            api_version, kind, name = fields
            assert isinstance(metadata, dict) and isinstance(api_version, str)
            assert isinstance(kind, str) and isinstance(name, str)
            namespace = metadata.get("namespace") or ""
            if not isinstance(namespace, str):
                raise ConfigFileError(
                    source, line, column, "metadata.namespace", "expected a string"
                )
            if kind in _CLUSTER_SCOPED:
                namespace = ""
            elif not namespace:
                namespace = self.input.namespace
            manifests.append(
                Manifest(
                    api_version=api_version,
                    kind=kind,
                    name=name,
                    namespace=namespace,
                    body=body,
                    source=source,
                )
            )
        return manifests


#: Kustomization fields whose entries may name a directory (another kustomization),
#: which kustomize loads from wherever it is; files are held below the
#: kustomization's own directory by LoadRestrictionsRootOnly.
_KUSTOMIZE_DIRECTORY_FIELDS: Final = (
    "resources",
    "bases",
    "components",
    "generators",
    "transformers",
    "validators",
)


def _kustomize_references(directory: Path) -> list[tuple[str, str]]:
    """(field, path) of what the directory's kustomization builds on: bases and chart homes."""
    file = next((directory / n for n in _KUSTOMIZATION_NAMES if (directory / n).is_file()), None)
    if file is None:
        return []
    data, located = parse_yaml(str(file), read_text(file))
    if not isinstance(data, dict):
        return []
    helm_globals = data.get("helmGlobals")
    if isinstance(helm_globals, dict) and "configHome" in helm_globals:
        # Helm's config home is also where it finds plugins: one the repository
        # holds would run as soon as a chart names its protocol.
        at = located.keys.get("helmGlobals", located.position)
        raise ConfigFileError(
            file,
            at.line,
            at.column,
            "helmGlobals.configHome",
            "not allowed: helm would load plugins from it (leave it out; kustomize "
            "gives helm a fresh home of its own)",
        )
    out: list[tuple[str, str]] = []
    for field in _KUSTOMIZE_DIRECTORY_FIELDS:
        entries = data.get(field)
        if isinstance(entries, list):
            # A generator or transformer may also be written inline (several lines).
            out.extend((field, e) for e in entries if isinstance(e, str) and e and "\n" not in e)
    if isinstance(helm_globals, dict) and isinstance(helm_globals.get("chartHome"), str):
        out.append(("helmGlobals.chartHome", helm_globals["chartHome"]))
    return out


#: What a tool inherits of our environment: where to find programs and a home for
#: helm's caches, nothing else (no database URL, no credentials, no tool settings
#: such as KUSTOMIZE_PLUGIN_HOME that could point it at programs).
_TOOL_ENVIRONMENT: Final = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "HELM_CACHE_HOME",
                            "HELM_CONFIG_HOME", "HELM_DATA_HOME", "HELM_REPOSITORY_CONFIG",
                            "HELM_REPOSITORY_CACHE")  # fmt: skip


def tool_environment() -> dict[str, str]:
    """The environment kustomize and helm run with; PATH without relative entries."""
    env = {k: os.environ[k] for k in _TOOL_ENVIRONMENT if k in os.environ}
    env["PATH"] = _tool_path()
    return env


def _tool_path() -> str:
    # Tools run in the application's directory: a relative PATH entry ("." or an
    # empty one) would find a program the repository committed there.
    entries = os.environ.get("PATH", os.defpath).split(os.pathsep)
    return os.pathsep.join(e for e in entries if os.path.isabs(e))


def _mm(version: str) -> tuple[int, int] | None:
    """A version's (major, minor)."""
    parts = version.lstrip("v").split(".")
    return (
        (int(parts[0]), int(parts[1]))
        if len(parts) >= 2 and all(p.isdigit() for p in parts[:2])
        else None
    )


def _which(name: str) -> str | None:
    """The absolute path of a tool, looked up only in absolute PATH entries."""
    return shutil.which(name, path=_tool_path())


def tool_excerpt(output: str) -> str:
    """A tool's last complaint, one line, short: its output may quote the files it read."""
    lines = [line.strip() for line in output.strip().splitlines() if line.strip()]
    return excerpt(lines[-1], TOOL_EXCERPT_CHARS) if lines else "no output"
