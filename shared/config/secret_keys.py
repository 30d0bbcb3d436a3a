"""The keys of `secretManagement` (slipway.yaml or PipeCD's Piped), read at a service's start.

- `key_ring(control)`: the private keys, newest first, or None when none is configured;
- `public_key(control)`: the key new secrets are encrypted for (`publicKeyFile`/`publicKeyData`,
  else derived from the newest private key), or None.

Files are relative to the control config. A key that cannot be read or parsed is a
`ConfigError` naming the config file and the field, never quoting the key.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa

from shared.config.control import ControlConfig, SecretKeyPair
from shared.errors import ConfigError
from shared.secrets import KeyRing, load_private_key, load_public_key

__all__ = ["key_ring", "public_key"]

_FIELD = "spec.secretManagement.config"


def key_ring(control: ControlConfig) -> KeyRing | None:
    """The private keys that decrypt secrets, or None when none is configured."""
    keys = _keys(control)
    if keys is None or not (keys.private_key_file or keys.private_key_data):
        return None
    where = f"{control.path}: {_FIELD}"
    newest = (
        _read(control, keys.private_key_file, "privateKeyFile")
        if keys.private_key_file
        else _data(keys.private_key_data, f"{where}.privateKeyData")
    )
    private = [load_private_key(newest, f"{where}.privateKey")]
    for index, name in enumerate(keys.previous_private_key_files):
        field = f"previousPrivateKeyFiles[{index}]"
        private.append(load_private_key(_read(control, name, field), f"{where}.{field}"))
    return KeyRing(private)


def public_key(control: ControlConfig) -> rsa.RSAPublicKey | None:
    """The public key that encrypts secrets, or None when none is configured."""
    keys = _keys(control)
    if keys is None:
        return None
    where = f"{control.path}: {_FIELD}"
    if keys.public_key_file:
        pem = _read(control, keys.public_key_file, "publicKeyFile")
        return load_public_key(pem, f"{where}.publicKeyFile")
    if keys.public_key_data:
        pem = _data(keys.public_key_data, f"{where}.publicKeyData")
        return load_public_key(pem, f"{where}.publicKeyData")
    ring = key_ring(control)
    return None if ring is None else ring.newest_public_key


def _keys(control: ControlConfig) -> SecretKeyPair | None:
    management = control.spec.secret_management
    return None if management is None else management.config


def _read(control: ControlConfig, name: str, field: str) -> bytes:
    path = Path(name).expanduser()
    if not path.is_absolute():
        path = control.path.parent / path
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"{control.path}: {_FIELD}.{field}: cannot read {name}: {exc.strerror}"
        ) from None


def _data(value: str, where: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{where}: not base64 (the PEM, base64-encoded)") from None
