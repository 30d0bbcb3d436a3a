"""SCRIPT_RUN, SCRIPT_RUN_ROLLBACK and CUSTOM_SYNC: a configured shell script as a stage.

`with.run` / `onRollback` (options from the config at the commit: the plan's
are redacted) run by `/bin/sh -c` in the app's directory of a private
checkout, in a clean environment; the process itself — its output capped
into the stage log, its group killed at the timeout (zero: the executor's
default) or on cancellation — is `script.py`'s.
"""

from __future__ import annotations

import json

from services.executor.decider import StageStatus
from services.executor.script import (
    ScriptContext,
    ScriptUserError,
    run_script,
    script_env,
)
from services.executor.stage_context import (
    StageContext,
    StageFailed,
    StageResult,
    seconds_text,
)
from shared.config.application import (
    ScriptRunOptions,
)
from shared.config.stage_options import CustomSyncOptions
from shared.deploysource import (
    DeploySource,
    ensure_commit,
)
from shared.events.catalog import DeploymentTriggered
from shared.events.streams import deployment_stream
from shared.executor.options import OptionsError, configured_options
from shared.git import GitError


async def script_run(ctx: StageContext) -> StageResult:
    """SCRIPT_RUN: run `with.run` in a checkout of the commit, under the script policy."""
    source = await ctx.target()
    options = configured_options(source.config.spec.stages, ctx.stage.id, "SCRIPT_RUN")
    assert isinstance(options, ScriptRunOptions)
    if not options.run.strip():
        raise StageFailed("SCRIPT_RUN has no script: set with.run")
    return await _run_script(ctx, source, options.run, options, rollback=False)


async def custom_sync(ctx: StageContext) -> StageResult:
    """PipeCD's CUSTOM_SYNC: `with.run` with `with.envs`, within `with.timeout` (6h)."""
    source = await ctx.target()
    options = configured_options(source.config.spec.stages, ctx.stage.id, "CUSTOM_SYNC")
    assert isinstance(options, CustomSyncOptions)
    if not options.run.strip():
        raise StageFailed("CUSTOM_SYNC has no script: set with.run")
    as_script = ScriptRunOptions(run=options.run, env=options.envs, timeout=options.timeout)
    return await _run_script(ctx, source, options.run, as_script, rollback=False)


async def script_run_rollback(ctx: StageContext) -> StageResult:
    """The `onRollback` script of a SCRIPT_RUN stage, bounded by that stage's timeout."""
    try:
        recorded = json.loads(ctx.stage.options_json or "{}")
    except ValueError as exc:
        raise OptionsError(f"options of stage SCRIPT_RUN_ROLLBACK do not decode: {exc}") from exc
    base_id = recorded.get("baseStageId") if isinstance(recorded, dict) else None
    if not isinstance(base_id, str) or not base_id:
        raise OptionsError("options of stage SCRIPT_RUN_ROLLBACK name no baseStageId")
    source = await ctx.target()
    options = configured_options(source.config.spec.stages, base_id, "SCRIPT_RUN")
    assert isinstance(options, ScriptRunOptions)
    if not options.on_rollback.strip():
        raise OptionsError(f"stage {base_id} has no onRollback script")
    return await _run_script(ctx, source, options.on_rollback, options, rollback=True)


async def _run_script(
    ctx: StageContext,
    source: DeploySource,
    script: str,
    options: ScriptRunOptions,
    *,
    rollback: bool,
) -> StageResult:
    """Run `script` in the clean room (`script.py`) in the app directory of a checkout."""
    repo = ctx.sources.git.repository(ctx.sources.remote)
    try:
        commit = await ensure_commit(repo, ctx.commit)
    except GitError as exc:
        raise StageFailed(f"cannot check out commit {ctx.commit[:12]}: {exc}") from exc
    deployment, spec = ctx.deployment, source.config.spec
    context = ScriptContext(
        deployment_id=deployment.deployment_id,
        application_id=deployment.application_id,
        application_name=spec.name,
        triggered_at=await _triggered_at(ctx),
        commit_hash=commit,
        commander=deployment.commander,
        repository_url=ctx.sources.remote,
        summary=deployment.summary,
        labels=spec.labels,
        is_rollback=rollback,
    )
    timeout_s = ctx.script_policy.timeout_of(options.timeout.seconds)
    async with repo.checkout(commit) as tree:
        cwd = (tree / ctx.sources.path).resolve()
        if not cwd.is_relative_to(tree.resolve()) or not cwd.is_dir():
            raise StageFailed(f"the application directory {ctx.sources.path} is not at the commit")
        await ctx.log.info(f"Running the script in {ctx.sources.path} at {commit[:12]}")
        try:
            outcome = await run_script(
                script,
                tree=tree.resolve(),
                cwd=cwd,
                env=lambda home: script_env(context, home, options.env, options.secret_env),
                timeout_s=timeout_s,
                limits=ctx.script_policy,
                record=ctx.log.info,
            )
        except ScriptUserError as exc:
            raise StageFailed(str(exc)) from exc
    if outcome.exit_code is None:
        raise StageFailed(f"the script timed out after {seconds_text(timeout_s)} and was killed")
    if outcome.exit_code != 0:
        last = " | ".join(line for line in outcome.tail if line)
        code = outcome.exit_code
        raise StageFailed(f"the script exited with code {code}" + (f": {last}" if last else ""))
    return StageResult(StageStatus.SUCCESS, "The script succeeded")


async def _triggered_at(ctx: StageContext) -> int:
    """When the deployment was triggered, in Unix seconds (0 if the log cannot say)."""
    if ctx.deployment.triggered_at is not None:
        return int(ctx.deployment.triggered_at.timestamp())
    if ctx.store is None:
        return 0
    # A deployment folded without record times (`decider.fold`): the trigger's record says it.
    history = await ctx.store.read_stream(deployment_stream(ctx.deployment.deployment_id))
    trigger = next((e for e in history if isinstance(e.event, DeploymentTriggered)), None)
    return int(trigger.recorded_at.timestamp()) if trigger is not None else 0
