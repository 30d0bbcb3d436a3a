"""`PRIVATE_FIELDS` on the way out: what the relay publishes, and how a reader decodes it."""

from __future__ import annotations

import json

import msgspec

from shared.events import vocabulary
from shared.events.catalog import ApiKeyCreated, ApplicationDisabled, default_registry
from shared.events.outbound import PRIVATE_FIELDS, public_payload, with_withheld

REGISTRY = default_registry()


def test_a_key_hash_is_left_out_and_decodes_back_as_empty() -> None:
    created = ApiKeyCreated(
        key_id="k1", name="ops", role=vocabulary.KeyRole.ADMIN, secret_sha256="ab" * 32
    )
    stored = msgspec.json.encode(created)
    published = public_payload("api_key_created", stored)
    assert json.loads(published) == {
        "type": "api_key_created",
        "key_id": "k1",
        "name": "ops",
        "role": "admin",
        "creator": "",
    }
    assert b"ab" * 32 not in published
    decoded = REGISTRY.decode(
        "api_key_created",
        REGISTRY.current_version("api_key_created"),
        with_withheld("api_key_created", published),
    )
    assert decoded == msgspec.structs.replace(created, secret_sha256="")
    # A payload that still has the field is taken as it is.
    assert with_withheld("api_key_created", stored) == stored


def test_a_type_without_private_fields_is_published_byte_for_byte() -> None:
    stored = msgspec.json.encode(ApplicationDisabled(application_id="a"))
    assert "application_disabled" not in PRIVATE_FIELDS
    assert public_payload("application_disabled", stored) is stored
    assert with_withheld("application_disabled", stored) is stored
