"""Request bodies in Kubernetes' protobuf (`application/vnd.kubernetes.protobuf`), as JSON.

kubectl ≥ 1.32 sends the objects its imperative `create` subcommands build
(`kubectl create deployment|configmap|secret|namespace|service|…`) as protobuf, and a
real API server decodes them for every built-in kind; only for what has no protobuf
form (custom resources) it answers 415, which kubectl does not retry as JSON. So
kubesim decodes the kinds of `protoschema.ROOTS` and keeps refusing the others.

The body is Kubernetes' envelope: the magic `k8s` and a zero byte, then a `runtime.Unknown`
(`typeMeta` {apiVersion, kind}, `raw`: the object's message). The object is decoded by
the schema in `protoschema` (generated from the `generated.proto` files) into the JSON
the same object would have been sent as, by Go's rules (`protoschema`'s `how`): a
struct embedded inline gives its fields to its parent, a non-pointer `omitempty`
scalar is left out when zero, `Time` is RFC 3339 (`null` when zero), `IntOrString` an
int or a string, `Quantity` its string, bytes base64, `FieldsV1` and `RawExtension`
their JSON. An unknown field number is skipped, as protobuf's decoders do.
"""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any, Final

from kubesim import errors
from kubesim.protoschema import MESSAGES, ROOTS

__all__ = ["PROTOBUF", "decode"]

PROTOBUF: Final = "application/vnd.kubernetes.protobuf"
_MAGIC: Final = b"k8s\x00"
_UNKNOWN: Final = {
    1: ("typeMeta", "optional", "TypeMeta", ""),
    2: ("raw", "optional", "bytes", ""),
    3: ("contentEncoding", "optional", "string", ""),
    4: ("contentType", "optional", "string", ""),
}
_TYPE_META: Final = {
    1: ("apiVersion", "optional", "string", ""),
    2: ("kind", "optional", "string", ""),
}
_META = "k8s.io.apimachinery.pkg.apis.meta.v1."
_VARINT_TYPES: Final = frozenset({"int32", "int64", "bool"})
_MAX_DEPTH: Final = 64


class _Malformed(ValueError):
    pass


def decode(body: bytes) -> dict[str, Any]:
    """The object in a protobuf request body, as its JSON; `ApiError` 400 when the body is
    not Kubernetes' envelope, 415 for a kind without a protobuf form (as a real server)."""
    if not body.startswith(_MAGIC):
        raise errors.bad_request("a protobuf body must start with the k8s envelope's magic")
    try:
        envelope = _fields(body[len(_MAGIC) :], {"": _UNKNOWN, "TypeMeta": _TYPE_META}, "", 0)
        type_meta = envelope.get("typeMeta") or {}
        api_version, kind = type_meta.get("apiVersion", ""), type_meta.get("kind", "")
        root = ROOTS.get((api_version, kind))
        if root is None:
            raise errors.unsupported_media_type(f"{PROTOBUF} for {api_version} {kind}")
        raw = base64.b64decode(envelope.get("raw", ""))
        obj = _fields(raw, MESSAGES, root, 0)
    except (_Malformed, IndexError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise errors.bad_request(f"invalid protobuf request body: {exc}") from exc
    return {"apiVersion": api_version, "kind": kind, **obj}


def _varint(data: bytes, at: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if at >= len(data) or shift > 63:
            raise _Malformed("truncated varint")
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return value, at


def _scalar(type_name: str, value: int | bytes) -> Any:
    if isinstance(value, bytes):
        if type_name == "string":
            return value.decode("utf-8")
        if type_name == "bytes":
            return base64.b64encode(value).decode("ascii")
        raise _Malformed(f"a length-delimited value for a {type_name}")
    if type_name == "bool":
        return bool(value)
    if type_name == "int32":
        value &= 0xFFFFFFFF
        return value - (1 << 32) if value >= 1 << 31 else value
    if type_name == "int64":
        value &= 0xFFFFFFFFFFFFFFFF
        return value - (1 << 64) if value >= 1 << 63 else value
    raise _Malformed(f"a varint for a {type_name}")


Schema = dict[str, dict[int, tuple[str, str, str, str]]]
"""Message name → {field number: (JSON name, cardinality, type, how)}, as `protoschema`'s."""


def _fields(data: bytes, schema: Schema, message: str, depth: int) -> dict[str, Any]:
    """Decode one message into {JSON name: value}; unknown field numbers are skipped."""
    if depth > _MAX_DEPTH:
        raise _Malformed("messages nested too deeply")
    fields = schema[message]
    out: dict[str, Any] = {}
    at = 0
    while at < len(data):
        tag, at = _varint(data, at)
        number, wire = tag >> 3, tag & 7
        value: int | bytes
        if wire == 0:
            value, at = _varint(data, at)
        elif wire == 2:
            length, at = _varint(data, at)
            if at + length > len(data):
                raise _Malformed("a length past the end of the body")
            value, at = data[at : at + length], at + length
        elif wire in (1, 5):
            size = 8 if wire == 1 else 4
            if at + size > len(data):
                raise _Malformed("a fixed-size value past the end of the body")
            value, at = int.from_bytes(data[at : at + size], "little"), at + size
        else:
            raise _Malformed(f"wire type {wire}")
        if number not in fields:
            continue
        name, cardinality, type_name, how = fields[number]
        if cardinality == "map":
            key_type, value_type = type_name.split(":", 1)
            if not isinstance(value, bytes):
                raise _Malformed(f"{name}: a map entry must be length-delimited")
            entry = _entry(value, key_type, value_type, schema, depth)
            out.setdefault(name, {}).update(entry)
        elif cardinality == "repeated":
            items = out.setdefault(name, [])
            if type_name in _VARINT_TYPES and isinstance(value, bytes):  # packed
                at_packed = 0
                while at_packed < len(value):
                    item, at_packed = _varint(value, at_packed)
                    items.append(_scalar(type_name, item))
            elif type_name not in schema:
                items.append(_scalar(type_name, value))
            else:
                items.append(_value(value, type_name, schema, depth))
        elif how == "inline":
            inline = _value(value, type_name, schema, depth)
            if isinstance(inline, dict):
                out.update(inline)
        else:
            decoded = _value(value, type_name, schema, depth)
            if decoded is _OMITTED or (how == "omitzero" and decoded in ("", 0, False)):
                out.pop(name, None)
            else:
                out[name] = decoded
    return out


_OMITTED: Final = object()


def _entry(
    data: bytes, key_type: str, value_type: str, schema: Schema, depth: int
) -> dict[str, Any]:
    fields = {1: ("key", "optional", key_type, ""), 2: ("value", "optional", value_type, "")}
    entry = _fields(data, {"": fields, **schema}, "", depth + 1)
    value = entry.get("value", "" if value_type in ("string", "bytes") else {})
    return {str(entry.get("key", "")): value}


def _value(value: int | bytes, type_name: str, schema: Schema, depth: int) -> Any:
    if type_name not in schema:
        return _scalar(type_name, value)
    if not isinstance(value, bytes):
        raise _Malformed(f"a varint for a {type_name} message")
    obj = _fields(value, schema, type_name, depth + 1)
    return _special(type_name, obj)


def _special(type_name: str, obj: dict[str, Any]) -> Any:
    """The JSON form of the messages Go marshals by hand."""
    if type_name in (_META + "Time", _META + "MicroTime"):
        seconds = obj.get("seconds", 0)
        if not seconds and not obj.get("nanos"):
            return None  # Go's zero time, written `null` (never left out: it is a struct)
        stamp = datetime.fromtimestamp(seconds, UTC)
        return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")
    if type_name == "k8s.io.apimachinery.pkg.util.intstr.IntOrString":
        return obj.get("strVal", "") if obj.get("type") == 1 else obj.get("intVal", 0)
    if type_name == "k8s.io.apimachinery.pkg.api.resource.Quantity":
        return obj.get("string", "0")
    if type_name in (_META + "FieldsV1", "k8s.io.apimachinery.pkg.runtime.RawExtension"):
        raw = obj.get("Raw") or obj.get("raw") or ""
        return json.loads(base64.b64decode(raw)) if raw else {}
    if type_name == _META + "Duration":
        return f"{obj.get('duration', 0) / 1e9:g}s"
    return obj
