"""Write `kubesim/protoschema.py` from Kubernetes' `generated.proto` files.

    python scripts/gen_kubesim_protoschema.py API_REPO APIMACHINERY_REPO v0.33.9 \
        > kubesim/protoschema.py && ruff format kubesim/protoschema.py

`API_REPO` and `APIMACHINERY_REPO` are git checkouts or bare clones of kubernetes/api and
kubernetes/apimachinery; both are read at the tag given (the release of the newest
kubectl tested, 1.33). Only the messages reachable from
`ROOTS` (the kinds `kubectl create` makes that kubesim serves) are written, each as its
fields: number → (JSON name, cardinality, type, how). The JSON side comes from the Go
types beside each `.proto` (`types.go`): the json tag's name, and `how` is `inline`
for a struct embedded inline (its fields are its parent's), `omitzero` for a
non-pointer `omitempty` scalar (Go leaves it out when zero), else "".
"""

from __future__ import annotations

import re
import subprocess
import sys
from typing import Final

ROOTS: Final = {
    ("v1", "Namespace"): "k8s.io.api.core.v1.Namespace",
    ("v1", "ConfigMap"): "k8s.io.api.core.v1.ConfigMap",
    ("v1", "Secret"): "k8s.io.api.core.v1.Secret",
    ("v1", "Service"): "k8s.io.api.core.v1.Service",
    ("v1", "ServiceAccount"): "k8s.io.api.core.v1.ServiceAccount",
    ("v1", "Pod"): "k8s.io.api.core.v1.Pod",
    ("apps/v1", "Deployment"): "k8s.io.api.apps.v1.Deployment",
    ("batch/v1", "Job"): "k8s.io.api.batch.v1.Job",
    ("batch/v1", "CronJob"): "k8s.io.api.batch.v1.CronJob",
    ("policy/v1", "PodDisruptionBudget"): "k8s.io.api.policy.v1.PodDisruptionBudget",
    ("networking.k8s.io/v1", "Ingress"): "k8s.io.api.networking.v1.Ingress",
    ("rbac.authorization.k8s.io/v1", "Role"): "k8s.io.api.rbac.v1.Role",
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): "k8s.io.api.rbac.v1.RoleBinding",
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): "k8s.io.api.rbac.v1.ClusterRole",
    (
        "rbac.authorization.k8s.io/v1",
        "ClusterRoleBinding",
    ): "k8s.io.api.rbac.v1.ClusterRoleBinding",
    # `kubectl create token` POSTs one to a service account's `token` subresource.
    ("authentication.k8s.io/v1", "TokenRequest"): "k8s.io.api.authentication.v1.TokenRequest",
}

_PACKAGES: Final = (
    ("api", "core/v1"),
    ("api", "apps/v1"),
    ("api", "batch/v1"),
    ("api", "policy/v1"),
    ("api", "networking/v1"),
    ("api", "rbac/v1"),
    ("api", "authentication/v1"),
    ("apimachinery", "pkg/apis/meta/v1"),
    ("apimachinery", "pkg/api/resource"),
    ("apimachinery", "pkg/runtime"),
    ("apimachinery", "pkg/runtime/schema"),
    ("apimachinery", "pkg/util/intstr"),
)
_SCALARS: Final = frozenset({"string", "bytes", "bool", "int32", "int64", "double", "float"})
_PACKAGE = re.compile(r"^package ([\w.]+);", re.M)
_MESSAGE = re.compile(r"^message (\w+) \{(.*?)^\}", re.M | re.S)
_FIELD = re.compile(r"^\s*(optional|repeated) ([\w.]+) (\w+) = (\d+);", re.M)
_MAP = re.compile(r"^\s*map<(\w+), ([\w.]+)> (\w+) = (\d+);", re.M)
_STRUCT = re.compile(r"^type (\w+) struct \{(.*?)^\}", re.M | re.S)
_JSON_TAG = re.compile(r'json:"([^"]*)"')
_PROTO_TAG = re.compile(r'protobuf:"\w+,(\d+),')

Field = tuple[str, str, str, str]
GoField = tuple[str, str]  # (JSON name, "inline" | "omitempty" (not a pointer) | "")


def _read(repo: str, ref: str, path: str) -> str:
    return subprocess.run(
        ["git", "-C", repo, "show", f"{ref}:{path}"], check=True, capture_output=True, text=True
    ).stdout


def _go_files(repo: str, ref: str, directory: str) -> list[str]:
    listed = subprocess.run(
        ["git", "-C", repo, "ls-tree", "--name-only", f"{ref}:{directory}"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return [
        f"{directory}/{name}"
        for name in listed
        if name.endswith(".go") and not name.endswith("_test.go") and "generated" not in name
    ]


def _resolve(type_name: str, package: str) -> str:
    if type_name in _SCALARS:
        return type_name
    if type_name.startswith("."):
        return type_name[1:]
    return f"{package}.{type_name}"


def go_fields(texts: list[str]) -> dict[str, dict[int, GoField]]:
    """The Go structs of one package: name → {protobuf number: (JSON name, tag)}."""
    structs: dict[str, dict[int, GoField]] = {}
    for text in texts:
        for name, body in _STRUCT.findall(text):
            fields: dict[int, GoField] = {}
            for line in body.splitlines():
                json_tag, proto_tag = _JSON_TAG.search(line), _PROTO_TAG.search(line)
                if json_tag is None or proto_tag is None:
                    continue
                json_name, *options = json_tag[1].split(",")
                tokens = line.split("`", 1)[0].split()
                pointer = len(tokens) > 1 and tokens[1].startswith("*")
                tag = ""
                if "inline" in options:
                    tag = "inline"
                elif "omitempty" in options and not pointer:
                    tag = "omitempty"
                fields[int(proto_tag[1])] = (json_name, tag)
            structs[name] = fields
    return structs


def parse(
    texts: list[str], go: dict[str, dict[str, dict[int, GoField]]]
) -> dict[str, dict[int, Field]]:
    """Every message of the .proto files: full name → {number: field}; `go` is each
    package's Go structs (`go_fields`), by protobuf package."""
    messages: dict[str, dict[int, Field]] = {}
    for text in texts:
        package = _PACKAGE.search(text)
        assert package is not None
        structs = go.get(package[1], {})
        for name, body in _MESSAGE.findall(text):
            fields: dict[int, Field] = {}
            struct = structs.get(name, {})
            for label, type_name, field, number in _FIELD.findall(body):
                json_name, tag = struct.get(int(number), (field, ""))
                resolved = _resolve(type_name, package[1])
                # A non-pointer omitempty scalar (named string types too: PullPolicy…)
                # is left out by Go when zero; a struct never is.
                how = "omitzero" if tag == "omitempty" and resolved in _SCALARS else tag
                fields[int(number)] = (json_name or field, label, resolved, how)
            for key, value, field, number in _MAP.findall(body):
                json_name, _ = struct.get(int(number), (field, ""))
                resolved = f"{key}:{_resolve(value, package[1])}"
                fields[int(number)] = (json_name or field, "map", resolved, "")
            messages[f"{package[1]}.{name}"] = fields
    return messages


def reachable(messages: dict[str, dict[int, Field]]) -> dict[str, dict[int, Field]]:
    """The messages `ROOTS` use, directly or not."""
    seen: dict[str, dict[int, Field]] = {}
    todo = list(ROOTS.values())
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen[name] = messages[name]
        for _, cardinality, type_name, _ in seen[name].values():
            target = type_name.split(":", 1)[1] if cardinality == "map" else type_name
            if target not in _SCALARS:
                todo.append(target)
    return dict(sorted(seen.items()))


def main(api: str, apimachinery: str, ref: str) -> None:
    """Print the schema module of the two repositories at tag `ref`."""
    repos = {"api": api, "apimachinery": apimachinery}
    protos: list[str] = []
    go: dict[str, dict[str, dict[int, GoField]]] = {}
    for repo, directory in _PACKAGES:
        proto = _read(repos[repo], ref, f"{directory}/generated.proto")
        package = _PACKAGE.search(proto)
        assert package is not None
        protos.append(proto)
        go[package[1]] = go_fields(
            [_read(repos[repo], ref, path) for path in _go_files(repos[repo], ref, directory)]
        )
    messages = reachable(parse(protos, go))
    out = sys.stdout
    out.write(
        '"""The protobuf schema of the kinds `kubectl create` sends as protobuf (generated).\n\n'
        "Written by `scripts/gen_kubesim_protoschema.py` from kubernetes/api and\n"
        f"kubernetes/apimachinery {ref} (Apache-2.0): each message's fields,\n"
        'number → (JSON name, cardinality, type, how: inline, omitzero or "").\n'
        'Do not edit; regenerate.\n"""\n\n'
        "from typing import Final\n\n"
    )
    out.write(f"ROOTS: Final[dict[tuple[str, str], str]] = {ROOTS!r}\n\n")
    out.write("MESSAGES: Final[dict[str, dict[int, tuple[str, str, str, str]]]] = {\n")
    for name, fields in messages.items():
        out.write(f"    {name!r}: {dict(sorted(fields.items()))!r},\n")
    out.write("}\n")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3])
