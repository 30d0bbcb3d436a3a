"""deploy/kubernetes/ is valid Kubernetes, renders with kustomize, and runs every service.

Manifests are validated against the Kubernetes JSON schemas (kubernetes-validate,
strict: an unknown field is an error). Which services and settings come from
the code (tests/support/deploy.py), as for the compose file.
"""

from __future__ import annotations

import copy
import os
import posixpath
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from shared.config import load_control_config
from shared.natsauth import ROLES, deploy_authorization, password_env
from slipway_cli import build_parser
from tests.support.deploy import (
    KUBERNETES_DIR,
    ROOT,
    deployment_problems,
    load_yaml_documents,
    module_of_command,
    parse_dockerfile,
    served_ports,
    service_names,
)

# The oldest Kubernetes minor still in support and the newest kubectl here.
KUBERNETES_VERSIONS = ("1.30", "1.33")

Doc = dict[str, Any]


def _kustomization() -> Doc:
    loaded = yaml.safe_load((KUBERNETES_DIR / "kustomization.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def _components() -> list[str]:
    """Optional kustomize components (directories), whether enabled or not: `nats-tls`."""
    return sorted(
        str(path.parent.relative_to(KUBERNETES_DIR))
        for path in KUBERNETES_DIR.glob("*/kustomization.yaml")
    )


def _resources() -> list[tuple[str, Doc]]:
    """(file, document) for every document of every file kustomization.yaml lists."""
    return [
        (name, doc)
        for name in _kustomization()["resources"]
        for doc in load_yaml_documents(KUBERNETES_DIR / name)
    ]


def _generated() -> dict[str, dict[str, str]]:
    """ConfigMap name → {key: file content} for each configMapGenerator entry."""
    generated: dict[str, dict[str, str]] = {}
    for generator in _kustomization().get("configMapGenerator", []):
        generated[generator["name"]] = {
            Path(file).name: (KUBERNETES_DIR / file).read_text() for file in generator["files"]
        }
    return generated


def _by_kind(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {doc["metadata"]["name"]: doc for doc in docs if doc["kind"] == kind}


def _validate(doc: Doc) -> list[str]:
    """Schema problems of `doc` for every version we support; empty when valid."""
    problems = []
    for version in KUBERNETES_VERSIONS:
        what = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')} on {version}"
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{what}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{what}: {exc.message}")
    return problems


def test_every_manifest_validates() -> None:
    """Each document of each listed manifest is valid Kubernetes (strict) for 1.30 and 1.33."""
    resources = _resources()
    assert len(resources) > 10
    problems = [f"{name}: {p}" for name, doc in resources for p in _validate(doc)]
    assert problems == []


def test_strict_validation_rejects_mistakes() -> None:
    """The validator the test above relies on rejects a misspelled field and a wrong type."""
    deployment = next(doc for _, doc in _resources() if doc["kind"] == "Deployment")
    misspelled = copy.deepcopy(deployment)
    misspelled["spec"]["replica"] = 2
    assert _validate(misspelled)
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    assert _validate(wrong_type)


def test_no_manifest_is_left_out() -> None:
    """Every file under deploy/kubernetes/ is a listed resource or a generator's input."""
    used = {
        "kustomization.yaml",
        *(f"{component}/kustomization.yaml" for component in _components()),
        *_kustomization()["resources"],
        *(f for g in _kustomization().get("configMapGenerator", []) for f in g["files"]),
    }
    present = {
        str(path.relative_to(KUBERNETES_DIR))
        for path in KUBERNETES_DIR.rglob("*")
        if path.is_file() and path.name != "README.md"
    }
    assert present - used == set()
    assert used - present == set()


def _kubectl() -> str:
    found = shutil.which("kubectl")
    if found:
        return found
    if os.environ.get("CI") == "true":
        pytest.fail("kubectl is required on CI (Debian: apt-get install kubernetes-client)")
    pytest.skip("kubectl is not installed")


def _render(directory: Path = KUBERNETES_DIR) -> list[Doc]:
    done = subprocess.run(
        [_kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def test_kustomize_renders_valid_manifests() -> None:
    """`kubectl kustomize deploy/kubernetes` renders into the namespace, and all of it validates."""
    rendered = _render()
    assert [p for doc in rendered for p in _validate(doc)] == []
    namespaced = [
        d for d in rendered if d["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding")
    ]
    assert {d["metadata"].get("namespace") for d in namespaced} == {"slipway"}
    # The generated ConfigMaps carry a content hash, and the workloads use that name.
    config_maps = _by_kind(rendered, "ConfigMap")
    control = next(name for name in config_maps if name.startswith("slipway-control-"))
    executor = _by_kind(rendered, "Deployment")["executor"]
    volumes = executor["spec"]["template"]["spec"]["volumes"]
    assert any(v.get("configMap", {}).get("name") == control for v in volumes)
    assert len(_by_kind(rendered, "Deployment")) >= len(service_names())


def _container_env(container: Doc, docs: list[Doc]) -> dict[str, str]:
    """The environment a container starts with: image ENV, envFrom, then env."""
    config_maps = {name: doc.get("data", {}) for name, doc in _by_kind(docs, "ConfigMap").items()}
    secrets = {name: doc.get("stringData", {}) for name, doc in _by_kind(docs, "Secret").items()}
    env = parse_dockerfile().final_env()
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            env.update(config_maps[source["configMapRef"]["name"]])
        if "secretRef" in source:
            env.update(secrets[source["secretRef"]["name"]])
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = str(item["value"])
            continue
        ref = item["valueFrom"]
        if "secretKeyRef" in ref:
            env[item["name"]] = secrets[ref["secretKeyRef"]["name"]][ref["secretKeyRef"]["key"]]
        elif "configMapKeyRef" in ref:
            key = ref["configMapKeyRef"]
            env[item["name"]] = config_maps[key["name"]][key["key"]]
        elif "fieldRef" in ref:
            env[item["name"]] = "pod-0"  # what the downward API gives, e.g. the pod's name
    return env


def kubernetes_problems(docs: list[Doc]) -> list[str]:
    """Everything wrong with `docs` as a way to run every service; empty when fine."""
    problems: list[str] = []
    generated = _generated()
    deployments = _by_kind(docs, "Deployment")
    for name, spec in deployments.items():
        for each in spec["spec"]["template"]["spec"]["containers"]:
            runs = module_of_command(each.get("args", [])) or ""
            if not (ROOT / runs.replace(".", "/") / "__main__.py").is_file():
                problems.append(f"{name}: runs {runs or each.get('args')}, which is no service")
    for service in service_names():
        deployment = deployments.get(service)
        if deployment is None:
            problems.append(f"{service}: no Deployment")
            continue
        pod = deployment["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        module = module_of_command(container.get("args", []))
        if module != f"services.{service}" or "command" in container:
            problems.append(f"{service}: the container does not run python -m services.{service}")
        if deployment["spec"].get("replicas", 1) < 2:
            problems.append(f"{service}: fewer than 2 replicas")
        found, settings = deployment_problems(service, _container_env(container, docs))
        problems += found
        if settings is None:
            continue
        ports = {p["name"]: p["containerPort"] for p in container.get("ports", [])}
        if ports.get("health") != settings.health_port:
            problems.append(f"{service}: no container port 'health' = {settings.health_port}")
        for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
            get = container.get(probe, {}).get("httpGet", {})
            if (get.get("path"), get.get("port")) != (path, "health"):
                problems.append(f"{service}: {probe} is not GET {path} on the health port")
        for field_name, port in served_ports(settings).items():
            if port not in ports.values():
                problems.append(f"{service}: {field_name}={port} is not a container port")
        resources = container.get("resources", {})
        if not resources.get("requests") or "memory" not in resources.get("limits", {}):
            problems.append(f"{service}: no resource requests or memory limit")
        control = getattr(settings, "control_config", None)
        if control is not None:
            directory, file = posixpath.split(control)
            mounted = {m["mountPath"]: m["name"] for m in container.get("volumeMounts", [])}
            volumes = {v["name"]: v for v in pod.get("volumes", [])}
            volume = volumes.get(mounted.get(directory, ""), {})
            config_map = volume.get("configMap", {}).get("name", "")
            if file not in generated.get(config_map, {}):
                problems.append(f"{service}: SLIPWAY_CONTROL_CONFIG={control} is not mounted")
    return problems


def test_a_deployment_for_every_service_with_what_its_code_requires() -> None:
    """Every services/*/__main__.py is a Deployment with replicas, probes and its settings."""
    assert kubernetes_problems([doc for _, doc in _resources()]) == []


def test_removing_a_deployment_or_a_setting_is_caught() -> None:
    """The check fails for a missing Deployment, database URL or control config, a service
    logging in as another's role, or a ghost."""
    docs = [doc for _, doc in _resources()]
    for victim in service_names():
        kept = [
            d for d in docs if not (d["kind"] == "Deployment" and d["metadata"]["name"] == victim)
        ]
        assert f"{victim}: no Deployment" in kubernetes_problems(kept)
    without_url = copy.deepcopy(docs)
    container = _by_kind(without_url, "Deployment")["planner"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    container["env"] = [e for e in container["env"] if e["name"] != "SLIPWAY_DATABASE_URL"]
    assert any(
        "planner: SLIPWAY_DATABASE_URL is not set" in p for p in kubernetes_problems(without_url)
    )
    without_config = copy.deepcopy(docs)
    pod = _by_kind(without_config, "Deployment")["planner"]["spec"]["template"]["spec"]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "control"]
    assert "planner: SLIPWAY_CONTROL_CONFIG=/etc/slipway/slipway.yaml is not mounted" in (
        kubernetes_problems(without_config)
    )
    shared_url = copy.deepcopy(docs)
    container = _by_kind(shared_url, "Deployment")["projector"]["spec"]["template"]["spec"][
        "containers"
    ][0]
    for variable in container["env"]:
        if variable["name"] == "SLIPWAY_DATABASE_URL":
            variable["valueFrom"]["secretKeyRef"]["name"] = "slipway-database"
    assert any(
        "projector: SLIPWAY_DATABASE_URL logs in as 'slipway_app', not 'slipway_projector'" in p
        for p in kubernetes_problems(shared_url)
    )
    api_as_app = copy.deepcopy(docs)
    container = _by_kind(api_as_app, "Deployment")["api"]["spec"]["template"]["spec"]["containers"][
        0
    ]
    for variable in container["env"]:
        if variable["name"] == "SLIPWAY_DATABASE_URL":
            variable["valueFrom"]["secretKeyRef"]["name"] = "slipway-database"
    assert any(
        "api: SLIPWAY_DATABASE_URL logs in as 'slipway_app', not 'slipway_api'" in p
        for p in kubernetes_problems(api_as_app)
    )
    ghost = copy.deepcopy(docs)
    container = _by_kind(ghost, "Deployment")["relay"]["spec"]["template"]["spec"]["containers"][0]
    container["args"] = ["python", "-m", "services.ghost"]
    assert "relay: runs services.ghost, which is no service" in kubernetes_problems(ghost)


def test_control_config_loads_and_its_kubeconfig_is_mounted() -> None:
    """The control config in the ConfigMap loads, and each kubeconfig it names is beside it."""
    generated = _generated()["slipway-control"]
    env = _by_kind([d for _, d in _resources()], "ConfigMap")["slipway-env"]["data"]
    directory, name = posixpath.split(env["SLIPWAY_CONTROL_CONFIG"])
    control = load_control_config(Path(env["SLIPWAY_CONTROL_CONFIG"]), generated[name])
    assert control.spec.platform_providers
    for provider in control.spec.platform_providers:
        kube_dir, kube_file = posixpath.split(provider.config.kubeconfig_path)
        assert kube_dir == directory and kube_file in generated
        kubeconfig = yaml.safe_load(generated[kube_file])
        assert provider.config.context in {c["name"] for c in kubeconfig["contexts"]}
    # Services that deploy (they read platform providers) get the deployer's account and token.
    deployments = _by_kind([d for _, d in _resources()], "Deployment")
    for service in ("executor", "drift"):
        pod = deployments[service]["spec"]["template"]["spec"]
        assert pod["serviceAccountName"] == "slipway-deployer"
        assert pod["automountServiceAccountToken"] is True


def test_api_service_and_migration_job() -> None:
    """The api Service reaches the API port; the Job runs a `slipway migrate` the CLI accepts."""
    docs = [d for _, d in _resources()]
    api = _by_kind(docs, "Service")["api"]
    deployment = _by_kind(docs, "Deployment")["api"]
    assert api["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    env = _container_env(container, docs)
    (port,) = api["spec"]["ports"]
    named = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert named[port["targetPort"]] == int(env["SLIPWAY_API_PORT"])

    (job,) = _by_kind(docs, "Job").values()
    (migrate,) = job["spec"]["template"]["spec"]["containers"]
    assert migrate["args"][:2] == ["slipway", "migrate"]
    build_parser().parse_args(migrate["args"][1:])
    job_env = _container_env(migrate, docs)
    assert job_env["SLIPWAY_MIGRATE_DATABASE_URL"].startswith("postgresql://postgres:")


def test_nats_is_a_three_node_jetstream_cluster() -> None:
    """NATS: 3 replicas, JetStream on a volume, a route to each replica via the headless Service."""
    docs = [d for _, d in _resources()]
    nats = _by_kind(docs, "StatefulSet")["nats"]
    replicas = nats["spec"]["replicas"]
    assert replicas == 3
    headless = _by_kind(docs, "Service")[nats["spec"]["serviceName"]]
    assert headless["spec"]["clusterIP"] == "None"
    config = _by_kind(docs, "ConfigMap")["nats-config"]["data"]["nats.conf"]
    assert "jetstream {" in config
    for i in range(replicas):
        assert f"nats://nats-{i}.{headless['metadata']['name']}:6222" in config
    mounts = {
        m["name"]: m["mountPath"]
        for m in nats["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    }
    assert "store_dir: " + mounts["data"] in config
    assert nats["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == "data"
    env = _by_kind(docs, "ConfigMap")["slipway-env"]["data"]
    assert env["SLIPWAY_NATS_URL"] == "nats://nats:4222"
    assert "nats" in _by_kind(docs, "Service")


def test_postgres_and_secrets_agree() -> None:
    """Postgres's init script, the services' URL and the owner's URL use the same passwords."""
    docs = [d for _, d in _resources()]
    secrets = {name: doc["stringData"] for name, doc in _by_kind(docs, "Secret").items()}
    owner = secrets["slipway-database-owner"]
    app_url = secrets["slipway-database"]["SLIPWAY_DATABASE_URL"]
    assert f"slipway_app:{owner['SLIPWAY_APP_PASSWORD']}@" in app_url
    projector_url = secrets["slipway-database-projector"]["SLIPWAY_DATABASE_URL"]
    assert f"slipway_projector:{owner['SLIPWAY_PROJECTOR_PASSWORD']}@" in projector_url
    api_url = secrets["slipway-database-api"]["SLIPWAY_DATABASE_URL"]
    assert f"slipway_api:{owner['SLIPWAY_API_PASSWORD']}@" in api_url
    passwords = [owner[f"SLIPWAY_{r}_PASSWORD"] for r in ("APP", "PROJECTOR", "API")]
    assert len(set(passwords)) == 3, "two roles share a password"
    assert f"postgres:{owner['POSTGRES_PASSWORD']}@" in owner["SLIPWAY_MIGRATE_DATABASE_URL"]
    postgres = _by_kind(docs, "StatefulSet")["postgres"]
    pod = postgres["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    postgres_env = {e["name"] for e in pod["containers"][0]["env"]}
    assert {"SLIPWAY_APP_PASSWORD", "SLIPWAY_PROJECTOR_PASSWORD", "SLIPWAY_API_PASSWORD"} <= (
        postgres_env
    )
    assert mounts["initdb"] == "/docker-entrypoint-initdb.d"
    volume = next(v for v in pod["volumes"] if v["name"] == "initdb")
    assert "10-slipway-app-role.sh" in _generated()[volume["configMap"]["name"]]
    host = app_url.split("@", 1)[1].split(":", 1)[0]
    assert host == postgres["spec"]["serviceName"]


# --- NATS: one user per service, TLS ready, and the network closed --------------------------


def _nats_password_env(docs: list[Doc]) -> dict[str, str]:
    """The NATS servers' environment, where nats/auth.conf finds each password."""
    (container,) = _by_kind(docs, "StatefulSet")["nats"]["spec"]["template"]["spec"]["containers"]
    return _container_env(container, docs)


def test_nats_users_are_the_generated_roles_and_each_service_has_its_password() -> None:
    """nats/auth.conf is shared/natsauth.py's rendering, nats.conf includes it, every role's
    password reaches the servers, and each service logs in as itself with that password."""
    assert (KUBERNETES_DIR / "nats" / "auth.conf").read_text() == deploy_authorization()
    docs = [d for _, d in _resources()]
    config = _by_kind(docs, "ConfigMap")["nats-config"]["data"]
    assert "include ./auth.conf" in config["nats.conf"]
    assert "include ./tls.conf" in config["nats.conf"] and "tls.conf" in config
    volume = next(
        v
        for v in _by_kind(docs, "StatefulSet")["nats"]["spec"]["template"]["spec"]["volumes"]
        if v["name"] == "config"
    )
    sources = {s["configMap"]["name"] for s in volume["projected"]["sources"]}
    assert sources == {"nats-config", "nats-auth"}
    assert "auth.conf" in _generated()["nats-auth"]
    server_env = _nats_password_env(docs)
    deployments = _by_kind(docs, "Deployment")
    for role in ROLES:
        password = server_env[password_env(role.name)]
        (container,) = deployments[role.name]["spec"]["template"]["spec"]["containers"]
        env = _container_env(container, docs)
        assert (env["SLIPWAY_NATS_USER"], env["SLIPWAY_NATS_PASSWORD"]) == (role.name, password)
    passwords = _by_kind(docs, "Secret")["slipway-nats"]["stringData"]
    assert set(passwords) == {r.name for r in ROLES}
    assert len(set(passwords.values())) == len(passwords), "one password per service"


def test_a_service_without_its_nats_login_is_caught() -> None:
    """The deployment check fails for a service with no NATS password or another's user."""
    docs = [doc for _, doc in _resources()]
    for change, expected in (
        (lambda env: [e for e in env if e["name"] != "SLIPWAY_NATS_PASSWORD"], "no NATS password"),
        (
            lambda env: [
                {"name": "SLIPWAY_NATS_USER", "value": "relay"}
                if e["name"] == "SLIPWAY_NATS_USER"
                else e
                for e in env
            ],
            "logs in to NATS as 'relay'",
        ),
    ):
        changed = copy.deepcopy(docs)
        pod = _by_kind(changed, "Deployment")["planner"]["spec"]["template"]["spec"]
        pod["containers"][0]["env"] = change(pod["containers"][0]["env"])
        assert any(
            p.startswith("planner: ") and expected in p for p in kubernetes_problems(changed)
        ), expected


def _policies(docs: list[Doc]) -> dict[str, Doc]:
    return _by_kind(docs, "NetworkPolicy")


def _selects(selector: Doc, labels: dict[str, str]) -> bool:
    """Whether a label selector (matchLabels / matchExpressions with In) selects `labels`."""
    if any(labels.get(k) != v for k, v in selector.get("matchLabels", {}).items()):
        return False
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In", expression
        if labels.get(expression["key"]) not in expression["values"]:
            return False
    return True


def _pod_labels(docs: list[Doc]) -> dict[str, dict[str, str]]:
    workloads = [d for d in docs if d["kind"] in ("Deployment", "StatefulSet", "Job")]
    return {d["metadata"]["name"]: d["spec"]["template"]["metadata"]["labels"] for d in workloads}


def _ingress_ports(docs: list[Doc], target: dict[str, str], source: dict[str, str]) -> set[int]:
    """Ports of a pod labelled `target` that a pod of this namespace labelled `source` may reach."""
    ports: set[int] = set()
    for policy in _policies(docs).values():
        spec = policy["spec"]
        if "Ingress" not in spec["policyTypes"] or not _selects(spec["podSelector"], target):
            continue
        for rule in spec.get("ingress", []):
            peers = rule.get("from")
            if peers is None or any(
                "podSelector" in p
                and "namespaceSelector" not in p
                and _selects(p["podSelector"], source)
                for p in peers
            ):
                ports |= {p["port"] for p in rule.get("ports", [])}
    return ports


def test_network_policies_deny_by_default_and_open_only_slipways_paths() -> None:
    """Default deny; NATS's client port only for services, its routes only for NATS; Postgres
    only for services and the migration; the API and the webhooks reachable; DNS for all."""
    docs = [d for _, d in _resources()]
    policies = _policies(docs)
    deny = policies["default-deny"]["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert not any(
        "ingress" in p["spec"] or "egress" in p["spec"] for p in [policies["default-deny"]]
    )
    labels = _pod_labels(docs)
    for service in service_names():
        assert labels[service].get("app.kubernetes.io/component") == "service", service
    nats, postgres = labels["nats"], labels["postgres"]
    stranger = {"app.kubernetes.io/name": "someone-elses-pod"}
    for service in service_names():
        assert _ingress_ports(docs, nats, labels[service]) == {4222}, service
        assert _ingress_ports(docs, postgres, labels[service]) == {5432}, service
    assert _ingress_ports(docs, nats, nats) == {6222}
    assert _ingress_ports(docs, postgres, labels["slipway-migrate"]) == {5432}
    assert _ingress_ports(docs, nats, stranger) == set()
    assert _ingress_ports(docs, postgres, stranger) == set()
    assert _ingress_ports(docs, labels["api"], stranger) == {8080}
    assert _ingress_ports(docs, labels["gitwatcher"], stranger) == {8081}
    assert _ingress_ports(docs, labels["executor"], stranger) == set()
    dns = policies["dns"]["spec"]
    assert dns["podSelector"] == {} and {p["port"] for p in dns["egress"][0]["ports"]} == {53}
    for policy in policies.values():
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                if "ipBlock" in peer:
                    assert "169.254.0.0/16" in peer["ipBlock"].get("except", []), policy


def test_nats_tls_component_renders_valid_manifests(tmp_path: Path) -> None:
    """Enabling the nats-tls component (as deploy/README.md says) renders valid manifests that
    serve TLS and give every service tls:// and the CA."""
    assert "nats-tls" in _components()
    copy_dir = tmp_path / "kubernetes"
    shutil.copytree(KUBERNETES_DIR, copy_dir)
    kustomization = copy_dir / "kustomization.yaml"
    text = kustomization.read_text()
    assert "# components:\n#   - nats-tls\n" in text
    kustomization.write_text(
        text.replace("# components:\n#   - nats-tls\n", "components:\n  - nats-tls\n")
    )
    rendered = _render(copy_dir)
    assert [p for doc in rendered for p in _validate(doc)] == []
    config_maps = _by_kind(rendered, "ConfigMap")
    assert "cert_file: /etc/nats/tls/tls.crt" in config_maps["nats-config"]["data"]["tls.conf"]
    env = config_maps["slipway-env"]["data"]
    assert env["SLIPWAY_NATS_URL"].startswith("tls://")
    ca_dir = posixpath.dirname(env["SLIPWAY_NATS_TLS_CA_FILE"])
    for name, deployment in _by_kind(rendered, "Deployment").items():
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        assert ca_dir in {m["mountPath"] for m in container["volumeMounts"]}, name
