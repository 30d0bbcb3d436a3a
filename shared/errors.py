"""The one exception tree of Slipway: every error class of `shared`, `services`, the CLI
(`slipway_cli`) and the sandbox (`slipway_sandbox`) derives from `SlipwayError`
(tests/unit/test_errors.py walks every module to keep it so). kubesim, a product of its
own, has its own small tree (`kubesim.errors`). The branches are defined here; the
leaves live beside the code that raises them, named here with their module.

```
SlipwayError
├── Rejected               a business rule said no: reply / emit, never retried
│   ├── PlanError                        shared.planning.rules: no plan for this change
│   ├── AmbiguousStage                   shared.deployments: a request names no one stage
│   ├── KeyNameTaken                     shared.apikeys: a live key holds the name
│   ├── AdoptionRefused                  shared.platform.adoption: nothing to take over as asked
│   ├── InvalidEvent                     shared.gitevents: a bad registration; names the field
│   ├── ReplacementError                 services.gitwatcher.replacements: a value not writable
│   ├── PullRequestError                 services.gitwatcher.pullrequests: a pull request refused
│   ├── StreamTaken                      shared.decider: another event opened the stream
│   ├── InvalidCommand                   services.api.decider: malformed; names the field (400)
│   ├── TargetNotFound                   services.api.decider: no such application… (404)
│   └── StateConflict                    services.api.decider: the state forbids it (409)
├── ConcurrencyConflict    the stream moved on: reload, decide again, retry
├── IdempotencyViolation   an event id was reused for a different event: a bug, never retried
├── Unavailable            transient infrastructure (database, NATS, a cluster): retry with back-off
│   ├── GitError                         shared.git: a git command failed (`kind` says why)
│   ├── ReplayInProgress                 shared.projections.errors: a view is being rebuilt
│   └── ApiUnreachable                   slipway_client.transport: nothing answers at the API URL
├── ConfigError            bad configuration or settings: fail fast, naming file, line and field
│   ├── ConfigFileError                  shared.config.errors: one file's problem, located
│   │   └── ConfigFileErrors             …several at once
│   ├── SettingsError                    shared.settings: the environment's settings
│   ├── SecretError                      shared.secrets: (also Rejected) a secret no key opens
│   ├── TemplateError                    shared.analysis.templating: a query template
│   ├── UnknownJudgeError                shared.analysis.judges: (also KeyError)
│   ├── ProjectionOutdated               shared.projections.errors: a view older than its code
│   └── NotPermitted                     slipway_subscriber.nats: NATS refused the identity
├── MessageError           a message that can never be handled (garbage, unknown type): dead letter
│   ├── UnknownEventType
│   └── EventTooLarge      an encoded event over the append cap: truncate at the source
├── PlatformError          a cluster refused or failed an operation; names `Kind namespace/name`
│   ├── Forbidden          (also Rejected) RBAC or admission said no: fix permissions, no retry
│   ├── Invalid            (also Rejected) the object is malformed: fix the manifest, no retry
│   ├── NotFound           the object, its namespace or its kind does not exist
│   ├── ResourceConflict   the object changed underneath or another manager owns a field: re-read
│   ├── RolloutFailed      a workload did not become healthy within its progress deadline
│   └── PlatformUnavailable  (also Unavailable) cluster unreachable, timed out, 5xx: retry
└── (leaves of one component, each handled where it is raised)
    ├── LeaseLost                        shared.leases: another holder fenced this one out
    ├── ClaimLost                        services.notifier.outbox: a delivery claim taken over
    ├── BodyTooLarge                     shared.http: a request body over its limit (413)
    ├── EgressRefused                    shared.egress: (also OSError) a connection not allowed
    ├── OptionsError                     shared.executor.options: (also ValueError) bad options
    ├── ProviderError                    shared.analysis.providers: a metrics provider failed
    ├── SamplesEqualError                shared.analysis.stats: (also ValueError) no test possible
    ├── HandlerFailed                    shared.consumer.handling: a batch's handler raised
    ├── HandleAlone                      shared.consumer.handling: needs its own transaction
    ├── SelectionError                   shared.events.feed: (also ValueError) a bad subscription
    ├── ErrorReply                       services.api.errors: an error answer with its status
    ├── TooManyStreams                   services.api.limits: a key's stream slots are used up
    ├── OidcRefused                      services.api.console.oidc: a console OIDC sign-in refused
    ├── WebhookPayloadError              services.gitwatcher.webhooks: (also ValueError)
    ├── StageFailed                      services.executor.stage_context: ends a stage as FAILURE
    ├── ScriptUserError                  services.executor.script: (also RuntimeError)
    ├── VariantError                     services.executor.variants: (also ValueError)
    ├── _Transient                       services.planner.service: retry planning later
    ├── ApiError                         slipway_client.transport: the API answered an error
    ├── SandboxMissing                   slipway_cli.sandboxed: `up`/`demo` without the sandbox
    ├── PipectlFailure                   slipway_cli.pipectl_commands: a pipectl command failed
    ├── SandboxError                     slipway_sandbox.sandbox: (also RuntimeError)
    └── DemoRepoError                    slipway_sandbox.demo_repo: (also RuntimeError)
```

A leaf keeps the standard base its callers already catch (`ValueError`, `OSError`, …)
as a second base. Adapters translate asyncpg / nats / kubernetes / httpx exceptions into
this tree at the boundary (`raise … from exc`), so the core never sees them.
"""

from __future__ import annotations


class SlipwayError(Exception):
    """Base of every error Slipway raises on purpose."""


class Rejected(SlipwayError):
    """A business rule refused a command."""


class ConcurrencyConflict(SlipwayError):
    """An append expected a stream version that is no longer current."""

    def __init__(self, stream_id: str, expected_version: int, actual_version: int | None = None):
        self.stream_id = stream_id
        self.expected_version = expected_version
        self.actual_version = actual_version
        actual = "unknown" if actual_version is None else str(actual_version)
        super().__init__(
            f"stream {stream_id!r}: expected version {expected_version}, but it is at {actual}"
        )


class IdempotencyViolation(SlipwayError):
    """An event id already stored with a different stream, type or payload."""


class Unavailable(SlipwayError):
    """A dependency is down or timed out; the same call may succeed later."""


class ConfigError(SlipwayError):
    """Configuration or settings are wrong; the message names where and what."""


class MessageError(SlipwayError):
    """A message that cannot be decoded or handled, now or ever."""


class UnknownEventType(MessageError):
    """A stored or received event whose type no registry knows."""


class EventTooLarge(MessageError):
    """An encoded event over the store's size cap; nothing of its batch was written.

    Retrying cannot help: the source must shorten what it records (see `shared.redaction.clip`).
    """

    def __init__(self, event_type: str, stream_id: str, size: int, limit: int) -> None:
        self.event_type = event_type
        self.stream_id = stream_id
        self.size = size
        self.limit = limit
        super().__init__(
            f"event {event_type!r} for stream {stream_id!r} is {size} bytes encoded, over the "
            f"cap of {limit} bytes (SLIPWAY_EVENT_MAX_BYTES); nothing was appended"
        )


class PlatformError(SlipwayError):
    """A platform (a Kubernetes cluster) refused or failed an operation on a named resource.

    `resource` is `Kind namespace/name` (or `Kind name` when cluster-scoped), `reason`
    the server's machine-readable reason (`Forbidden`, `Invalid`, …) and `code` its
    HTTP status, 0 when nothing answered.
    """

    def __init__(self, message: str, *, resource: str = "", reason: str = "", code: int = 0):
        self.resource = resource
        self.reason = reason
        self.code = code
        super().__init__(message)


class Forbidden(PlatformError, Rejected):
    """The cluster's RBAC or an admission webhook refused the operation."""


class Invalid(PlatformError, Rejected):
    """The cluster rejected the object as malformed (422 Invalid, 400 BadRequest)."""


class NotFound(PlatformError):
    """The object, its namespace, or its kind (a missing CRD) does not exist."""


class ResourceConflict(PlatformError):
    """The object changed underneath us or another field manager owns a field we set."""


class RolloutFailed(PlatformError):
    """A workload did not become healthy: its progress deadline passed, or our timeout did."""


class PlatformUnavailable(PlatformError, Unavailable):
    """The cluster could not be reached, timed out, or failed on its side (5xx, 429)."""
