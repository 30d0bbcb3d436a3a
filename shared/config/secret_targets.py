"""Decryption and attachment targets: their placeholders filled before rendering.

PipeCD renders these files as Go templates; Slipway substitutes exactly two
placeholder forms, and leaves any other `{{ … }}` alone:

- `{{ .encryptedSecrets.NAME }}` in a decryption target: the secret NAME of
  `encryption.encryptedSecrets`;
- `{{ .attachment.NAME }}` in an attachment target: the content of the file
  `attachment.sources.NAME` (relative to the app directory, inside the
  repository: `repo_files`' rule). Decryption targets are filled first, so an
  attachment source may itself be a decryption target, as in PipeCD.

Two modes, chosen by who renders:

- `Reveal(keys)`: the plaintexts, decrypted with the key ring. Only the
  executor (before apply) and drift detection (before comparing) ask for it.
- masked (no `Reveal`): the planner and plan preview. Each placeholder becomes
  `masked:encryptedSecrets.NAME:sha256:<12 hex of the ciphertext>` (or of the
  attachment's content), so a changed secret still shows as a change in the
  diff, and nothing decrypted ever reaches a plan, an event or a log.

The files are filled in a private copy of the checkout (`fill_targets`), never
in the checkout itself (it is shared between readers). A placeholder naming an
unknown secret or attachment is a `ConfigError` naming the file and the name;
so is a placeholder left in a rendered manifest (its file is not a target), which
would otherwise reach the cluster as the literal `{{ .encryptedSecrets.NAME }}`.
"""

from __future__ import annotations

import hashlib
import re
import shutil
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from shared.config.loader import ApplicationConfig
from shared.config.manifests import Manifest
from shared.config.repo_files import inside_repository
from shared.errors import ConfigError
from shared.secrets import KeyRing

__all__ = ["Reveal", "check_no_placeholders", "fill_targets", "has_targets"]

_PLACEHOLDER: Final = re.compile(r"\{\{-?\s*\.(encryptedSecrets|attachment)\.(\w+)\s*-?\}\}")
_DIGEST_CHARS: Final = 12


@dataclass(frozen=True)
class Reveal:
    """Fill with the plaintexts, decrypted by `keys` (None: this service has no key configured)."""

    keys: KeyRing | None


def has_targets(config: ApplicationConfig) -> bool:
    """Whether the app renders any file with decrypted secrets or attachments."""
    spec = config.spec
    return bool(
        (spec.encryption is not None and spec.encryption.decryption_targets)
        or (spec.attachment is not None and spec.attachment.targets)
    )


def check_no_placeholders(manifests: Sequence[Manifest]) -> None:
    """Refuse manifests that still hold a placeholder: their file is not listed as a target."""
    for manifest in manifests:
        found = _PLACEHOLDER.search(msgspec.json.encode(manifest.body).decode())
        if found is not None:
            field = (
                "encryption.decryptionTargets"
                if found[1] == "encryptedSecrets"
                else ("attachment.targets")
            )
            where = manifest.source or f"{manifest.kind} {manifest.name}"
            raise ConfigError(
                f"{where}: {manifest.kind} {manifest.name} holds {{{{ .{found[1]}.{found[2]} }}}} "
                f"but its file is not in {field}, so it would be applied as written"
            )


def fill_targets(
    tree: Path, app_dir: Path, config: ApplicationConfig, reveal: Reveal | None, scratch: Path
) -> tuple[Path, Path, tuple[str, ...]]:
    """Copy `tree` into `scratch` and fill the targets there.

    Returns the copy's root, the app directory inside it, and the plaintexts put
    in (empty when masked): the caller registers them with the redactor.
    """
    copy = scratch / "tree"
    shutil.copytree(tree, copy, symlinks=True, ignore=shutil.ignore_patterns(".git"))
    copy_app = copy / app_dir.relative_to(tree)
    revealed: list[str] = []
    spec = config.spec
    if spec.encryption is not None and spec.encryption.decryption_targets:
        secrets = spec.encryption.encrypted_secrets

        def secret(name: str, where: str) -> str:
            ciphertext = secrets.get(name)
            if ciphertext is None:
                raise _unknown(where, "encryptedSecrets", name, secrets)
            if reveal is None:
                return _mask("encryptedSecrets", name, ciphertext)
            if reveal.keys is None:
                raise ConfigError(
                    f"{where}: uses encryptedSecrets.{name}, but no secretManagement private "
                    "key is configured (slipway.yaml spec.secretManagement)"
                )
            value = reveal.keys.decrypt(ciphertext, name)
            revealed.append(value)
            return value

        for target in spec.encryption.decryption_targets:
            _fill(copy, copy_app, target, "encryptedSecrets", secret, "decryptionTargets")
    if spec.attachment is not None and spec.attachment.targets:
        sources = spec.attachment.sources

        def attachment(name: str, where: str) -> str:
            source = sources.get(name)
            if source is None:
                raise _unknown(where, "attachment", name, sources)
            content = _read(copy, copy_app, source, f"attachment.sources.{name}")
            return content if reveal is not None else _mask("attachment", name, content)

        for target in spec.attachment.targets:
            _fill(copy, copy_app, target, "attachment", attachment, "attachment.targets")
    return copy, copy_app, tuple(revealed)


def _fill(
    root: Path,
    app_dir: Path,
    target: str,
    kind: str,
    value_of: Callable[[str, str], str],
    field: str,
) -> None:
    text = _read(root, app_dir, target, f"{field} {target!r}")
    shown = _relative(app_dir / target, root)

    def substitute(match: re.Match[str]) -> str:
        if match[1] != kind:
            return match[0]  # the other kind's placeholder: filled by its own targets
        line = text.count("\n", 0, match.start()) + 1
        return value_of(match[2], f"{shown}:{line}")

    path = app_dir / target
    path.unlink()  # a symlink inside the repository: write a file, not through the link
    path.write_text(_PLACEHOLDER.sub(substitute, text), encoding="utf-8")


def _read(root: Path, app_dir: Path, name: str, what: str) -> str:
    path = inside_repository(app_dir / name, root, what)
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what}: cannot read {_relative(app_dir / name, root)}: {exc}") from None


def _mask(kind: str, name: str, content: str) -> str:
    digest = hashlib.sha256(content.encode()).hexdigest()[:_DIGEST_CHARS]
    return f"masked:{kind}.{name}:sha256:{digest}"


def _unknown(where: str, kind: str, name: str, known: Mapping[str, str]) -> ConfigError:
    names = ", ".join(sorted(known)) or "none"
    return ConfigError(f"{where}: {{{{ .{kind}.{name} }}}} names no {kind} entry (known: {names})")


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return path.name
