"""A branch pusher's attacks: unmerged branches that plan preview renders for a read-write key.

Each attack pushes a branch with one application directory carrying one payload,
then asks `POST /plan-preview` for it. Refused means the API said no, or the
preview lists the application under `failures` (a config error) rather than
planning it. Whether it ran or leaked is judged from markers and canaries
(`harness.collect_evidence`), not from the answer.
"""

from __future__ import annotations

import json
from typing import Any

from benchmarks.security.harness import Attack, Outcome, Target

__all__ = ["attacks"]

FAMILY = "branch"

_DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: web, image: "ghcr.io/acme/web:v1"}}]
"""


def _app_config(name: str, input_yaml: str = "", extra_spec: str = "") -> str:
    text = f"apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\nspec:\n  name: {name}\n"
    if input_yaml:
        text += "  input:\n" + "".join(f"    {line}\n" for line in input_yaml.splitlines())
    return text + extra_spec


def _leaky_manifest(canary: str) -> str:
    """A valid manifest named by the canary: a plan that read it lists it, so its answer leaks."""
    return (
        f"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {canary}\ndata:\n  token: {canary}\n"
    )


async def _preview(target: Target, branch: str) -> Outcome:
    answer = await target.api(
        "POST",
        "/plan-preview",
        role="read-write",
        json={"repository_id": target.repository_id, "head_branch": branch},
    )
    if answer.status != 200:
        return Outcome(True, f"HTTP {answer.status}: {answer.text[:160]}")
    body: dict[str, Any] = json.loads(answer.text)
    failures = body.get("failures") or []
    if failures:
        return Outcome(True, f"refused: {str(failures[0].get('error', ''))[:160]}")
    planned = [r.get("application") for r in body.get("results", [])]
    return Outcome(False, f"planned {planned}")


def _attack(name: str, build: Any) -> Attack:
    async def run(target: Target) -> Outcome:
        branch = f"attack/{name}"
        files, symlinks, executables = build(target, name)
        await target.push_branch(branch, files, symlinks=symlinks, executables=executables)
        return await _preview(target, branch)

    return Attack(FAMILY, name, run)


# --- tool options -------------------------------------------------------------------------------

_KUSTOMIZE_KEYS = (
    "enable-helm",
    "load-restrictor",
    "load_restrictor",
    "reorder",
    "enable-managedby-label",
    "stack-trace",
    "enable-exec",
    "enable-alpha-plugins",
    "helm-command",
    "output",
    "mount",
)


def _kustomize_values(script: str, out: str) -> dict[str, str]:
    return {
        "helm-cmd": f"--helm-command={script}",
        "helm-cmd-split": f"true --helm-command={script}",
        "exec": "--enable-exec",
        "alpha": "--enable-alpha-plugins",
        "output": f"--output={out}",
        "short-output": f"-o{out}",
        "bare-script": script,
    }


def _kustomize_case(key: str, value_kind: str) -> Any:
    def build(target: Target, name: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
        script = str(target.payload_script(name))
        value = _kustomize_values(script, str(target.marker(name)))[value_kind]
        base = f"attacks/{name}"
        chart = (
            "helmCharts:\n  - name: chart\n    releaseName: r\n    version: 0.1.0\n"
            "helmGlobals:\n  chartHome: charts\n"
        )
        files = {
            f"{base}/app.pipecd.yaml": _app_config(
                name, f"kustomizeOptions:\n  {key}: {json.dumps(value)}"
            ),
            f"{base}/kustomization.yaml": "resources: [deployment.yaml]\n" + chart,
            f"{base}/deployment.yaml": _DEPLOYMENT.format(name=name),
            f"{base}/charts/chart/Chart.yaml": "apiVersion: v2\nname: chart\nversion: 0.1.0\n",
            f"{base}/charts/chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\n"
            "metadata: {name: c}\n",
        }
        return files, {}, []

    return build


def _kustomization_case(kind: str) -> Any:
    """Payloads inside kustomization.yaml itself: plugins and out-of-root loads."""

    def build(target: Target, name: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
        base = f"attacks/{name}"
        script = target.payload_script(name)
        canary = target.canary(name)
        outside = target.outside_file(name, _leaky_manifest(canary))
        kustomizations = {
            "exec-generator": "resources: [deployment.yaml]\ngenerators: [gen.yaml]\n",
            "exec-transformer": "resources: [deployment.yaml]\ntransformers: [gen.yaml]\n",
            "absolute-resource": f"resources: [deployment.yaml, {outside}]\n",
            "traversal-resource": "resources: [deployment.yaml, "
            + "../" * 12
            + str(outside).lstrip("/")
            + "]\n",
            "configmap-from-outside": "resources: [deployment.yaml]\nconfigMapGenerator:\n"
            f"  - name: leak\n    files: [{outside}]\n",
            "krm-function": "resources: [deployment.yaml]\ntransformers:\n  - |-\n"
            "    apiVersion: example.com/v1\n    kind: Pwn\n    metadata:\n      name: p\n"
            "      annotations:\n        config.kubernetes.io/function: |\n"
            f"          exec:\n            path: {script}\n",
        }
        files = {
            f"{base}/app.pipecd.yaml": _app_config(name),
            f"{base}/kustomization.yaml": kustomizations[kind],
            f"{base}/deployment.yaml": _DEPLOYMENT.format(name=name),
            f"{base}/gen.yaml": "apiVersion: example.com/v1\nkind: Pwn\nmetadata:\n  name: p\n"
            "  annotations:\n    config.kubernetes.io/function: |\n"
            f"      exec:\n        path: {script}\n",
        }
        return files, {}, []

    return build


def _helm_case(kind: str) -> Any:
    def build(target: Target, name: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
        base = f"attacks/{name}"
        script = target.payload_script(name)
        canary = target.canary(name)
        outside = target.outside_file(name, f"leak: {canary}\n")
        inputs = {
            "release-post-renderer": "helmChart: {path: chart}\n"
            f"helmOptions: {{releaseName: '--post-renderer={script}'}}",
            "release-flag": "helmChart: {path: chart}\n"
            f"helmOptions: {{releaseName: '--kubeconfig={outside}'}}",
            "values-absolute": "helmChart: {path: chart}\n"
            f"helmOptions: {{valueFiles: ['{outside}']}}",
            "values-traversal": "helmChart: {path: chart}\n"
            "helmOptions: {valueFiles: ['" + "../" * 12 + str(outside).lstrip("/") + "']}",
            "values-url": "helmChart: {path: chart}\n"
            "helmOptions: {valueFiles: ['http://169.254.169.254/latest/meta-data']}",
            "chart-outside": f"helmChart: {{path: '{outside.parent}'}}",
            "chart-flag": f"helmChart: {{path: '--post-renderer={script}'}}",
            "set-values-flag": "helmChart: {path: chart}\n"
            f"helmOptions: {{setValues: {{'--post-renderer': '{script}'}}}}",
            "api-versions-flag": "helmChart: {path: chart}\n"
            f"helmOptions: {{apiVersions: ['--post-renderer={script}']}}",
        }
        files = {
            f"{base}/app.pipecd.yaml": _app_config(name, inputs[kind]),
            f"{base}/chart/Chart.yaml": "apiVersion: v2\nname: chart\nversion: 0.1.0\n",
            f"{base}/chart/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\n"
            "metadata: {name: c}\n",
        }
        return files, {}, []

    return build


# --- git references -----------------------------------------------------------------------------


def _git_ref_attack(field_name: str, value_kind: str) -> Attack:
    async def run(target: Target) -> Outcome:
        name = f"git-{field_name}-{value_kind}"
        script = target.payload_script(name)
        values = {
            "upload-pack": f"--upload-pack={script}",
            "config": f"-c core.sshCommand={script}",
            "output": f"--output={target.marker(name)}",
            "exec": f"--exec={script}",
        }
        body = {"repository_id": target.repository_id, field_name: values[value_kind]}
        if field_name == "base_branch":
            body["head_branch"] = "main"
        answer = await target.api("POST", "/plan-preview", role="read-write", json=body)
        return Outcome(answer.status >= 400, f"HTTP {answer.status}: {answer.text[:160]}")

    return Attack(FAMILY, f"git-{field_name}-{value_kind}", run)


# --- files outside the repository ---------------------------------------------------------------


def _symlink_case(kind: str) -> Any:
    def build(target: Target, name: str) -> tuple[dict[str, str], dict[str, str], list[str]]:
        base = f"attacks/{name}"
        canary = target.canary(name)
        leaky = target.outside_file(name, _leaky_manifest(canary))
        files: dict[str, str] = {
            f"{base}/app.pipecd.yaml": _app_config(name),
            f"{base}/deployment.yaml": _DEPLOYMENT.format(name=name),
        }
        links: dict[str, str] = {}
        match kind:
            case "manifest-absolute":
                links[f"{base}/leak.yaml"] = str(leaky)
            case "manifest-relative":
                links[f"{base}/leak.yaml"] = "../" * 12 + str(leaky).lstrip("/")
            case "manifest-not-yaml":
                leaky.write_text(f"{canary}\n\tthis: is: not yaml: [\n")
                links[f"{base}/leak.yaml"] = str(leaky)
            case "manifest-chain":
                links[f"{base}/hop.yaml"] = str(leaky)
                links[f"{base}/leak.yaml"] = "hop.yaml"
            case "manifest-listed":
                files[f"{base}/app.pipecd.yaml"] = _app_config(
                    name, "manifests: [deployment.yaml, leak.yaml]"
                )
                links[f"{base}/leak.yaml"] = str(leaky)
            case "manifest-path-traversal":
                files[f"{base}/app.pipecd.yaml"] = _app_config(
                    name,
                    "manifests: [deployment.yaml, '" + "../" * 12 + str(leaky).lstrip("/") + "']",
                )
            case "manifest-path-absolute":
                files[f"{base}/app.pipecd.yaml"] = _app_config(
                    name, f"manifests: [deployment.yaml, '{leaky}']"
                )
            case "app-config":
                leaky.write_text(
                    "apiVersion: pipecd.dev/v1beta1\nkind: KubernetesApp\n"
                    f"spec:\n  name: {name}\n  description: {canary}\n  nope: [\n"
                )
                del files[f"{base}/app.pipecd.yaml"]
                links[f"{base}/app.pipecd.yaml"] = str(leaky)
            case "directory":
                (target.outside / name).mkdir(exist_ok=True)
                (target.outside / name / "leak.yaml").write_text(_leaky_manifest(canary))
                links[f"{base}/sub"] = str(target.outside / name)
                files[f"{base}/app.pipecd.yaml"] = _app_config(
                    name, "manifests: [deployment.yaml, sub/leak.yaml]"
                )
            case "kustomize-resource":
                files[f"{base}/kustomization.yaml"] = "resources: [deployment.yaml, leak.yaml]\n"
                links[f"{base}/leak.yaml"] = str(leaky)
            case "kustomize-base-dir":
                (target.outside / name).mkdir(exist_ok=True)
                (target.outside / name / "kustomization.yaml").write_text(
                    "resources: [leak.yaml]\n"
                )
                (target.outside / name / "leak.yaml").write_text(_leaky_manifest(canary))
                files[f"{base}/kustomization.yaml"] = "resources: [deployment.yaml, base]\n"
                links[f"{base}/base"] = str(target.outside / name)
            case "helm-values":
                leaky.write_text(f"leak: {canary}\n")
                files[f"{base}/app.pipecd.yaml"] = _app_config(
                    name, "helmChart: {path: chart}\nhelmOptions: {valueFiles: [values.yaml]}"
                )
                files[f"{base}/chart/Chart.yaml"] = "apiVersion: v2\nname: chart\nversion: 0.1.0\n"
                files[f"{base}/chart/templates/cm.yaml"] = (
                    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"
                    "data: {v: '{{ .Values.leak }}'}\n"
                )
                links[f"{base}/values.yaml"] = str(leaky)
            case "analysis-template":
                leaky.write_text(
                    "apiVersion: pipecd.dev/v1beta1\nkind: AnalysisTemplate\n"
                    f"spec:\n  metrics:\n    {canary}: [\n"
                )
                links[".pipe/analysis-template.yaml"] = str(leaky)
                files[f"{base}/app.pipecd.yaml"] = _app_config(
                    name,
                    extra_spec="  pipeline:\n    stages:\n      - name: ANALYSIS\n"
                    "        with:\n          duration: 1m\n          metrics:\n"
                    "            - template: {name: leak}\n",
                )
        return files, links, []

    return build


def attacks() -> list[Attack]:
    """The branch-push attacks: manifests, Kustomize, Helm and configs that try to run or read."""
    found: list[Attack] = []
    for key in _KUSTOMIZE_KEYS:
        for value_kind in ("helm-cmd", "helm-cmd-split", "exec", "output"):
            found.append(_attack(f"kustomize-{key}-{value_kind}", _kustomize_case(key, value_kind)))
    for value_kind in ("alpha", "short-output", "bare-script"):
        found.append(
            _attack(
                f"kustomize-enable-helm-{value_kind}", _kustomize_case("enable-helm", value_kind)
            )
        )
    for kind in (
        "exec-generator",
        "exec-transformer",
        "absolute-resource",
        "traversal-resource",
        "configmap-from-outside",
        "krm-function",
    ):
        found.append(_attack(f"kustomization-{kind}", _kustomization_case(kind)))
    for kind in (
        "release-post-renderer",
        "release-flag",
        "values-absolute",
        "values-traversal",
        "values-url",
        "chart-outside",
        "chart-flag",
        "set-values-flag",
        "api-versions-flag",
    ):
        found.append(_attack(f"helm-{kind}", _helm_case(kind)))
    for field_name in ("head_branch", "base_branch", "head_commit"):
        for value_kind in ("upload-pack", "config", "output", "exec"):
            found.append(_git_ref_attack(field_name, value_kind))
    for kind in (
        "manifest-absolute",
        "manifest-relative",
        "manifest-not-yaml",
        "manifest-chain",
        "manifest-listed",
        "manifest-path-traversal",
        "manifest-path-absolute",
        "app-config",
        "directory",
        "kustomize-resource",
        "kustomize-base-dir",
        "helm-values",
        "analysis-template",
    ):
        found.append(_attack(f"symlink-{kind}", _symlink_case(kind)))
    return found
