"""Who may do what on NATS: one user per service, allowed only the subjects its role needs.

DESIGN §14: a pod on the cluster network may neither publish nor read
Slipway's subjects. So nats-server runs with one user per service, and each
user's permissions are derived here, from the subject layout (`Subjects`) and
from what each service does on the wire:

- the relay alone publishes event subjects (and keeps the events stream);
- a consumer may pull from, ack on and inspect only its own durable
  consumers, and may create the events stream if it is missing (the relay
  reconciles its settings when it starts, so start order stays free);
- the executor and analysis publish live stage-log lines; the API (its SSE
  log follower) subscribes to them;
- the projector and drift detector touch no subject at all;
- a subscriber identity (`subscriber`, or one of `subscriber_role`'s for
  each team) only reads: it may create, pull from, ack on, inspect and delete
  its own durable consumers of the events stream (`durables`) and read the
  stream's info, nothing else — it neither publishes an event nor creates
  the stream nor touches a service's consumer (docs/events.md);
- every user receives replies (JetStream API answers, PubAcks, fetched
  messages) only on its own inbox prefix, `_INBOX.<service>`, so one service
  cannot listen in on what another fetches.

Pure: the sandbox writes the `authorization` block with generated passwords,
and `deploy/kubernetes/nats/auth.conf` is this module's rendering with
environment-variable references instead (`python -m shared.natsauth`
regenerates it; a test fails when the two drift apart).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from shared.subjects import Subjects

__all__ = [
    "ROLES",
    "SUBSCRIBER",
    "SUBSCRIBER_DURABLES",
    "NatsUser",
    "Permissions",
    "Role",
    "authorization_config",
    "deploy_authorization",
    "inbox_prefix",
    "password_env",
    "permissions_of",
    "role",
    "subscriber_role",
]


@dataclass(frozen=True)
class Role:
    """What one service does on NATS."""

    name: str
    publishes_events: bool = False
    durables: tuple[str, ...] = ()
    """The durable consumers of the events stream it pulls from (their names)."""
    publishes_stage_logs: bool = False
    follows_stage_logs: bool = False
    reads_only: bool = False
    """A subscriber outside Slipway: its durables, but never creates the stream."""


SUBSCRIBER_DURABLES: Final = tuple(f"subscriber-{n}" for n in range(1, 9))
"""The durable consumers the default `subscriber` identity may own (NATS permissions name
subjects by whole tokens, so a subscriber's durables are listed, not a prefix)."""


def subscriber_role(name: str, durables: Sequence[str]) -> Role:
    """A read-only subscriber identity `name` that owns the durable consumers `durables`."""
    if not durables:
        raise ValueError(f"subscriber {name!r} needs at least one durable consumer name")
    return Role(name, durables=tuple(durables), reads_only=True)


SUBSCRIBER: Final = subscriber_role("subscriber", SUBSCRIBER_DURABLES)
"""The default subscriber identity: the sandbox has its user (`urls_of(...)["subscriber"]`)."""

ROLES: Final[tuple[Role, ...]] = (
    Role("relay", publishes_events=True),
    Role("projector"),
    Role("api", follows_stage_logs=True),
    Role("gitwatcher", durables=("gitwatcher-sync", "gitwatcher-events", "gitwatcher-chains")),
    Role("planner", durables=("planner",)),
    Role("executor", durables=("executor",), publishes_stage_logs=True),
    Role("drift"),
    Role("analysis", durables=("analysis",), publishes_stage_logs=True),
    Role("notifier", durables=("notifier",)),
)
"""Every service's role; tests check each durable name against the service's own constant.
Subscriber identities are not services: `SUBSCRIBER` and `subscriber_role`'s."""

_BY_NAME: Final = {r.name: r for r in ROLES}


@dataclass(frozen=True)
class Permissions:
    """Subjects a user may publish to and subscribe to; empty means none at all."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]


@dataclass(frozen=True)
class NatsUser:
    """One entry of the server's `authorization.users`.

    `password` is nats-server configuration syntax: a quoted literal
    (`json.dumps(secret)`) or an environment reference (`$VARIABLE`).
    `permissions` None means every subject (the tests' and operators' admin).
    """

    name: str
    password: str
    permissions: Permissions | None


def role(name: str) -> Role:
    """The role of service `name`; `KeyError` naming the known ones if there is none."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no NATS role for service {name!r} (known: {sorted(_BY_NAME)})") from None


def inbox_prefix(service: str) -> str:
    """Where service `service` receives replies: the only inbox its user may subscribe to."""
    return f"_INBOX.{service}"


def password_env(service: str) -> str:
    """The variable that holds `service`'s NATS password in nats-server's environment."""
    return f"SLIPWAY_NATS_PASSWORD_{service.upper()}"


def permissions_of(role: Role, subjects: Subjects) -> Permissions:
    """The least `role` needs on the subject layout `subjects` (found against a real server)."""
    api = "$JS.API"
    stream = subjects.events_stream
    publish: list[str] = []
    if role.publishes_events:
        publish += [subjects.all_events, f"{api}.STREAM.UPDATE.{stream}"]
    if role.publishes_events or role.durables:
        publish.append(f"{api}.STREAM.INFO.{stream}")
        if not role.reads_only:
            publish.append(f"{api}.STREAM.CREATE.{stream}")
    for durable in role.durables:
        if role.reads_only:
            # Its own consumers are its own to remove (a subscriber that moves on).
            publish.append(f"{api}.CONSUMER.DELETE.{stream}.{durable}")
        publish += [
            # nats-py creates with the filter in the subject when there is one filter.
            f"{api}.CONSUMER.CREATE.{stream}.{durable}",
            f"{api}.CONSUMER.CREATE.{stream}.{durable}.>",
            f"{api}.CONSUMER.DURABLE.CREATE.{stream}.{durable}",
            f"{api}.CONSUMER.INFO.{stream}.{durable}",
            f"{api}.CONSUMER.MSG.NEXT.{stream}.{durable}",
            f"$JS.ACK.{stream}.{durable}.>",
        ]
    if role.publishes_stage_logs:
        publish.append(subjects.all_stage_logs)
    subscribe: list[str] = []
    if publish:
        subscribe.append(f"{inbox_prefix(role.name)}.>")
    if role.follows_stage_logs:
        subscribe.append(subjects.all_stage_logs)
    return Permissions(tuple(publish), tuple(subscribe))


def authorization_config(users: Iterable[NatsUser]) -> str:
    """nats-server's `authorization` block for `users`."""
    entries = [_user_entry(user) for user in users]
    return "authorization {\n  users = [\n" + "".join(entries) + "  ]\n}\n"


def deploy_authorization(subjects: Subjects | None = None) -> str:
    """The block deploy/ ships: every service's role, passwords from the server's environment."""
    layout = subjects or Subjects()
    users = [NatsUser(r.name, f"${password_env(r.name)}", permissions_of(r, layout)) for r in ROLES]
    header = (
        "# Generated by `python -m shared.natsauth` from shared/natsauth.py: do not edit.\n"
        "# One NATS user per Slipway service, with only the subjects its role needs;\n"
        "# each password comes from nats-server's environment (the slipway-nats Secret).\n"
    )
    return header + authorization_config(users)


def _user_entry(user: NatsUser) -> str:
    lines = [f"    {{\n      user: {json.dumps(user.name)}\n      password: {user.password}\n"]
    if user.permissions is not None:
        lines.append("      permissions: {\n")
        lines.append(f"        publish: {_rule(user.permissions.publish)}\n")
        lines.append(f"        subscribe: {_rule(user.permissions.subscribe)}\n")
        lines.append("      }\n")
    lines.append("    }\n")
    return "".join(lines)


def _rule(subjects: Sequence[str]) -> str:
    # An empty allow list would mean "no restriction" to nats-server: deny all instead.
    if not subjects:
        return '{ deny: [">"] }'
    return "{ allow: [" + ", ".join(json.dumps(s) for s in subjects) + "] }"


if __name__ == "__main__":
    sys.stdout.write(deploy_authorization())
