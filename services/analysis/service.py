"""The analysis service's async shell: take requested analyses, hold their leases, measure.

Three parts, as the executor's:

- the consumer's `handle`: an `AnalysisRequested` makes the analysis
  claimable (a row of `analysis_leases`, in the consumer's transaction, so it
  is recorded exactly once);
- `schedule`, a component (`shared.scheduling.LeaseScheduler`): claims open
  analyses — new ones, and those whose holder's lease expired (a replica that
  died) — up to `max_concurrent`, and runs an `AnalysisRunner` for each;
- the I/O the runners need: the checks resolved from the application's
  config and `.pipe/` templates at the deployment's commit (`load_setup`), and
  the measurements (`measure`: Prometheus `query_range`, HTTP requests).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import aiohttp
import asyncpg

from services.analysis.decider import Due
from services.analysis.leases import Lease, Leases, Previous
from services.analysis.runner import AnalysisRunner
from shared.analysis.checks import CheckPlan, resolve_checks
from shared.analysis.providers import (
    HttpChecker,
    PrometheusProvider,
    ProviderError,
    Series,
    excerpt,
    step_for,
)
from shared.analysis.ratio_query import COUNT_ROLES, count_queries
from shared.analysis.record import since_previous_tick
from shared.analysis.templating import QueryArgs, TemplateError, render
from shared.config import load_analysis_templates, load_application_config
from shared.config.application import AnalysisOptions
from shared.config.control import AnalysisProvider, configured
from shared.config.repo_files import inside_repository
from shared.deploysource import (
    commit_unavailable_as_config_error,
    config_path_of,
    ensure_commit,
)
from shared.egress import EgressPolicy, guarded_session
from shared.errors import ConfigError
from shared.eventlog import EventStore
from shared.events import vocabulary
from shared.events.base import Event, RecordedEvent
from shared.events.catalog import (
    AnalysisMeasured,
    AnalysisRequested,
    ApplicationRegistered,
    DeploymentPlanned,
)
from shared.events.streams import application_stream, deployment_stream
from shared.executor.options import OptionsError, configured_options
from shared.git import GitCache
from shared.logs import get_logger
from shared.redaction import REASON_CHARS, REDACTOR, clip, is_secret_name, redact, secrets_in_url
from shared.scheduling import LeaseScheduler
from shared.stagelog import StageLogs

__all__ = ["CONSUMER_NAME", "HANDLES", "AnalysisService", "AnalysisSetup"]

log = get_logger("slipway.analysis")

CONSUMER_NAME: Final = "analysis"
HANDLES: Final[tuple[type[Event], ...]] = (AnalysisRequested,)
"""What the analysis consumer handles (its NATS filter is derived from it)."""


@dataclass
class AnalysisSetup:
    """An analysis' checks as resolved at the deployment's commit, and its query variables."""

    plans: dict[str, CheckPlan]
    skipped: list[str]
    judge: str
    duration_s: float
    app_name: str
    namespace: str


class AnalysisService:
    """Runs requested analyses: the consumer's handler, the scheduler, the measuring."""

    def __init__(
        self,
        *,
        store: EventStore,
        stage_logs: StageLogs,
        git: GitCache,
        repositories: Mapping[str, str],
        providers: Mapping[str, AnalysisProvider],
        holder: str,
        egress: EgressPolicy | None = None,
        lease_ttl_s: float = 15.0,
        poll_s: float = 1.0,
        claim_interval_s: float = 2.0,
        max_concurrent: int = 64,
    ) -> None:
        self.store = store
        self.stage_logs = stage_logs
        self.git = git
        self.repositories = dict(repositories)
        self.provider_configs = dict(providers)
        self.egress = egress or EgressPolicy()
        """Where checks may connect; the default allows public addresses only."""
        self.holder = holder
        self.leases = Leases(store, holder, ttl_s=lease_ttl_s)
        self.poll_s = poll_s
        self.runners: dict[str, AnalysisRunner] = {}
        self.scheduler = LeaseScheduler(
            self.leases,
            start=self._start_runner,
            forget=self._forget_runner,
            claim_interval_s=claim_interval_s,
            max_concurrent=max_concurrent,
            log=log,
        )
        self._session: aiohttp.ClientSession | None = None
        self._prometheus: dict[str, PrometheusProvider] = {}

    # The consumer -------------------------------------------------------------------------

    async def handle(self, event: RecordedEvent, conn: asyncpg.Connection) -> None:
        """Handle one event inside the consumer's transaction."""
        request = event.event
        if isinstance(request, AnalysisRequested):
            await Leases.register(
                conn,
                request.analysis_id,
                request.deployment_id,
                request.application_id,
                request.stage_id,
            )
            log.info("analysis_registered", analysis_id=request.analysis_id)

    async def after_commit(self, event: RecordedEvent) -> None:
        """Wake the scheduler when a new analysis was requested, instead of at its next poll."""
        if isinstance(event.event, AnalysisRequested):
            self.scheduler.wake()

    # The scheduler ------------------------------------------------------------------------

    @property
    def ran(self) -> list[str]:
        """Every analysis this replica took up, in order (for tests and metrics)."""
        return self.scheduler.ran

    async def schedule(self, stop: asyncio.Event, *, burst: bool = False) -> None:
        """Component: claim open analyses and run them until `stop` (in burst mode, until
        none is left)."""
        try:
            await self.scheduler.run(stop, burst=burst)
        finally:
            await self.close()

    def _start_runner(self, lease: Lease, stop: asyncio.Event) -> Coroutine[Any, Any, None]:
        runner = AnalysisRunner(
            lease=lease,
            store=self.store,
            leases=self.leases,
            stage_logs=self.stage_logs,
            load_setup=self.load_setup,
            measurer=self,
            poll_s=self.poll_s,
        )
        self.runners[lease.analysis_id] = runner
        return runner.run(stop)

    def _forget_runner(self, analysis_id: str) -> None:
        self.runners.pop(analysis_id, None)

    async def close(self) -> None:
        """Close the HTTP session and forget the Prometheus clients."""
        session, self._session = self._session, None
        self._prometheus.clear()
        if session is not None:
            await session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            # Every check and Prometheus query connects only where the egress rule allows.
            self._session = guarded_session(self.egress)
        return self._session

    # Setup: the checks at the deployment's commit ------------------------------------------

    async def load_setup(self, request: AnalysisRequested) -> AnalysisSetup:
        """What an analysis needs: the deployment's config at its commit and its providers."""
        planned, registered = await self._deployment(request)
        repository_id = (planned.repository_id if planned else "") or (
            registered.repository_id if registered else ""
        )
        remote = configured(self.repositories, repository_id, "repository")
        path = (planned.path if planned else "") or (registered.path if registered else "")
        filename = (planned.config_filename if planned else "") or (
            registered.config_filename if registered else "app.pipecd.yaml"
        )
        repo = self.git.repository(remote)
        with commit_unavailable_as_config_error(request.commit_hash):
            commit = await ensure_commit(repo, request.commit_hash)
            async with repo.read_only_checkout(commit) as tree:
                config_file = tree / config_path_of(path, filename)
                inside_repository(config_file, tree, f"the application config {path}/{filename}")
                config = await asyncio.to_thread(load_application_config, config_file)
                templates = await asyncio.to_thread(load_analysis_templates, tree)
        # From the config at the commit, not the request: the plan records them redacted
        # (a token in an HTTP check's URL must not enter the log).
        try:
            options = configured_options(config.spec.stages, request.stage_id, "ANALYSIS")
        except OptionsError as exc:
            raise ConfigError(str(exc)) from exc
        assert isinstance(options, AnalysisOptions)
        plans, skipped = resolve_checks(options, templates)
        for plan in plans:
            check = plan.check
            if check.kind == "metrics":
                self._provider(check.provider, check.key)
            else:
                # An HTTP check's credentials (a token in its URL, its headers' values) are
                # masked wherever they come back: in a body, an error, a log line.
                headers = (value for name, value in plan.headers if is_secret_name(name))
                REDACTOR.add(*secrets_in_url(check.query), *headers)
        return AnalysisSetup(
            plans={p.check.key: p for p in plans},
            skipped=skipped,
            judge=options.judge,
            duration_s=options.duration.seconds,
            app_name=(registered.name if registered else "") or config.spec.name,
            namespace=config.spec.input.namespace or "default",
        )

    async def _deployment(
        self, request: AnalysisRequested
    ) -> tuple[DeploymentPlanned | None, ApplicationRegistered | None]:
        deployment = await self.store.read_stream(deployment_stream(request.deployment_id))
        planned = next(
            (e.event for e in deployment if isinstance(e.event, DeploymentPlanned)), None
        )
        application = await self.store.read_stream(application_stream(request.application_id))
        registered = [e.event for e in application if isinstance(e.event, ApplicationRegistered)]
        return planned, (registered[-1] if registered else None)

    def _provider(self, name: str, key: str) -> PrometheusProvider:
        provider = self._prometheus.get(name)
        if provider is not None:
            return provider
        config = configured(self.provider_configs, name, f"{key}: analysis provider")
        if config.type != "PROMETHEUS":
            raise ConfigError(f"{key}: analysis provider {name!r} is {config.type}, not PROMETHEUS")
        provider = PrometheusProvider.from_config(config, self._http())
        self._prometheus[name] = provider
        return provider

    # Measuring ----------------------------------------------------------------------------

    async def measure(
        self,
        setup: object,
        plan: CheckPlan,
        due: Due,
        *,
        started_at: datetime,
        previous: Previous | None,
        analysis_id: str,
    ) -> list[AnalysisMeasured]:
        """Measure a check's queries for one tick against its provider."""
        assert isinstance(setup, AnalysisSetup)
        check = plan.check
        end = started_at.timestamp() + due.at_s
        if check.kind == "http":
            return [await self._http_check(setup, plan, due, analysis_id, end)]
        sides: list[tuple[str, str, str, float]] = []  # role, variant to render, recorded, end
        match check.strategy:
            case "CANARY_BASELINE":
                sides = [("experiment", "canary", "canary", end)]
                sides.append(("control", "baseline", "baseline", end))
            case "CANARY_PRIMARY":
                sides = [("experiment", "canary", "canary", end)]
                sides.append(("control", "primary", "primary", end))
            case "PREVIOUS":
                sides = [("experiment", "primary", "primary", end)]
                if previous is not None:
                    then = previous.started_at.timestamp() + due.at_s
                    sides.append(("control", "primary", "previous", then))
            case _:
                sides = [("", "canary", "canary", end)]
        ratios, counts = await asyncio.gather(
            asyncio.gather(
                *(
                    self._query(setup, plan, due, analysis_id, role, variant, recorded, side_end)
                    for role, variant, recorded, side_end in sides
                )
            ),
            asyncio.gather(
                *(
                    self._counts(setup, plan, due, analysis_id, role, variant, recorded, side_end)
                    for role, variant, recorded, side_end in sides
                    if role in COUNT_ROLES
                )
            ),
        )
        return [*ratios, *(m for side in counts for m in side)]

    async def _counts(
        self,
        setup: AnalysisSetup,
        plan: CheckPlan,
        due: Due,
        analysis_id: str,
        role: str,
        variant: str,
        recorded_variant: str,
        end: float,
    ) -> list[AnalysisMeasured]:
        """For a ratio of two rates (`shared.analysis.ratio_query`), its two counters
        (events, total) at the previous tick's instant and at this one's."""
        check = plan.check
        try:
            rendered = render(check.query, self._args(setup, plan, variant), what=check.key)
        except TemplateError:
            return []  # the ratio query's own measurement records the error
        queries = count_queries(rendered)
        # The counters at the previous tick's instant and this one's: consecutive ticks
        # share an instant, so no event is counted twice or missed.
        window_s = since_previous_tick(check, due.tick, setup.duration_s)
        if queries is None or window_s <= 0:
            return []
        return list(
            await asyncio.gather(
                *(
                    self._query(
                        setup,
                        plan,
                        due,
                        analysis_id,
                        count_role,
                        variant,
                        recorded_variant,
                        end,
                        counters=(query, window_s),
                    )
                    for count_role, query in zip(COUNT_ROLES[role], queries, strict=True)
                )
            )
        )

    @staticmethod
    def _args(setup: AnalysisSetup, plan: CheckPlan, variant: str) -> QueryArgs:
        return QueryArgs(
            app_name=setup.app_name,
            namespace=setup.namespace,
            variant=variant,
            app_args=plan.app_args,
            variant_args=plan.variant_args(variant),
        )

    async def _query(
        self,
        setup: AnalysisSetup,
        plan: CheckPlan,
        due: Due,
        analysis_id: str,
        role: str,
        variant: str,
        recorded_variant: str,
        end: float,
        *,
        counters: tuple[str, float] | None = None,
    ) -> AnalysisMeasured:
        """The check's query over the tick's window at its step — or, with `counters`
        (a rendered counter query behind a ratio, and the seconds since the previous
        tick), that query at those two instants."""
        check = plan.check
        if counters is None:
            start, step = end - check.interval_s, step_for(check.interval_s)
        else:
            start, step = end - counters[1], counters[1]
        series = Series((), ())
        error = ""
        query = check.query if counters is None else counters[0]
        try:
            if counters is None:
                query = render(check.query, self._args(setup, plan, variant), what=check.key)
            provider = self._provider(check.provider, check.key)
            series = await provider.query_range(
                query, start=start, end=end, step=step, timeout_s=check.timeout_s
            )
        except (ProviderError, TemplateError, ConfigError) as exc:
            error = clip(redact(str(exc)), REASON_CHARS)
        return AnalysisMeasured(
            analysis_id=analysis_id,
            check=check.key,
            tick=due.tick,
            role=vocabulary.SampleRole(role),
            variant=recorded_variant,
            provider=check.provider,
            query=redact(query),
            window_start=start,
            window_end=end,
            step_s=step,
            timestamps=series.timestamps,
            values=series.values,
            error=error,
            measured_at=datetime.now(UTC),
        )

    async def _http_check(
        self, setup: AnalysisSetup, plan: CheckPlan, due: Due, analysis_id: str, end: float
    ) -> AnalysisMeasured:
        check = plan.check
        args = QueryArgs(
            app_name=setup.app_name,
            namespace=setup.namespace,
            variant="canary",
            app_args=plan.app_args,
            variant_args=plan.canary_args,
        )
        status, body, error = 0, "", ""
        url = check.query
        try:
            url = render(check.query, args, what=check.key)
            answer = await HttpChecker(self._http()).request(
                check.method, url, headers=plan.headers, timeout_s=check.timeout_s
            )
            status, body = answer.status, excerpt(answer.body, check.expected_response)
        except (ProviderError, TemplateError) as exc:
            error = clip(redact(str(exc)), REASON_CHARS)
        # What came from outside (the body, errors) and the URL (a token in it) are
        # recorded redacted: the log never forgets.
        return AnalysisMeasured(
            analysis_id=analysis_id,
            check=check.key,
            tick=due.tick,
            query=redact(f"{check.method} {url}"),
            window_end=end,
            values=(redact(body),) if status else (),
            status_code=status,
            error=error,
            measured_at=datetime.now(UTC),
        )
