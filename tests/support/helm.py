"""Real Helm charts for the rendering tests: a chart on disk, a chart repository and a git
remote, both served over HTTP from a thread (a real server: helm and git fetch from it)."""

from __future__ import annotations

import functools
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

HELM = shutil.which("helm")
needs_helm = pytest.mark.skipif(
    HELM is None, reason="helm is not installed (make test installs it)"
)

CHART_FILES = {
    "Chart.yaml": "apiVersion: v2\nname: web\nversion: {version}\nappVersion: '{version}'\n",
    "values.yaml": "image: {{tag: stable}}\nreplicas: 1\ngreeting: hello\n",
    "crds/widget.yaml": (
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n"
        "metadata: {{name: widgets.example.com}}\nspec:\n  group: example.com\n"
        "  names: {{kind: Widget, plural: widgets}}\n  scope: Namespaced\n"
        "  versions: [{{name: v1, served: true, storage: true, "
        "schema: {{openAPIV3Schema: {{type: object}}}}}}]\n"
    ),
    "templates/deployment.yaml": (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{{{ .Release.Name }}}}\n"
        "  annotations:\n    chart-version: '{{{{ .Chart.Version }}}}'\n"
        "    kube-version: '{{{{ .Capabilities.KubeVersion.Version }}}}'\n"
        "    has-monitoring: "
        "'{{{{ .Capabilities.APIVersions.Has \"monitoring.coreos.com/v1\" }}}}'\n"
        "spec:\n  replicas: {{{{ .Values.replicas }}}}\n"
        "  selector: {{matchLabels: {{app: web}}}}\n"
        "  template:\n    metadata: {{labels: {{app: web}}}}\n    spec:\n      containers:\n"
        "        - name: web\n          image: 'web:{{{{ .Values.image.tag }}}}'\n"
    ),
    "templates/config.yaml": (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: '{{{{ .Release.Name }}}}-config'}}\n"
        "data:\n  greeting: {{{{ .Values.greeting | quote }}}}\n"
        '  motd: {{{{ .Values.motd | default "" | quote }}}}\n'
    ),
    "templates/hook.yaml": (
        "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n"
        "  annotations: {{'helm.sh/hook': pre-install}}\n"
        "spec: {{template: {{spec: {{restartPolicy: Never, "
        "containers: [{{name: m, image: m}}]}}}}}}\n"
    ),
}


def write_chart(directory: Path, version: str = "0.1.0") -> Path:
    """A chart with values, a CRD, a hook and what `helmOptions` can change; returns its dir."""
    for name, text in CHART_FILES.items():
        path = directory / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text.format(version=version))
    return directory


def helm(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> str:
    assert HELM is not None
    done = subprocess.run(
        [HELM, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True, timeout=120
    )
    return done.stdout


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def serve_directory(directory: Path) -> Iterator[str]:
    """Serve `directory` over HTTP on 127.0.0.1 (ready once bound); yields its base URL."""
    handler = functools.partial(_Quiet, directory=str(directory))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def chart_repository(directory: Path, url: str, versions: tuple[str, ...]) -> None:
    """`helm package` each version of the chart into `directory` and write its index.yaml."""
    for version in versions:
        source = write_chart(directory / "src" / version, version)
        helm("package", str(source), "--destination", str(directory))
    shutil.rmtree(directory / "src")
    helm("repo", "index", str(directory), "--url", url)


def git(*args: str, cwd: Path) -> str:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "GIT_CONFIG_NOSYSTEM": "1"}
    ident = ["-c", "user.name=t", "-c", "user.email=t@example.com", "-c", "init.defaultBranch=main"]
    done = subprocess.run(
        ["git", *ident, *args], cwd=cwd, env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def git_chart_remote(base: Path) -> Path:
    """A bare repository (`charts.git`, dumb-HTTP servable) with `charts/web` at tags v1 and v2."""
    work = base / "work"
    work.mkdir(parents=True)
    git("init", "-q", cwd=work)
    for tag, version in (("v1", "1.0.0"), ("v2", "2.0.0")):
        write_chart(work / "charts" / "web", version)
        git("add", "-A", cwd=work)
        git("commit", "-qm", f"chart {version}", cwd=work)
        git("tag", tag, cwd=work)
    bare = base / "served" / "charts.git"
    git("clone", "-q", "--bare", str(work), str(bare), cwd=base)
    git("update-server-info", cwd=bare)
    return bare
