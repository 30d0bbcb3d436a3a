"""`slipway encrypt`: secrets for git, in PipeCD's format (`shared.secrets`).

- `slipway encrypt --input-file F --public-key-file K` prints the ciphertext of
  F's content, sealed for K: a developer needs only the public key;
- `slipway encrypt --input-file F --control-config slipway.yaml` uses its
  `secretManagement` public key;
- `slipway encrypt --input-file F` (neither) asks the API
  (`POST /api/v1/secrets:encrypt`, a read-write key), which uses the configured key;
- `slipway encrypt --rotate app.pipecd.yaml --control-config slipway.yaml`
  re-encrypts every `encryption.encryptedSecrets` value for the newest key
  (decrypting with any configured key) and rewrites only those values: the
  rest of the file stays byte-identical.

The plaintext is read from a file, never from an argument (process listings show those).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from shared.config.control_loader import load_control_config
from shared.config.loader import load_application_config
from shared.config.secret_keys import key_ring, public_key
from shared.errors import ConfigError
from shared.secrets import encrypt, load_public_key
from slipway_cli.command import Handler, common_options, run_with_client
from slipway_client import ApiClient


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `slipway encrypt` (PipeCD-format secrets, key rotation) to the parser."""
    parser = subparsers.add_parser(
        "encrypt",
        parents=[common_options()],
        help="encrypt a secret for git (PipeCD's format), or rotate a config's secrets",
    )
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--input-file", type=Path, help="the file holding the secret to encrypt")
    what.add_argument(
        "--rotate",
        type=Path,
        metavar="APP_CONFIG",
        help="re-encrypt this application config's encryptedSecrets for the newest key",
    )
    parser.add_argument("--public-key-file", type=Path, help="encrypt for this PEM public key")
    parser.add_argument(
        "--control-config",
        type=Path,
        help="slipway.yaml (or a Piped file): its secretManagement keys",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Encrypt a secret (locally with a public key, or over the API) or rotate a file's secrets."""
    if args.rotate is not None:
        return _rotate(args)
    text = _read_text(args.input_file, "--input-file")
    if args.public_key_file is not None:
        pem = _read_bytes(args.public_key_file, "--public-key-file")
        print(encrypt(text, load_public_key(pem, str(args.public_key_file))))
        return 0
    if args.control_config is not None:
        key = public_key(load_control_config(args.control_config))
        if key is None:
            raise ConfigError(f"{args.control_config}: no secretManagement key pair configured")
        print(encrypt(text, key))
        return 0
    return run_with_client(_encrypt_by_api(text))(args)


def _encrypt_by_api(text: str) -> Handler:
    def handler(client: ApiClient, _args: argparse.Namespace) -> int:
        print(client.encrypt_secret(text))
        return 0

    return handler


def _rotate(args: argparse.Namespace) -> int:
    if args.control_config is None:
        raise ConfigError("--rotate needs --control-config (its private keys decrypt)")
    ring = key_ring(load_control_config(args.control_config))
    if ring is None:
        raise ConfigError(f"{args.control_config}: no secretManagement private key configured")
    path: Path = args.rotate
    original = _read_text(path, "--rotate")
    config = load_application_config(path, original)
    secrets = config.spec.encryption.encrypted_secrets if config.spec.encryption else {}
    text = original
    for name, ciphertext in secrets.items():
        if text.count(ciphertext) != 1:
            raise ConfigError(
                f"{path}: encryptedSecrets.{name}: the value must be written on one line, "
                "once in the file, to be rewritten in place"
            )
        plain = ring.decrypt(ciphertext, name)
        text = text.replace(ciphertext, encrypt(plain, ring.newest_public_key))
    path.write_text(text, encoding="utf-8")
    print(f"{path}: {len(secrets)} secret(s) re-encrypted for the newest key", file=sys.stderr)
    return 0


def _read_text(path: Path, option: str) -> str:
    try:
        return _read_bytes(path, option).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{option} {path}: not UTF-8 text") from None


def _read_bytes(path: Path, option: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot read: {exc.strerror}") from None
