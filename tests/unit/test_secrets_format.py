"""PipeCD's hybrid secret format: an independent implementation's ciphertext opens, tampering fails.

The reference encrypter below is written from the format's description, not
from `shared.secrets`: RSA-OAEP-SHA256 is done by hand (MGF1, the data block,
modular exponentiation with the public numbers), only AES-GCM comes from a
library, as PipeCD's Go code takes it from its standard library.
"""

from __future__ import annotations

import base64
import hashlib
import os

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from shared.errors import ConfigError, Rejected
from shared.secrets import KeyRing, SecretError, decrypt_with, encrypt


def _mgf1(seed: bytes, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:length]


def _oaep_sha256_encrypt(message: bytes, n: int, e: int) -> bytes:
    k = (n.bit_length() + 7) // 8
    h_len = 32
    label_hash = hashlib.sha256(b"").digest()
    padding = b"\x00" * (k - len(message) - 2 * h_len - 2)
    data_block = label_hash + padding + b"\x01" + message
    seed = os.urandom(h_len)
    masked_db = bytes(a ^ b for a, b in zip(data_block, _mgf1(seed, k - h_len - 1), strict=True))
    masked_seed = bytes(a ^ b for a, b in zip(seed, _mgf1(masked_db, h_len), strict=True))
    encoded = b"\x00" + masked_seed + masked_db
    return pow(int.from_bytes(encoded, "big"), e, n).to_bytes(k, "big")


def reference_encrypt(text: str, n: int, e: int) -> str:
    aes_key = os.urandom(32)
    sealed_key = _oaep_sha256_encrypt(aes_key, n, e)
    sealed_text = AESGCM(aes_key).encrypt(b"\x00" * 12, text.encode(), None)
    return base64.b64encode(len(sealed_key).to_bytes(2, "big") + sealed_key + sealed_text).decode()


@pytest.fixture(scope="module")
def keys() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def test_a_ciphertext_from_an_independent_implementation_decrypts(keys) -> None:
    key = keys[0]
    numbers = key.public_key().public_numbers()
    ciphertext = reference_encrypt("hunter2 ünïcode", numbers.n, numbers.e)
    assert decrypt_with(ciphertext, key, "password") == "hunter2 ünïcode"


def test_our_ciphertext_has_the_format_layout(keys) -> None:
    key = keys[0]
    raw = base64.b64decode(encrypt("s3cret", key.public_key()))
    assert int.from_bytes(raw[:2], "big") == 256  # a 2048-bit key's RSA block
    assert len(raw) == 2 + 256 + len("s3cret") + 16  # the GCM tag
    assert decrypt_with(base64.b64encode(raw).decode(), key, "x") == "s3cret"


def test_tampering_is_a_clear_error_naming_the_secret(keys) -> None:
    key = keys[0]
    raw = bytearray(base64.b64decode(encrypt("s3cret", key.public_key())))
    raw[-1] ^= 1
    with pytest.raises(SecretError, match="'db-password' was altered"):
        decrypt_with(base64.b64encode(raw).decode(), key, "db-password")
    with pytest.raises(SecretError, match="'db-password' is truncated"):
        decrypt_with(base64.b64encode(bytes(raw[:100])).decode(), key, "db-password")
    with pytest.raises(SecretError, match="'db-password' is not valid base64"):
        decrypt_with("not base64!", key, "db-password")


def test_a_wrong_key_is_a_clear_rejection_naming_the_secret(keys) -> None:
    old, new = keys
    ciphertext = encrypt("s3cret", old.public_key())
    with pytest.raises(SecretError, match="'token' was not encrypted for this key") as caught:
        KeyRing([new]).decrypt(ciphertext, "token")
    assert isinstance(caught.value, Rejected) and isinstance(caught.value, ConfigError)
    assert ciphertext not in str(caught.value)


def test_a_key_ring_tries_the_newest_key_first_then_the_others(keys) -> None:
    old, new = keys
    ring = KeyRing([new, old])
    assert ring.decrypt(encrypt("before rotation", old.public_key()), "a") == "before rotation"
    assert ring.decrypt(encrypt("after", ring.newest_public_key), "a") == "after"
    assert decrypt_with(encrypt("after", ring.newest_public_key), new, "a") == "after"
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    with pytest.raises(SecretError, match="none of the 2 configured private keys opens it"):
        ring.decrypt(encrypt("x", stranger.public_key()), "a")
