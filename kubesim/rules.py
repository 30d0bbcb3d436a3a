"""Image rules: how a simulated pod behaves, chosen by its container image.

The first rule whose `image` glob (`fnmatch`, e.g. `ghcr.io/acme/web:v2*`)
matches a container's image decides that container's readiness delay,
whether it never becomes ready or crash-loops, and the traffic its pod
reports: requests per second, error rate, median latency. Images no rule
matches get the defaults. Rules come from the constructor, the CLI
(`--rules FILE`, `--image-rule`), or `PUT /kubesim/images` at run time;
changed error rates and latencies apply to running pods at once, readiness
settings to pods created afterwards.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml


@dataclass(frozen=True)
class ImageRule:
    """What pods running a matching image do."""

    image: str = "*"
    ready_delay_s: float | None = None  # None: the simulator's default delay
    never_ready: bool = False  # runs, but its readiness probe never passes
    crash_loop: bool = False  # its container keeps restarting (CrashLoopBackOff)
    error_rate: float = 0.0  # fraction of requests answered 500 / gRPC Internal
    latency_ms: float = 20.0  # median request latency; log-normal, p99 ≈ 2× median
    requests_per_second: float = 20.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"image rule {self.image!r}: error_rate must be within [0, 1]")
        if self.latency_ms < 0 or self.requests_per_second < 0:
            raise ValueError(f"image rule {self.image!r}: latency and rate must not be negative")
        if self.ready_delay_s is not None and self.ready_delay_s < 0:
            raise ValueError(f"image rule {self.image!r}: ready_delay_s must not be negative")

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> ImageRule:
        """A rule from its YAML form; unknown keys and a missing `image` are errors."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"image rule: unknown keys {sorted(unknown)}; known: {sorted(known)}")
        if "image" not in data:
            raise ValueError("image rule: `image` (a glob) is required")
        return cls(**dict(data))

    @classmethod
    def parse(cls, text: str) -> ImageRule:
        """`PATTERN key=value,…` as `--image-rule` takes it: `'*:bad error_rate=0.5'`."""
        pattern, _, settings = text.strip().partition(" ")
        data: dict[str, Any] = {"image": pattern}
        for item in filter(None, (s.strip() for s in settings.split(","))):
            key, sep, value = item.partition("=")
            if not sep:
                raise ValueError(f"image rule {text!r}: expected key=value, got {item!r}")
            data[key.strip()] = _scalar(value.strip())
        return cls.from_mapping(data)

    def to_json(self) -> dict[str, Any]:
        """The rule's JSON form."""
        return dataclasses.asdict(self)


def _scalar(value: str) -> Any:
    if value.lower() in ("true", "false"):
        return value.lower() == "true"
    try:
        return float(value)
    except ValueError:
        return value


class ImageRules:
    """The rule table; first match wins."""

    def __init__(self, rules: Iterable[ImageRule] = (), *, ready_delay_s: float = 1.0) -> None:
        self.rules: tuple[ImageRule, ...] = tuple(rules)
        self.ready_delay_s = ready_delay_s

    def for_image(self, image: str) -> ImageRule:
        """The first rule whose glob matches `image`, or a default rule for healthy images."""
        for rule in self.rules:
            if fnmatch.fnmatchcase(image, rule.image):
                return rule
        return ImageRule(image="*")

    def ready_delay(self, rule: ImageRule) -> float:
        """Seconds until a pod of this rule is ready: its own delay or the cluster's default."""
        return self.ready_delay_s if rule.ready_delay_s is None else rule.ready_delay_s

    def replace(self, rules: Iterable[ImageRule]) -> None:
        """Replace every rule at once (the admin route's PUT)."""
        self.rules = tuple(rules)

    def to_json(self) -> dict[str, Any]:
        """The rules' JSON form, as the admin route's GET returns it."""
        return {"ready_delay_s": self.ready_delay_s, "images": [r.to_json() for r in self.rules]}


def parse_rules(data: Any) -> tuple[float | None, list[ImageRule]]:
    """A rules document: `{ready_delay_s: 1, images: [{image: …, …}]}`, or a bare list of rules."""
    if isinstance(data, list):
        data = {"images": data}
    if not isinstance(data, dict):
        raise ValueError("rules: expected a mapping with `images` (or a list of rules)")
    unknown = set(data) - {"ready_delay_s", "images"}
    if unknown:
        raise ValueError(f"rules: unknown keys {sorted(unknown)}")
    images = data.get("images") or []
    if not isinstance(images, list) or not all(isinstance(i, dict) for i in images):
        raise ValueError("rules: `images` must be a list of mappings")
    delay = data.get("ready_delay_s")
    return (float(delay) if delay is not None else None), [
        ImageRule.from_mapping(i) for i in images
    ]


def load_rules_file(path: Path) -> tuple[float | None, list[ImageRule]]:
    """Rules from a YAML file; any failure is a ValueError naming the file."""
    try:
        return parse_rules(yaml.safe_load(path.read_text()))
    except (OSError, yaml.YAMLError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: {exc}") from exc
