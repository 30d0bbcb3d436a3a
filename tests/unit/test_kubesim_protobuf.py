"""kubesim's protobuf request bodies: Kubernetes' envelope decoded by the generated schema,
and refused as a real API server refuses them (400 malformed, 415 no protobuf form)."""

from __future__ import annotations

import pytest

from kubesim.errors import ApiError
from kubesim.protobuf import decode


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2); lengths here stay under 128."""
    assert len(payload) < 128
    return bytes([number << 3 | 2, len(payload)]) + payload


def _envelope(api_version: str, kind: str, raw: bytes) -> bytes:
    type_meta = _field(1, api_version.encode()) + _field(2, kind.encode())
    return b"k8s\x00" + _field(1, type_meta) + _field(2, raw)


def test_a_configmap_decodes_to_its_json() -> None:
    metadata = _field(1, b"settings") + _field(3, b"shop")  # name, namespace
    entry = _field(1, b"mode") + _field(2, b"fast")
    raw = _field(1, metadata) + _field(2, entry) + bytes([4 << 3, 1])  # immutable: true
    assert decode(_envelope("v1", "ConfigMap", raw)) == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "shop"},
        "data": {"mode": "fast"},
        "immutable": True,
    }


def test_replicas_zero_is_kept_and_an_empty_omitempty_string_left_out() -> None:
    spec = bytes([1 << 3, 0])  # replicas: 0 (a pointer: set, so kept)
    metadata = _field(1, b"web") + _field(2, b"")  # generateName "" (omitempty)
    obj = decode(_envelope("apps/v1", "Deployment", _field(1, metadata) + _field(2, spec)))
    assert obj["spec"] == {"replicas": 0}
    assert obj["metadata"] == {"name": "web"}


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b'{"kind": "ConfigMap"}', 400),  # not the envelope
        (b"k8s\x00\x0a\x7f", 400),  # a length past the end
        (b"k8s\x00\x49\x01\x02", 400),  # a fixed64 cut short
        (_envelope("example.com/v1", "Widget", b""), 415),  # a custom resource
        (_envelope("v1", "ConfigMap", _field(1, b"\x0a\x05ab")), 400),  # truncated name
    ],
)
def test_a_body_kubesim_cannot_read_is_refused_as_the_api_server_would(
    body: bytes, code: int
) -> None:
    with pytest.raises(ApiError) as refused:
        decode(body)
    assert refused.value.code == code
