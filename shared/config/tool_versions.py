"""Which installed helm, kubectl or kustomize renders an application: `input.*Version`.

PipeCD's piped downloads the exact version a config pins. Slipway downloads
nothing: it selects among the versions installed on PATH, named the way
several versions sit side by side (`kubectl.1.32`, `helm.3.17`, or with the
full version, `kubectl.1.32.2`; in a PATH directory or beside the binary the
plain tool's PATH entry links to), or the plain `kubectl`/`helm`/`kustomize`
when the version it reports is the one pinned. A pin is met by the same
major.minor (patch releases are compatible, and PipeCD's examples pin patch
versions long gone); a pinned version none of them has is a `ConfigError`
naming the field and what is installed. Nothing pinned: the plain tool.

kustomize pinned but not installed at all: a kubectl whose built-in kustomize
has that version renders it (`kubectl kustomize`), as Slipway does without a
pin.

What a tool reports is asked once per binary (`--version`-style, no shell).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Final

from shared.errors import ConfigError

__all__ = ["installed_versions", "kubectl_with_kustomize", "reported_version", "select_tool"]

_PROBE_TIMEOUT_S: Final = 20
_VERSION: Final = re.compile(r"v?(\d+)\.(\d+)(?:\.(\d+))?")
_NAME: Final = re.compile(r"^(?P<tool>[a-z]+)[.-](?P<version>\d+\.\d+(?:\.\d+)?)$")


def _major_minor(version: str) -> tuple[int, int] | None:
    match = _VERSION.search(version)
    return (int(match[1]), int(match[2])) if match else None


def _path_entries(path: str) -> list[Path]:
    return [Path(e) for e in path.split(os.pathsep) if os.path.isabs(e)]


def installed_versions(tool: str, path: str) -> dict[str, str]:
    """`{binary name: path}` of the side-by-side versions of `tool` on `path` (`kubectl.1.32`)."""
    found: dict[str, str] = {}
    entries = _path_entries(path)
    plain = shutil.which(tool, path=os.pathsep.join(map(str, entries)))
    if plain is not None:
        # Installed beside the plain tool a PATH entry links to (/usr/bin/kubectl ->
        # …/google-cloud-sdk/bin/kubectl, with kubectl.1.32 next to it).
        entries.append(Path(plain).resolve().parent)
    for entry in entries:
        try:
            names = sorted(os.listdir(entry))
        except OSError:
            continue
        for name in names:
            match = _NAME.match(name)
            full = entry / name
            if match and match["tool"] == tool and name not in found and os.access(full, os.X_OK):
                found[name] = str(full)
    return found


@lru_cache(maxsize=64)
def _reported(binary: str) -> dict[str, str]:
    """What a binary says its version is: {"tool": …, "kustomize": …} (kubectl has both)."""
    name = Path(binary).name.split(".")[0].split("-")[0]
    command = {
        "helm": [binary, "version", "--template", "{{.Version}}"],
        "kubectl": [binary, "version", "--client", "-o", "json"],
        "kustomize": [binary, "version"],
    }.get(name)
    if command is None:
        return {}
    try:
        done = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=_PROBE_TIMEOUT_S,
            check=False,
            env={"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"},
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    if name != "kubectl":
        return {"tool": done.stdout.strip()}
    try:
        data = json.loads(done.stdout)
    except ValueError:
        return {}
    return {
        "tool": str(data.get("clientVersion", {}).get("gitVersion", "")),
        "kustomize": str(data.get("kustomizeVersion", "")),
    }


def select_tool(tool: str, version: str, *, path: str, field: str, config: str) -> str | None:
    """The binary of `tool` meeting `version` ("" = any); None when `tool` is not installed.

    Raises ConfigError when some `tool` is installed but none of the pinned version.
    """
    plain = shutil.which(tool, path=os.pathsep.join(map(str, _path_entries(path))))
    side_by_side = installed_versions(tool, path)
    if not version:
        return plain or next(iter(side_by_side.values()), None)
    wanted = _major_minor(version)
    if wanted is None:
        raise ConfigError(f"{config}: {field}: {version!r} is not a version like 1.32 or 1.32.2")
    for name, binary in side_by_side.items():
        if _major_minor(name) == wanted:
            return binary
    if plain and _major_minor(_reported(plain).get("tool", "")) == wanted:
        return plain
    if not plain and not side_by_side:
        return None
    have = sorted(side_by_side)
    if plain:
        have.append(f"{tool} ({_reported(plain).get('tool') or 'version unknown'})")
    raise ConfigError(
        f"{config}: {field}: {tool} {version} is not installed (a pin is met by the same "
        f"major.minor); installed: {', '.join(have)}. Install it as {tool}.{wanted[0]}.{wanted[1]} "
        f"on PATH, or change {field}"
    )


def reported_version(binary: str, which: str = "tool") -> tuple[int, int] | None:
    """The major.minor a binary reports (`which="kustomize"`: kubectl's built-in kustomize)."""
    return _major_minor(_reported(binary).get(which, ""))


def kubectl_with_kustomize(version: str, *, path: str) -> str | None:
    """A kubectl whose built-in kustomize has `version`'s major.minor, or None."""
    wanted = _major_minor(version)
    plain = shutil.which("kubectl", path=os.pathsep.join(map(str, _path_entries(path))))
    candidates = [*installed_versions("kubectl", path).values(), *([plain] if plain else [])]
    for binary in candidates:
        if _major_minor(_reported(binary).get("kustomize", "")) == wanted:
            return binary
    return None
