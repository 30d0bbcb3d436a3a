"""`slipway encrypt`: ciphertext for a public key or the control config's, and key rotation."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from shared.config.control_loader import load_control_config
from shared.config.secret_keys import key_ring
from shared.secrets import SecretError, decrypt_with, encrypt
from slipway_cli import main


def _pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # PKCS#1, as PipeCD's docs make them
        serialization.NoEncryption(),
    )


def _public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


@pytest.fixture(scope="module")
def old_and_new() -> tuple[rsa.RSAPrivateKey, rsa.RSAPrivateKey]:
    return (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


def _control(tmp_path: Path, newest: rsa.RSAPrivateKey, *older: rsa.RSAPrivateKey) -> Path:
    (tmp_path / "new.pem").write_bytes(_pem(newest))
    previous = []
    for index, key in enumerate(older):
        (tmp_path / f"old{index}.pem").write_bytes(_pem(key))
        previous.append(f"old{index}.pem")
    control = tmp_path / "slipway.yaml"
    control.write_text(
        "apiVersion: slipway.dev/v1\nkind: Slipway\nspec:\n  project: demo\n"
        "  secretManagement:\n    type: KEY_PAIR\n    config:\n"
        f"      privateKeyFile: new.pem\n      previousPrivateKeyFiles: {previous}\n"
    )
    return control


def test_encrypt_with_a_public_key_file(tmp_path, capsys, old_and_new) -> None:
    key = old_and_new[0]
    (tmp_path / "key.pub").write_bytes(_public_pem(key))
    (tmp_path / "secret").write_text("p@ss word\n")
    args = ["encrypt", "--input-file", str(tmp_path / "secret")]
    assert main([*args, "--public-key-file", str(tmp_path / "key.pub")]) == 0
    assert decrypt_with(capsys.readouterr().out.strip(), key, "s") == "p@ss word\n"
    assert main([*args, "--control-config", str(_control(tmp_path, key))]) == 0
    assert decrypt_with(capsys.readouterr().out.strip(), key, "s") == "p@ss word\n"


def test_piped_key_data_is_the_base64_of_the_pem(tmp_path, old_and_new) -> None:
    key = old_and_new[0]
    piped = tmp_path / "piped.yaml"
    piped.write_text(
        "apiVersion: pipecd.dev/v1beta1\nkind: Piped\nspec:\n  projectID: demo\n"
        "  secretManagement:\n    type: KEY_PAIR\n    config:\n"
        f"      privateKeyData: {base64.b64encode(_pem(key)).decode()}\n"
    )
    ring = key_ring(load_control_config(piped))
    assert ring is not None
    assert ring.decrypt(encrypt("x", key.public_key()), "n") == "x"


APP = """\
apiVersion: pipecd.dev/v1beta1
kind: KubernetesApp
spec:
  name: web   # keep this comment
  encryption:
    encryptedSecrets:
      password: {password}
      token:    {token}
    decryptionTargets: [secret.yaml]
"""


def test_rotate_rewrites_only_the_secrets_for_the_newest_key(tmp_path, capsys, old_and_new) -> None:
    old, new = old_and_new
    app = tmp_path / "app.pipecd.yaml"
    app.write_text(
        APP.format(
            password=encrypt("pw-1", old.public_key()), token=encrypt("tk-2", new.public_key())
        )
    )
    control = _control(tmp_path, new, old)
    assert main(["encrypt", "--rotate", str(app), "--control-config", str(control)]) == 0
    lines = app.read_text().splitlines()
    password, token = lines[6].split(": ")[1], lines[7].split(":    ")[1]
    assert app.read_text() == APP.format(password=password, token=token)
    assert decrypt_with(password, new, "password") == "pw-1"
    assert decrypt_with(token, new, "token") == "tk-2"
    with pytest.raises(SecretError):
        decrypt_with(password, old, "password")

    # A key ring without the key a secret was made for: a clear error naming it, file untouched.
    before = app.read_text()
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    (tmp_path / "other").mkdir()
    control = _control(tmp_path / "other", stranger)
    assert main(["encrypt", "--rotate", str(app), "--control-config", str(control)]) == 2
    assert "'password' was not encrypted for this key" in capsys.readouterr().err
    assert app.read_text() == before
