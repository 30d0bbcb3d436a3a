"""Secrets encrypted in git, in PipeCD's exact hybrid format (`pkg/crypto/hybrid.go`).

A ciphertext is `base64(len ‖ rsa ‖ gcm)`: `len` the 2-byte big-endian length
of `rsa`, `rsa` the RSA-OAEP-SHA256 encryption (MGF1-SHA256, no label) of a
random 32-byte AES-256 key, `gcm` the AES-256-GCM sealing of the plaintext
under that key with an all-zero 12-byte nonce. The zero nonce is safe only
because each key seals exactly one message; it is kept so that secrets already
encrypted for PipeCD decrypt unchanged.

- `encrypt(text, public_key)`: a new ciphertext (a new AES key every time).
- `KeyRing`: the private keys a control config names, newest first. `decrypt`
  tries each; a ciphertext none of them opens is a `SecretError` naming the
  secret, never a crash and never a quote of the ciphertext or the key.

Pure functions of their inputs; reading key files is `load_private_key` /
`load_public_key`, used at the edges.
"""

from __future__ import annotations

import base64
import binascii
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import ConfigError, Rejected

__all__ = [
    "KeyRing",
    "SecretError",
    "decrypt_with",
    "encrypt",
    "load_private_key",
    "load_public_key",
]

AES_KEY_BYTES: Final = 32
GCM_NONCE: Final = bytes(12)
_LENGTH_BYTES: Final = 2


class SecretError(ConfigError, Rejected):
    """An encrypted secret that cannot be used: malformed, or no configured key opens it.

    A person must fix the config (re-encrypt, or configure the key): never retried.
    """


def _oaep() -> padding.OAEP:
    return padding.OAEP(
        mgf=padding.MGF1(algorithm=hashes.SHA256()), algorithm=hashes.SHA256(), label=None
    )


def load_public_key(pem: bytes, what: str) -> rsa.RSAPublicKey:
    """An RSA public key from PEM (`PUBLIC KEY` or `RSA PUBLIC KEY`); `what` names its source."""
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError:
        try:  # PipeCD's `pipectl` also writes a public key next to a PKCS#1 private key
            key = serialization.load_pem_private_key(pem, password=None).public_key()
        except (ValueError, TypeError):
            raise ConfigError(f"{what}: not a PEM RSA public key") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ConfigError(f"{what}: the key is not an RSA key")
    return key


def load_private_key(pem: bytes, what: str) -> rsa.RSAPrivateKey:
    """An RSA private key from unencrypted PEM (PKCS#1 or PKCS#8); `what` names its source."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{what}: not an unencrypted PEM RSA private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError(f"{what}: the key is not an RSA key")
    return key


def encrypt(text: str, public_key: rsa.RSAPublicKey) -> str:
    """`text` sealed for `public_key`, as PipeCD's HybridEncrypter writes it."""
    aes_key = os.urandom(AES_KEY_BYTES)
    sealed_key = public_key.encrypt(aes_key, _oaep())
    sealed_text = AESGCM(aes_key).encrypt(GCM_NONCE, text.encode(), None)
    length = len(sealed_key).to_bytes(_LENGTH_BYTES, "big")
    return base64.b64encode(length + sealed_key + sealed_text).decode("ascii")


def decrypt_with(ciphertext: str, private_key: rsa.RSAPrivateKey, name: str) -> str:
    """The plaintext of `ciphertext` under one key; a `SecretError` naming `name` otherwise."""
    return _open(_split(ciphertext, name), private_key, name)


def _split(ciphertext: str, name: str) -> tuple[bytes, bytes]:
    """The sealed AES key and the sealed text, or a `SecretError` if it is not the format."""
    try:
        raw = base64.b64decode(ciphertext.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise SecretError(f"encrypted secret {name!r} is not valid base64") from None
    length = int.from_bytes(raw[:_LENGTH_BYTES], "big")
    sealed_key = raw[_LENGTH_BYTES : _LENGTH_BYTES + length]
    sealed_text = raw[_LENGTH_BYTES + length :]
    if len(raw) <= _LENGTH_BYTES or len(sealed_key) != length or not sealed_text:
        raise SecretError(f"encrypted secret {name!r} is truncated (not PipeCD's hybrid format)")
    return sealed_key, sealed_text


def _open(parts: tuple[bytes, bytes], private_key: rsa.RSAPrivateKey, name: str) -> str:
    sealed_key, sealed_text = parts
    try:
        aes_key = private_key.decrypt(sealed_key, _oaep())
    except ValueError:
        raise SecretError(
            f"encrypted secret {name!r} was not encrypted for this key (RSA-OAEP failed)"
        ) from None
    if len(aes_key) != AES_KEY_BYTES:
        raise SecretError(f"encrypted secret {name!r} holds a {len(aes_key)}-byte key, not 32")
    try:
        plain = AESGCM(aes_key).decrypt(GCM_NONCE, sealed_text, None)
    except InvalidTag:
        raise SecretError(f"encrypted secret {name!r} was altered (AES-GCM tag mismatch)") from None
    try:
        return plain.decode()
    except UnicodeDecodeError:
        raise SecretError(f"encrypted secret {name!r} is not UTF-8 text") from None


@dataclass(frozen=True)
class KeyRing:
    """The configured private keys, newest first; the newest encrypts, any decrypts."""

    private_keys: Sequence[rsa.RSAPrivateKey]

    def __post_init__(self) -> None:
        if not self.private_keys:
            raise ConfigError("secretManagement: no private key configured")

    @property
    def newest_public_key(self) -> rsa.RSAPublicKey:
        """The public key of the newest private key: what new secrets are encrypted for."""
        return self.private_keys[0].public_key()

    def decrypt(self, ciphertext: str, name: str) -> str:
        """The plaintext under the first key that opens it, newest first."""
        parts = _split(ciphertext, name)
        problems: list[SecretError] = []
        for key in self.private_keys:
            try:
                return _open(parts, key, name)
            except SecretError as exc:
                problems.append(exc)
        if len(problems) == 1:
            raise problems[0]
        raise SecretError(
            f"encrypted secret {name!r}: none of the {len(problems)} configured private keys "
            f"opens it ({problems[0]})"
        )
