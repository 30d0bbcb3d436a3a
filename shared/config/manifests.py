"""Render an application's Kubernetes manifests, the way PipeCD's piped loads them.

Three inputs, chosen like PipeCD: a Helm chart (`input.helmChart`) renders with
`helm template`; a Kustomize directory (a `kustomization.yaml`, or
`input.kustomizeVersion` set) with `kustomize build`, or `kubectl kustomize`
when kustomize is not installed; otherwise plain YAML files — the ones
`input.manifests` lists, else every `*.yaml`/`*.yml`/`*.json` of the app
directory (not its subdirectories) except application config files.

Tools run without a shell, with a timeout; a tool that fails or is missing is
a `ConfigError` naming the application. Local paths (listed manifests, a local
chart, value files) must stay inside `repo_root` (default: the app
directory), so a config repository cannot make Slipway read the host's files.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from pathlib import Path
from typing import Any, Final

import msgspec

from shared.config._yaml import parse_yaml_documents
from shared.config.errors import ConfigFileError
from shared.config.loader import ApplicationConfig, is_application_config_name, read_text
from shared.config.types import _show
from shared.errors import ConfigError

__all__ = ["Manifest", "render_manifests", "render_manifests_async"]

TOOL_TIMEOUT_SECONDS: Final = 120
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
    """`render_manifests` off the event loop (it may run kustomize or helm)."""
    return await asyncio.to_thread(render_manifests, app_dir, config, repo_root=repo_root)


class _Renderer:
    def __init__(self, app_dir: Path, config: ApplicationConfig, repo_root: Path | None) -> None:
        self.app_dir = app_dir
        self.config = config
        self.root = (repo_root or app_dir).resolve()
        self.input = config.spec.input

    def render(self) -> list[Manifest]:
        if self.input.helm_chart is not None:
            return self._parse(self._run(self._helm_command(), "helm template"), "helm template")
        if self.input.kustomize_version or any(
            (self.app_dir / name).is_file() for name in _KUSTOMIZATION_NAMES
        ):
            label = "kustomize build"
            return self._parse(self._run(self._kustomize_command(), label), label)
        manifests: list[Manifest] = []
        for path in self._plain_files():
            manifests.extend(self._parse(read_text(path), str(path)))
        return manifests

    # plain YAML

    def _plain_files(self) -> list[Path]:
        if self.input.manifests:
            return [
                self._inside(self.app_dir / name, f"input.manifests: {name}")
                for name in self.input.manifests
            ]
        return sorted(
            p
            for p in self.app_dir.iterdir()
            if p.is_file()
            and p.suffix in _MANIFEST_SUFFIXES
            and not is_application_config_name(p.name)
            and p.resolve() != self.config.path.resolve()
        )

    def _inside(self, path: Path, what: str) -> Path:
        resolved = path.resolve()
        if not resolved.is_relative_to(self.root):
            raise ConfigError(
                f"{self.config.path}: {what} points outside the repository ({self.root})"
            )
        return path

    # kustomize

    def _kustomize_command(self) -> list[str]:
        options: list[str] = []
        for key, value in self.input.kustomize_options.items():
            # PipeCD's docs spell them kustomize v3's way (load_restrictor); v4+ wants dashes.
            options.append(f"--{key.replace('_', '-')}")
            if value:
                options.append(value)
        if shutil.which("kustomize"):
            return ["kustomize", "build", str(self.app_dir.resolve()), *options]
        if shutil.which("kubectl"):
            return ["kubectl", "kustomize", str(self.app_dir.resolve()), *options]
        raise ConfigError(
            f"kustomize or kubectl is required to render the Kustomize input of "
            f"{self.config.name} ({self.app_dir}); install either and put it on PATH"
        )

    # helm

    def _helm_command(self) -> list[str]:
        chart = self.input.helm_chart
        assert chart is not None
        if not shutil.which("helm"):
            raise ConfigError(
                f"helm is required to render the Helm chart of {self.config.name} "
                f"(input.helmChart in {self.config.path}); install helm 3 and put it on PATH"
            )
        options = self.input.helm_options
        release = (options.release_name if options else "") or self.config.name
        if chart.git_remote:
            raise ConfigError(
                f"{self.config.path}: input.helmChart.gitRemote: charts from another git "
                "repository are not supported yet; vendor the chart into this repository"
            )
        if chart.repository:
            reference = f"{chart.repository.rstrip('/')}/{chart.name}"
            command = ["helm", "template", release, reference]
            if chart.version:
                command += ["--version", chart.version]
            if chart.insecure:
                command.append("--insecure-skip-tls-verify")
        else:
            path = self._inside(self.app_dir / chart.path, "input.helmChart.path")
            command = ["helm", "template", release, str(path.resolve())]
        if self.input.namespace:
            command += ["--namespace", self.input.namespace]
        if options is not None:
            for values in options.value_files:
                command += [
                    "-f",
                    str(self._inside(self.app_dir / values, f"valueFiles: {values}").resolve()),
                ]
            for key, file in options.set_files.items():
                path = self._inside(self.app_dir / file, f"setFiles: {file}")
                command += ["--set-file", f"{key}={path.resolve()}"]
            for version in options.api_versions:
                command += ["--api-versions", version]
            if options.kube_version:
                command += ["--kube-version", options.kube_version]
        return command

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
            )
        except subprocess.TimeoutExpired:
            raise ConfigError(
                f"{label} for {self.config.name} took longer than {TOOL_TIMEOUT_SECONDS}s"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{label} for {self.config.name} could not run: {exc}") from None
        if done.returncode != 0:
            detail = (done.stderr or done.stdout).strip()[-2000:]
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
