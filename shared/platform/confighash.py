"""`pipecd.dev/config-hash`: roll a workload's pods when a ConfigMap or Secret it uses changes.

A pod reads its ConfigMaps and Secrets when it starts, so a commit that changes
only a ConfigMap leaves a Deployment's pod template as it was and the running
pods on the old configuration. PipeCD's answer, copied here: every workload
whose pod spec references ConfigMaps or Secrets of the same application gets a
hash of their contents as the pod-template annotation `pipecd.dev/config-hash`;
a changed ConfigMap changes the hash, the changed template makes the controller
roll the pods. `config_hashes` is called by the platform adapter on every batch
it applies (quick sync, canary, primary, baseline, rollback), so a canary's hash
is computed over the canary's own suffixed copies.

The hash is PipeCD's (`HashManifests`, itself kubectl's `hash.go`): SHA-256 over
each referenced ConfigMap then each Secret, sorted by name, as Go's
`encoding/json` encodes `{kind, name, data, [binaryData], [immutable]}` (ConfigMap)
or `{kind, name, type, data, [immutable]}` (Secret); the first ten hex digits,
with `0 1 3 a e` mapped to `g h k m t`. For a Deployment PipeCD has annotated,
the value is the same, so adopting it does not roll its pods.

Where this goes beyond PipeCD (which annotates Deployments only and reads
volumes, `env` and `envFrom`): StatefulSets, DaemonSets, ReplicaSets and
CronJobs (their job template) are annotated too, `projected` volume sources
count as references, and a Secret's `stringData` is folded into `data` as the
API server stores it, so a `stringData`-only change rolls the pods too. A bare
Job is not annotated: its pod template is immutable, so a hash that changed
with a ConfigMap would turn the apply into a refusal, and its pods do not
restart anyway.

A reference to a ConfigMap or Secret the application does not carry is not
hashed (it is managed elsewhere); a workload with no hashed reference gets no
annotation. Pure: nothing here does I/O.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final

from shared.config.manifests import Manifest
from shared.platform.resources import pod_template

__all__ = ["ANNOTATION_CONFIG_HASH", "config_hashes", "hash_configs", "referenced_configs"]

ANNOTATION_CONFIG_HASH: Final = "pipecd.dev/config-hash"

# A Job's `spec.template` cannot change once created (the API server refuses the update).
_IMMUTABLE_TEMPLATE: Final = frozenset({"Job"})
# kubectl's hash.go: no vowels, so the ten characters never spell a word.
_CONSONANTS: Final = str.maketrans({"0": "g", "1": "h", "3": "k", "a": "m", "e": "t"})
# What Go's encoding/json escapes and Python's json module leaves as is.
_GO_ESCAPES: Final = str.maketrans(
    {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}
)


def config_hashes(manifests: Sequence[Manifest]) -> dict[str, str]:
    """`Manifest.key` → config hash, for each workload in `manifests` that references at
    least one ConfigMap or Secret among `manifests` (matched by name, as PipeCD does)."""
    config_maps = {m.name: m for m in manifests if m.kind == "ConfigMap"}
    secrets = {m.name: m for m in manifests if m.kind == "Secret"}
    if not config_maps and not secrets:
        return {}
    hashes: dict[str, str] = {}
    for manifest in manifests:
        template = pod_template(manifest.kind, manifest.body)
        if template is None or manifest.kind in _IMMUTABLE_TEMPLATE:
            continue
        map_names, secret_names = referenced_configs(template)
        used = [config_maps[n] for n in sorted(map_names) if n in config_maps]
        used += [secrets[n] for n in sorted(secret_names) if n in secrets]
        if used:
            hashes[manifest.key] = hash_configs(used)
    return hashes


def referenced_configs(template: Mapping[str, Any]) -> tuple[set[str], set[str]]:
    """The names of the ConfigMaps and of the Secrets a pod template references: volumes
    (projected sources too) and the `env`/`envFrom` of containers and init containers."""
    spec = _map(template.get("spec"))
    config_maps: set[str] = set()
    secrets: set[str] = set()
    for volume in _maps(spec.get("volumes")):
        config_maps |= _names(_map(volume.get("configMap")), "name")
        secrets |= _names(_map(volume.get("secret")), "secretName")
        for source in _maps(_map(volume.get("projected")).get("sources")):
            config_maps |= _names(_map(source.get("configMap")), "name")
            secrets |= _names(_map(source.get("secret")), "name")
    for container in (*_maps(spec.get("containers")), *_maps(spec.get("initContainers"))):
        for env in _maps(container.get("env")):
            value_from = _map(env.get("valueFrom"))
            config_maps |= _names(_map(value_from.get("configMapKeyRef")), "name")
            secrets |= _names(_map(value_from.get("secretKeyRef")), "name")
        for env_from in _maps(container.get("envFrom")):
            config_maps |= _names(_map(env_from.get("configMapRef")), "name")
            secrets |= _names(_map(env_from.get("secretRef")), "name")
    return config_maps, secrets


def hash_configs(configs: Sequence[Manifest]) -> str:
    """PipeCD's `HashManifests` over ConfigMaps and Secrets, in the order given."""
    hasher = hashlib.sha256()
    for config in configs:
        encoded = _encode_secret(config) if config.kind == "Secret" else _encode_config_map(config)
        hasher.update(encoded.encode("utf-8", "surrogatepass"))
    return hasher.hexdigest()[:10].translate(_CONSONANTS)


def _encode_config_map(manifest: Manifest) -> str:
    body = manifest.body
    fields: dict[str, Any] = {"kind": "ConfigMap", "name": manifest.name, "data": _data(body)}
    if isinstance(body.get("immutable"), bool):
        fields["immutable"] = body["immutable"]
    binary = body.get("binaryData")
    if isinstance(binary, Mapping) and binary:
        fields["binaryData"] = {k: _canonical_base64(v) for k, v in binary.items()}
    return _go_json(fields)


def _encode_secret(manifest: Manifest) -> str:
    body = manifest.body
    data = _data(body)
    data = {k: _canonical_base64(v) for k, v in data.items()} if data is not None else None
    string_data = body.get("stringData")
    if isinstance(string_data, Mapping) and string_data:
        # The API server merges stringData into data (stringData wins); hash what it stores.
        data = (data or {}) | {
            str(k): base64.b64encode(str(v).encode()).decode() for k, v in string_data.items()
        }
    fields: dict[str, Any] = {
        "kind": "Secret",
        "type": str(body.get("type") or ""),
        "name": manifest.name,
        "data": data,
    }
    if isinstance(body.get("immutable"), bool):
        fields["immutable"] = body["immutable"]
    return _go_json(fields)


def _data(body: Mapping[str, Any]) -> dict[str, Any] | None:
    """`data` as Go decodes it: absent or null → null (encoded `null`), else the map."""
    data = body.get("data")
    return {str(k): v for k, v in data.items()} if isinstance(data, Mapping) else None


def _canonical_base64(value: Any) -> Any:
    """A `[]byte` value as Go re-encodes it (standard base64, padded); left as it is when it
    is not base64 (the API server will refuse the object and say so)."""
    if not isinstance(value, str):
        return value
    try:
        return base64.b64encode(base64.b64decode(value, validate=True)).decode()
    except (binascii.Error, ValueError):
        return value


def _go_json(value: Any) -> str:
    """`json.Marshal` of a Go map: keys sorted, no spaces, `<>&` and U+2028/9 escaped."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return text.translate(_GO_ESCAPES)


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _maps(value: Any) -> Iterator[Mapping[str, Any]]:
    if isinstance(value, list):
        yield from (item for item in value if isinstance(item, Mapping))


def _names(ref: Mapping[str, Any], field: str) -> set[str]:
    name = ref.get(field)
    return {name} if isinstance(name, str) and name else set()
