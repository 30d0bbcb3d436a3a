"""Secrets encrypted for git (PipeCD's format): the request and its answer."""

from __future__ import annotations

from typing import Annotated

import msgspec
from msgspec import Meta


class EncryptSecretRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A secret to encrypt for the configured key; it is neither stored nor logged."""

    data: Annotated[str, Meta(min_length=1, max_length=65536)]


class EncryptedSecret(msgspec.Struct, frozen=True, kw_only=True):
    """PipeCD's hybrid format: put it under `encryption.encryptedSecrets` of an app config."""

    ciphertext: str
