"""SSRF to addresses that must never receive a packet from this machine, judged without one.

The trap-server cases of `deploy.py` send real HTTP checks to a refused loopback
address. Metadata and private addresses cannot be tried that way here (nothing
may be sent to them), so these cases ask the analysis service's own connector,
built from the sandbox's `slipway.yaml`, to resolve each target exactly as it
does before connecting, and stop there: refused means `EgressRefused` before any
connection could be opened.
"""

from __future__ import annotations

import aiohttp

from benchmarks.security.harness import Attack, Outcome, Target
from shared.config import load_control_config
from shared.egress import EgressPolicy, EgressRefused, guarded_session

__all__ = ["attacks"]

FAMILY = "egress"

# host as a URL would name it -> what it is
_TARGETS = {
    "169.254.169.254": "AWS/GCP/Azure metadata",
    "fd00:ec2::254": "AWS metadata over IPv6",
    "metadata.google.internal": "GCP metadata by name",
    "100.100.100.200": "Alibaba metadata",
    "169.254.170.2": "ECS task credentials",
    "2852039166": "metadata, decimal",
    "0xa9fea9fe": "metadata, hexadecimal",
    "::ffff:169.254.169.254": "metadata, IPv4-mapped",
    "10.0.0.1": "private 10/8",
    "172.16.0.1": "private 172.16/12",
    "192.168.1.1": "private 192.168/16",
    "fc00::1": "unique local IPv6",
    "fe80::1": "link-local IPv6",
    "0.0.0.0": "unspecified",
    "127.0.0.2": "loopback outside the allowed 127.0.0.1",
}


def _attack(host: str) -> Attack:
    async def run(target: Target) -> Outcome:
        spec = load_control_config(target.data_dir / "slipway.yaml").spec
        policy = EgressPolicy.from_entries(spec.analysis_egress.allow)
        async with guarded_session(policy) as session:
            try:
                resolved = await session.connector._resolve_host(host, 80)  # type: ignore[union-attr]
            except EgressRefused as exc:
                return Outcome(True, str(exc)[:120])
            except aiohttp.InvalidURL as exc:  # yarl refuses non-canonical IPv4 spellings first
                return Outcome(True, f"refused by the HTTP client before the rule: {exc}"[:120])
            except OSError as exc:
                return Outcome(False, f"not refused by the rule ({type(exc).__name__}: {exc})")
        addresses = [r["host"] for r in resolved]
        return Outcome(False, f"would connect to {addresses}")

    return Attack(FAMILY, f"egress-{_TARGETS[host]}", run)


def attacks() -> list[Attack]:
    """The egress attacks: metadata and private addresses the analysis egress guard must refuse."""
    return [_attack(host) for host in _TARGETS]
