"""A planned stage's options: its `options_json`, decoded into the config's Struct for its name.

The planner writes each stage's `with:` block back out in full (camelCase,
defaults included, see `shared.planning.spec`), so it decodes straight into
the loader's type: `K8S_CANARY_ROLLOUT` into `K8sCanaryRolloutOptions`, and so on.

The options of SCRIPT_RUN (and its rollback) and ANALYSIS are recorded redacted
(`shared.planning.stages.recorded_options`: no secret enters the log), so their
work takes them from the config at the deployment's commit instead:
`configured_options`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from shared.config import STAGE_NAMES, dec_hook
from shared.config.application import PipelineStage
from shared.errors import SlipwayError
from shared.planning.stages import pipeline_stage_id

__all__ = ["OptionsError", "configured_options", "stage_options"]


class OptionsError(SlipwayError, ValueError):
    """A stage's options that do not decode into its options type (a planner/executor mismatch)."""


def stage_options(name: str, options_json: str) -> Any:
    """The options Struct of stage `name` decoded from `options_json`.

    Raises `OptionsError` for a stage name the config knows no options of, or
    options that do not fit them.
    """
    options_type = STAGE_NAMES.get(name)
    if options_type is None:
        raise OptionsError(f"stage {name} has no options type")
    try:
        return msgspec.json.decode(options_json.encode(), type=options_type, dec_hook=dec_hook)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise OptionsError(f"options of stage {name} do not decode: {exc}") from exc


def configured_options(stages: Sequence[PipelineStage], stage_id: str, name: str) -> Any:
    """The options of pipeline stage `stage_id` (a `name` stage) as the config has them.

    Raises `OptionsError` when the config at the commit has no such stage: the plan
    and the config it was made from disagree.
    """
    for index, stage in enumerate(stages):
        if pipeline_stage_id(index, stage.id) == stage_id and stage.name == name:
            return stage.with_
    raise OptionsError(f"the config at the commit has no {name} stage with id {stage_id!r}")
